"""The simulator behaves as the API is documented, so tests and the demo can trust it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from luma_mcp.api.models import TaskStatus, VideoResult, derive_status
from luma_mcp.simulator.app import FAIL_MARKER, ServerThread, Simulator, SimulatorServer

AUTH = {"Authorization": "Bearer tok"}


@pytest.fixture
def http(sim_server: SimulatorServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim_server.url, headers=AUTH, timeout=10) as client:
        yield client


def test_missing_and_wrong_tokens(sim_server: SimulatorServer) -> None:
    sim_server.simulator.valid_tokens = {"tok"}
    with httpx.Client(base_url=sim_server.url) as client:
        answer = client.post("/luma/tasks", json={"action": "retrieve", "id": "x"})
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "no_token"
        answer = client.post(
            "/luma/tasks", json={"action": "retrieve", "id": "x"}, headers={"Authorization": "Bearer no"}
        )
        assert answer.status_code == 401 and answer.json()["error"]["code"] == "invalid_token"
        assert answer.json()["trace_id"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"action": "generate"}, "prompt is required"),
        ({"action": "extend", "prompt": "x"}, "video_id or video_url is required"),
        ({"prompt": "x", "duration": 5}, "Unknown field 'duration'"),
        ({"prompt": "x", "start_image_url": None}, "must not be null"),
        ({"prompt": "x", "aspect_ratio": "2:1"}, "aspect_ratio must be one of"),
        ({"prompt": "x", "action": "loop"}, "action must be generate or extend"),
    ],
)
def test_validation_errors(http: httpx.Client, body: dict[str, Any], message: str) -> None:
    answer = http.post("/luma/videos", json=body)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "bad_request"
    assert message in answer.json()["error"]["message"]


def test_blocking_submit_returns_the_flat_result(http: httpx.Client) -> None:
    answer = http.post("/luma/videos", json={"prompt": "a lighthouse", "aspect_ratio": "1:1"})
    result = VideoResult.model_validate(answer.json())
    assert derive_status(result) is TaskStatus.SUCCEEDED
    assert result.video_width == result.video_height


def test_blocking_submit_times_out_with_504(http: httpx.Client) -> None:
    answer = http.post("/luma/videos", json={"prompt": "x", "timeout": 0.1})
    assert answer.status_code == 504 and answer.json()["error"]["code"] == "timeout"


def test_task_record_lifecycle_and_media(http: httpx.Client, sim: Simulator) -> None:
    task_id = http.post("/luma/videos", json={"prompt": "x", "async": True}).json()["task_id"]
    first = http.post("/luma/tasks", json={"action": "retrieve", "id": task_id}).json()
    assert "response" not in first and "finished_at" not in first and first["user_id"]
    time.sleep(sim.queue_seconds + sim.processing_seconds + 0.05)
    done = http.post("/luma/tasks", json={"action": "retrieve", "id": task_id}).json()
    assert done["response"]["state"] == "completed" and done["elapsed"] > 0
    video = http.get(done["response"]["video_url"])
    assert video.headers["content-type"] == "video/mp4" and video.content[4:8] == b"ftyp"
    assert http.get(done["response"]["thumbnail_url"]).headers["content-type"] == "image/jpeg"


def test_failure_and_unknown_video_to_extend(http: httpx.Client, sim: Simulator) -> None:
    failing = http.post("/luma/videos", json={"prompt": f"x {FAIL_MARKER}", "async": True}).json()["task_id"]
    orphan = http.post("/luma/videos", json={"action": "extend", "video_id": "nope", "async": True}).json()["task_id"]
    time.sleep(sim.queue_seconds + sim.processing_seconds + 0.05)
    batch = http.post("/luma/tasks", json={"action": "retrieve_batch", "ids": [failing, orphan, "nope"]}).json()
    assert batch["count"] == 2
    responses = [VideoResult.model_validate(item["response"]) for item in batch["items"]]
    assert [derive_status(r) for r in responses] == [TaskStatus.FAILED, TaskStatus.FAILED]
    assert "nope was not found" in str(responses[1].error)


def test_unknown_task_is_an_empty_object(http: httpx.Client) -> None:
    assert http.post("/luma/tasks", json={"action": "retrieve", "id": "nope"}).json() == {}


def test_callbacks_are_posted_on_completion(http: httpx.Client, sim: Simulator) -> None:
    received: list[Any] = []

    async def hook(request: Request) -> Response:
        received.append(await request.json())
        return Response(status_code=204)

    with ServerThread(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as receiver:
        answer = http.post("/luma/videos", json={"prompt": "x", "callback_url": f"{receiver.url}/hook"})
        assert answer.json().keys() == {"task_id"}
        deadline = time.monotonic() + 5
        while not received and time.monotonic() < deadline:
            time.sleep(0.05)
    assert received and received[0]["task_id"] == answer.json()["task_id"]
    assert derive_status(VideoResult.model_validate(received[0])) is TaskStatus.SUCCEEDED
    assert sim.callbacks[0]["url"].endswith("/hook")
