"""The one waiting loop: the poll schedule backs off within its bounds, and a wait polls on
schedule, reports between polls and takes a last look as its budget ends."""

from __future__ import annotations

import anyio
import pytest
from pydantic import ValidationError

from luma_mcp.config import Settings
from luma_mcp.models import TaskStatus
from luma_mcp.results import TaskResult
from luma_mcp.waiting import Fetch, PollSchedule, wait_for_tasks


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
    schedule = PollSchedule.from_settings(Settings(_env_file=None))
    delays = schedule.delays()
    assert all(next(delays) >= 1.0 for _ in range(50))
    assert schedule.heartbeat <= 5
    with pytest.raises(ValidationError, match="LUMA_POLL_INITIAL_SECONDS"):
        Settings(_env_file=None, LUMA_POLL_INITIAL_SECONDS=0.5)


async def wait_for_one(
    fetch: Fetch, schedule: PollSchedule, budget: float
) -> tuple[dict[str, TaskResult], list[tuple[float, str]]]:
    """Wait on one pending task "t"; returns the results and the progress reports."""
    reports: list[tuple[float, str]] = []

    async def report(progress: float, total: float | None, message: str) -> None:
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
