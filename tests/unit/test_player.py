"""The player view's server side through the in-memory MCP client: who is shown what, the view's
resource and CSP, the app-only status tool, and the shipped ext-apps client (the browser tests
are in tests/e2e/test_player.py)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.extension import advertise
from mcp.types import TextResourceContents

from luma_mcp.api.client import MAX_BATCH
from luma_mcp.config import Settings
from luma_mcp.core.results import TaskResult
from luma_mcp.core.waiting import PollSchedule
from luma_mcp.server import create_server
from luma_mcp.server.player import STATUS_TOOL, VIEW_URI, TaskStatusView, view_document
from luma_mcp.simulator.app import SimulatorServer

from ..helpers.common import FAST_SCHEDULE, make_settings, text_of

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
EXT_APPS = ROOT / "src" / "luma_mcp" / "server" / "ui" / "ext-apps"
APPS = advertise("io.modelcontextprotocol/ui", {"mimeTypes": ["text/html;profile=mcp-app"]})
VIDEO_TOOLS = ("generate_video", "extend_video", "get_task")


@pytest.fixture
async def apps_client(sim_server: SimulatorServer) -> AsyncIterator[Client]:
    server = create_server(make_settings(sim_server.url), schedule=FAST_SCHEDULE)
    async with Client(server, extensions=[APPS]) as client:
        yield client


def app_only(tool: Any) -> bool:
    return bool(((tool.meta or {}).get("ui") or {}).get("visibility") == ["app"])


async def test_hosts_without_apps_are_not_shown_the_status_tool(mcp_client: Client) -> None:
    tools = {tool.name: tool for tool in (await mcp_client.list_tools()).tools}
    assert set(tools) == {"generate_video", "extend_video", "get_task", "list_tasks", "download_video"}
    for name in VIDEO_TOOLS:  # the binding is inert metadata for them
        assert (tools[name].meta or {})["ui"] == {"resourceUri": VIEW_URI}
    assert all(tool.icons and tool.icons[0].src.startswith("data:image/svg+xml,") for tool in tools.values())
    assert mcp_client.server_info is not None and mcp_client.server_info.icons
    assert (await mcp_client.list_resources()).resources == []  # as before the view existed


async def test_apps_hosts_get_the_app_only_status_tool_and_the_model_reads_under_4000_bytes(
    apps_client: Client,
) -> None:
    tools = (await apps_client.list_tools()).tools
    status = next(tool for tool in tools if tool.name == STATUS_TOOL)
    assert app_only(status) and (status.meta or {})["ui"]["resourceUri"] == VIEW_URI
    assert status.annotations is not None and status.annotations.read_only_hint
    # What a host puts before the model: every tool it may call (hosts drop app-only ones).
    for_model = [tool.model_dump(mode="json", by_alias=True, include={"name", "description", "input_schema"})
                 for tool in tools if not app_only(tool)]  # fmt: skip
    assert STATUS_TOOL not in {t["name"] for t in for_model}
    size = len(json.dumps(for_model, separators=(",", ":")).encode())
    assert size <= 4000, f"the tools the model reads grew to {size} bytes"


async def test_the_view_is_built_on_first_read_with_the_declared_media_domains(sim_server: SimulatorServer) -> None:
    view_document.cache_clear()
    settings = make_settings(sim_server.url, LUMA_MEDIA_DOMAINS="https://cdn.example.com, https://*.media.example.net")
    server = create_server(settings, schedule=FAST_SCHEDULE)
    async with Client(server, extensions=[APPS]) as client:
        await client.list_tools()
        await client.list_resources()
        assert view_document.cache_info().currsize == 0, "the 0.5 MB view was read before anyone asked for it"
        listed = next(r for r in (await client.list_resources()).resources if str(r.uri) == VIEW_URI)
        read = await client.read_resource(VIEW_URI)
    content = read.contents[0]
    assert isinstance(content, TextResourceContents)
    assert content.mime_type == "text/html;profile=mcp-app" == listed.mime_type
    ui = (content.meta or {})["ui"]
    assert ui["csp"] == {"resourceDomains": ["https://cdn.example.com", "https://*.media.example.net", sim_server.url]}
    assert "domain" not in ui and "connectDomains" not in ui["csp"]
    html = content.text
    # One self-contained document: the ext-apps client and the player inline, nothing fetched.
    assert html.count("<script") == 1 and 'type="module"' in html
    assert "const ExtApps={" in html and "App:" in html and "view_task_status" in html
    assert not re.search(r"""(src|href)=["']?https?:""", html.split("<script", 1)[0])
    assert html.lower().count("</script") == 1


