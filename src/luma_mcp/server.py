"""The MCP surface: tools, resources and prompts, translated onto `VideoService`.

(No `from __future__ import annotations` here: tool signatures read configured bounds and
defaults from `create_server`'s scope, so their annotations must be evaluated eagerly.)

Thin on purpose: arguments are validated here (with messages that say what to do), the
work is done by `service.VideoService`, and every failure leaves as a `ToolError` whose
text the model can act on.
"""

import inspect
import json
import logging
import threading
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, TypeVar

from mcp.server import MCPServer
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceError, ToolError, UnexpectedToolError
from mcp.types import CallToolResult, ContentBlock, ResourceLink, TextContent, Tool, ToolAnnotations
from pydantic import BaseModel, Field, SecretStr

from luma_mcp import __version__
from luma_mcp.client import MAX_BATCH, LumaClient
from luma_mcp.config import TOKEN_ENV, AspectRatio, Settings
from luma_mcp.download import human_size
from luma_mcp.errors import LedgerError, LumaError, LumaMcpError
from luma_mcp.ledger import Ledger, open_ledger
from luma_mcp.models import ExtendRequest, GenerateRequest, ListStatus, TaskStatus, VideoRequest
from luma_mcp.prompts import storyboard as storyboard_text
from luma_mcp.prompts import video_prompt as video_prompt_text
from luma_mcp.results import TaskList, TaskResult, get_task_call, list_text, task_text, with_next_call
from luma_mcp.schema import compact_schema
from luma_mcp.service import OPERATOR, ListedTask, SavedVideo, VideoService, tenant_of
from luma_mcp.urls import UnsafeUrl, check_caller_url, origin
from luma_mcp.waiting import PollSchedule, RecentReads, Report

T = TypeVar("T")
log = logging.getLogger(__name__)

INSTRUCTIONS = (
    "Makes short videos (about 5 s each) with Luma Dream Machine. generate_video and extend_video each start "
    "one paid generation (1-5 minutes) and wait up to wait_seconds for it. If the result is pending or "
    "processing, call get_task with its task_id and wait_seconds until it finishes; never repeat the submit, "
    "that pays twice. Give the user the video_url; pass a result's video_id to extend_video to continue it. "
    "list_tasks finds earlier videos (also from past conversations); download_video saves one to disk, "
    "since result URLs expire. The prompts video_prompt and storyboard help write good requests."
)

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


class TaskPage(BaseModel):
    tasks: list[ListedTask]
    next_cursor: str | None = None


class LumaMCPServer(MCPServer["AppState"]):
    """`MCPServer` whose tools/list carries compact schemas and which refuses unknown arguments."""

    async def list_tools(self) -> list[Tool]:
        return [
            tool.model_copy(
                update={
                    "description": inspect.cleandoc(tool.description or ""),
                    "input_schema": compact_schema(tool.input_schema),
                    "output_schema": compact_schema(tool.output_schema),
                }
            )
            for tool in await super().list_tools()
        ]

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        # The SDK silently drops unknown arguments; a model that sent `duration` or `seed`
        # believes it was applied. Say so instead.
        tool = self._tool_manager.get_tool(name)
        if tool is not None:
            known = set(tool.parameters.get("properties", {}))
            unknown = sorted(set(arguments) - known)
            if unknown:
                raise ToolError(
                    f"{name} has no argument {', '.join(unknown)}. Its arguments are: {', '.join(sorted(known))}. "
                    "Luma takes no duration, resolution, seed or negative prompt: describe what you want in the prompt."
                )
        try:
            return await super().call_tool(name, arguments, context)
        except UnexpectedToolError as exc:
            # A bug, not a refusal: log it whole, and still tell the model something it can use
            # (the SDK's own text would be a bare "Error executing tool").
            log.error("%s crashed", name, exc_info=exc.__cause__ or exc)
            cause = type(exc.__cause__).__name__ if exc.__cause__ else "error"
            raise ToolError(
                f"{name} failed inside luma-mcp ({cause}); the details are in the server's log. "
                "Anything already submitted is in list_tasks: check there before submitting again."
            ) from None


