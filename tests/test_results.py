"""The pure pieces the tools are made of: results, text, schedule, schema compaction, settings."""

from __future__ import annotations

import anyio
import pytest
from pydantic import ValidationError

from luma_mcp.config import Settings
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
from luma_mcp.schema import compact_schema
from luma_mcp.waiting import Fetch, PollSchedule, wait_for_tasks

from .conftest import example

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


def test_poll_schedule_backs_off_to_its_maximum_and_respects_the_floor() -> None:
    delays = PollSchedule(first=2, maximum=10, factor=2).delays()
    assert [next(delays) for _ in range(6)] == [2, 4, 8, 10, 10, 10]
    floored = PollSchedule(first=0.1, maximum=0.2, min_interval=1.0).delays()
    assert next(floored) == 1.0


def test_a_continued_wait_picks_up_the_back_off() -> None:
    schedule = PollSchedule(first=5, maximum=15, factor=1.5)
    assert next(schedule.delays(0)) == 5
    assert next(schedule.delays(6)) == 7.5  # 5 s already waited
    assert next(schedule.delays(45)) == 15  # long past the ramp


def test_default_schedule_polls_at_most_once_a_second() -> None:
    schedule = PollSchedule.from_settings(Settings(_env_file=None))  # type: ignore[call-arg]
    delays = schedule.delays()
    assert all(next(delays) >= 1.0 for _ in range(50))
    assert schedule.heartbeat <= 5
    with pytest.raises(ValidationError, match="LUMA_POLL_INITIAL_SECONDS"):
        Settings(_env_file=None, LUMA_POLL_INITIAL_SECONDS=0.5)  # type: ignore[call-arg]


async def wait_for_one(
    fetch: Fetch, schedule: PollSchedule, budget: float
) -> tuple[dict[str, TaskResult], list[tuple[float, str]]]:
    """Wait on one pending task "t"; returns the results and the progress reports."""
    reports: list[tuple[float, str]] = []

    async def report(progress: float, total: float, message: str) -> None:
        reports.append((progress, message))

    pending = {"t": TaskResult(task_id="t", status=TaskStatus.PENDING)}
    results = await wait_for_tasks(fetch, pending, budget=budget, schedule=schedule, report=report)
    return results, reports


@pytest.mark.anyio
async def test_wait_loop_polls_on_schedule_and_reports_between_polls() -> None:
    schedule = PollSchedule(first=0.2, maximum=0.3, factor=1.5, heartbeat=0.1, min_interval=0.2)
    polls: list[float] = []
    start = anyio.current_time()

    async def fetch(ids: list[str]) -> dict[str, TaskResult]:
        polls.append(anyio.current_time() - start)
        status = TaskStatus.SUCCEEDED if len(polls) >= 3 else TaskStatus.PROCESSING
        return {i: TaskResult(task_id=i, status=status, elapsed_seconds=1) for i in ids}

    results, reports = await wait_for_one(fetch, schedule, budget=5)
    assert results["t"].status is TaskStatus.SUCCEEDED and len(polls) == 3
    gaps = [b - a for a, b in zip([0.0, *polls], polls, strict=False)]
    assert all(gap >= 0.2 - 0.02 for gap in gaps)  # never faster than the floor
    assert len(reports) > len(polls)  # heartbeats between polls
    assert reports[-1][1] == "Task t: done"


@pytest.mark.anyio
async def test_wait_loop_ends_at_its_budget_with_a_last_look() -> None:
    schedule = PollSchedule(first=0.1, maximum=10, heartbeat=0.1, min_interval=0.1)
    polls: list[float] = []
    start = anyio.current_time()

    async def fetch(ids: list[str]) -> dict[str, TaskResult]:
        polls.append(anyio.current_time() - start)
        return {i: TaskResult(task_id=i, status=TaskStatus.PROCESSING) for i in ids}

    await wait_for_one(fetch, schedule, budget=0.6)
    elapsed = anyio.current_time() - start
    assert 0.6 <= elapsed < 2.5  # a busy machine adds a little; without the last look it is 10 s
    assert polls[-1] >= 0.55  # the last poll lands as the budget ends, not 10 s later


def test_compact_schema_folds_optionals_drops_titles_and_inlines_defs() -> None:
    schema = {
        "$defs": {"Status": {"enum": ["a", "b"], "title": "Status", "type": "string"}},
        "properties": {
            "title": {"title": "Title", "type": "string"},  # a property named "title" survives
            "maybe": {"anyOf": [{"type": "string", "maxLength": 5}, {"type": "null"}], "default": None, "title": "M"},
            "status": {"$ref": "#/$defs/Status"},
        },
        "title": "Model",
        "type": "object",
    }
    assert compact_schema(schema) == {
        "properties": {
            "title": {"type": "string"},
            "maybe": {"type": "string", "maxLength": 5},
            "status": {"enum": ["a", "b"], "type": "string"},
        },
        "type": "object",
    }


def test_settings_read_the_environment_and_check_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACEDATACLOUD_API_TOKEN", "from-env-123")
    monkeypatch.setenv("LUMA_DEFAULT_ASPECT_RATIO", "21:9")
    monkeypatch.setenv("LUMA_WAIT_SECONDS", "20")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.api_token is not None and settings.api_token.get_secret_value() == "from-env-123"
    assert "from-env-123" not in repr(settings)
    assert (settings.default_aspect_ratio, settings.wait_seconds) == ("21:9", 20)
    monkeypatch.setenv("LUMA_WAIT_SECONDS", "80")
    with pytest.raises(ValidationError, match="LUMA_WAIT_SECONDS \\(80\\) is above LUMA_MAX_WAIT_SECONDS"):
        Settings(_env_file=None)  # type: ignore[call-arg]
    monkeypatch.setenv("LUMA_DEFAULT_ASPECT_RATIO", "2:1")
    with pytest.raises(ValidationError):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_settings_read_a_dot_env_file(tmp_path: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACEDATACLOUD_API_TOKEN", raising=False)
    env_file = tmp_path / ".env"  # type: ignore[operator]
    env_file.write_text("ACEDATACLOUD_API_TOKEN=dotenv-token-1\nLUMA_MAX_WAIT_SECONDS=300\n")
    settings = Settings(_env_file=env_file)  # type: ignore[call-arg]
    assert settings.api_token is not None and settings.api_token.get_secret_value() == "dotenv-token-1"
    assert settings.max_wait_seconds == 300


def test_the_readme_documents_every_setting_and_nothing_else() -> None:
    import re
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", readme, flags=re.MULTILINE))
    settings = {str(field.validation_alias) for field in Settings.model_fields.values()}
    assert documented == settings