async def test_results_are_the_same_with_or_without_apps(sim_server: SimulatorServer) -> None:
    server = create_server(make_settings(sim_server.url), schedule=FAST_SCHEDULE)
    async with Client(server) as plain:
        made = await plain.call_tool("generate_video", {"prompt": "A heron at dawn", "wait_seconds": 10})
        task_id = TaskResult.model_validate(made.structured_content).task_id
        without = await plain.call_tool("get_task", {"task_id": task_id})
    async with Client(server, extensions=[APPS]) as apps:
        with_apps = await apps.call_tool("get_task", {"task_id": task_id})
    assert with_apps.structured_content is not None
    assert TaskResult.model_validate(with_apps.structured_content["tasks"][0]).status == "succeeded"
    assert with_apps.model_dump() == without.model_dump()


def test_media_domains_must_be_origins() -> None:
    for bad in ("cdn.example.com", "https://cdn.example.com/videos", "*", "https://a.com;script-src *"):
        with pytest.raises(ValueError, match="LUMA_MEDIA_DOMAINS"):
            Settings(_env_file=None, LUMA_MEDIA_DOMAINS=bad)
    assert Settings(_env_file=None, LUMA_MEDIA_DOMAINS="http://127.0.0.1:8765,https://*.cdn.example").media_domains


async def test_status_tool_follows_a_task_and_says_when_to_ask_again(
    sim_server: SimulatorServer,
) -> None:
    sim = sim_server.simulator
    sim.processing_seconds = 0.6
    schedule = PollSchedule(first=0.3, maximum=0.3, heartbeat=0.15, min_interval=0.25)
    async with Client(create_server(make_settings(sim_server.url), schedule=schedule), extensions=[APPS]) as client:
        submitted = await client.call_tool("generate_video", {"prompt": "A fox in snow", "wait_seconds": 0})
        task_id = TaskResult.model_validate(submitted.structured_content).task_id
        first = await client.call_tool(STATUS_TOOL, {"task_ids": [task_id, "no-such-task"]})
        view = TaskStatusView.model_validate(first.structured_content)
        assert [t.task_id for t in view.tasks] == [task_id] and view.not_found == ["no-such-task"]
        assert not view.tasks[0].status.finished
        assert view.next_check_seconds is not None and view.next_check_seconds >= schedule.min_interval
        assert task_id in text_of(first)
        # A view that asks again at once is answered from memory: the politeness floor holds.
        reads = sim.count("/luma/tasks")
        await client.call_tool(STATUS_TOOL, {"task_ids": [task_id]})
        assert sim.count("/luma/tasks") == reads
        # Finished: nothing more to ask, and later answers come from the ledger, not upstream.
        for _ in range(50):
            done = TaskStatusView.model_validate(
                (await client.call_tool(STATUS_TOOL, {"task_ids": [task_id]})).structured_content
            )
            if done.tasks[0].status.finished:
                break
            await anyio.sleep(done.next_check_seconds or 0.1)
        assert done.tasks[0].status == "succeeded" and done.tasks[0].video_url and done.next_check_seconds is None
        reads = sim.count("/luma/tasks")
        await anyio.sleep(schedule.min_interval)
        await client.call_tool(STATUS_TOOL, {"task_ids": [task_id]})
        assert sim.count("/luma/tasks") == reads


async def test_status_tool_refuses_bad_input_with_a_message(apps_client: Client) -> None:
    bad: list[dict[str, Any]] = [{"task_ids": []}, {"task_ids": ["x"] * (MAX_BATCH + 1)}, {}]
    for args in bad:
        result = await apps_client.call_tool(STATUS_TOOL, args)
        assert result.is_error and "task_ids" in text_of(result), text_of(result)


def test_the_shipped_ext_apps_client_is_the_one_make_ext_apps_fetched() -> None:
    pinned = re.search(r"^EXT_APPS_VERSION\s*\?=\s*(\S+)", (ROOT / "Makefile").read_text(), re.M)
    assert pinned is not None and (EXT_APPS / "VERSION").read_text().strip() == pinned.group(1)
    recorded = (EXT_APPS / "SHA256SUMS").read_text().split()
    assert recorded[1] == "app-with-deps.js"
    assert hashlib.sha256((EXT_APPS / "app-with-deps.js").read_bytes()).hexdigest() == recorded[0]
    assert "Apache" in (EXT_APPS / "LICENSE").read_text() and "MIT" in (EXT_APPS / "LICENSE").read_text()
