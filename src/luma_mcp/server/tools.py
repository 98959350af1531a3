"""The five tools: arguments checked (with messages that say what to do), one service call,
the answer rendered for the model.

(No `from __future__ import annotations`: the video tools' schemas read configured bounds and
defaults from `add_tools`' scope, so their annotations must be evaluated eagerly.)
generate_video, extend_video and get_task are built per server, since their schemas carry
the configured wait; list_tasks and download_video are plain module-level functions.
"""

from datetime import datetime
from typing import Annotated

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import Field

from luma_mcp.api.client import MAX_BATCH
from luma_mcp.api.errors import LedgerError, LumaError
from luma_mcp.api.models import ExtendRequest, GenerateRequest, ListStatus, VideoRequest
from luma_mcp.checks.plain_text import UnsafeText, check_plain_text
from luma_mcp.checks.urls import UnsafeUrl, check_caller_url, origin
from luma_mcp.config import AspectRatio, Settings
from luma_mcp.core.download import human_size
from luma_mcp.core.results import (
    SavedVideo,
    TaskList,
    TaskPage,
    TaskResult,
    get_task_call,
    list_text,
    page_text,
)
from luma_mcp.core.state import AppState
from luma_mcp.server.boundary import answer, reporter, tool_result, video_result, video_service
from luma_mcp.server.player import TOOL_ICONS, VIEW_META
from luma_mcp.server.task_extension import TASK_MODE

_OPEN_WORLD_WRITE = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True
)
_OPEN_WORLD_READ = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=True)
_LOCAL_WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=True)

PublicUrl = Annotated[str, Field(max_length=2048)]  # checked by _check_public, with a message that helps
TaskId = Annotated[str, Field(min_length=1, max_length=128)]
IdempotencyKey = Annotated[str | None, Field(min_length=1, max_length=200)]  # the usual meaning: same key, same task
NewTake = Annotated[bool, Field(description="Skip the duplicate check")]
EndImageUrl = Annotated[PublicUrl | None, Field(description="Public image URL: last frame")]


def add_tools(mcp: MCPServer[AppState], settings: Settings) -> None:
    default_wait = settings.wait_seconds
    max_wait = settings.max_wait_seconds
    wait_field = Field(ge=0, le=max_wait, description="Seconds to wait for the video (0: return at once)")

    # The three video tools render in the player view on hosts with MCP Apps (see `player`).
    @mcp.tool(
        title="Generate a video", annotations=_OPEN_WORLD_WRITE, meta=VIEW_META, icons=TOOL_ICONS["generate_video"]
    )
    async def generate_video(
        ctx: Context[AppState],
        prompt: Annotated[
            str,
            Field(min_length=1, max_length=5000, description="What it shows: subject, motion, camera, light"),
        ],
        aspect_ratio: AspectRatio = settings.default_aspect_ratio,
        loop: Annotated[bool, Field(description="Seamlessly looping video")] = False,
        enhancement: Annotated[bool, Field(description="Prompt enhancement by the provider")] = True,
        start_image_url: Annotated[PublicUrl | None, Field(description="Public image URL: first frame")] = None,
        end_image_url: EndImageUrl = None,
        callback_url: Annotated[PublicUrl | None, Field(description="Webhook to POST the result to")] = None,
        wait_seconds: Annotated[int, wait_field] = default_wait,
        idempotency_key: IdempotencyKey = None,
        new_take: NewTake = False,
    ) -> Annotated[CallToolResult, TaskResult]:
        """Start a new video from a prompt, optionally from start/end images.
        Paid: if it returns pending, call get_task; never repeat this call."""
        _check_text(prompt=prompt)
        _check_public(settings, start_image_url=start_image_url, end_image_url=end_image_url, callback_url=callback_url)
        request = GenerateRequest(
            prompt=prompt,
            aspect_ratio=aspect_ratio,
            loop=loop,
            enhancement=enhancement,
            start_image_url=start_image_url,
            end_image_url=end_image_url,
            callback_url=callback_url,
        )
        return await submit_and_wait(ctx, request, wait_seconds, idempotency_key, new_take)

    @mcp.tool(title="Extend a video", annotations=_OPEN_WORLD_WRITE, meta=VIEW_META, icons=TOOL_ICONS["extend_video"])
    async def extend_video(
        ctx: Context[AppState],
        prompt: Annotated[str | None, Field(max_length=5000, description="What happens next")] = None,
        video_id: Annotated[
            str | None, Field(min_length=1, max_length=128, description="From an earlier result")
        ] = None,
        video_url: Annotated[PublicUrl | None, Field(description="Or: public URL of a video")] = None,
        end_image_url: EndImageUrl = None,
        wait_seconds: Annotated[int, wait_field] = default_wait,
        idempotency_key: IdempotencyKey = None,
        new_take: NewTake = False,
    ) -> Annotated[CallToolResult, TaskResult]:
        """Continue a video by about 5 s: pass video_id or video_url.
        Paid: if it returns pending, call get_task; never repeat this call."""
        if (video_id is None) == (video_url is None):
            raise ToolError(
                "Pass exactly one of video_id (from an earlier result, preferred) or video_url, "
                f"not {'both' if video_id else 'neither'}."
            )
        _check_text(prompt=prompt)
        _check_public(settings, video_url=video_url, end_image_url=end_image_url)
        request = ExtendRequest(
            prompt=prompt or None, video_id=video_id, video_url=video_url, end_image_url=end_image_url
        )
        return await submit_and_wait(ctx, request, wait_seconds, idempotency_key, new_take)

    @mcp.tool(title="Check video tasks", annotations=_OPEN_WORLD_READ, meta=VIEW_META, icons=TOOL_ICONS["get_task"])
    async def get_task(
        ctx: Context[AppState],
        task_id: TaskId | None = None,
        task_ids: Annotated[
            list[TaskId] | None,
            Field(min_length=1, max_length=MAX_BATCH, description="Several task ids, instead of task_id"),
        ] = None,
        wait_seconds: Annotated[
            int, Field(ge=0, le=max_wait, description="Seconds to keep waiting for unfinished tasks")
        ] = 0,
    ) -> Annotated[CallToolResult, TaskList]:
        """Status and video_url of tasks from generate_video/extend_video.
        wait_seconds keeps waiting for unfinished ones."""
        if (task_id is None) == (task_ids is None):
            raise ToolError("Pass task_id (one task) or task_ids (several), not both and not neither.")
        ids = list(dict.fromkeys([task_id] if task_id else task_ids or []))
        service = video_service(ctx)
        results = await answer(service.fetch(ids))
        not_found = [i for i in ids if i not in results]
        if task_id is not None and not_found:
            raise ToolError(
                f"No task with id {task_id}. Check the id: it is the task_id a generate_video or "
                "extend_video result gave (list_tasks shows recent ones)."
            )
        if wait_seconds > 0:
            running = [r.elapsed_seconds or 0.0 for r in results.values() if not r.status.finished]
            report = reporter(ctx, wait_seconds)
            results = await answer(service.wait(results, wait_seconds, report, age=min(running, default=0.0)))
        tasks = [results[i] for i in ids if i in results]
        unfinished = [t.task_id for t in tasks if not t.status.finished]
        listing = TaskList(
            tasks=tasks,
            not_found=not_found,
            next_call=get_task_call(unfinished, max(wait_seconds, default_wait)) if unfinished else None,
        )
        return tool_result(list_text(listing), listing, tasks)

    async def submit_and_wait(
        ctx: Context[AppState],
        request: VideoRequest,
        wait_seconds: int,
        idempotency_key: str | None,
        new_take: bool,
    ) -> CallToolResult:
        service = video_service(ctx)
        # A Tasks-extension call answers with a task handle: submit, and leave the following to tasks/get.
        wait = 0 if TASK_MODE.get() else wait_seconds
        report = reporter(ctx, wait)
        result = await answer(
            service.submit(request, idempotency_key=idempotency_key, new_take=new_take, report=report)
        )
        if wait > 0 and not result.status.finished:
            task_id = result.task_id
            try:
                waited = await service.wait({task_id: result}, wait, report, age=result.elapsed_seconds or 0)
            except (LumaError, LedgerError) as exc:
                raise ToolError(
                    f"Task {task_id} was submitted, but checking on it failed: {exc} "
                    f'Do not submit again; call get_task(task_id="{task_id}") later.'
                ) from None
            result = waited[task_id].model_copy(update={"note": result.note})
        return video_result(result, max(wait_seconds, default_wait))

    mcp.add_tool(list_tasks, title="List recent videos", annotations=_OPEN_WORLD_READ, icons=TOOL_ICONS["list_tasks"])
    mcp.add_tool(
        download_video, title="Save a video to disk", annotations=_LOCAL_WRITE, icons=TOOL_ICONS["download_video"]
    )


