"""The server as hosts run it: a real subprocess speaking MCP over stdio."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from luma_mcp.results import TaskResult
from luma_mcp.simulator import SimulatorServer

from .conftest import CANARY_TOKEN, text_of

pytestmark = pytest.mark.anyio


def server_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACEDATACLOUD_", "LUMA_"))}
    private = {k: os.environ[k] for k in ("LUMA_LEDGER_PATH", "LUMA_DOWNLOAD_DIR")}  # from private_folders
    return {**env, **private, "LUMA_LOG_LEVEL": "INFO", **extra}


def rpc(method: str, params: dict[str, Any] | None = None, id: int | None = None) -> str:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if id is not None:
        message["id"] = id
    if params is not None:
        message["params"] = params
    return json.dumps(message)


def run_raw_session(env: dict[str, str], *calls: tuple[str, dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """Speak JSON-RPC to `python -m luma_mcp` by hand: every stdout line must be protocol."""
    lines = [
        rpc(
            "initialize",
            {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}},
            id=0,
        ),
        rpc("notifications/initialized"),
        *(rpc(method, params, id=i + 1) for i, (method, params) in enumerate(calls)),
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "luma_mcp"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    watchdog = threading.Timer(60, proc.kill)
    watchdog.start()
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("\n".join(lines) + "\n")
        proc.stdin.flush()
        messages: list[dict[str, Any]] = []
        # Keep stdin open until every request is answered, as a host would.
        while sum("id" in m for m in messages) < len(calls) + 1:
            line = proc.stdout.readline()
            if not line:
                break
            messages.append(json.loads(line))  # raises if anything but protocol is on stdout
        rest, stderr = proc.communicate(timeout=30)  # closes stdin: the server exits
    finally:
        watchdog.cancel()
    messages += [json.loads(line) for line in rest.splitlines()]
    assert all(m.get("jsonrpc") == "2.0" for m in messages)
    return messages, stderr


def test_no_token_starts_lists_and_explains_on_stderr() -> None:
    messages, stderr = run_raw_session(
        server_env(),
        ("tools/list", {}),
        ("tools/call", {"name": "generate_video", "arguments": {"prompt": "a cat"}}),
    )
    by_id = {m["id"]: m for m in messages if "id" in m}
    assert by_id[0]["result"]["serverInfo"]["name"] == "luma-mcp"
    assert [t["name"] for t in by_id[1]["result"]["tools"]] == [
        "generate_video", "extend_video", "get_task", "list_tasks", "download_video"
    ]  # fmt: skip
    call = by_id[2]["result"]
    assert call["isError"] and "Set ACEDATACLOUD_API_TOKEN" in call["content"][0]["text"]
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
    progress: list[str] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(message or "")

    params = StdioServerParameters(command=sys.executable, args=["-m", "luma_mcp"], env=env)
    async with Client(params) as client:
        result = await client.call_tool(
            "generate_video", {"prompt": "a paper boat", "wait_seconds": 10}, progress_callback=on_progress
        )
        task = TaskResult.model_validate(result.structured_content)
        assert task.status == "succeeded" and task.video_url in text_of(result)
        again = await client.call_tool("get_task", {"task_id": task.task_id})
        assert task.video_url in text_of(again)
    assert progress[0] == f"Task {task.task_id}: submitted" and progress[-1] == f"Task {task.task_id}: done"


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
