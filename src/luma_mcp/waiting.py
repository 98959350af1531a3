"""How long to wait and how often to look: the one waiting loop every tool uses.

A tool call may wait up to a budget for its tasks to finish. It polls on a schedule that
starts quick and backs off (never more than once per `min_interval` per task, since a
batch poll covers every task at once), reports progress at least every `heartbeat`
seconds so hosts and people see it is alive, and returns when every task is finished or
the budget is spent. Cancellation (the host gave up) interrupts the sleep at once; the
tasks go on upstream and `get_task` finds them later.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

import anyio

from luma_mcp.config import Settings
from luma_mcp.errors import LumaError
from luma_mcp.results import TaskResult, progress_message

log = logging.getLogger(__name__)

Fetch = Callable[[list[str]], Awaitable[dict[str, TaskResult]]]
Report = Callable[[float, float, str], Awaitable[None]]


@dataclass(frozen=True)
class PollSchedule:
    first: float = 5.0  # first look after a submit
    maximum: float = 15.0  # the interval grows to this
    factor: float = 1.5
    heartbeat: float = 4.0  # progress at least this often
    min_interval: float = 1.0  # never poll a task more often than this

    @classmethod
    def from_settings(cls, settings: Settings) -> PollSchedule:
        return cls(
            first=settings.poll_initial_seconds,
            maximum=settings.poll_max_seconds,
            heartbeat=settings.progress_interval_seconds,
        )

    def delays(self) -> Iterator[float]:
        delay = self.first
        while True:
            yield max(delay, self.min_interval)
            delay = min(delay * self.factor, self.maximum)


async def wait_for_tasks(
    fetch: Fetch,
    results: dict[str, TaskResult],
    *,
    budget: float,
    schedule: PollSchedule,
    report: Report,
    first_delay: float,
) -> dict[str, TaskResult]:
    """Poll until every task in `results` is finished or `budget` seconds have passed.

    `first_delay` is how long after now the first poll may come (the caller has just
    submitted or just looked). Transient API errors while waiting are logged and the
    wait goes on; other errors propagate.
    """
    start = anyio.current_time()
    deadline = start + budget
    delays = schedule.delays()
    next_poll = start + max(first_delay, schedule.min_interval)
    last_poll = polled_at = start
    while any(not r.status.finished for r in results.values()):
        now = anyio.current_time()
        if now >= deadline:
            break
        await anyio.sleep(min(next_poll, deadline, now + schedule.heartbeat) - now)
        now = anyio.current_time()
        if now >= next_poll:
            unfinished = [task_id for task_id, r in results.items() if not r.status.finished]
            try:
                results.update(await fetch(unfinished))
                polled_at = anyio.current_time()
            except LumaError as exc:
                if not exc.transient:
                    raise
                log.warning("Checking tasks failed, will look again: %s", exc)
            last_poll = anyio.current_time()
            next_poll = last_poll + next(delays)
            if next_poll > deadline and deadline - last_poll >= schedule.min_interval:
                next_poll = deadline  # one last look just as the budget ends
        since_poll = anyio.current_time() - polled_at
        await report(anyio.current_time() - start, budget, progress_message(_aged(results, since_poll)))
    return results


def _aged(results: dict[str, TaskResult], seconds: float) -> list[TaskResult]:
    """The results as they look `seconds` after they were fetched (for progress lines)."""
    return [
        r
        if r.status.finished or r.elapsed_seconds is None
        else r.model_copy(update={"elapsed_seconds": r.elapsed_seconds + seconds})
        for r in results.values()
    ]