@dataclass
class AppState:
    """Shared by every call of one connection (stdio) or of the whole process (HTTP)."""

    settings: Settings
    luma: LumaClient  # the server's own token (or none), and the pooled HTTP client
    ledger: Ledger
    schedule: PollSchedule
    reads: RecentReads
    stopping: threading.Event | None = None
    remote: bool = False  # served over HTTP: callers are elsewhere (see VideoService.download)

    def service(self) -> VideoService:
        """The service for the caller of the current request."""
        if self.settings.auth_mode == "passthrough":
            # Bring your own token: the caller's bearer is their Ace Data Cloud token.
            access = get_access_token()
            if access is None:  # the HTTP layer refuses unauthenticated calls before they get here
                raise ToolError("This server needs your Ace Data Cloud API token as the bearer token.")
            luma = self.luma.with_token(SecretStr(access.token))
            tenant = tenant_of(access.token)
        elif not self.luma.has_token:
            raise ToolError(
                f"No Ace Data Cloud API token is configured. Set {TOKEN_ENV} in this MCP server's environment "
                "(get one at https://platform.acedata.cloud), then restart the server."
            )
        else:
            luma, tenant = self.luma, OPERATOR
        return VideoService(
            settings=self.settings,
            luma=luma,
            ledger=self.ledger,
            schedule=self.schedule,
            reads=self.reads,
            tenant=tenant,
            stopping=self.stopping,
            remote=self.remote,
        )


