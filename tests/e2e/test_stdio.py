"""The server as hosts run it: a real subprocess speaking MCP over stdio."""

from __future__ import annotations

import subprocess
import sys

import pytest
from mcp import Client, StdioServerParameters

from luma_mcp.core.results import TaskResult
from luma_mcp.simulator.app import SimulatorServer

from ..helpers.common import CANARY_TOKEN, text_of
from ..helpers.stdio import RawStdioServer, server_env

pytestmark = pytest.mark.anyio


def test_no_token_starts_lists_and_explains_on_stderr() -> None:
    server = RawStdioServer(server_env())  # every line it writes to stdout must parse as JSON-RPC
    assert server.initialize()["result"]["serverInfo"]["name"] == "luma-mcp"
    tools = server.call("tools/list", {})["result"]["tools"]
    assert [t["name"] for t in tools] == [
        "generate_video", "extend_video", "get_task", "list_tasks", "download_video"
    ]  # fmt: skip
    call = server.call("tools/call", {"name": "generate_video", "arguments": {"prompt": "a cat"}})["result"]
    assert call["isError"] and "Set ACEDATACLOUD_API_TOKEN" in call["content"][0]["text"]
    wrong = {"name": "generate_video", "arguments": {"prompt": "a cat", "wait_seconds": 99}}
    refused = server.call("tools/call", wrong)["result"]
    assert refused["isError"] and refused["content"][0]["text"] == (
        "generate_video's wait_seconds must be a whole number from 0 to 50, not 99."
    )
    stderr = server.close()
    assert "ACEDATACLOUD_API_TOKEN is not set" in stderr and "WARNING" in stderr


def test_invalid_configuration_exits_with_a_message() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "luma_mcp"],
        input="",
        capture_output=True,
        text=True,
        env=server_env(LUMA_WAIT_SECONDS="90"),
        timeout=30,
        check=False,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert "LUMA_WAIT_SECONDS (90) is above LUMA_MAX_WAIT_SECONDS" in done.stderr


async def test_generate_over_stdio_with_progress(sim_server: SimulatorServer) -> None:
    env = server_env(
        ACEDATACLOUD_API_TOKEN=CANARY_TOKEN,
        ACEDATACLOUD_API_BASE_URL=sim_server.url,
        LUMA_POLL_INITIAL_SECONDS="1",
        LUMA_POLL_MAX_SECONDS="1",
        LUMA_PROGRESS_INTERVAL_SECONDS="0.5",
    )
    messages: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        messages.append(message or "")

    params = StdioServerParameters(command=sys.executable, args=["-m", "luma_mcp"], env=env)
    async with Client(params) as client:
        result = await client.call_tool(
            "generate_video", {"prompt": "a paper boat", "wait_seconds": 10}, progress_callback=on_progress
        )
        task = TaskResult.model_validate(result.structured_content)
        assert task.status == "succeeded" and task.video_url is not None and task.video_url in text_of(result)
        again = await client.call_tool("get_task", {"task_id": task.task_id})
        assert task.video_url is not None and task.video_url in text_of(again)
    assert messages[0] == f"Task {task.task_id}: submitted" and messages[-1] == f"Task {task.task_id}: done"


async def test_simulate_mode_needs_no_token() -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "luma_mcp", "--simulate", "--simulate-seconds", "0.5"],
        env=server_env(LUMA_POLL_INITIAL_SECONDS="1", LUMA_POLL_MAX_SECONDS="1"),
    )
    async with Client(params) as client:
        result = await client.call_tool("generate_video", {"prompt": "a paper boat", "wait_seconds": 10})
    task = TaskResult.model_validate(result.structured_content)
    assert task.status == "succeeded" and task.video_url and task.video_url.startswith("http://127.0.0.1:")
