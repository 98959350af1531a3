"""What the tools do, without MCP: submit once, read and wait on tasks, list, download.

`VideoService` serves one `Caller` (their token, their ledger rows, their folder) with what
the process shares (`AppState`: settings, poll schedule, shutdown signal). The MCP layer only
validates arguments, calls one method and renders the answer; every failure here is a
`LumaMcpError` (see `errors`), carrying a message meant for the model. Submitting is
`submitting`'s, saving a file `saving`'s; reading, waiting and listing are here.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from luma_mcp.api.errors import LedgerUnavailable, LumaError, ServiceError
from luma_mcp.api.models import SubmitState, TaskStatus, VideoRequest
from luma_mcp.core.caller import Caller
from luma_mcp.core.ledger import LedgerEntry
from luma_mcp.core.results import ListedTask, SavedVideo, TaskResult, from_record
from luma_mcp.core.saving import save_video
from luma_mcp.core.state import AppState
from luma_mcp.core.submitting import submit_once
from luma_mcp.core.waiting import Report, wait_for_tasks

log = logging.getLogger(__name__)


class VideoService:
    def __init__(self, state: AppState, caller: Caller) -> None:
        # Only what every caller shares; the ledger and reads come scoped, through `caller`.
        self.settings = state.settings
        self.schedule = state.schedule
        self.stopping = state.stopping
        self.callbacks = state.callbacks
        self.caller = caller

    async def submit(
        self, request: VideoRequest, *, idempotency_key: str | None, new_take: bool, report: Report
    ) -> TaskResult:
        """Start a generation, or return the earlier one that answers this request (see `submitting`)."""
        return await submit_once(
            self.caller,
            self.settings,
            request,
            idempotency_key=idempotency_key,
            new_take=new_take,
            report=report,
            callbacks=self.callbacks,
        )

    # --- reading and waiting ---------------------------------------------------------------

    async def fetch(
        self, task_ids: list[str], known: dict[str, LedgerEntry] | None = None, *, routine: bool = False
    ) -> dict[str, TaskResult]:
        """Current results: finished tasks from the ledger, tasks read under a poll interval
        ago from memory, the rest with one upstream request (a batch for several). A `routine`
        look (a wait's look on schedule, a host's or the player's polling) at a task whose
        callback is due, while callbacks are arriving here, reads it upstream only once a
        safety net's time has passed (`PollSchedule.safety_net`): the callback records it, and
        wakes the waits, when it is done. What the model asks itself, and the answer a wait
        ends with, are read as usual. `known`: these tasks' ledger rows, when the caller has
        just read them."""
        caller = self.caller
        if known is None:
            try:
                known = await caller.ledger.find(task_ids)
            except LedgerUnavailable as exc:  # the API still knows every task (and whose it is)
                log.debug("answering from the API alone: %s", exc)  # the ledger logs each failure once
                known = {}
        results = {i: e.result for i, e in known.items() if e.result is not None and e.finished}
        results |= caller.reads.fresh([i for i in task_ids if i not in results])
        called_back = [i for i in task_ids if i not in results and i in known and known[i].callback_expected]
        if routine and called_back and self.callbacks is not None and self.callbacks.arriving():
            results |= caller.reads.fresh(called_back, within=self.schedule.safety_net)
        missing = [i for i in task_ids if i not in results]
        if len(missing) == 1:
            record = await caller.luma.get_task(missing[0])
            fetched = {} if record is None else {record.id: from_record(record)}
        elif missing:
            records = await caller.luma.get_tasks(missing)
            fetched = {i: from_record(record) for i, record in records.items()}
        else:
            fetched = {}
        caller.reads.remember(fetched)
        # Write only what moved on: a poll that finds the task still generating costs no write
        # lock, which is what several processes sharing one ledger contend for.
        try:
            await caller.ledger.record([r for i, r in fetched.items() if _moved_on(known.get(i), r)])
        except LedgerUnavailable as exc:  # a cache of what upstream said: the read still answers
            log.debug("statuses not recorded: %s", exc)  # the ledger logs each store failure once
        # A task we submitted but upstream does not (yet) return: our last known state.
        for task_id in missing:
            entry = known.get(task_id)
            if task_id not in fetched and entry is not None and entry.result is not None:
                fetched[task_id] = entry.result
        return results | fetched

    async def wait(
        self, results: dict[str, TaskResult], wait_seconds: float, report: Report, age: float = 0.0
    ) -> dict[str, TaskResult]:
        return await wait_for_tasks(
            self.fetch,
            results,
            budget=wait_seconds,
            schedule=self.schedule,
            report=report,
            age=age,
            stop=self.stopping,
            ledger=self.caller.ledger,
        )

    # --- listing ------------------------------------------------------------------------

    async def list(
        self,
        *,
        status: str | None,
        since: datetime | None,
        until: datetime | None,
        limit: int,
        cursor: str | None,
        refresh: bool,
    ) -> tuple[list[ListedTask], str | None]:
        statuses: set[str] | None = None
        if status is not None:
            statuses = {status}
            if status in TaskStatus.__members__.values():
                # A row last seen unfinished may have reached this status since: take those
                # too, refresh them below, and keep the ones that match.
                statuses |= {TaskStatus.PENDING, TaskStatus.PROCESSING}
        entries, next_cursor = await self.caller.ledger.recent(
            statuses=statuses,
            since=_timestamp("since", since),
            until=_timestamp("until", until),
            limit=limit,
            cursor=cursor,
            hide_refused=status is None,
        )
        latest: dict[str, TaskResult] = {}
        unfinished = [e.task_id for e in entries if e.task_id and not e.finished]
        if refresh and unfinished:
            try:
                latest = await self.fetch(unfinished, known={e.task_id: e for e in entries if e.task_id})
            except LumaError as exc:  # the listing still answers, from what the ledger knows
                log.warning("list_tasks could not refresh statuses: %s", exc)
        rows = [_row(e, latest.get(e.task_id or "")) for e in entries]
        if status is not None:
            rows = [row for row in rows if row.status == status]
        return rows, next_cursor

    # --- downloading ----------------------------------------------------------------------

    async def download(
        self, task_id: str, *, filename: str | None, include_thumbnail: bool, overwrite: bool, report: Report
    ) -> SavedVideo:
        """Save the task's own video into the caller's download folder (see `saving`)."""
        result = (await self.fetch([task_id])).get(task_id)
        return await save_video(
            self.caller,
            self.settings,
            task_id,
            result,
            filename=filename,
            include_thumbnail=include_thumbnail,
            overwrite=overwrite,
            report=report,
        )


def _row(entry: LedgerEntry, fresh: TaskResult | None) -> ListedTask:
    result = fresh or entry.result
    status = result.status.value if result and entry.state is SubmitState.ACCEPTED else entry.state.value
    prompt = entry.prompt
    if prompt and len(prompt) > 80:
        prompt = prompt[:77].rstrip() + "..."
    return ListedTask(
        task_id=entry.task_id,
        status=status,
        created=datetime.fromtimestamp(entry.created_at, UTC).isoformat(timespec="seconds"),
        prompt=prompt,
        video_url=result.video_url if result else None,
        video_id=result.video_id if result else None,
        action=entry.action,
    )


def _timestamp(name: str, moment: datetime | None) -> float | None:
    if moment is None:
        return None
    try:
        return moment.timestamp()
    except (ValueError, OverflowError, OSError):  # a naive time near year 1 or 9999 has no local offset
        raise ServiceError(
            f"{name}={moment.isoformat()} cannot be used as a time here; give a date and time with a UTC offset, "
            f"like 2026-01-01T00:00:00Z, or leave {name} out."
        ) from None


def _moved_on(entry: LedgerEntry | None, result: TaskResult) -> bool:
    """Whether a fresh read says more than the ledger row already does (rows we own only)."""
    return entry is not None and (entry.result is None or entry.result.status != result.status)