async def list_tasks(
    ctx: Context[AppState],
    status: ListStatus | None = None,
    since: Annotated[datetime | None, Field(description="Only tasks created at or after this time")] = None,
    until: Annotated[datetime | None, Field(description="Only tasks created before this time")] = None,
    limit: Annotated[int, Field(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Field(max_length=200, description="next_cursor of the previous page")] = None,
) -> Annotated[CallToolResult, TaskPage]:
    """Videos submitted from here, newest first (also from earlier conversations)."""
    service = video_service(ctx)
    rows, next_cursor = await answer(
        service.list(status=status, since=since, until=until, limit=limit, cursor=cursor, refresh=True)
    )
    page = TaskPage(tasks=rows, next_cursor=next_cursor)
    return tool_result(page_text(page), page)


async def download_video(
    ctx: Context[AppState],
    task_id: TaskId,
    filename: Annotated[str | None, Field(max_length=150, description="Plain file name; default luma-<id>")] = None,
    include_thumbnail: bool = False,
    overwrite: bool = False,
) -> Annotated[CallToolResult, SavedVideo]:
    """Save a finished task's MP4 (result URLs expire) into the download folder."""
    service = video_service(ctx)
    saved = await answer(
        service.download(
            task_id, filename=filename, include_thumbnail=include_thumbnail, overwrite=overwrite, report=reporter(ctx)
        )
    )
    text = f"Saved {saved.path} ({human_size(saved.size_bytes)}, sha256 {saved.sha256[:16]}...)."
    if saved.thumbnail_path:
        text += f" Thumbnail: {saved.thumbnail_path}."
    return tool_result(text, saved)


def _check_text(**texts: str | None) -> None:
    """Free text is passed on exactly as written, or refused (`plain_text` says why)."""
    try:
        check_plain_text(**texts)
    except UnsafeText as exc:
        raise ToolError(str(exc)) from None


def _check_public(settings: Settings, **urls: str | None) -> None:
    """The provider downloads these URLs itself: a loopback or private address cannot work
    (except the API's own host, which is where a simulator serves its media)."""
    api = origin(settings.api_base_url)
    for name, url in urls.items():
        if url is None:
            continue
        try:
            check_caller_url(name, url, allowed_origins={api})
        except UnsafeUrl as exc:
            raise ToolError(str(exc)) from None
