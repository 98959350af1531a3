"""What the tools answer: small typed results and short texts made from task records."""

from __future__ import annotations

from luma_mcp.models import TaskRecord, TaskStatus
from luma_mcp.results import (
    TaskList,
    TaskResult,
    from_record,
    list_text,
    progress_message,
    task_text,
    with_next_call,
)

from ..helpers.common import example

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
        TaskResult(task_id="a", status=TaskStatus.SUCCEEDED, video_url="https://x/a.mp4"),
        TaskResult(task_id="b", status=TaskStatus.PENDING, elapsed_seconds=3),
        TaskResult(task_id="c", status=TaskStatus.FAILED),
    ]
    text = list_text(TaskList(tasks=tasks, not_found=["d"], next_call='get_task(task_id="b", wait_seconds=45)'))
    assert text.splitlines() == [
        "Video ready: https://x/a.mp4 (task a, took moments).",
        "Task b is queued (3 s so far; videos take 1-5 minutes).",
        "Task c failed: The generation failed.",
        "Task d: not found (check the id).",
        'Next: get_task(task_id="b", wait_seconds=45).',
    ]
    assert progress_message(tasks) == "3 tasks: 1 done, 1 generating, 1 failed"
    assert progress_message(tasks[1:2]) == "Task b: queued (3 s)"