def create_server(
    settings: Settings,
    *,
    schedule: PollSchedule | None = None,
    token_verifier: TokenVerifier | None = None,
    auth: AuthSettings | None = None,
    stopping: threading.Event | None = None,
    remote: bool = False,
) -> LumaMCPServer:
    """The luma-mcp server, configured by `settings`. `schedule` overrides the poll timing
    (tests and benchmarks run the simulator fast; production reads it from settings);
    `token_verifier` and `auth` protect it when served over HTTP, and `stopping` ends
    waits early when that server shuts down (see `http_app`); `remote` says it is served over
    HTTP, to callers on other machines."""
    poll_schedule = schedule or PollSchedule.from_settings(settings)
    default_wait = settings.wait_seconds
    max_wait = settings.max_wait_seconds

    @asynccontextmanager
    async def lifespan(_: MCPServer[AppState]) -> AsyncIterator[AppState]:
        ledger = open_ledger(settings)
        try:
            async with LumaClient.from_settings(settings) as luma:
                reads = RecentReads(poll_schedule.min_interval)
                yield AppState(
                    settings=settings,
                    luma=luma,
                    ledger=ledger,
                    schedule=poll_schedule,
                    reads=reads,
                    stopping=stopping,
                    remote=remote,
                )
        finally:
            ledger.close()

    mcp = LumaMCPServer(
        name="luma-mcp",
        title="Luma Dream Machine videos",
        version=__version__,
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
        token_verifier=token_verifier,
        auth=auth,
    )

    wait_field = Field(ge=0, le=max_wait, description="Seconds to wait for the video (0: return at once)")

    @mcp.tool(title="Generate a video", annotations=_OPEN_WORLD_WRITE)
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
        return await _submit_and_wait(ctx, request, wait_seconds, idempotency_key, new_take)

    @mcp.tool(title="Extend a video", annotations=_OPEN_WORLD_WRITE)
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
        _check_public(settings, video_url=video_url, end_image_url=end_image_url)
        request = ExtendRequest(
            prompt=prompt or None, video_id=video_id, video_url=video_url, end_image_url=end_image_url
        )
        return await _submit_and_wait(ctx, request, wait_seconds, idempotency_key, new_take)

    @mcp.tool(title="Check video tasks", annotations=_OPEN_WORLD_READ)
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
        service = _service(ctx)
        results = await _call(service.fetch(ids))
        not_found = [i for i in ids if i not in results]
        if task_id is not None and not_found:
            raise ToolError(
                f"No task with id {task_id}. Check the id: it is the task_id a generate_video or "
                "extend_video result gave (list_tasks shows recent ones)."
            )
        if wait_seconds > 0:
            running = [r.elapsed_seconds or 0.0 for r in results.values() if not r.status.finished]
            report = _reporter(ctx, wait_seconds)
            results = await _call(service.wait(results, wait_seconds, report, age=min(running, default=0.0)))
        tasks = [results[i] for i in ids if i in results]
        unfinished = [t.task_id for t in tasks if not t.status.finished]
        listing = TaskList(
            tasks=tasks,
            not_found=not_found,
            next_call=get_task_call(unfinished, max(wait_seconds, default_wait)) if unfinished else None,
        )
        return _tool_result(list_text(listing), listing, tasks)

    @mcp.tool(title="List recent videos", annotations=_OPEN_WORLD_READ)
    async def list_tasks(
        ctx: Context[AppState],
        status: ListStatus | None = None,
        since: Annotated[datetime | None, Field(description="Only tasks created at or after this time")] = None,
        until: Annotated[datetime | None, Field(description="Only tasks created before this time")] = None,
        limit: Annotated[int, Field(ge=1, le=100)] = 20,
        cursor: Annotated[str | None, Field(max_length=200, description="next_cursor of the previous page")] = None,
    ) -> Annotated[CallToolResult, TaskPage]:
        """Videos submitted from here, newest first (also from earlier conversations)."""
        rows, next_cursor = await _call(
            _service(ctx).list(status=status, since=since, until=until, limit=limit, cursor=cursor, refresh=True)
        )
        page = TaskPage(tasks=rows, next_cursor=next_cursor)
        return CallToolResult(
            content=[TextContent(type="text", text=_page_text(rows, next_cursor))],
            structured_content=page.model_dump(mode="json", exclude_none=True),
        )

    @mcp.tool(title="Save a video to disk", annotations=_LOCAL_WRITE)
    async def download_video(
        ctx: Context[AppState],
        task_id: TaskId,
        filename: Annotated[str | None, Field(max_length=150, description="Plain file name; default luma-<id>")] = None,
        include_thumbnail: bool = False,
        overwrite: bool = False,
    ) -> Annotated[CallToolResult, SavedVideo]:
        """Save a finished task's MP4 (result URLs expire) into the download folder."""
        service = _service(ctx)

        saved: SavedVideo = await _call(
            service.download(
                task_id,
                filename=filename,
                include_thumbnail=include_thumbnail,
                overwrite=overwrite,
                report=_reporter(ctx),
            )
        )
        text = f"Saved {saved.path} ({human_size(saved.size_bytes)}, sha256 {saved.sha256[:16]}...)."
        if saved.thumbnail_path:
            text += f" Thumbnail: {saved.thumbnail_path}."
        return CallToolResult(
            content=[TextContent(type="text", text=text)],
            structured_content=saved.model_dump(mode="json", exclude_none=True),
        )

    # A template (with an optional ?status=) rather than a static resource: only templates
    # are handed the request context, which holds this connection's service.
    @mcp.resource(
        "luma://tasks{?status}",
        name="recent-tasks",
        title="Recent video tasks",
        description="The 20 most recent video tasks submitted from here, as JSON (luma://tasks)",
        mime_type="application/json",
    )
    async def recent_tasks_resource(ctx: Context[AppState], status: str | None = None) -> str:
        try:
            rows, _ = await _service(ctx).list(
                status=status or None, since=None, until=None, limit=20, cursor=None, refresh=False
            )
        except (ToolError, LumaMcpError) as exc:
            raise ResourceError(str(exc)) from None
        return json.dumps([row.model_dump(exclude_none=True) for row in rows])

    @mcp.resource(
        "luma://tasks/{task_id}",
        name="task",
        title="Video task",
        description="One video task's status and result, as JSON",
        mime_type="application/json",
    )
    async def task_resource(task_id: str, ctx: Context[AppState]) -> str:
        try:
            results = await _service(ctx).fetch([task_id])
        except (ToolError, LumaMcpError) as exc:
            raise ResourceError(str(exc)) from None
        if task_id not in results:
            raise ResourceError(f"No task with id {task_id}.")
        return results[task_id].model_dump_json(exclude_none=True)

    @mcp.prompt(title="Write a video prompt")
    def video_prompt(
        idea: Annotated[str, Field(description="The rough idea, in any words")],
        style: Annotated[str | None, Field(description="Optional look, e.g. '35mm film' or 'claymation'")] = None,
    ) -> str:
        """Turn a rough idea into a strong Luma prompt (subject, motion, camera, light, style)."""
        return video_prompt_text(idea, style)

    @mcp.prompt(title="Plan a multi-shot video")
    def storyboard(
        story: Annotated[str, Field(description="The story or sequence to film")],
        shots: Annotated[str, Field(description="How many shots, 2 to 6")] = "3",
    ) -> str:
        """Plan a multi-shot video made as one generate_video followed by extend_video calls."""
        try:
            count = int(shots)
        except ValueError:
            count = 3
        return storyboard_text(story, min(max(count, 2), 6))

    async def _submit_and_wait(
        ctx: Context[AppState],
        request: VideoRequest,
        wait_seconds: int,
        idempotency_key: str | None,
        new_take: bool,
    ) -> CallToolResult:
        service = _service(ctx)
        report = _reporter(ctx, wait_seconds)
        result = await _call(service.submit(request, idempotency_key=idempotency_key, new_take=new_take, report=report))
        if wait_seconds > 0 and not result.status.finished:
            task_id = result.task_id
            try:
                waited = await service.wait({task_id: result}, wait_seconds, report, age=result.elapsed_seconds or 0)
            except (LumaError, LedgerError) as exc:
                raise ToolError(
                    f"Task {task_id} was submitted, but checking on it failed: {exc} "
                    f'Do not submit again; call get_task(task_id="{task_id}") later.'
                ) from None
            result = waited[task_id].model_copy(update={"note": result.note})
        result = with_next_call(result, max(wait_seconds, default_wait))
        return _tool_result(task_text(result), result, [result])

    return mcp


