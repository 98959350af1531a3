"""The video player view (MCP Apps, `io.modelcontextprotocol/ui`): one `ui://` document bound to
generate_video, extend_video and get_task, and the app-only status tool it polls.

What this module guarantees:
- hosts without Apps see what they saw before: the status tool and the view are listed only to
  clients that negotiated the extension (`visible_tools`, `visible_resources`), and no tool
  result changes (the view reads the same structured content the model does);
- the document is built on its first `resources/read`, not at start-up (the bundle is 0.5 MB),
  from files shipped in the package: the pinned `@modelcontextprotocol/ext-apps` client
  (`ui/ext-apps/`, refreshed by `make ext-apps`) and `ui/player.html`; no network at run time;
- its Content-Security-Policy lets media load only from `LUMA_MEDIA_DOMAINS` and the API's own
  origin (where a simulator serves its media); no `domain`, since each host assigns its own;
- the status tool is read-only and costs upstream no more than a `get_task` would: finished
  tasks come from the ledger, reads younger than the politeness floor from memory (both as
  `VideoService.fetch` does), and it tells the view when to ask again from the shared poll
  schedule, never sooner than `min_interval`.
"""

from __future__ import annotations

# Context and AppState are imported at run time, not under TYPE_CHECKING: the SDK evaluates the
# status tool's annotations when it registers the tool.
import functools
import re
from importlib import resources
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

from mcp.server.apps import APP_MIME_TYPE, Apps, client_supports_apps
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.resources import FunctionResource
from mcp.types import CallToolResult, Icon, ToolAnnotations
from pydantic import BaseModel, Field

from luma_mcp.api.client import MAX_BATCH
from luma_mcp.config import Settings, split_list
from luma_mcp.core.results import TaskList, TaskResult, list_text
from luma_mcp.core.state import AppState
from luma_mcp.server.boundary import answer, tool_result, video_service

if TYPE_CHECKING:
    from mcp.server.context import ServerRequestContext
    from mcp.types import Resource, Tool

VIEW_URI = "ui://luma-mcp/player.html"
# What the three video tools carry so an Apps host renders their results in the view.
VIEW_META: dict[str, Any] = {"ui": {"resourceUri": VIEW_URI}}
STATUS_TOOL = "view_task_status"

_UI = resources.files("luma_mcp.server") / "ui"
_SCRIPT_SLOT = "<!-- ext-apps client and player script -->"


def _svg_icon(body: str) -> Icon:
    # Tiny inline SVGs (the data URI names the type): no request to anywhere, ~200 bytes a tool in
    # tools/list, which hosts show beside the tool and do not give the model.
    svg = (
        "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 24 24' fill='none' stroke='%23a855f7' "
        f"stroke-width='2'>{body}</svg>"
    )
    return Icon(src=f"data:image/svg+xml,{svg}")


SERVER_ICON = _svg_icon("<rect x='2' y='5' width='20' height='14' rx='3'/><path d='M10 9l5 3-5 3z'/>")
TOOL_ICONS: dict[str, list[Icon]] = {
    "generate_video": [_svg_icon("<path d='M12 3v6M12 15v6M3 12h6M15 12h6'/>")],
    "extend_video": [_svg_icon("<path d='M4 12h14M13 6l6 6-6 6'/>")],
    "get_task": [_svg_icon("<circle cx='12' cy='12' r='9'/><path d='M12 7v5l3 2'/>")],
    "list_tasks": [_svg_icon("<path d='M8 6h13M8 12h13M8 18h13M3 6h1M3 12h1M3 18h1'/>")],
    "download_video": [_svg_icon("<path d='M12 3v12M7 10l5 5 5-5M4 21h16'/>")],
}


class TaskStatusView(BaseModel):
    # What the view needs to redraw and when to ask again. (No docstring: it would be sent in the outputSchema.)
    tasks: list[TaskResult]
    not_found: list[str] = Field(default_factory=list)
    next_check_seconds: float | None = None  # None: every task is finished


