"""Submitting a paid generation once: reserve a ledger row, send, write the task id down.

The ledger row is written before the request leaves, and the task id the moment it comes
back, before any progress is reported: a host that gives up at any point leaves a task that
list_tasks and get_task can find. A submit that provably sent nothing billable leaves no row.
Once the API has accepted a submit, its task id reaches the caller whatever the ledger does.
Whether a request repeats an earlier one is the ledger's rule (`Ledger.reserve`); this module
says what the caller hears then.

Over HTTP with a public URL, a submit without a `callback_url` of the caller's asks the
provider to call our own endpoint (`callbacks`): that URL goes into the request sent, and
only its secret's hash into the row. The row's parameters, and so the duplicate check, are
the caller's request as it was; a caller's own `callback_url` is sent as given, and no hash
is kept for it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING

import anyio

from luma_mcp.api.errors import LedgerError, LedgerUnavailable, LumaError, ServiceError
from luma_mcp.api.models import Accepted, SubmitState, TaskStatus, VideoRequest
from luma_mcp.config import Settings
from luma_mcp.core.caller import Caller
from luma_mcp.core.ledger import LedgerEntry, SpendingLimits, submit_deadline
from luma_mcp.core.results import TaskResult
from luma_mcp.core.waiting import Report

if TYPE_CHECKING:
    from luma_mcp.core.callback_urls import Callback, CallbackIssuer  # HTTP only

log = logging.getLogger(__name__)

# Writing an accepted task id: a few quick tries (a busy or briefly failing store), well inside
# the ledger's ANSWER_WRITE_SECONDS, before the id is held in memory instead.
ACCEPT_ATTEMPTS = 3
ACCEPT_RETRY_SECONDS = 5.0
_LOST_ADVICE = (
    "The submit is recorded in list_tasks as 'lost'. Before trying again, wait a minute; to submit anyway "
    "(which may pay twice), call again with new_take=true."
)


async def submit_once(
    caller: Caller,
    settings: Settings,
    request: VideoRequest,
    *,
    idempotency_key: str | None,
    new_take: bool,
    report: Report,
    callbacks: CallbackIssuer | None = None,
) -> TaskResult:
    """Start a generation, or return the earlier one that answers this request."""
    callback = callbacks.issue() if callbacks is not None and request.callback_url is None else None
    reservation = await caller.ledger.reserve(
        request.action,
        request.to_body(),
        idempotency_key=idempotency_key,
        dedupe_window=settings.dedupe_window_seconds,
        new_take=new_take,
        limits=SpendingLimits(settings.max_submits_per_hour, settings.max_submits_per_day),
        callback_hash=callback.hash if callback else None,
    )
    entry = reservation.entry
    if reservation.reused:
        if entry.state is SubmitState.SENDING or caller.ledger.refusal(entry.row_id) is not None:
            entry = await _settled(caller, settings, entry)
        return _reused(entry, by_key=idempotency_key is not None)
    # Shielded: once the request may be on its way, see it through to the ledger.
    with anyio.CancelScope(shield=True):
        accepted = await _send(caller, settings, entry, request, callback)
        result = TaskResult(
            task_id=accepted.task_id, status=TaskStatus.PENDING, prompt=request.prompt, elapsed_seconds=0
        )
        if callback is not None:  # the first read its safety net counts from (`VideoService.fetch`)
            caller.reads.remember({result.task_id: result})
        result = await _record_answer(caller, entry, request, result)
    log.info("submitted %s task %s", request.action, accepted.task_id)
    await report(0, None, f"Task {accepted.task_id}: submitted")
    return result


async def _send(
    caller: Caller, settings: Settings, entry: LedgerEntry, request: VideoRequest, callback: Callback | None
) -> Accepted:
    """The request itself, cut off at the deadline the ledger counts on (after it, a row
    still `sending` reads as lost); the row is settled by what is known about the outcome."""
    deadline = submit_deadline(settings.request_timeout, settings.retry_max_seconds)
    ledger = caller.ledger
    wire = request if callback is None else request.model_copy(update={"callback_url": callback.url})
    try:
        with anyio.fail_after(deadline):
            return await caller.luma.submit(wire)
    except LumaError as exc:
        if callback is not None:
            callback.scrub(exc)  # should the API ever quote the URL back, its secret goes no further
        if exc.submit_may_have_started:
            await _settle(ledger.lose(entry.row_id, str(exc)))
            raise ServiceError(f"{exc} {_LOST_ADVICE}") from None
        # Nothing billable left (refused, or never sent): no row, so no caller can fill the ledger.
        await _settle(ledger.forget(entry.row_id, str(exc)))
        raise
    except TimeoutError:
        await _settle(ledger.lose(entry.row_id, f"No answer within {deadline:g} s."))
        raise ServiceError(f"The API did not answer the submit within {deadline:g} s. {_LOST_ADVICE}") from None
    except Exception as exc:
        # A failure of our own, with no proof the request did not leave: a video may exist.
        log.error("submit crashed", exc_info=exc)
        await _settle(ledger.lose(entry.row_id, f"luma-mcp failed while sending ({type(exc).__name__})."))
        raise ServiceError(
            f"The submit failed inside luma-mcp ({type(exc).__name__}); the details are in the server's log. "
            f"{_LOST_ADVICE}"
        ) from None


async def _settle(write: Awaitable[None]) -> None:
    """Write down a failed submit's outcome; if the ledger cannot, the caller still hears the
    submit's own error (the row stays `sending` and reads as lost once it is stale)."""
    try:
        await write
    except LedgerError as exc:
        log.warning("%s", exc)


