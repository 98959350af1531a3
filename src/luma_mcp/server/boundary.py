"""Where an MCP call meets the service: whose service it is, how failures read, progress, results.

Every tool and resource goes through here, so each of these rules has one place:
- the caller: `video_service(ctx)` builds the service for the current request's `Caller`
  (a plain call: the SDK's `Resolve(...)` parameters measured 0.24 ms a call, 6% of get_task),
  `caller_service(state)` the same for handlers that have no tool `Context` (the Tasks methods);
- failures: `answer` turns any `LumaMcpError` into the `ToolError` whose text the model acts on;
- progress: `reporter` sends a call's progress notifications;
- results: `tool_result` pairs a task's text with its structured result and media links, and
  `video_result` is what generate_video and extend_video answer for a task, wherever it is
  asked (the tools themselves, and the Tasks extension's final result).
"""

from collections.abc import Awaitable, Sequence
from typing import TypeVar

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, ContentBlock, ResourceLink, TextContent
from pydantic import BaseModel

from luma_mcp.api.errors import LumaMcpError
from luma_mcp.api.models import TaskStatus
from luma_mcp.core.caller import current_caller
from luma_mcp.core.results import TaskResult, task_text, with_next_call
from luma_mcp.core.service import VideoService
from luma_mcp.core.state import AppState
from luma_mcp.core.waiting import Report

T = TypeVar("T")


def video_service(ctx: Context[AppState]) -> VideoService:
    """The service for the caller of the current request; a caller that cannot be served
    (no token anywhere) gets the ToolError that says what to set."""
    try:
        return caller_service(ctx.request_context.lifespan_context)
    except LumaMcpError as exc:
        raise ToolError(str(exc)) from None


def caller_service(state: AppState) -> VideoService:
    """The service for the caller of the request being handled (a `LumaMcpError` saying what
    to set when they cannot be served)."""
    return VideoService(state, current_caller(state))


async def answer(awaitable: Awaitable[T]) -> T:
    """Await service work at the tool boundary; its failures become the ToolError text the model acts on."""
    try:
        return await awaitable
    except LumaMcpError as exc:
        raise ToolError(str(exc)) from None


def reporter(ctx: Context[AppState], total: float | None = None) -> Report:
    """This call's progress notifications. `total`, when given, is the wait's length in
    seconds, which the submit's first line (sent before any wait) does not know itself."""

    async def report(progress: float, own_total: float | None, message: str) -> None:
        await ctx.report_progress(progress, (total if total is not None else own_total) or None, message)

    return report


def tool_result(text: str, structured: BaseModel, tasks: Sequence[TaskResult] = ()) -> CallToolResult:
    """The text the model reads, the structured result, and a link to each finished video."""
    content: list[ContentBlock] = [TextContent(type="text", text=text)]
    for task in tasks:
        if task.status is not TaskStatus.SUCCEEDED:
            continue
        media = [(task.video_url, "video", "video/mp4"), (task.thumbnail_url, "thumbnail", "image/jpeg")]
        content += [
            ResourceLink(type="resource_link", uri=url, name=f"{kind}-{task.task_id}", mime_type=mime)
            for url, kind, mime in media
            if url
        ]
    return CallToolResult(content=content, structured_content=structured.model_dump(mode="json", exclude_none=True))


def video_result(result: TaskResult, next_wait: int) -> CallToolResult:
    """What generate_video and extend_video answer about their task: its text, structured
    result and links, and while it is unfinished the get_task call (waiting `next_wait`) to make."""
    result = with_next_call(result.model_copy(), next_wait)
    return tool_result(task_text(result), result, [result])
