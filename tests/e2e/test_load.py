"""Load over HTTP: many clients at once against one server process, on loopback only.

50 clients make 2,000 calls mixed across the tools, then 200 calls wait at once. Every
call is answered without error, and the server's memory stays bounded. Loops are bounded
in count and in time.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

import anyio
import pytest
from mcp import Client

from luma_mcp.core.results import TaskResult
from luma_mcp.simulator.app import SimulatorServer

from ..helpers.http import KEY, TOKEN_A, HttpServer, client, http_env, rss_mb

pytestmark = pytest.mark.anyio

CLIENTS = int(os.environ.get("LOAD_CLIENTS", 50))
CALLS = int(os.environ.get("LOAD_CALLS", 2000))
WAITING = int(os.environ.get("LOAD_WAITING", 200))
TIME_LIMIT = 300  # seconds for the whole test, a hang fails it


async def test_many_clients_many_calls(sim_server: SimulatorServer) -> None:
    sim = sim_server.simulator
    sim.queue_seconds, sim.processing_seconds = 0, 0
    server = HttpServer(
        http_env(
            sim_server,
            ACEDATACLOUD_API_TOKEN=TOKEN_A,
            LUMA_MCP_API_KEYS=KEY,
            LUMA_HTTP_DOWNLOADS="true",
            # One key is one tenant: its waits and every session's event stream, more than a tenth of the connections.
            LUMA_MCP_MAX_REQUESTS_PER_TENANT="400",
        )
    ).wait_ready()
    answered: list[tuple[str, bool, str]] = []
    rng = random.Random(7)
    try:
        with anyio.fail_after(TIME_LIMIT):
            async with client(server.url, KEY) as setup:
                made = await setup.call_tool("generate_video", {"prompt": "load: finished", "wait_seconds": 10})
                done = TaskResult.model_validate(made.structured_content)
            memory_before = rss_mb(server.proc.pid)

            def plan(worker: int, i: int) -> tuple[str, dict[str, Any]]:
                roll = rng.random()
                if roll < 0.4:
                    return "get_task", {"task_id": done.task_id}
                if roll < 0.6:
                    return "list_tasks", {"limit": 5}
                if roll < 0.8:
                    return "generate_video", {"prompt": f"load {worker}-{i}", "wait_seconds": 0}
                if roll < 0.9:
                    return "get_task", {"task_ids": [done.task_id, "not-a-task"]}
                return "download_video", {"task_id": done.task_id, "filename": f"w{worker}", "overwrite": True}

            async def worker(number: int, calls: int) -> None:
                async with client(server.url, KEY) as c:
                    for i in range(calls):
                        tool, args = plan(number, i)
                        result = await c.call_tool(tool, args)
                        answered.append((tool, result.is_error, str(result.content[:1])))

            started = time.monotonic()
            async with anyio.create_task_group() as tg:
                for number in range(CLIENTS):
                    tg.start_soon(worker, number, CALLS // CLIENTS)
            mixed_seconds = time.monotonic() - started

            # Now 200 calls waiting at once on videos that take longer than the wait.
            sim.processing_seconds = 600
            memory_peak = [rss_mb(server.proc.pid)]

            async def waiter(c: Client, n: int) -> None:
                result = await c.call_tool("generate_video", {"prompt": f"long {n}", "wait_seconds": 5})
                answered.append(("waiting generate", result.is_error, str(result.content[:1])))
                memory_peak.append(rss_mb(server.proc.pid))

            async def waiting_client(start: int) -> None:
                async with client(server.url, KEY) as c, anyio.create_task_group() as tg:
                    for n in range(start, start + WAITING // CLIENTS):
                        tg.start_soon(waiter, c, n)

            async with anyio.create_task_group() as tg:
                for start in range(0, WAITING, WAITING // CLIENTS):
                    tg.start_soon(waiting_client, start)
    finally:
        server.stop()
    errors = [entry for entry in answered if entry[1]]
    assert len(answered) == CALLS + WAITING and not errors, errors[:3]
    generated = sum(tool in ("generate_video", "waiting generate") for tool, _, _ in answered)
    assert sim.count("/luma/videos") == 1 + generated  # every submit sent once: distinct prompts, no retries
    growth = max(memory_peak) - memory_before
    assert growth < 300, f"server memory grew by {growth:.0f} MB (from {memory_before:.0f} MB)"
    print(f"\n{CALLS} mixed calls in {mixed_seconds:.1f} s; memory {memory_before:.0f} -> {max(memory_peak):.0f} MB")
