"""Part of `make bench`: what luma-mcp costs over a bare MCP server, over stdio.

Cold start (spawn to tools/list answered) and the latency of get_task(task_id) of a running task,
for luma-mcp and for bare_server.py, both real stdio subprocesses against the simulator. Runs
alternate between the two (A, B then B, A) so machine noise hits both alike, and each figure is a
ratio against the bare server measured in the same run.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from mcp import Client, StdioServerParameters

from harness import PROMPT, BenchmarkError, Figure, Target, call, p90, task_of, text_of
from luma_mcp.simulator.app import Simulator
from servers import Side, server_params

# --- cold start -----------------------------------------------------------------------


async def cold_start_once(params: StdioServerParameters) -> float:
    """Seconds from spawn to tools/list answered. Shutdown is not timed."""
    start = time.perf_counter()
    async with Client(params) as client:
        await client.list_tools()
        return time.perf_counter() - start


async def measure_cold_start(sim_url: str, data_dir: Path, runs: int) -> dict[Side, list[float]]:
    params: dict[Side, StdioServerParameters] = {
        side: server_params(side, sim_url, data_dir) for side in ("ours", "bare")
    }
    # One untimed start each first: the OS file cache and bytecode caches then favour neither.
    for side in params:
        await cold_start_once(params[side])
    times: dict[Side, list[float]] = {"ours": [], "bare": []}
    for round_ in range(runs):
        for side in interleaved(round_):
            times[side].append(await cold_start_once(params[side]))
    return times


def interleaved(round_: int) -> tuple[Side, Side]:
    # A, B then B, A: neither side always runs first (right after the other's work).
    return ("ours", "bare") if round_ % 2 == 0 else ("bare", "ours")


# --- get_task latency -----------------------------------------------------------------


@asynccontextmanager
async def both_sessions(sim_url: str, data_dir: Path) -> AsyncIterator[dict[Side, Client]]:
    async with AsyncExitStack() as stack:
        clients: dict[Side, Client] = {}
        for side in ("ours", "bare"):
            clients[side] = await stack.enter_async_context(Client(server_params(side, sim_url, data_dir)))
            await clients[side].list_tools()  # as a host does before calling tools
        yield clients


async def submit_instant_task(ours: Client) -> str:
    # new_take: the same prompt again on purpose; without it the server would answer with the
    # earlier task (paying once) and every "new" task would be one and the same.
    result = await call(ours, "generate_video", {"prompt": PROMPT, "wait_seconds": 0, "new_take": True})
    return str(task_of(result)["task_id"])


async def timed_get_task(client: Client, task_id: str) -> float:
    start = time.perf_counter()
    result = await call(client, "get_task", {"task_id": task_id})
    elapsed = time.perf_counter() - start
    if task_id not in text_of(result):
        raise BenchmarkError(f"get_task answered without the task: {text_of(result)[:200]}")
    return elapsed


async def submit_running_tasks(ours: Client, sim: Simulator, count: int) -> list[str]:
    """Tasks that stay unfinished, so that every timed get_task has to ask upstream: our server
    answers a finished task from its ledger, and a task read under a second ago from memory,
    which would not be the same work as the bare server's single request."""
    sim.processing_seconds = 3600
    try:
        return [await submit_instant_task(ours) for _ in range(count)]
    finally:
        sim.processing_seconds = 0


async def measure_latency(
    clients: dict[Side, Client], task_ids: list[str], *, warmup: int, calls: int, batch: int
) -> dict[Side, list[float]]:
    """Per-call seconds of get_task(task_id), a different running task each call (the same
    sequence of ids for both servers), alternating small batches between the sessions."""
    for side in ("ours", "bare"):
        for task_id in task_ids[:warmup]:
            await timed_get_task(clients[side], task_id)
    timed = task_ids[warmup : warmup + calls]
    times: dict[Side, list[float]] = {"ours": [], "bare": []}
    for round_, first in enumerate(range(0, calls, batch)):
        for side in interleaved(round_):
            for task_id in timed[first : first + batch]:
                times[side].append(await timed_get_task(clients[side], task_id))
    return times


# --- the figures ----------------------------------------------------------------------


def overhead_figures(cold: dict[Side, list[float]], latency: dict[Side, list[float]]) -> list[Figure]:
    ms = {side: [t * 1000 for t in values] for side, values in latency.items()}
    return [
        Figure(
            key="cold_start_s",
            label="Cold start",
            unit="s",
            description=f"spawn to tools/list answered, median of {len(cold['ours'])} runs each",
            ours=statistics.median(cold["ours"]),
            bare=statistics.median(cold["bare"]),
            target=Target("<=", 1.15, on="ratio"),
        ),
        Figure(
            key="get_task_median_ms",
            label="get_task latency, median",
            unit="ms",
            description=(
                f"one get_task(task_id) of a running task (so both servers ask upstream) over stdio, "
                f"median of {len(ms['ours'])} calls each (warm sessions)"
            ),
            ours=statistics.median(ms["ours"]),
            bare=statistics.median(ms["bare"]),
            target=Target("<=", 1.3, on="ratio"),
        ),
        Figure(
            key="get_task_p90_ms",
            label="get_task latency, p90",
            unit="ms",
            description="the same calls, 90th percentile",
            ours=p90(ms["ours"]),
            bare=p90(ms["bare"]),
        ),
    ]
