"""Part of `make bench`: the sizes a model and a host read, in bytes.

tools/list as the model sees it (names, descriptions, input schemas), for a plain host and for
one that renders MCP Apps (which is also given the player view's app-only tool, and reads the
view document once); the whole tools/list result; and the text of a finished get_task and
generate_video.
"""

from __future__ import annotations

import json
from pathlib import Path

from mcp import Client
from mcp.client.extension import advertise
from mcp.types import TextResourceContents

from harness import PROMPT, BenchmarkError, Figure, Target, call, status_of, text_of
from luma_mcp.server.player import VIEW_URI
from servers import server_params

VIDEO_TOOLS = ("generate_video", "extend_video", "get_task")  # the tools the issue-3 size budget covers
# A client that renders MCP Apps views, as it says so in its capabilities.
APPS_HOST = advertise("io.modelcontextprotocol/ui", {"mimeTypes": ["text/html;profile=mcp-app"]})


async def measure_sizes(ours: Client, task_id: str) -> dict[str, int]:
    listing = await ours.list_tools()
    tools = [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in listing.tools]
    # Icons and the player view's `_meta` are for the host's screen, not the model: not in the budget.
    video_tools = [
        {k: v for k, v in t.items() if k not in ("icons", "_meta")} for t in tools if t["name"] in VIDEO_TOOLS
    ]
    visible = [{key: t[key] for key in ("name", "description", "inputSchema") if key in t} for t in tools]
    if len(video_tools) != len(VIDEO_TOOLS):
        raise BenchmarkError(f"tools/list lacks some of {VIDEO_TOOLS}: {[t['name'] for t in tools]}")
    read = await call(ours, "get_task", {"task_id": task_id})
    # The simulator finishes at once, but the server first looks after its default 5 s.
    generated = await call(ours, "generate_video", {"prompt": PROMPT, "wait_seconds": 10, "new_take": True})
    for name, result in (("get_task", read), ("generate_video", generated)):
        if status_of(result) != "succeeded":
            raise BenchmarkError(f"{name} did not succeed: {text_of(result)}")
    return {
        "tools_list": len(listing.model_dump_json(by_alias=True, exclude_none=True).encode()),
        "tools_array": len(json.dumps(tools, separators=(",", ":")).encode()),
        "tools_video": len(json.dumps(video_tools, separators=(",", ":")).encode()),
        "tools_visible": len(json.dumps(visible, separators=(",", ":")).encode()),
        "tools_count": len(listing.tools),
        "get_task_text": len(text_of(read).encode()),
        "generate_text": len(text_of(generated).encode()),
    }


async def measure_apps_sizes(sim_url: str, data_dir: Path) -> dict[str, int]:
    """What a host that renders MCP Apps gets: tools/list with the view's app-only tool (which it
    keeps from the model), and the view document it reads once."""
    async with Client(server_params("ours", sim_url, data_dir), extensions=[APPS_HOST]) as client:
        listing = await client.list_tools()
        view = await client.read_resource(VIEW_URI)
    tools = [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in listing.tools]
    for_model = [
        {key: t[key] for key in ("name", "description", "inputSchema") if key in t}
        for t in tools
        if t.get("_meta", {}).get("ui", {}).get("visibility") != ["app"]
    ]
    document = view.contents[0]
    if len(for_model) == len(tools) or not isinstance(document, TextResourceContents):
        raise BenchmarkError("an MCP Apps host was not given the app-only tool, or the view is not text")
    return {
        "tools_list_apps": len(listing.model_dump_json(by_alias=True, exclude_none=True).encode()),
        "tools_visible_apps": len(json.dumps(for_model, separators=(",", ":")).encode()),
        "view_document": len(document.text.encode()),
    }


def size_figures(sizes: dict[str, int]) -> list[Figure]:
    return [
        Figure(
            key="tools_visible_bytes",
            label="tools/list the model reads, all tools",
            unit="B",
            description="compact JSON of each tool's name, description and input schema, all tools: what a "
            "host puts in front of the model every turn",
            ours=sizes["tools_visible"],
            target=Target("<=", 4000),
        ),
        Figure(
            key="tools_visible_apps_bytes",
            label="tools/list the model reads, MCP Apps host",
            unit="B",
            description="the same, listed to a host that renders MCP Apps: it is also given the view's "
            "app-only tool, which it keeps from the model",
            ours=sizes["tools_visible_apps"],
            target=Target("<=", 4000),
        ),
        Figure(
            key="tools_list_apps_bytes",
            label="tools/list result, MCP Apps host",
            unit="B",
            description="the whole tools/list result as JSON for such a host, with the app-only tool",
            ours=sizes["tools_list_apps"],
        ),
        Figure(
            key="view_document_bytes",
            label="Player view document",
            unit="B",
            description="the ui:// view as resources/read returns it, read once by an MCP Apps host "
            "(its page, script and the ext-apps client, inline)",
            ours=sizes["view_document"],
        ),
        Figure(
            key="tools_video_bytes",
            label="tools/list: the 3 video tools",
            unit="B",
            description=f"compact JSON of the entries of {', '.join(VIDEO_TOOLS)} in tools/list (without "
            "their icons and the player view's _meta, which hosts never give the model), the tools the issue-3 "
            "budget was set for",
            ours=sizes["tools_video"],
            target=Target("<=", 5000),
        ),
        Figure(
            key="tools_list_bytes",
            label="tools/list result, all tools",
            unit="B",
            description=f"the whole tools/list result as JSON ({sizes['tools_count']} tools, with list_tasks "
            "and download_video), read every session; no target (the budget predates the last two)",
            ours=sizes["tools_list"],
        ),
        Figure(
            key="tools_array_bytes",
            label="tools array, all tools",
            unit="B",
            description="just the tools array of that result, compact JSON",
            ours=sizes["tools_array"],
        ),
        Figure(
            key="get_task_text_bytes",
            label="Finished get_task text",
            unit="B",
            description="UTF-8 text content of a succeeded get_task(task_id) result",
            ours=sizes["get_task_text"],
            target=Target("<=", 600),
        ),
        Figure(
            key="generate_text_bytes",
            label="Finished generate_video text",
            unit="B",
            description="UTF-8 text content of a succeeded generate_video result",
            ours=sizes["generate_text"],
            target=Target("<=", 600),
        ),
    ]
