"""Arbitrary arguments to every tool, through the MCP protocol (Hypothesis).

Every answer is a validation error or a tool error with a message (never the SDK's bare
"Error executing tool"), never a crash or a hang, and the server answers the next normal
call as before.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client

from luma_mcp.server import create_server
from luma_mcp.simulator.app import Simulator, SimulatorServer

from ..helpers.common import FAST_SCHEDULE, make_settings, text_of

TOOLS = {
    "generate_video": ["prompt", "aspect_ratio", "loop", "enhancement", "start_image_url", "end_image_url",
                       "callback_url", "wait_seconds", "idempotency_key", "new_take"],
    "extend_video": ["prompt", "video_id", "video_url", "end_image_url", "wait_seconds", "idempotency_key", "new_take"],
    "get_task": ["task_id", "task_ids", "wait_seconds"],
    "list_tasks": ["status", "since", "until", "limit", "cursor"],
    "download_video": ["task_id", "filename", "include_thumbnail", "overwrite"],
    "view_task_status": ["task_ids"],  # the player view's app-only tool: callable by anyone who knows it
}  # fmt: skip

nasty_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=300),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=31), max_size=20),  # control characters
    st.sampled_from(["", " ", "../../etc/passwd", "http://", "https://127.0.0.1/x", "file:///etc/passwd",
                     "javascript:alert(1)", "16:9", "2:1", "2026-13-45T99:99", "null", "{}", "a" * 10_000]),
)  # fmt: skip
values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    nasty_text,
    st.lists(nasty_text, max_size=60),  # up to 60 task ids: more than the 50 allowed
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


@st.composite
def arguments(draw: st.DrawFn, tool: str) -> dict[str, Any]:
    names = draw(st.lists(st.sampled_from([*TOOLS[tool], "duration", "seed", ""]), unique=True, max_size=6))
    args = {name: draw(values) for name in names}
    if "wait_seconds" in args and isinstance(args["wait_seconds"], int) and args["wait_seconds"] > 2:
        args["wait_seconds"] = 2  # keep each example short; the bounds are tested with 51 and -1 elsewhere
    return args


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[BlockingPortal, Client]]:
    with (
        SimulatorServer(Simulator(queue_seconds=0, processing_seconds=0.2)) as sim,
        start_blocking_portal() as portal,
        tempfile.TemporaryDirectory() as scratch,
    ):
        settings_ = make_settings(
            sim.url, LUMA_LEDGER_PATH=f"{scratch}/ledger.sqlite3", LUMA_DOWNLOAD_DIR=f"{scratch}/videos"
        )
        # One MCP session for every example, held open by a task inside the portal.
        with portal.wrap_async_context_manager(Client(create_server(settings_, schedule=FAST_SCHEDULE))) as client:
            yield portal, client


async def _call_bounded(client: Client, tool: str, args: dict[str, Any]) -> Any:
    with anyio.fail_after(20):  # a hang fails the example
        return await client.call_tool(tool, args)


@pytest.mark.parametrize("tool", list(TOOLS))
def test_any_arguments_get_an_answer(live: tuple[BlockingPortal, Client], tool: str) -> None:
    portal, client = live

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(args=arguments(tool))
    def check(args: dict[str, Any]) -> None:
        result = portal.call(_call_bounded, client, tool, args)
        if result.is_error:
            text = text_of(result)
            assert text.strip() and text.strip() != f"Error executing tool {tool}", (args, text)
            assert "failed inside luma-mcp" not in text, (args, text)  # a crash, reported politely, is still a bug
            assert not any(w in text for w in ("pydantic", "validation error for", "Input should")), (args, text)

    check()
    # And the server still answers a normal call.
    normal = portal.call(_call_bounded, client, "list_tasks", {"limit": 1})
    assert not normal.is_error