def _service(ctx: Context[AppState]) -> VideoService:
    return ctx.request_context.lifespan_context.service()


def _reporter(ctx: Context[AppState], total: float | None = None) -> Report:
    """This call's progress notifications. `total`, when given, is the wait's length in
    seconds, which the submit's first line (sent before any wait) does not know itself."""

    async def report(progress: float, own_total: float | None, message: str) -> None:
        await ctx.report_progress(progress, (total if total is not None else own_total) or None, message)

    return report


async def _call(awaitable: Awaitable[T]) -> T:
    """Await service work at the tool boundary; its failures become the ToolError text the model acts on."""
    try:
        return await awaitable
    except LumaMcpError as exc:
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


def _page_text(rows: list[ListedTask], next_cursor: str | None) -> str:
    if not rows:
        return "No tasks found."
    lines = [
        " · ".join(
            part
            for part in (
                row.created.replace("T", " ")[:16],
                row.status,
                row.task_id or "(no task id)",
                f'"{row.prompt}"' if row.prompt else row.action,
                row.video_url,
            )
            if part
        )
        for row in rows
    ]
    if next_cursor:
        lines.append(f'More: list_tasks(cursor="{next_cursor}").')
    return "\n".join(lines)


def _tool_result(text: str, structured: TaskResult | TaskList, tasks: list[TaskResult]) -> CallToolResult:
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
