"""The MCP Tasks extension (`io.modelcontextprotocol/tasks`, spec revision 2026-07-28) for
generate_video and extend_video: a task handle at once, then `tasks/get` until the video is done.

What this module guarantees:
- only a client that declared the extension on *this* request (modern protocol) gets a task
  handle; every other client gets exactly the results it got before, and its tasks/get,
  tasks/update and tasks/cancel answer -32021 (-32601 on an older protocol, where they are not
  bound; tasks/result and tasks/list are never bound: -32601);
- a handle is answered only once the ledger row, the submit and its acceptance are written (the
  tool runs as always, with its wait skipped), so tasks/get resolves it at once, on any process
  sharing the ledger (should the ledger fail just then, the handle still comes, saying so, and
  tasks/get follows the task through the API); validation errors and refusals stay plain
  `isError` results, and a reused task that is already finished is answered plainly;
- the task id is our task id, and every lookup goes through the caller's tenant: another tenant's
  id reads as unknown (-32602), like a made-up one;
- one status mapping, `task_view`: the status comes from the same reads as get_task
  (`VideoService.fetch`: the ledger first, reads under `min_interval` old from memory), the final
  result from the tool's own rendering (`boundary.video_result`), so neither can drift. A video
  the provider failed is `completed` with that failed result (the spec keeps `failed` for
  JSON-RPC errors, so we never use it); a read that fails stays `working`, with a message;
- tasks/cancel tells the truth: the provider cannot stop a generation, so cancel only stops
  following it (`unfollowed_at` in the ledger), which the handle's status line says before
  anyone cancels. The task then reads `cancelled`, with a message that it may still finish and
  be charged; get_task and list_tasks keep showing what really happens. A task recorded
  finished before the cancel stays `completed` (the ledger orders the two, not the clocks);
- nothing here is heavy: it loads with the stdio server (imports already loaded by the player).

No task notifications are sent: the SDK's `subscriptions/listen` (2.3) acknowledges only its own
four kinds and its event bus is closed, so `taskIds` cannot be honoured; the spec makes them
optional, and clients poll `tasks/get` at `pollIntervalMs`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import suppress
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mcp.server.extension import Extension, MethodBinding
from mcp.server.mcpserver import require_client_extension
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolRequestParams, CallToolResult, RequestParams
from mcp_types.jsonrpc import INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ConfigDict, Field

from luma_mcp.api.errors import LedgerUnavailable, LumaError, LumaMcpError
from luma_mcp.api.models import TaskStatus
from luma_mcp.core.results import TaskResult, status_line
from luma_mcp.server.boundary import caller_service, video_result

if TYPE_CHECKING:
    from mcp.server.context import CallNext, HandlerResult, ServerRequestContext

    from luma_mcp.core.ledger import LedgerEntry
    from luma_mcp.core.service import VideoService
    from luma_mcp.core.state import AppState
    from luma_mcp.core.waiting import PollSchedule

TASKS_ID = "io.modelcontextprotocol/tasks"
TASK_TOOLS = frozenset({"generate_video", "extend_video"})
# Set around the tool call of a declaring client: the tool then submits without waiting.
TASK_MODE: ContextVar[bool] = ContextVar("luma_mcp_task_mode", default=False)
_CANCEL_TRUTH = (
    "Cancelling only stops following it: Luma cannot stop a generation, so it may still finish and be charged."
)
_MODERN = frozenset(MODERN_PROTOCOL_VERSIONS)


class TaskRef(RequestParams):
    # The params of tasks/get, tasks/update and tasks/cancel (wire name `taskId`).
    model_config = ConfigDict(defer_build=True)  # built on the first tasks/* request, not at start-up

    task_id: str = Field(min_length=1, max_length=128)


def declared(ctx: ServerRequestContext[Any, Any]) -> bool:
    """Whether the client declared the extension on this request (only a modern request can)."""
    capabilities = ctx.session.client_capabilities
    return ctx.protocol_version in _MODERN and capabilities is not None and TASKS_ID in (capabilities.extensions or {})


def task_view(
    result: TaskResult,
    entry: LedgerEntry | None,
    schedule: PollSchedule,
    *,
    next_wait: int,
    trouble: str | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """The task as the extension shows it (a `DetailedTask`, wire names): the one place that
    maps our state to a task status, for the handle and for every tasks/get.

    `result` is the task's current result (`VideoService.fetch`), `entry` its ledger row as
    it is after that read, `trouble` why it could not be checked just now (it then stays
    working, and is asked about again at the slowest poll interval)."""
    now = time.time() if now is None else now
    created = entry.created_at if entry is not None else now - (result.elapsed_seconds or 0.0)
    view: dict[str, Any] = {
        "taskId": result.task_id,
        "createdAt": _iso(created),
        # When the row last changed (a status recorded); without a row, nothing is known to have.
        "lastUpdatedAt": _iso(max(created, entry.updated_at) if entry is not None else created),
        "ttlMs": None,  # rows are kept; the video's URL expires, which download_video is for
    }
    if entry is not None and entry.unfollowed_at is not None:
        return view | {
            "status": "cancelled",
            "statusMessage": (
                f"No longer followed here. Luma cannot stop a generation once started, so task {result.task_id} "
                f'may still finish and be charged; get_task(task_id="{result.task_id}") shows how it ends.'
            ),
            "lastUpdatedAt": _iso(entry.unfollowed_at or now),
        }
    if result.status.finished:
        final = video_result(result, next_wait)
        return view | {
            "status": "completed",
            "statusMessage": status_line(result),
            "result": final.model_dump(by_alias=True, mode="json", exclude_none=True),
        }
    message = trouble or status_line(result)
    next_check = schedule.maximum if trouble else schedule.next_check(result.elapsed_seconds or 0.0)
    return view | {
        "status": "working",
        "statusMessage": f"{result.note} {message}" if result.note else message,
        "pollIntervalMs": round(next_check * 1000),
    }


class TasksExtension(Extension):
    """Task handles for generate_video and extend_video, and the methods that follow them."""

    identifier = TASKS_ID

    def methods(self) -> Sequence[MethodBinding]:
        return [
            MethodBinding("tasks/get", TaskRef, self._get, protocol_versions=_MODERN),
            MethodBinding("tasks/update", TaskRef, self._update, protocol_versions=_MODERN),
            MethodBinding("tasks/cancel", TaskRef, self._cancel, protocol_versions=_MODERN),
        ]

    async def intercept_tool_call(
        self, params: CallToolRequestParams, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        if params.name not in TASK_TOOLS or not declared(ctx):
            return await call_next(ctx)
        token = TASK_MODE.set(True)
        try:
            outcome = await call_next(ctx)
        finally:
            TASK_MODE.reset(token)
        # Refused, invalid, or not a video task: no task was created; answer as the tool did.
        if not isinstance(outcome, CallToolResult) or outcome.is_error or outcome.structured_content is None:
            return outcome
        submitted = TaskResult.model_validate(outcome.structured_content)
        if submitted.status.finished:  # a reused task, already done: its result is the answer
            return outcome
        state: AppState = ctx.lifespan_context
        try:
            service = caller_service(state)  # the tool has just served this caller
            entry = (await service.caller.ledger.find([submitted.task_id])).get(submitted.task_id)
        except LedgerUnavailable:  # the task id still resolves: tasks/get asks the API then
            entry = None
        except LumaMcpError:  # never lose the task id over the handle: the plain result has it
            return outcome
        view = task_view(submitted, entry, state.schedule, next_wait=state.settings.wait_seconds)
        if view["status"] != "working":
            return outcome
        # Said before anyone cancels: a host shows "cancelled", which reads as "not charged".
        view["statusMessage"] += f" {_CANCEL_TRUTH}"
        return {"resultType": "task", **view}

    async def _get(self, ctx: ServerRequestContext[Any, Any], params: TaskRef) -> HandlerResult:
        require_client_extension(ctx, TASKS_ID)
        service = _service(ctx)
        result, entry, trouble = await _current(service, params.task_id)
        view = task_view(result, entry, service.schedule, next_wait=service.settings.wait_seconds, trouble=trouble)
        return {"resultType": "complete", **view}

    async def _cancel(self, ctx: ServerRequestContext[Any, Any], params: TaskRef) -> HandlerResult:
        """Stop following the task; the generation itself goes on (the provider cannot stop it).
        A task already finished stays completed."""
        require_client_extension(ctx, TASKS_ID)
        service = _service(ctx)
        task_id = params.task_id
        ledger = service.caller.ledger
        try:
            entry = (await ledger.find([task_id])).get(task_id)
            if entry is None:  # never recorded here (a failing ledger at submit), or not theirs
                result, _, _ = await _current(service, task_id)  # -32602 when it is no task of theirs
                if result.status.finished:
                    return {"resultType": "complete"}  # nothing to stop following
                raise MCPError(
                    INTERNAL_ERROR,
                    f"Task {task_id} could not be recorded here when it was submitted, so it cannot be marked as "
                    "no longer followed; it goes on either way (get_task shows it).",
                )
            if entry.unfollowed_at is None and not entry.finished:
                with suppress(LumaError):  # a finish nobody has read yet wins over the cancel
                    await service.fetch([task_id], known={task_id: entry})
                await ledger.unfollow(task_id)  # only if still running: the ledger orders the two
        except LedgerUnavailable as exc:
            raise MCPError(INTERNAL_ERROR, f"Could not cancel task {task_id} just now ({exc}). Try again.") from None
        return {"resultType": "complete"}

    async def _update(self, ctx: ServerRequestContext[Any, Any], params: TaskRef) -> HandlerResult:
        """Nothing to update: this server never asks for input, so it acknowledges (input it
        did not ask for is ignored) once the task is known to be the caller's."""
        require_client_extension(ctx, TASKS_ID)
        await _current(_service(ctx), params.task_id)
        return {"resultType": "complete"}


