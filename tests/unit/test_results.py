"""What the tools answer: small typed results and short texts made from task records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from luma_mcp.api.models import TaskRecord, TaskStatus, VideoResult
from luma_mcp.core.ledger.records import load_result
from luma_mcp.core.results import (
    UNUSABLE_VIDEO_URL,
    TaskList,
    TaskResult,
    from_record,
    from_video_result,
    list_text,
    progress_message,
    task_text,
    with_next_call,
)
from luma_mcp.simulator.app import Simulator

from ..helpers.common import example, text_of

LONG_URL = "https://storage.cdn-luma.com/dream_machine/af94e7ca-da35-4b5f-a636-2d7254184d0d/" + "v" * 60 + ".mp4"


def test_a_finished_record_becomes_a_small_result() -> None:
    result = from_record(TaskRecord.model_validate(example("resp-tasks-retrieve-with-timing.json")))
    assert result.status is TaskStatus.SUCCEEDED
    assert result.video_id == "4b088fc8-2bbc-4706-80a6-a0fb118adc1a"
    assert (result.width, result.height, result.elapsed_seconds) == (1360, 752, 154.2)
    assert result.prompt == "Astronauts shuttle from space to volcano"


def test_elapsed_without_the_elapsed_field() -> None:
    record = TaskRecord.model_validate({"id": "t", "created_at": 100.0})
    assert from_record(record, now=130.4).elapsed_seconds == 30.4
    record = TaskRecord.model_validate({"id": "t", "created_at": 100.0, "finished_at": 190.0})
    assert from_record(record, now=500).elapsed_seconds == 90.0
    assert from_record(TaskRecord.model_validate({"id": "t", "created_at": 200.0}), now=100).elapsed_seconds == 0


def test_a_failed_record_keeps_the_reason_and_trace() -> None:
    record = TaskRecord.model_validate(
        {
            "id": "t1",
            "trace_id": "record-trace",
            "request": {"prompt": "p"},
            "response": {"success": False, "error": {"code": "api_error", "message": "fetch failed"}},
        }
    )
    result = from_record(record)
    assert result.status is TaskStatus.FAILED and result.prompt == "p"
    assert result.error is not None
    assert (result.error.code, result.error.message, result.error.trace_id) == (
        "api_error",
        "fetch failed",
        "record-trace",
    )
    assert task_text(result).startswith("Task t1 failed: fetch failed (api_error, trace_id record-trace).")


def test_texts_are_short_and_carry_what_is_needed() -> None:
    done = TaskResult(
        task_id="e4018a99-1522-4f24-9330-62c2a9b50b59",
        status=TaskStatus.SUCCEEDED,
        video_url=LONG_URL,
        video_id="155838f8-7f1e-44d8-b387-192f3b4b509d",
        thumbnail_url="https://platform.cdn.acedata.cloud/luma/e4018a99-1522-4f24-9330-62c2a9b50b59.jpg",
        width=1360,
        height=752,
        prompt="p" * 2000,  # the prompt is in the structured result, not repeated in the text
        elapsed_seconds=154.2,
    )
    text = task_text(done)
    assert LONG_URL in text and "1360x752" in text and "154 s" in text
    assert len(text.encode()) <= 600
    waiting = with_next_call(TaskResult(task_id="abc", status=TaskStatus.PROCESSING, elapsed_seconds=61), 45)
    assert task_text(waiting).splitlines() == [
        "Task abc is generating (61 s so far; videos take 1-5 minutes).",
        'Next: get_task(task_id="abc", wait_seconds=45). Do not submit again: that would pay for a second video.',
    ]
    assert with_next_call(done, 45).next_call is None


def test_list_text_and_progress_lines() -> None:
    tasks = [
        TaskResult(task_id="a", status=TaskStatus.SUCCEEDED, video_url="https://x/a.mp4", video_id="va"),
        TaskResult(task_id="b", status=TaskStatus.PENDING, elapsed_seconds=3),
        TaskResult(task_id="c", status=TaskStatus.FAILED),
    ]
    text = list_text(TaskList(tasks=tasks, not_found=["d"], next_call='get_task(task_id="b", wait_seconds=45)'))
    assert text.splitlines() == [
        "Video ready: https://x/a.mp4 (task a, took moments).",
        'To continue it: extend_video(video_id="va", prompt="...").',
        "Task b is queued (3 s so far; videos take 1-5 minutes).",
        "Task c failed: The generation failed.",
        "Task d: not found (check the id).",
        'Next: get_task(task_id="b", wait_seconds=45).',
    ]
    assert progress_message(tasks) == "3 tasks: 1 done, 1 generating, 1 failed"
    assert progress_message(tasks[1:2]) == "Task b: queued (3 s)"


# --- media URLs the provider hands back: only http(s) gets through --------------------------

NOT_WEB_URLS = [
    "javascript:alert(document.domain)",
    "JavaScript:alert(1)//.mp4",
    " javascript:alert(1)",  # browsers strip leading spaces and run it anyway
    "java\tscript:alert(1)",  # ... and tabs inside the scheme
    "data:text/html,<script>alert(1)</script>",
    "vbscript:msgbox(1)",
    "file:///etc/passwd",
    "//evil.example/v.mp4",  # no scheme: the view's own origin would decide
    "https:alert(1)",  # no host
    "https://cdn.example/v\u202e4pm.exe",  # a bidi override inside
]


def _with(body: dict[str, Any], url: str, key: str = "video_url") -> dict[str, Any]:
    return {**body, key: url}


@pytest.mark.parametrize("url", NOT_WEB_URLS)
def test_a_video_url_that_is_not_http_never_reaches_a_result(url: str) -> None:
    record = example("resp-tasks-retrieve.json")
    record["response"] = _with(record["response"], url)
    polled = from_record(TaskRecord.model_validate(record))
    called_back = from_video_result(
        "t", VideoResult.model_validate(_with(example("callback-payload-success.json"), url))
    )
    for result in (polled, called_back):
        # The provider said done, but there is nothing to show: failed, saying why (not a
        # "processing" that would be waited on for ever).
        assert result.status is TaskStatus.FAILED and result.error is not None
        assert result.error.code == UNUSABLE_VIDEO_URL and "not an http(s) address" in result.error.message
        assert result.video_url is None and result.thumbnail_url is None
        text = task_text(result)
        assert url.strip() not in text and url.strip() not in result.model_dump_json()
        assert "check the provider" in text and "not charged" not in text


@pytest.mark.parametrize("url", NOT_WEB_URLS)
def test_a_thumbnail_url_that_is_not_http_is_dropped(url: str) -> None:
    body = _with(example("callback-payload-success.json"), url, key="thumbnail_url")
    result = from_video_result("t", VideoResult.model_validate(body))
    assert result.status is TaskStatus.SUCCEEDED and result.thumbnail_url is None
    assert result.video_url == body["video_url"]


def test_a_row_stored_before_the_rule_reads_back_without_its_javascript_url() -> None:
    stored = {"task_id": "t", "status": "succeeded", "video_url": "javascript:alert(1)", "video_id": "v"}
    result = load_result(json.dumps(stored))
    assert result.status is TaskStatus.FAILED and result.error is not None
    assert result.error.code == UNUSABLE_VIDEO_URL and (result.video_url, result.video_id) == (None, None)
    kept = load_result(json.dumps({**stored, "video_url": "https://cdn.example/a.mp4", "thumbnail_url": "data:x"}))
    assert (kept.status, kept.video_url, kept.thumbnail_url) == (
        TaskStatus.SUCCEEDED,
        "https://cdn.example/a.mp4",
        None,
    )


def test_web_urls_are_kept() -> None:
    for url in (
        "https://platform.cdn.acedata.cloud/luma/a.mp4",
        "http://127.0.0.1:8123/media/a.mp4",
        "HTTPS://X.example/a",
    ):
        body = {**example("callback-payload-success.json"), "video_url": url, "thumbnail_url": url}
        result = from_video_result("t", VideoResult.model_validate(body))
        assert (result.status, result.video_url, result.thumbnail_url) == (TaskStatus.SUCCEEDED, url, url)


@pytest.mark.anyio
async def test_a_provider_answering_javascript_urls_shows_none_of_them(
    mcp_client: Client, sim: Simulator, private_folders: Path
) -> None:
    """The simulator's result URLs made `javascript:`: the tools, the listing and the ledger
    never carry one (the view reads the same structured content)."""
    sim.media_base = "javascript:alert(document.domain)//"
    sim.queue_seconds, sim.processing_seconds = 0.0, 0.2
    made = await mcp_client.call_tool("generate_video", {"prompt": "A fox", "wait_seconds": 20})
    task_id = (made.structured_content or {})["task_id"]
    seen = [
        made,
        await mcp_client.call_tool("get_task", {"task_id": task_id}),
        await mcp_client.call_tool("list_tasks", {}),
    ]
    assert (seen[1].structured_content or {})["tasks"][0]["status"] == "failed"
    for result in seen:
        assert not result.is_error
        assert "javascript" not in text_of(result) and "javascript" not in json.dumps(result.structured_content)
    stored = b"".join(path.read_bytes() for path in private_folders.glob("**/*.sqlite3*"))
    assert stored and b"javascript" not in stored