def media_domains(settings: Settings) -> list[str]:
    """The origins the view may load media from: the configured CDN hosts and the API's own origin."""
    api = urlsplit(settings.api_base_url)
    own = f"{api.scheme}://{api.netloc}"
    return list(dict.fromkeys([*split_list(settings.media_domains), own]))


def add_player(settings: Settings) -> Apps:
    """The Apps extension: the view's resource and its status tool (for `MCPServer(extensions=...)`)."""
    apps = Apps()

    @apps.tool(
        resource_uri=VIEW_URI,
        visibility=["app"],
        name=STATUS_TOOL,
        title="Video task status (player view)",
        annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=True),
    )
    async def view_task_status(
        ctx: Context[AppState],
        task_ids: Annotated[
            list[Annotated[str, Field(min_length=1, max_length=128)]], Field(min_length=1, max_length=MAX_BATCH)
        ],
    ) -> CallToolResult:
        """For the player view: current status of its tasks, and when to ask again."""
        ids = list(dict.fromkeys(task_ids))
        service = video_service(ctx)
        results = await answer(service.fetch(ids, routine=True))  # the view polls on its own
        tasks = [results[i] for i in ids if i in results]
        running = [t.elapsed_seconds or 0.0 for t in tasks if not t.status.finished]
        view = TaskStatusView(
            tasks=tasks,
            not_found=[i for i in ids if i not in results],
            next_check_seconds=service.schedule.next_check(min(running)) if running else None,
        )
        return tool_result(list_text(TaskList(tasks=view.tasks, not_found=view.not_found)), view)

    csp = {"resourceDomains": media_domains(settings)}
    apps.add_resource(
        FunctionResource(
            uri=VIEW_URI,
            name="video-player",
            title="Luma video player",
            description="Follows a video task and plays the result",
            mime_type=APP_MIME_TYPE,
            # The video controls and actions want no border of the host's around them.
            meta={"ui": {"csp": csp, "prefersBorder": False, "permissions": {"clipboardWrite": {}}}},
            fn=view_document,
        )
    )
    return apps


def visible_tools(tools: list[Tool], ctx: ServerRequestContext[Any, Any]) -> list[Tool]:
    """tools/list for this client: app-only tools only for clients that render Apps."""
    if client_supports_apps(ctx):
        return tools
    return [tool for tool in tools if ((tool.meta or {}).get("ui") or {}).get("visibility") != ["app"]]


def visible_resources(listed: list[Resource], ctx: ServerRequestContext[Any, Any]) -> list[Resource]:
    """resources/list for this client: the view only for clients that render Apps (others can read it)."""
    if client_supports_apps(ctx):
        return listed
    return [resource for resource in listed if not str(resource.uri).startswith("ui://")]


@functools.cache
def view_document() -> str:
    """The view: player.html with the ext-apps client and the player's script inline (built once)."""
    html = (_UI / "player.html").read_text(encoding="utf-8")
    script = f"{_bundle_as_script()}\n{(_UI / 'player.js').read_text(encoding='utf-8')}"
    if "</script" in script.lower():
        raise ValueError("the view's script contains '</script': it would end the inline script early")
    return html.replace(_SCRIPT_SLOT, f'<script type="module">\n{script}\n</script>')


_EXPORTS = re.compile(r"export\s*\{([^}]*)\}\s*;?\s*$")


def _bundle_as_script() -> str:
    """The ext-apps ES module as inline script: its closing `export{a as App,...}` becomes
    `const ExtApps={App:a,...}` (an inline module cannot be imported from; a host's CSP does not
    allow module URLs of any kind)."""
    bundle = (_UI / "ext-apps" / "app-with-deps.js").read_text(encoding="utf-8")
    found = _EXPORTS.search(bundle)
    if found is None:
        raise ValueError("the ext-apps bundle does not end with an export list: was it refreshed from another build?")
    pairs = []
    for item in found.group(1).split(","):
        local, _, exported = item.strip().partition(" as ")
        pairs.append(f"{exported or local}:{local}")
    return f"{bundle[: found.start()]}\nconst ExtApps={{{','.join(pairs)}}};"


def ext_apps_version() -> str:
    return (_UI / "ext-apps" / "VERSION").read_text(encoding="utf-8").strip()
