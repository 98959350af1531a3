"""The MCP surface: tools, a resource template and prompts, translated onto the API layer.

(No `from __future__ import annotations` here: tool signatures read configured bounds and
defaults from `create_server`'s scope, so their annotations must be evaluated eagerly.)

Thin on purpose: arguments are validated here (with messages that say what to do), the
work is done by `client`, `waiting` and `results`, and every failure leaves as a
`ToolError` whose text the model can act on.
"""

import inspect
import ipaddress
import logging
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.types import CallToolResult, ContentBlock, ResourceLink, TextContent, Tool, ToolAnnotations
from pydantic import Field, ValidationError

from luma_mcp import __version__
from luma_mcp.client import MAX_BATCH, LumaClient
from luma_mcp.config import TOKEN_ENV, AspectRatio, Settings
from luma_mcp.errors import LumaError
from luma_mcp.models import ExtendRequest, GenerateRequest, TaskStatus, VideoRequest
from luma_mcp.prompts import storyboard as storyboard_text
from luma_mcp.prompts import video_prompt as video_prompt_text
from luma_mcp.results import (
    TaskList,
    TaskResult,
    from_record,
    get_task_call,
    list_text,
    task_text,
    with_next_call,
)
from luma_mcp.schema import compact_schema
from luma_mcp.waiting import PollSchedule, RecentReads, wait_for_tasks

log = logging.getLogger(__name__)
T = TypeVar("T")

INSTRUCTIONS = (
    "Makes short videos (about 5 s each) with Luma Dream Machine. generate_video and extend_video each start "
    "one paid generation (1-5 minutes) and wait up to wait_seconds for it. If the result is pending or "
    "processing, call get_task with its task_id and wait_seconds until it finishes; never repeat the submit, "
    "that pays twice. Give the user the video_url; pass a result's video_id to extend_video to continue it. "
    "The prompts video_prompt and storyboard help write good requests."
)

_OPEN_WORLD_WRITE = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True
)
_OPEN_WORLD_READ = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=True)

PublicUrl = Annotated[str, Field(max_length=2048)]  # checked by _check_public, with a message that helps
TaskId = Annotated[str, Field(min_length=1, max_length=128)]


class LumaMCPServer(MCPServer["AppState"]):
    """`MCPServer` whose tools/list carries compact schemas (see `schema.compact_schema`)."""

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
        return await super().call_tool(name, arguments, context)


@dataclass
class AppState:
    luma: LumaClient
    settings: Settings
    schedule: PollSchedule
    reads: RecentReads


