"""How long to wait and how often to look: the one waiting loop every tool uses.

A tool call may wait up to a budget for its tasks to finish. It polls on a schedule that
starts quick and backs off (never more than once per `min_interval` per task, since a
batch poll covers every task at once), reports progress at least every `heartbeat`
seconds so hosts and people see it is alive, and returns when every task is finished or
the budget is spent. Cancellation (the host gave up) interrupts the sleep at once; the
tasks go on upstream and `get_task` finds them later.

Given the ledger, a wait also wakes the moment one of its tasks is recorded finished (by a
callback, or a poll elsewhere; on PostgreSQL by any replica) and answers from the ledger,
with no upstream read. Whether a look asks the API at all is `fetch`'s rule
(`VideoService.fetch`): the looks on schedule are `routine`, and a task whose callback is due
is then read upstream only as a safety net (`PollSchedule.safety_net`); the last look, whose
result the caller gets, is not.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable, Collection, Iterator
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import anyio

from luma_mcp.api.errors import LedgerError, LumaError
from luma_mcp.config import Settings
from luma_mcp.core.results import TaskResult, progress_message

if TYPE_CHECKING:
    from luma_mcp.core.ledger import LedgerEntry

log = logging.getLogger(__name__)


class Fetch(Protocol):
    """Current results of these tasks (`VideoService.fetch`). `routine`: a look on schedule,
    not the one an answer is made of, so it may be answered from what is known (see there)."""

    def __call__(self, task_ids: list[str], /, *, routine: bool = False) -> Awaitable[dict[str, TaskResult]]: ...


# How long a stopping server (stdio or HTTP) lets calls in flight answer before it cuts them off.
SHUTDOWN_GRACE_SECONDS = 10

# Progress for the person waiting: how far, out of how much (if known), and a line saying so.
# The one shape of progress callback, from the waits, submits and downloads up to the tools.
Report = Callable[[float, float | None, str], Awaitable[None]]


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

    @property
    def safety_net(self) -> float:
        """Seconds between upstream reads of a task whose callback will say when it is done
        (the looks in between read the ledger, and memory): four times the longest poll
        interval, at least a minute (60 s with the defaults, against polls 5 s apart backing
        off to 15 s). A 90-s video is then read upstream once or twice instead of about nine
        times. The price, should a callback never come (an unreachable public URL, a provider
        that drops it): the answer lags the video by up to this long."""
        return max(self.maximum * 4, 60.0)

    def delays(self, age: float = 0.0) -> Iterator[float]:
        """Intervals between polls of tasks that have been running `age` seconds: a wait that
        continues an earlier one picks up the back-off where that one left it."""
        delay, waited = self.first, 0.0
        while waited + delay <= age and delay < self.maximum:
            waited += delay
            delay = min(delay * self.factor, self.maximum)
        while True:
            yield max(delay, self.min_interval)
            delay = min(delay * self.factor, self.maximum)

    def next_check(self, age: float) -> float:
        """Seconds until someone following a task running for `age` seconds should ask again
        (never less than `min_interval`, the upstream politeness floor)."""
        return round(next(self.delays(age)), 1)


class RecentReads:
    """The last read of each task, shared by every call of one server process.

    A wait that ends with a last look, followed at once by the model's next get_task, would
    otherwise read the same task twice within milliseconds: reads younger than
    `min_interval` are answered from here instead.
    """

    def __init__(self, min_interval: float, max_entries: int = 4096) -> None:
        self.min_interval = min_interval
        self._max_entries = max_entries
        # Keyed by tenant too: one caller's read must never answer another's question.
        self._reads: dict[tuple[str, str], tuple[float, TaskResult]] = {}

    def fresh(self, tenant: str, task_ids: list[str], within: float | None = None) -> dict[str, TaskResult]:
        """Results read less than `within` seconds ago (default `min_interval`); a running
        task's `elapsed_seconds` counts the time since."""
        now = anyio.current_time()
        within = self.min_interval if within is None else within
        found = {}
        for task_id in task_ids:
            read = self._reads.get((tenant, task_id))
            if read is not None and (age := now - read[0]) < within:
                result = read[1]
                if result.elapsed_seconds is not None and not result.status.finished and age >= 1:
                    result = result.model_copy(update={"elapsed_seconds": round(result.elapsed_seconds + age, 1)})
                found[task_id] = result
        return found

    def remember(self, tenant: str, results: dict[str, TaskResult]) -> None:
        now = anyio.current_time()
        for task_id, result in results.items():
            self._reads.pop((tenant, task_id), None)  # re-insert: the dict stays oldest-first
            self._reads[(tenant, task_id)] = (now, result)
        while len(self._reads) > self._max_entries:
            del self._reads[next(iter(self._reads))]

    def for_tenant(self, tenant: str) -> TenantReads:
        return TenantReads(self, tenant)


