"""`python -m luma_mcp.simulator.demo`: the whole product end to end, with no token and no network.

Starts the API simulator on a loopback port, launches `luma-mcp` as a real stdio
subprocess pointed at it, and drives it with an MCP client: generate a video (printing
progress as it comes), extend the result, check both with one batch get_task, list them,
and save the second to disk. Exits 0 only if every step worked.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters
from mcp.types import CallToolResult, TextContent

from luma_mcp.simulator.app import Simulator, SimulatorServer

GENERATE_SECONDS = 6.0  # how long the simulator takes per video: long enough to see progress


class DemoFailed(Exception):
    pass


def say(text: str = "") -> None:
    print(text, flush=True)


def text_of(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


def check(result: CallToolResult, step: str) -> dict[str, Any]:
    if result.is_error or result.structured_content is None:
        raise DemoFailed(f"{step} failed: {text_of(result)}")
    return dict(result.structured_content)


async def progress_printer(progress: float, total: float | None, message: str | None) -> None:
    say(f"    … {progress:7.1f} / {total or 0:<6g} {message or ''}")


async def run_demo(simulator_url: str, scratch: Path) -> None:
    env = {
        **os.environ,
        # The demo's tasks and files stay in a scratch folder, out of the real ledger.
        "LUMA_LEDGER_PATH": str(scratch / "ledger.sqlite3"),
        "LUMA_DOWNLOAD_DIR": str(scratch / "videos"),
        "ACEDATACLOUD_API_TOKEN": "demo-token-not-a-secret",
        "ACEDATACLOUD_API_BASE_URL": simulator_url,
        "LUMA_WAIT_SECONDS": "30",
        # A demo video takes seconds, not minutes: look every second, report every second.
        "LUMA_POLL_INITIAL_SECONDS": "1",
        "LUMA_POLL_MAX_SECONDS": "1",
        "LUMA_PROGRESS_INTERVAL_SECONDS": "1",
        "LUMA_LOG_LEVEL": "WARNING",
    }
    params = StdioServerParameters(command=sys.executable, args=["-m", "luma_mcp"], env=env)
    say(f"1. Launching `{sys.executable} -m luma_mcp` over stdio against the simulator at {simulator_url}")
    started = time.monotonic()
    async with Client(params) as client:
        info = client.server_info
        tools = (await client.list_tools()).tools
        say(f"   connected to {info.name if info else '?'} {info.version if info else ''}")
        say(f"   tools: {', '.join(t.name for t in tools)}  ({time.monotonic() - started:.1f} s)")

        say("\n2. generate_video(prompt=..., aspect_ratio='16:9', wait_seconds=30)")
        generated = await client.call_tool(
            "generate_video",
            {
                "prompt": "A red fox trots through fresh snow at dawn, slow tracking shot, soft golden light",
                "aspect_ratio": "16:9",
                "wait_seconds": 30,
            },
            progress_callback=progress_printer,
        )
        first = check(generated, "generate_video")
        say(f"   result text:\n     {text_of(generated).replace(chr(10), chr(10) + '     ')}")
        if first["status"] != "succeeded":
            raise DemoFailed(f"generate_video ended {first['status']}, expected succeeded")

        say(f"\n3. extend_video(video_id='{first['video_id']}', prompt=..., wait_seconds=0)")
        extended = await client.call_tool(
            "extend_video",
            {"video_id": first["video_id"], "prompt": "The fox leaps into a snowdrift", "wait_seconds": 0},
        )
        second = check(extended, "extend_video")
        say(f"   result text:\n     {text_of(extended).replace(chr(10), chr(10) + '     ')}")

        say("\n4. get_task(task_ids=[both], wait_seconds=30)")
        batch = await client.call_tool(
            "get_task",
            {"task_ids": [first["task_id"], second["task_id"]], "wait_seconds": 30},
            progress_callback=progress_printer,
        )
        listing = check(batch, "get_task")
        say(f"   result text:\n     {text_of(batch).replace(chr(10), chr(10) + '     ')}")
        statuses = [task["status"] for task in listing["tasks"]]
        if statuses != ["succeeded", "succeeded"]:
            raise DemoFailed(f"get_task gave {statuses}, expected both succeeded")

        say("\n5. list_tasks()  (what a fresh conversation would find)")
        recent = await client.call_tool("list_tasks", {})
        rows = check(recent, "list_tasks")["tasks"]
        say(f"   result text:\n     {text_of(recent).replace(chr(10), chr(10) + '     ')}")
        if [row.get("task_id") for row in rows] != [second["task_id"], first["task_id"]]:
            raise DemoFailed("list_tasks did not list both videos, newest first")

        say(f"\n6. download_video(task_id='{second['task_id']}', include_thumbnail=True)")
        saved = await client.call_tool(
            "download_video",
            {"task_id": second["task_id"], "include_thumbnail": True},
            progress_callback=progress_printer,
        )
        file = check(saved, "download_video")
        say(f"   result text:\n     {text_of(saved)}")
        on_disk = await anyio.Path(file["path"]).read_bytes()
        if hashlib.sha256(on_disk).hexdigest() != file["sha256"] or on_disk[4:8] != b"ftyp":
            raise DemoFailed("the saved file is not the MP4 the tool described")
    say(f"\nDemo finished in {time.monotonic() - started:.1f} s: two videos made, listed and saved, all over stdio.")


def main() -> None:
    say("luma-mcp demo: the MCP server over stdio, against the built-in Luma API simulator\n")
    with (
        SimulatorServer(Simulator(queue_seconds=1.0, processing_seconds=GENERATE_SECONDS)) as sim,
        tempfile.TemporaryDirectory(prefix="luma-mcp-demo-") as scratch,
    ):
        try:
            anyio.run(run_demo, sim.url, Path(scratch))
        except DemoFailed as exc:
            say(f"\nDEMO FAILED: {exc}")
            raise SystemExit(1) from None
        submits = sim.simulator.count("/luma/videos")
        reads = sim.simulator.count("/luma/tasks")
    say(f"Upstream requests: {submits} submits, {reads} task reads.")


if __name__ == "__main__":
    main()