def create_server(settings: Settings, *, schedule: PollSchedule | None = None) -> LumaMCPServer:
    """The luma-mcp server, configured by `settings`. `schedule` overrides the poll timing
    (tests and benchmarks run the simulator fast; production reads it from settings)."""
    poll_schedule = schedule or PollSchedule.from_settings(settings)
    default_wait = settings.wait_seconds
    max_wait = settings.max_wait_seconds

    @asynccontextmanager
    async def lifespan(_: MCPServer[AppState]) -> AsyncIterator[AppState]:
        async with LumaClient.from_settings(settings) as luma:
            reads = RecentReads(poll_schedule.min_interval)
            yield AppState(luma=luma, settings=settings, schedule=poll_schedule, reads=reads)

    mcp = LumaMCPServer(
        name="luma-mcp",
        title="Luma Dream Machine videos",
        version=__version__,
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
    )

    wait_field = Field(
        ge=0,
        le=max_wait,
        description="Seconds to wait for the video (0: return at once)",
    )

    @mcp.tool(title="Generate a video", annotations=_OPEN_WORLD_WRITE)
    async def generate_video(
        ctx: Context[AppState],
        prompt: Annotated[
            str,
            Field(
                min_length=1,
                max_length=5000,
                description="What the video shows: subject, motion, camera, light, style",
            ),
        ],
        aspect_ratio: AspectRatio = settings.default_aspect_ratio,
        loop: Annotated[bool, Field(description="Seamlessly looping video")] = False,
        enhancement: Annotated[bool, Field(description="Prompt enhancement by the provider")] = True,
        start_image_url: Annotated[PublicUrl | None, Field(description="Public image URL: first frame")] = None,
        end_image_url: Annotated[PublicUrl | None, Field(description="Public image URL: last frame")] = None,
        callback_url: Annotated[PublicUrl | None, Field(description="Webhook to POST the result to")] = None,
        wait_seconds: Annotated[int, wait_field] = default_wait,
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
        return await _submit_and_wait(ctx, request, wait_seconds)

    @mcp.tool(title="Extend a video", annotations=_OPEN_WORLD_WRITE)
    async def extend_video(
        ctx: Context[AppState],
        prompt: Annotated[
            str | None,
            Field(max_length=5000, description="What happens next"),
        ] = None,
        video_id: Annotated[
            str | None,
            Field(min_length=1, max_length=128, description="video_id of an earlier result"),
        ] = None,
        video_url: Annotated[PublicUrl | None, Field(description="Or: public URL of a video")] = None,
        end_image_url: Annotated[PublicUrl | None, Field(description="Public image URL: last frame")] = None,
        wait_seconds: Annotated[int, wait_field] = default_wait,
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
        return await _submit_and_wait(ctx, request, wait_seconds)

    @mcp.tool(title="Check video tasks", annotations=_OPEN_WORLD_READ)
    async def get_task(
        ctx: Context[AppState],
        task_id: TaskId | None = None,
        task_ids: Annotated[
            list[TaskId] | None,
            Field(min_length=1, max_length=MAX_BATCH, description="Several task ids, instead of task_id"),
        ] = None,
        wait_seconds: Annotated[
            int,
            Field(
                ge=0,
                le=max_wait,
                description="Seconds to keep waiting for unfinished tasks",
            ),
        ] = 0,
    ) -> Annotated[CallToolResult, TaskList]:
        """Status and video_url of tasks from generate_video/extend_video.
        wait_seconds keeps waiting for unfinished ones."""
        if (task_id is None) == (task_ids is None):
            raise ToolError("Pass task_id (one task) or task_ids (several), not both and not neither.")
        ids = list(dict.fromkeys([task_id] if task_id else task_ids or []))
        state = _state(ctx)
        results = await _call(_fetch(state, ids))
        not_found = [i for i in ids if i not in results]
        if task_id is not None and not_found:
            raise ToolError(
                f"No task with id {task_id}. Check the id: it is the task_id a generate_video or "
                "extend_video result gave."
            )
        if wait_seconds > 0:
            running = [r.elapsed_seconds or 0.0 for r in results.values() if not r.status.finished]
            results = await _call(_wait(ctx, results, wait_seconds, age=min(running, default=0.0)))
        tasks = [results[i] for i in ids if i in results]
        unfinished = [t.task_id for t in tasks if not t.status.finished]
        listing = TaskList(
            tasks=tasks,
            not_found=not_found,
            next_call=get_task_call(unfinished, max(wait_seconds, default_wait)) if unfinished else None,
        )
        return _tool_result(list_text(listing), listing, tasks)

    @mcp.resource(
        "luma://tasks/{task_id}",
        name="task",
        title="Video task",
        description="One video task's status and result, as JSON",
        mime_type="application/json",
    )
    async def task_resource(task_id: str, ctx: Context[AppState]) -> str:
        try:
            results = await _fetch(_state(ctx), [task_id])
        except (ToolError, LumaError) as exc:
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

    async def _submit_and_wait(ctx: Context[AppState], request: VideoRequest, wait_seconds: int) -> CallToolResult:
        state = _state(ctx)
        accepted = await _call(state.luma.submit(request))
        task_id = accepted.task_id
        log.info("submitted %s task %s", request.action, task_id)
        await ctx.report_progress(0, wait_seconds or None, f"Task {task_id}: submitted")
        result = TaskResult(task_id=task_id, status=TaskStatus.PENDING, prompt=request.prompt, elapsed_seconds=0)
        if wait_seconds > 0:
            try:
                result = (await _wait(ctx, {task_id: result}, wait_seconds))[task_id]
            except LumaError as exc:
                raise ToolError(
                    f"Task {task_id} was submitted, but checking on it failed: {exc} "
                    f'Do not submit again; call get_task(task_id="{task_id}") later.'
                ) from None
        result = with_next_call(result, max(wait_seconds, default_wait))
        return _tool_result(task_text(result), result, [result])

    async def _wait(
        ctx: Context[AppState], results: dict[str, TaskResult], wait_seconds: int, age: float = 0.0
    ) -> dict[str, TaskResult]:
        state = _state(ctx)

        async def report(progress: float, total: float, message: str) -> None:
            await ctx.report_progress(progress, total, message)

        return await wait_for_tasks(
            lambda ids: _fetch(state, ids),
            results,
            budget=wait_seconds,
            schedule=state.schedule,
            report=report,
            age=age,
        )

    return mcp


def _state(ctx: Context[AppState]) -> AppState:
    state = ctx.request_context.lifespan_context
    if not state.luma.has_token:
        raise ToolError(
            f"No Ace Data Cloud API token is configured. Set {TOKEN_ENV} in this MCP server's environment "
            "(get one at https://platform.acedata.cloud), then restart the server."
        )
    return state


async def _fetch(state: AppState, task_ids: list[str]) -> dict[str, TaskResult]:
    """The tasks' current results: one request (a batch for several), except for tasks read
    less than a poll interval ago. Raises `LumaError`."""
    results = state.reads.fresh(task_ids)
    missing = [task_id for task_id in task_ids if task_id not in results]
    if len(missing) == 1:
        record = await state.luma.get_task(missing[0])
        fetched = {} if record is None else {record.id: from_record(record)}
    elif missing:
        records = await state.luma.get_tasks(missing)
        fetched = {task_id: from_record(record) for task_id, record in records.items()}
    else:
        fetched = {}
    state.reads.remember(fetched)
    return results | fetched


async def _call(awaitable: Awaitable[T]) -> T:
    """Await API work at the tool boundary; its failures become the ToolError text the model acts on."""
    try:
        return await awaitable
    except LumaError as exc:
        raise ToolError(str(exc)) from None
    except ValidationError as exc:  # a request model refused the arguments
        raise ToolError(f"Invalid arguments: {exc.errors()[0]['msg']}") from None


def _check_public(settings: Settings, **urls: str | None) -> None:
    """The provider downloads these URLs itself: a loopback or private address cannot work
    (except the API's own host, which is where a simulator serves its media)."""
    api_host = urlsplit(settings.api_base_url).hostname
    for name, url in urls.items():
        if url is None:
            continue
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
        if parts.scheme not in ("http", "https") or not host or any(c.isspace() for c in url.strip()):
            raise ToolError(f"{name} must be a full public http(s) URL, like https://example.com/image.png.")
        if host == api_host:
            continue
        private = host == "localhost" or host.endswith((".localhost", ".local", ".internal"))
        try:
            address = ipaddress.ip_address(host)
            private = private or not address.is_global
        except ValueError:
            pass
        if private:
            raise ToolError(
                f"{name} points at {host}, which the video provider cannot reach. Upload the file somewhere "
                "public (https) and pass that URL."
            )


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
