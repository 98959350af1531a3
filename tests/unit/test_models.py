"""Every published example body parses, and the one status rule gives the right answer."""

from __future__ import annotations

from typing import get_args

import pytest
from pydantic import ValidationError

from luma_mcp.api.models import (
    Accepted,
    ExtendRequest,
    GenerateRequest,
    ListStatus,
    RetrieveBatchRequest,
    RetrieveRequest,
    SubmitState,
    TaskBatch,
    TaskRecord,
    TaskStatus,
    VideoResult,
    derive_status,
)

from ..helpers.common import EXAMPLES, example

BOOKKEEPING = {"_id", "api_id", "application_id", "credential_id", "user_id"}


@pytest.mark.parametrize("name", ["resp-tasks-retrieve.json", "resp-tasks-retrieve-with-timing.json"])
def test_task_record_examples_parse_and_succeed(name: str) -> None:
    record = TaskRecord.model_validate(example(name))
    assert record.id == "50fc6182-fa86-4c7d-ac12-2fa27ec2f151"
    assert derive_status(record.response) is TaskStatus.SUCCEEDED
    assert record.response is not None and record.response.video_url.endswith(".mp4")  # type: ignore[union-attr]
    assert record.created_at == 1725077411.961
    # The account's bookkeeping ids are gone once parsed.
    assert not BOOKKEEPING & set(record.model_dump())


def test_timing_fields_are_read() -> None:
    record = TaskRecord.model_validate(example("resp-tasks-retrieve-with-timing.json"))
    assert record.elapsed == 154.22
    assert record.started_at == 1725077412.021


def test_batch_example() -> None:
    batch = TaskBatch.model_validate(example("resp-tasks-retrieve-batch.json"))
    assert batch.count == 2
    assert [derive_status(item.response) for item in batch.items] == [TaskStatus.SUCCEEDED] * 2
    assert batch.items[1].response is not None and batch.items[1].response.prompt == "la la la"


@pytest.mark.parametrize(
    "name",
    [
        "resp-videos-sync-text-to-video.json",
        "resp-videos-sync-generate-start-image.json",
        "resp-videos-sync-generate-start-end-image.json",
        "resp-videos-sync-extend-by-video-id.json",
        "resp-videos-sync-extend-by-video-url.json",
        "callback-payload-success.json",
    ],
)
def test_blocking_results_and_callbacks_succeed(name: str) -> None:
    result = VideoResult.model_validate(example(name))
    assert derive_status(result) is TaskStatus.SUCCEEDED
    assert result.video_id and result.thumbnail_url and result.video_width and result.video_height


def test_callback_failure_is_failed() -> None:
    result = VideoResult.model_validate(example("platform-generic-callback-failure.json"))
    assert derive_status(result) is TaskStatus.FAILED


@pytest.mark.parametrize("name", ["platform-generic-async-accepted.json", "resp-videos-async-callback-accepted.json"])
def test_acceptance_examples(name: str) -> None:
    assert Accepted.model_validate(example(name)).task_id == example(name)["task_id"]


def test_every_example_file_is_covered() -> None:
    covered = {
        "resp-tasks-retrieve.json", "resp-tasks-retrieve-with-timing.json", "resp-tasks-retrieve-batch.json",
        "resp-videos-sync-text-to-video.json", "resp-videos-sync-generate-start-image.json",
        "resp-videos-sync-generate-start-end-image.json", "resp-videos-sync-extend-by-video-id.json",
        "resp-videos-sync-extend-by-video-url.json", "callback-payload-success.json",
        "platform-generic-callback-failure.json", "platform-generic-async-accepted.json",
        "resp-videos-async-callback-accepted.json",
        # requests (test_request_examples_round_trip) and errors (test_errors.py)
        "req-tasks-retrieve.json", "req-tasks-retrieve-batch.json", "req-videos-extend-by-video-id.json",
        "req-videos-generate-minimal-docs-comparison.json", "req-videos-generate-start-image.json",
    }  # fmt: skip
    errors = {p.name for p in EXAMPLES.glob("error-*.json")}
    assert {p.name for p in EXAMPLES.glob("*.json")} == covered | errors


@pytest.mark.parametrize(
    ("name", "model"),
    [
        ("req-videos-generate-minimal-docs-comparison.json", GenerateRequest),
        ("req-videos-generate-start-image.json", GenerateRequest),
        ("req-videos-extend-by-video-id.json", ExtendRequest),
        ("req-tasks-retrieve.json", RetrieveRequest),
        ("req-tasks-retrieve-batch.json", RetrieveBatchRequest),
    ],
)
def test_request_examples_round_trip(name: str, model: type[GenerateRequest]) -> None:
    body = example(name)
    assert model.model_validate(body).to_body() == body


@pytest.mark.parametrize(
    ("response", "status"),
    [
        (None, TaskStatus.PENDING),
        ({}, TaskStatus.PENDING),
        ({"state": "pending"}, TaskStatus.PENDING),
        ({"state": "processing"}, TaskStatus.PROCESSING),
        ({"success": True, "state": "completed"}, TaskStatus.PROCESSING),  # a snapshot with no URL yet
        ({"success": True, "video_url": ""}, TaskStatus.PENDING),
        ({"success": True, "video_url": "https://x/v.mp4"}, TaskStatus.SUCCEEDED),
        ({"success": False}, TaskStatus.FAILED),
        ({"state": "failed"}, TaskStatus.FAILED),
        ({"state": "processing", "error": {"code": "api_error", "message": "boom"}}, TaskStatus.FAILED),
        ({"error": "boom"}, TaskStatus.FAILED),
    ],
)
def test_status_rule(response: dict[str, object] | None, status: TaskStatus) -> None:
    parsed = None if response is None else VideoResult.model_validate(response)
    assert derive_status(parsed) is status


def test_record_without_response_or_with_null_response_is_pending() -> None:
    for body in ({"id": "t"}, {"id": "t", "response": None}):
        assert derive_status(TaskRecord.model_validate(body).response) is TaskStatus.PENDING


def test_requests_never_carry_null_or_unset_fields() -> None:
    body = GenerateRequest(prompt="a cat", start_image_url=None, loop=False).to_body()
    assert body == {"action": "generate", "prompt": "a cat", "loop": False}
    assert ExtendRequest(video_url="https://x/v.mp4", async_=True).to_body() == {
        "action": "extend",
        "video_url": "https://x/v.mp4",
        "async": True,
    }


def test_requests_refuse_fields_the_api_does_not_have() -> None:
    with pytest.raises(ValidationError):
        GenerateRequest.model_validate({"prompt": "x", "duration": 5})
    with pytest.raises(ValidationError):
        GenerateRequest.model_validate({"prompt": "x", "aspect_ratio": "2:1"})


@pytest.mark.parametrize("sources", [{}, {"video_id": "a", "video_url": "https://x/v.mp4"}])
def test_extend_needs_exactly_one_source(sources: dict[str, str]) -> None:
    with pytest.raises(ValidationError, match="exactly one of video_id or video_url"):
        ExtendRequest(prompt="more", **sources)


def test_a_listing_shows_task_statuses_and_the_states_of_submits_without_a_task() -> None:
    shown = set(get_args(ListStatus))
    assert shown == {*TaskStatus} | ({*SubmitState} - {SubmitState.ACCEPTED})
