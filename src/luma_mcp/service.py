"""What the tools do, without MCP: submit once, read and wait on tasks, list, download.

`VideoService` joins the API client, the ledger, the poll schedule and the download
rules for one tenant. The MCP layer (`server.py`) only validates arguments, calls one
method and renders the answer; every failure here is a `LumaMcpError` (see `errors`),
carrying a message meant for the model.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from pathlib import Path

import anyio
from pydantic import BaseModel
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, stop_after_delay, wait_exponential

from luma_mcp import download
from luma_mcp.client import LumaClient
from luma_mcp.config import Settings
from luma_mcp.errors import LedgerError, LedgerUnavailable, LumaError, ServiceError
from luma_mcp.ledger import (
    Ledger,
    LedgerEntry,
    SpendingLimits,
    submit_deadline,
)
from luma_mcp.models import Accepted, SubmitState, TaskStatus, VideoRequest
from luma_mcp.results import TaskResult, from_record
from luma_mcp.waiting import PollSchedule, RecentReads, Report, wait_for_tasks

log = logging.getLogger(__name__)

MB = 1024 * 1024
OPERATOR = ""  # the tenant of everything done with the server's own token
# Writing an accepted task id: a few quick tries (a busy or briefly failing store), well inside
# the ledger's ANSWER_WRITE_SECONDS, before the id is held in memory instead.
ACCEPT_ATTEMPTS = 3
ACCEPT_RETRY_SECONDS = 5.0
_LOST_ADVICE = (
    "The submit is recorded in list_tasks as 'lost'. Before trying again, wait a minute; to submit anyway "
    "(which may pay twice), call again with new_take=true."
)


def tenant_of(token: str) -> str:
    """A caller's tenant: a one-way hash of their API token (the token itself is never stored)."""
    return hashlib.sha256(token.encode()).hexdigest()


class ListedTask(BaseModel):
    # One compact row of list_tasks. (Comments, not docstrings: those would ship in outputSchema.)
    task_id: str | None = None
    status: str  # pending/processing/succeeded/failed, or sending/lost/refused for submits with no task
    created: str
    prompt: str | None = None  # the first 80 characters
    video_url: str | None = None
    action: str


class SavedVideo(BaseModel):
    task_id: str
    path: str
    size_bytes: int
    sha256: str
    thumbnail_path: str | None = None


