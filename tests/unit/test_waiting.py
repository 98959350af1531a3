"""The one waiting loop: the poll schedule backs off within its bounds, and a wait polls on
schedule, reports between polls and takes a last look as its budget ends; given the ledger,
it wakes when a task is recorded finished. (Whether a look asks the API, a callback being
due, is `VideoService.fetch`'s rule: test_service.py.)"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from pydantic import ValidationError

from luma_mcp.api.models import TaskStatus
from luma_mcp.config import Settings
from luma_mcp.core.ledger import SQLiteLedger, TenantLedger
from luma_mcp.core.results import TaskResult
from luma_mcp.core.waiting import Fetch, PollSchedule, RecentReads, wait_for_tasks


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

    async def fetch(ids: list[str], *, routine: bool = False) -> dict[str, TaskResult]:
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

    async def fetch(ids: list[str], *, routine: bool = False) -> dict[str, TaskResult]:
        polls.append(anyio.current_time() - start)
        return {i: TaskResult(task_id=i, status=TaskStatus.PROCESSING) for i in ids}

    await wait_for_one(fetch, schedule, budget=0.6)
    elapsed = anyio.current_time() - start
    assert 0.6 <= elapsed < 2.5  # a busy machine adds a little; without the last look it is 10 s
    assert polls[-1] >= 0.55  # the last poll lands as the budget ends, not 10 s later


# --- waking on the ledger ------------------------------------------------------------------

SLOW = PollSchedule(first=0.1, maximum=0.2, heartbeat=0.1, min_interval=0.05)  # safety net: 60 s


async def accepted_tasks(tmp_path: Path, task_ids: list[str], *, callback: bool) -> TenantLedger:
    """A real SQLite ledger holding these tasks, accepted and pending, with or without our callback."""
    view = SQLiteLedger(tmp_path / "ledger.sqlite3").for_tenant("")
    for task_id in task_ids:
        hash_ = f"hash-of-{task_id}" if callback else None
        reservation = await view.reserve("generate", {"prompt": task_id}, callback_hash=hash_)
        await view.accept(reservation.entry.row_id, task_id, TaskResult(task_id=task_id, status=TaskStatus.PENDING))
    return view


def counting_fetch(view: TenantLedger, looks: list[float], routines: list[bool] | None = None) -> Fetch:
    """A fetch that answers from the ledger, as `VideoService.fetch` does for finished tasks."""
    start = anyio.current_time()

    async def fetch(ids: list[str], *, routine: bool = False) -> dict[str, TaskResult]:
        looks.append(anyio.current_time() - start)
        if routines is not None:
            routines.append(routine)
        found = await view.find(ids)
        return {i: e.result or TaskResult(task_id=i, status=TaskStatus.PROCESSING) for i, e in found.items()}

    return fetch


async def finish_later(view: TenantLedger, task_id: str, after: float) -> None:
    await anyio.sleep(after)
    await view.record([TaskResult(task_id=task_id, status=TaskStatus.SUCCEEDED, video_url="https://x/v.mp4")])


async def silent(progress: float, total: float | None, message: str) -> None:
    return None


# A first look 30 s out: within these tests' seconds, only a wake explains a look.
WAKE_ONLY = PollSchedule(first=30, maximum=30, heartbeat=0.1, min_interval=0.05)


@pytest.mark.anyio
async def test_a_task_recorded_finished_wakes_the_wait_at_once(tmp_path: Path) -> None:
    view = await accepted_tasks(tmp_path, ["t"], callback=True)
    looks: list[float] = []
    pending = {"t": TaskResult(task_id="t", status=TaskStatus.PENDING)}
    async with anyio.create_task_group() as tg:
        tg.start_soon(finish_later, view, "t", 0.6)
        start = anyio.current_time()
        results = await wait_for_tasks(
            counting_fetch(view, looks), pending, budget=20, schedule=WAKE_ONLY, report=silent, ledger=view
        )
        took = anyio.current_time() - start
    assert results["t"].status is TaskStatus.SUCCEEDED
    assert 0.6 <= took < 1.5  # woken; the schedule's first look is 30 s out
    assert len(looks) == 1 and looks[0] >= 0.6  # one look, the wake's (it reads the ledger: no upstream)


@pytest.mark.anyio
async def test_without_a_callback_due_the_wait_polls_on_schedule_and_still_wakes(tmp_path: Path) -> None:
    view = await accepted_tasks(tmp_path, ["t"], callback=False)
    looks: list[float] = []
    pending = {"t": TaskResult(task_id="t", status=TaskStatus.PENDING)}
    schedule = PollSchedule(first=0.3, maximum=30, factor=100, heartbeat=0.1, min_interval=0.05)  # then 30 s
    async with anyio.create_task_group() as tg:
        tg.start_soon(finish_later, view, "t", 1.0)
        results = await wait_for_tasks(
            counting_fetch(view, looks), pending, budget=20, schedule=schedule, report=silent, ledger=view
        )
    assert results["t"].status is TaskStatus.SUCCEEDED
    assert len(looks) == 2 and looks[0] < 0.9 <= 1.0 <= looks[1] < 2.0  # one poll on schedule, then the wake


@pytest.mark.anyio
async def test_a_wait_on_several_tasks_watches_again_after_each_wake(tmp_path: Path) -> None:
    """Woken by the first task, the wait must sleep again (not spin on the event already set)
    until the second is recorded."""
    view = await accepted_tasks(tmp_path, ["a", "b"], callback=True)
    looks: list[float] = []
    pending = {i: TaskResult(task_id=i, status=TaskStatus.PENDING) for i in ("a", "b")}
    async with anyio.create_task_group() as tg:
        tg.start_soon(finish_later, view, "a", 0.3)
        tg.start_soon(finish_later, view, "b", 0.9)
        results = await wait_for_tasks(
            counting_fetch(view, looks), pending, budget=20, schedule=WAKE_ONLY, report=silent, ledger=view
        )
    assert all(r.status is TaskStatus.SUCCEEDED for r in results.values())
    assert len(looks) == 2 and 0.3 <= looks[0] < 0.9 <= looks[1] < 1.8, looks


@pytest.mark.anyio
async def test_a_task_finished_before_the_wait_began_is_seen_at_once(tmp_path: Path) -> None:
    """Recorded between the caller's look and the wait's watch: read from the ledger at once."""
    view = await accepted_tasks(tmp_path, ["t"], callback=True)
    await finish_later(view, "t", 0)
    looks: list[float] = []
    stale = {"t": TaskResult(task_id="t", status=TaskStatus.PROCESSING)}
    with anyio.fail_after(2):
        results = await wait_for_tasks(
            counting_fetch(view, looks), stale, budget=20, schedule=WAKE_ONLY, report=silent, ledger=view
        )
    assert results["t"].status is TaskStatus.SUCCEEDED and looks == []


@pytest.mark.anyio
async def test_recent_reads_answer_within_their_age_and_count_the_time_since() -> None:
    reads = RecentReads(min_interval=0.05).for_tenant("alice")
    reads.remember({"t": TaskResult(task_id="t", status=TaskStatus.PROCESSING, elapsed_seconds=10)})
    assert reads.fresh(["t"])["t"].elapsed_seconds == 10
    assert RecentReads.for_tenant(reads.reads, "bob").fresh(["t"]) == {}  # one tenant's read is not another's
    await anyio.sleep(0.1)
    assert reads.fresh(["t"]) == {}  # older than min_interval
    assert reads.fresh(["t"], within=60)["t"].elapsed_seconds == 10  # under a second later: as read
    reads.reads._reads[("alice", "t")] = (anyio.current_time() - 30, reads.reads._reads[("alice", "t")][1])
    assert reads.fresh(["t"], within=60)["t"].elapsed_seconds == 40  # read 30 s ago: 30 s older now
    assert reads.fresh(["t"], within=20) == {}


@pytest.mark.anyio
async def test_only_the_last_look_of_a_wait_is_not_routine(tmp_path: Path) -> None:
    """The looks on schedule may be answered from what is known; the one the caller gets may not."""
    view = await accepted_tasks(tmp_path, ["t"], callback=True)
    looks: list[float] = []
    routines: list[bool] = []
    pending = {"t": TaskResult(task_id="t", status=TaskStatus.PENDING)}
    schedule = PollSchedule(first=0.2, maximum=0.2, heartbeat=0.1, min_interval=0.05)
    await wait_for_tasks(
        counting_fetch(view, looks, routines), pending, budget=1.0, schedule=schedule, report=silent, ledger=view
    )
    assert len(routines) >= 3 and routines[-1] is False and all(routines[:-1]), (looks, routines)
    assert looks[-1] >= 0.95  # the last look comes as the budget ends