@dataclass(frozen=True)
class TenantReads:
    """One tenant's slice of `RecentReads`, as a `Caller` holds it."""

    reads: RecentReads
    tenant: str

    def fresh(self, task_ids: list[str], within: float | None = None) -> dict[str, TaskResult]:
        return self.reads.fresh(self.tenant, task_ids, within)

    def remember(self, results: dict[str, TaskResult]) -> None:
        self.reads.remember(self.tenant, results)


class WaitLedger(Protocol):
    """What a wait may ask of one tenant's ledger (a `TenantLedger`), never the API."""

    def watch(self, task_ids: Collection[str]) -> AbstractContextManager[anyio.Event]: ...

    async def find(self, task_ids: list[str]) -> dict[str, LedgerEntry]: ...


async def wait_for_tasks(
    fetch: Fetch,
    results: dict[str, TaskResult],
    *,
    budget: float,
    schedule: PollSchedule,
    report: Report,
    age: float = 0.0,
    stop: threading.Event | None = None,
    ledger: WaitLedger | None = None,
) -> dict[str, TaskResult]:
    """Poll until every task in `results` is finished or `budget` seconds have passed.

    The caller has just submitted or just looked, so the first poll comes one interval
    from now; `age` is how long the tasks have been running (the back-off continues from
    there). Transient API errors while waiting are logged and the wait goes on; other
    errors propagate. When `stop` is set (the server is shutting down) the wait ends at
    once with what it has, so the caller still gets its task id and the next call to make.
    With `ledger`, a task recorded finished wakes the wait at once (see the module).
    """
    start = anyio.current_time()
    deadline = start + budget
    with ExitStack() as watching:
        woken = _watch(watching, ledger, results)
        await _look_in_ledger(ledger, results)
        delays = schedule.delays(age)
        next_poll = start + next(delays)
        last_poll = polled_at = start
        while any(not r.status.finished for r in results.values()):
            now = anyio.current_time()
            if now >= deadline or (stop is not None and stop.is_set()):
                break
            was_woken = await _sleep(min(next_poll, deadline, now + schedule.heartbeat) - now, stop, woken)
            if stop is not None and stop.is_set():
                break
            now = anyio.current_time()
            if was_woken or now >= next_poll:
                if was_woken:
                    # An event stays set: watch anew before looking, so a task finishing
                    # while we look still wakes the next sleep. The finished ones read from
                    # the ledger, with no upstream request.
                    woken = _watch(watching, ledger, results)
                # The last look (no other will follow before the budget ends) is the answer's.
                last = next_poll >= deadline or now + schedule.min_interval > deadline
                unfinished = [task_id for task_id, r in results.items() if not r.status.finished]
                try:
                    # Woken: the ledger has the finished task (no read); a wake it cannot answer
                    # (a callback of unknown shape, another task of a batch) asks upstream.
                    results.update(await fetch(unfinished, routine=not (was_woken or last)))
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


def _watch(watching: ExitStack, ledger: WaitLedger | None, results: dict[str, TaskResult]) -> anyio.Event | None:
    """Watch the unfinished tasks (in place of any earlier watch): the event is set when one
    of them is recorded finished."""
    if ledger is None:
        return None
    renewed = ExitStack()
    event = renewed.enter_context(ledger.watch([i for i, r in results.items() if not r.status.finished]))
    watching.close()  # after the new watch is in place: no moment unwatched
    watching.push(renewed)
    return event


async def _look_in_ledger(ledger: WaitLedger | None, results: dict[str, TaskResult]) -> None:
    """Take the tasks the ledger has finished (no upstream read). Done once the watch is in
    place, so a task recorded finished just before the wait began is seen."""
    if ledger is None:
        return
    unfinished = [task_id for task_id, r in results.items() if not r.status.finished]
    try:
        entries = await ledger.find(unfinished)
    except LedgerError as exc:  # the polls go on as without a ledger
        log.debug("waiting without the ledger: %s", exc)
        return
    for task_id, entry in entries.items():
        if entry.finished and entry.result is not None:
            results[task_id] = entry.result


async def _sleep(seconds: float, stop: threading.Event | None, woken: anyio.Event | None = None) -> bool:
    """Sleep `seconds`, less if `stop` or `woken` is set; whether `woken` was."""
    end = anyio.current_time() + seconds
    # `stop` is set from a signal handler, outside any event loop: look at it often.
    slice_ = 0.2 if stop is not None else seconds
    while not (stop is not None and stop.is_set()) and (left := end - anyio.current_time()) > 0:
        if woken is None:
            await anyio.sleep(min(left, slice_))
            continue
        with anyio.move_on_after(min(left, slice_)):
            await woken.wait()
        if woken.is_set():
            return True
    return woken is not None and woken.is_set()


def _aged(results: dict[str, TaskResult], seconds: float) -> list[TaskResult]:
    """The results as they look `seconds` after they were fetched (for progress lines)."""
    return [
        r
        if r.status.finished or r.elapsed_seconds is None
        else r.model_copy(update={"elapsed_seconds": r.elapsed_seconds + seconds})
        for r in results.values()
    ]