def _ago(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


class VideoService:
    def __init__(
        self,
        *,
        settings: Settings,
        luma: LumaClient,
        ledger: Ledger,
        schedule: PollSchedule,
        reads: RecentReads,
        tenant: str = OPERATOR,
        stopping: threading.Event | None = None,
        remote: bool = False,
    ) -> None:
        self.settings = settings
        self.luma = luma
        self.ledger = ledger.for_tenant(tenant)  # every ledger call of this service is this tenant's
        self.schedule = schedule
        self.reads = reads
        self.tenant = tenant
        self.stopping = stopping  # set when the server shuts down: waits end early
        self.remote = remote  # served over HTTP: the caller is not on this machine

    # --- submitting ----------------------------------------------------------------------

    async def submit(
        self, request: VideoRequest, *, idempotency_key: str | None, new_take: bool, report: Report
    ) -> TaskResult:
        """Start a generation, or return the earlier one that answers this request.

        The ledger row is written before the request leaves, and the task id the moment
        it comes back, before any progress is reported: a host that gives up at any
        point leaves a task that list_tasks and get_task can find. A submit that provably
        sent nothing billable leaves no row. Once the API has accepted a submit, its task id
        reaches the caller whatever the ledger does.
        """
        settings = self.settings
        reservation = await self.ledger.reserve(
            request.action,
            request.to_body(),
            idempotency_key=idempotency_key,
            dedupe_window=settings.dedupe_window_seconds,
            new_take=new_take,
            limits=SpendingLimits(settings.max_submits_per_hour, settings.max_submits_per_day),
        )
        entry = reservation.entry
        if reservation.reused:
            if entry.state is SubmitState.SENDING or self.ledger.refusal(entry.row_id) is not None:
                entry = await self._settled(entry)
            return self._reused(entry, by_key=idempotency_key is not None)
        # Shielded: once the request may be on its way, see it through to the ledger.
        with anyio.CancelScope(shield=True):
            accepted = await self._send(entry, request)
            result = TaskResult(
                task_id=accepted.task_id, status=TaskStatus.PENDING, prompt=request.prompt, elapsed_seconds=0
            )
            result = await self._record_answer(entry, request, result)
        log.info("submitted %s task %s", request.action, accepted.task_id)
        await report(0, None, f"Task {accepted.task_id}: submitted")
        return result

    async def _send(self, entry: LedgerEntry, request: VideoRequest) -> Accepted:
        """The request itself, cut off at the deadline the ledger counts on (after it, a row
        still `sending` reads as lost); the row is settled by what is known about the outcome."""
        settings = self.settings
        deadline = submit_deadline(settings.request_timeout, settings.retry_max_seconds)
        try:
            with anyio.fail_after(deadline):
                return await self.luma.submit(request)
        except LumaError as exc:
            if exc.submit_may_have_started:
                await self._settle(self.ledger.lose(entry.row_id, str(exc)))
                raise ServiceError(f"{exc} {_LOST_ADVICE}") from None
            # Nothing billable left (refused, or never sent): no row, so no caller can fill the ledger.
            await self._settle(self.ledger.forget(entry.row_id, str(exc)))
            raise
        except TimeoutError:
            await self._settle(self.ledger.lose(entry.row_id, f"No answer within {deadline:g} s."))
            raise ServiceError(f"The API did not answer the submit within {deadline:g} s. {_LOST_ADVICE}") from None
        except Exception as exc:
            # A failure of our own, with no proof the request did not leave: a video may exist.
            log.error("submit crashed", exc_info=exc)
            await self._settle(self.ledger.lose(entry.row_id, f"luma-mcp failed while sending ({type(exc).__name__})."))
            raise ServiceError(
                f"The submit failed inside luma-mcp ({type(exc).__name__}); the details are in the server's log. "
                f"{_LOST_ADVICE}"
            ) from None

    async def _settle(self, write: Awaitable[None]) -> None:
        """Write down a failed submit's outcome; if the ledger cannot, the caller still hears the
        submit's own error (the row stays `sending` and reads as lost once it is stale)."""
        try:
            await write
        except LedgerError as exc:
            log.warning("%s", exc)

    async def _record_answer(self, entry: LedgerEntry, request: VideoRequest, result: TaskResult) -> TaskResult:
        """Write the accepted task id, retrying briefly; if the ledger still fails, the id is kept
        in memory (identical calls get it at once, the next working write stores it), logged,
        and told to the caller: it is never only in a call that failed."""
        task_id = result.task_id
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(LedgerUnavailable),
                stop=stop_after_attempt(ACCEPT_ATTEMPTS) | stop_after_delay(ACCEPT_RETRY_SECONDS),
                wait=wait_exponential(multiplier=0.1, max=1.0),
                reraise=True,
            ):
                with attempt:
                    await self.ledger.accept(entry.row_id, task_id, result)
        except Exception as exc:
            self.ledger.hold_answer(entry.row_id, task_id, result)
            log.warning(
                "Task %s (%s) was accepted by the API, but the ledger could not record it: %s",
                task_id,
                request.action,
                exc,
            )
            note = (
                f"Task {task_id} was submitted, but the task ledger could not record it ({exc}). "
                f"Keep this task_id: list_tasks may not show it after a restart; "
                f'get_task(task_id="{task_id}") works.'
            )
            return result.model_copy(update={"note": note})
        return result

    async def _settled(self, entry: LedgerEntry) -> LedgerEntry:
        """An identical submit is in flight (perhaps in another process): wait for its answer
        rather than fail, but no longer than that submit can still take.

        Not `wait_for_tasks`, the one loop that waits on videos: this watches our own ledger
        row for the seconds a submit takes, so it looks every 0.1 s and asks the API nothing."""
        latest: LedgerEntry | None = entry
        remaining = entry.created_at + self.ledger.stale_after - time.time()
        refused = self.ledger.refusal  # known here at once when this process sent it
        with anyio.move_on_after(min(remaining, self.settings.request_timeout + 5)):
            while latest is not None and latest.state is SubmitState.SENDING and refused(entry.row_id) is None:
                await anyio.sleep(0.1)
                latest = await self.ledger.entry(entry.row_id)
        if latest is None or refused(entry.row_id) is not None:  # nothing billable was sent
            why = refused(entry.row_id) or "nothing was sent or charged"
            raise ServiceError(f"An identical request sent just before this one was refused: {why}")
        if latest.state is SubmitState.REFUSED:  # a row written by an older luma-mcp
            raise ServiceError(f"An identical request sent just before this one was refused: {latest.error}")
        return latest

    def _reused(self, entry: LedgerEntry, by_key: bool) -> TaskResult:
        age = _ago(time.time() - entry.created_at)
        if entry.task_id is None:
            if entry.state is SubmitState.LOST:
                what = f"its answer was lost ({entry.error})" if entry.error else "its answer was lost"
            else:
                what = "it is still being submitted"
            raise ServiceError(
                f"An identical request was sent {age} ago and {what}, so a video may already be on its way. "
                "Check list_tasks in a minute; to submit anyway (which may pay twice), call again with new_take=true."
            )
        result = entry.result or TaskResult(task_id=entry.task_id, status=TaskStatus.PENDING)
        why = "the same idempotency_key" if by_key else "an identical request"
        hint = "" if by_key else " For a different take, call again with new_take=true."
        note = f"Reused task {entry.task_id} from {why} {age} ago: nothing new was paid.{hint}"
        return result.model_copy(update={"note": note})

    # --- reading and waiting ---------------------------------------------------------------

    async def fetch(self, task_ids: list[str], known: dict[str, LedgerEntry] | None = None) -> dict[str, TaskResult]:
        """Current results: finished tasks from the ledger, tasks read under a poll interval
        ago from memory, the rest with one upstream request (a batch for several). `known`:
        these tasks' ledger rows, when the caller has just read them."""
        if known is None:
            try:
                known = await self.ledger.find(task_ids)
            except LedgerUnavailable as exc:  # the API still knows every task (and whose it is)
                log.debug("answering from the API alone: %s", exc)  # the ledger logs each failure once
                known = {}
        results = {i: e.result for i, e in known.items() if e.result is not None and e.finished}
        results |= self.reads.fresh(self.tenant, [i for i in task_ids if i not in results])
        missing = [i for i in task_ids if i not in results]
        if len(missing) == 1:
            record = await self.luma.get_task(missing[0])
            fetched = {} if record is None else {record.id: from_record(record)}
        elif missing:
            records = await self.luma.get_tasks(missing)
            fetched = {i: from_record(record) for i, record in records.items()}
        else:
            fetched = {}
        self.reads.remember(self.tenant, fetched)
        # Write only what moved on: a poll that finds the task still generating costs no write
        # lock, which is what several processes sharing one ledger contend for.
        try:
            await self.ledger.record([r for i, r in fetched.items() if _moved_on(known.get(i), r)])
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
        entries, next_cursor = await self.ledger.recent(
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
        rows = [self._row(e, latest.get(e.task_id or "")) for e in entries]
        if status is not None:
            rows = [row for row in rows if row.status == status]
        return rows, next_cursor

    @staticmethod
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
            action=entry.action,
        )

    # --- downloading ----------------------------------------------------------------------

    async def download(
        self,
        task_id: str,
        *,
        filename: str | None,
        include_thumbnail: bool,
        overwrite: bool,
        report: Report,
    ) -> SavedVideo:
        """Save the task's own video (never an arbitrary URL) into the download folder.

        Over HTTP the file would land on the server, not with the caller: that is off unless
        the operator turns it on, and then bounded per tenant in bytes and files."""
        settings = self.settings
        result = (await self.fetch([task_id])).get(task_id)
        if result is None:
            raise ServiceError(f"No task with id {task_id}. Check the id with list_tasks.")
        if result.status is not TaskStatus.SUCCEEDED or not result.video_url:
            raise ServiceError(
                f"Task {task_id} is {result.status.value}, so there is no video to save yet. "
                f'Wait for it with get_task(task_id="{task_id}", wait_seconds=...) first.'
            )
        if self.remote and not settings.http_downloads:
            raise ServiceError(
                "download_video is off on this server: it is reached over HTTP, so a saved file would stay on the "
                f"server, not with you. Download the video yourself from its video_url (it expires within days): "
                f"{result.video_url}"
            )
        # Each tenant of a shared server saves into its own folder.
        folder = settings.download_dir / self.tenant[:16] if self.tenant else settings.download_dir
        stem = filename or f"luma-{task_id}"
        video_target = download.safe_target(folder, stem, ".mp4")
        thumb_target = download.safe_target(folder, stem.removesuffix(".mp4"), ".jpg") if include_thumbnail else None

        async def save(url: str, target: Path, accept: tuple[str, ...], files: int) -> download.SavedFile:
            # The quota reads the folder (a scan and a stat a file): off the event loop.
            max_bytes, hint = await anyio.to_thread.run_sync(self._download_cap, folder, target, overwrite, files)
            return await download.save(
                http,
                self._trusted(url),
                target,
                accept=accept,
                max_bytes=max_bytes,
                overwrite=overwrite,
                api_base_url=settings.api_base_url,
                reserve_bytes=int(settings.download_reserve_mb * MB),
                cap_hint=hint,
                report=report if accept[0] == "video/" else None,
                label=f"Downloading task {task_id}",
            )

        async with (
            download.guarded_client(settings.api_base_url, settings.request_timeout) as http,
            download.one_at_a_time(folder) if self.remote else contextlib.nullcontext(),
        ):
            with_thumb = thumb_target is not None and result.thumbnail_url is not None
            saved = await save(result.video_url, video_target, ("video/", "application/octet-stream"), 1 + with_thumb)
            thumb = None
            if thumb_target is not None and result.thumbnail_url:
                thumb = await save(result.thumbnail_url, thumb_target, ("image/",), 1)
        return SavedVideo(
            task_id=task_id,
            path=str(saved.path),
            size_bytes=saved.size,
            sha256=saved.sha256,
            thumbnail_path=str(thumb.path) if thumb else None,
        )

    def _download_cap(self, folder: Path, target: Path, overwrite: bool, files: int) -> tuple[int, str]:
        """The most bytes the next file may take, and what to do when it is too big: the size
        cap, and for an HTTP tenant also what is left of their quota (checked in turn with
        their other downloads, see `download.one_at_a_time`). `files`: how many files this
        call is still to save, so a video is not saved only for its thumbnail to be refused."""
        settings = self.settings
        cap = int(settings.max_download_mb * MB)
        if not self.remote:
            return cap, "Raise LUMA_MAX_DOWNLOAD_MB to allow it."
        used_bytes, used_files = download.folder_usage(folder)
        if overwrite and target.is_file():  # replacing a file frees its bytes and its place
            used_bytes -= target.stat().st_size
            used_files -= 1
        quota_bytes = int(settings.http_download_quota_mb * MB)
        full = "No tool removes files: download the video from its video_url instead, or ask the operator to raise "
        if used_files + files > settings.http_download_quota_files:
            raise ServiceError(
                f"Not saved: your download folder on this server holds {used_files} files and may hold "
                f"{settings.http_download_quota_files}. "
                f"{full}LUMA_HTTP_DOWNLOAD_QUOTA_FILES."
            )
        if used_bytes >= quota_bytes:
            raise ServiceError(
                f"Not saved: your download folder on this server already holds {download.human_size(used_bytes)}, "
                f"its limit. {full}LUMA_HTTP_DOWNLOAD_QUOTA_MB."
            )
        if quota_bytes - used_bytes < cap:
            return quota_bytes - used_bytes, (
                f"Only {download.human_size(quota_bytes - used_bytes)} of your download quota on this server is "
                "left: download the video from its video_url instead, or ask the operator to raise "
                "LUMA_HTTP_DOWNLOAD_QUOTA_MB."
            )
        return cap, "Raise LUMA_MAX_DOWNLOAD_MB to allow it."

    def _trusted(self, url: str) -> str:
        """Result URLs are https on the provider's CDN; plain http only from the API's own host
        (the simulator). Anything else is refused rather than fetched; `download.save` applies
        the same rule to every redirect and checks the addresses it connects to."""
        download.check_url(url, self.settings.api_base_url)
        return url


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