def _service(ctx: ServerRequestContext[Any, Any]) -> VideoService:
    try:
        return caller_service(ctx.lifespan_context)
    except LumaMcpError as exc:
        raise MCPError(INVALID_REQUEST, str(exc)) from None


async def _current(service: VideoService, task_id: str) -> tuple[TaskResult, LedgerEntry | None, str | None]:
    """The task's result, its ledger row as it is after that read, and why it could not be
    checked (None: it was); -32602 when it is no task of the caller's."""
    ledger = service.caller.ledger
    try:
        entry = (await ledger.find([task_id])).get(task_id)
    except LedgerUnavailable:  # the API still knows the task, and whose it is
        entry = None
    if entry is not None and entry.unfollowed_at is not None:  # no longer followed: no reads for it
        return entry.result or TaskResult(task_id=task_id, status=TaskStatus.PENDING), entry, None
    try:
        rows = {} if entry is None else {task_id: entry}
        result = (await service.fetch([task_id], known=rows, routine=True)).get(task_id)  # a host's polling
    except LumaError as exc:
        if entry is None:
            raise MCPError(
                INTERNAL_ERROR, f"Could not check task {task_id} just now ({exc}). Ask again in a minute."
            ) from None
        known = entry.result or TaskResult(task_id=task_id, status=TaskStatus.PENDING)
        return known, entry, f"Could not check task {task_id} just now ({exc}); it goes on. Ask again later."
    if result is None:
        raise _unknown(task_id)
    if entry is not None and (entry.result is None or entry.result.status != result.status):
        with suppress(LedgerUnavailable):  # the read recorded a new status: when, the row says
            entry = (await ledger.find([task_id])).get(task_id, entry)
    return result, entry, None


def _unknown(task_id: str) -> MCPError:
    return MCPError(
        INVALID_PARAMS,
        f"Failed to retrieve task: no task {task_id} for you. Use the taskId a generate_video or "
        "extend_video task handle gave (list_tasks shows recent ones).",
    )


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