async def _record_answer(caller: Caller, entry: LedgerEntry, request: VideoRequest, result: TaskResult) -> TaskResult:
    """Write the accepted task id, retrying briefly; if the ledger still fails, the id is kept
    in memory (identical calls get it at once, the next working write stores it), logged,
    and told to the caller: it is never only in a call that failed."""
    from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, stop_after_delay, wait_exponential

    task_id = result.task_id
    try:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(LedgerUnavailable),
            stop=stop_after_attempt(ACCEPT_ATTEMPTS) | stop_after_delay(ACCEPT_RETRY_SECONDS),
            wait=wait_exponential(multiplier=0.1, max=1.0),
            reraise=True,
        ):
            with attempt:
                await caller.ledger.accept(entry.row_id, task_id, result)
    except Exception as exc:
        caller.ledger.hold_answer(entry.row_id, task_id, result)
        log.warning(
            "Task %s (%s) was accepted by the API, but the ledger could not record it: %s", task_id, request.action, exc
        )
        note = (
            f"Task {task_id} was submitted, but the task ledger could not record it ({exc}). "
            f"Keep this task_id: list_tasks may not show it after a restart; "
            f'get_task(task_id="{task_id}") works.'
        )
        return result.model_copy(update={"note": note})
    return result


async def _settled(caller: Caller, settings: Settings, entry: LedgerEntry) -> LedgerEntry:
    """An identical submit is in flight (perhaps in another process): wait for its answer
    rather than fail, but no longer than that submit can still take.

    Not `wait_for_tasks`, the one loop that waits on videos: this watches our own ledger
    row for the seconds a submit takes, so it looks every 0.1 s and asks the API nothing."""
    ledger = caller.ledger
    latest: LedgerEntry | None = entry
    remaining = entry.created_at + ledger.stale_after - time.time()
    refused = ledger.refusal  # known here at once when this process sent it
    with anyio.move_on_after(min(remaining, settings.request_timeout + 5)):
        while latest is not None and latest.state is SubmitState.SENDING and refused(entry.row_id) is None:
            await anyio.sleep(0.1)
            latest = await ledger.entry(entry.row_id)
    if latest is None or refused(entry.row_id) is not None:  # nothing billable was sent
        why = refused(entry.row_id) or "nothing was sent or charged"
        raise ServiceError(f"An identical request sent just before this one was refused: {why}")
    if latest.state is SubmitState.REFUSED:  # a row written by an older luma-mcp
        raise ServiceError(f"An identical request sent just before this one was refused: {latest.error}")
    return latest


def _reused(entry: LedgerEntry, by_key: bool) -> TaskResult:
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


def _ago(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"
