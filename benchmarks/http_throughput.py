"""Part of `make bench` (skipped by `--skip-http`): throughput and latency of luma-mcp over
streamable HTTP at several levels of concurrency, with the server's and the clients' CPU.

Every session is opened and makes one untimed call first; then the calls, shared evenly,
alternate get_task of one finished task (answered from the ledger) and list_tasks. Each level
is bounded in time. http_load.py runs this on its server process, before the waiting calls.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
from mcp import Client

from harness import Figure, http_figure
from luma_mcp.simulator.app import Simulator
from servers import cpu_seconds, mcp_client

HTTP_CONCURRENCY = (1, 10, 50)
HTTP_CALLS_PER_LEVEL = 600
LEVEL_TIME_LIMIT = 120.0  # seconds of calls per concurrency level at most


@dataclass
class Level:
    clients: int
    planned: int
    latencies_s: list[float] = field(default_factory=list)
    errors: int = 0
    wall_s: float = 0.0
    server_cpu_s: float = 0.0  # the server's user + system CPU time while the calls ran
    client_cpu_s: float = 0.0  # the same of this process: the clients (and an idle simulator thread)

    @property
    def calls_per_s(self) -> float:
        return len(self.latencies_s) / self.wall_s if self.wall_s else 0.0

    def percentile_ms(self, p: int) -> float:
        # Inclusive method: with 600 samples, p99 is an interpolated order statistic, not an extrapolation.
        return statistics.quantiles(self.latencies_s, n=100, method="inclusive")[p - 1] * 1000


async def finished_task(url: str, prompt: str) -> str:
    """A task that has succeeded and that the ledger knows has: later reads never go upstream."""
    async with mcp_client(url) as client:
        made = await client.call_tool("generate_video", {"prompt": prompt, "wait_seconds": 0})
        task_id = str((made.structured_content or {})["task_id"])
        # The simulator finishes at once; this read records the success in the ledger.
        read = await client.call_tool("get_task", {"task_id": task_id})
        status = (read.structured_content or {}).get("tasks", [{}])[0].get("status")
        if read.is_error or status != "succeeded":
            raise RuntimeError(f"the setup task did not succeed: {read.content}")
    return task_id


def alternating_calls(task_id: str) -> Callable[[int], tuple[str, dict[str, Any]]]:
    def plan(i: int) -> tuple[str, dict[str, Any]]:
        return ("get_task", {"task_id": task_id}) if i % 2 == 0 else ("list_tasks", {"limit": 5})

    return plan


async def run_level(url: str, pid: int, level: Level, plan: Callable[[int], tuple[str, dict[str, Any]]]) -> None:
    """`level.clients` sessions, all opened and warmed first, then `level.planned` calls shared
    among them; only the calls are timed (a host opens its session once)."""
    ready, go = 0, anyio.Event()
    all_ready = anyio.Event()
    finished_at: list[float] = []
    cpu: dict[str, float] = {}
    per_client = level.planned // level.clients

    async def client_loop(number: int) -> None:
        nonlocal ready
        async with mcp_client(url) as client:
            await client.call_tool(*plan(number))  # untimed: the first call pays for connecting
            ready += 1
            if ready == level.clients:
                all_ready.set()
            await go.wait()
            deadline = time.perf_counter() + LEVEL_TIME_LIMIT
            for i in range(per_client):
                if time.perf_counter() > deadline:
                    break
                await timed_call(client, plan(number + i), level)
            finished_at.append(time.perf_counter())
            if len(finished_at) == level.clients:  # the last one: read before any session closes
                cpu["after"], cpu["client_after"] = await cpu_seconds(pid), time.process_time()

    with anyio.fail_after(LEVEL_TIME_LIMIT + 60):  # a hang ends the benchmark instead of stalling it
        async with anyio.create_task_group() as tg:
            for number in range(level.clients):
                tg.start_soon(client_loop, number)
            await all_ready.wait()
            cpu["before"], cpu["client_before"] = await cpu_seconds(pid), time.process_time()
            started = time.perf_counter()
            go.set()
    level.wall_s = max(finished_at) - started
    level.server_cpu_s = cpu["after"] - cpu["before"]
    level.client_cpu_s = cpu["client_after"] - cpu["client_before"]


async def timed_call(client: Client, call: tuple[str, dict[str, Any]], level: Level) -> None:
    start = time.perf_counter()
    result = await client.call_tool(*call)
    level.latencies_s.append(time.perf_counter() - start)
    level.errors += int(result.is_error)


async def measure_levels(
    url: str,
    pid: int,
    sim: Simulator,
    task_id: str,
    concurrency: Sequence[int],
    calls_per_level: int,
    say: Callable[[str], None],
) -> tuple[list[Level], int]:
    plan = alternating_calls(task_id)
    requests_before = len(sim.requests)
    levels = []
    for clients in concurrency:
        say(f"HTTP: {clients} concurrent client(s), {calls_per_level} calls ...")
        level = Level(clients=clients, planned=calls_per_level)
        await run_level(url, pid, level, plan)
        levels.append(level)
    return levels, len(sim.requests) - requests_before


def level_figures(levels: list[Level]) -> list[Figure]:
    figures = []
    for level in levels:
        what = (
            f"{level.clients} concurrent session(s) over streamable HTTP, {len(level.latencies_s)} calls "
            "alternating get_task of a finished task (from the ledger) and list_tasks(limit=5)"
        )
        figures += [
            http_figure(
                f"http_c{level.clients}_calls_per_s",
                f"HTTP x{level.clients}: throughput",
                "calls/s",
                f"{what}: calls answered per second of wall time",
                level.calls_per_s,
            ),
            http_figure(
                f"http_c{level.clients}_p50_ms",
                f"HTTP x{level.clients}: latency p50",
                "ms",
                "the same calls: median time from call to result, client side",
                level.percentile_ms(50),
            ),
            http_figure(
                f"http_c{level.clients}_p99_ms",
                f"HTTP x{level.clients}: latency p99",
                "ms",
                "the same calls, 99th percentile",
                level.percentile_ms(99),
            ),
            http_figure(
                f"http_c{level.clients}_errors",
                f"HTTP x{level.clients}: error results",
                "calls",
                "the same calls answered with isError",
                level.errors,
            ),
            http_figure(
                f"http_c{level.clients}_server_cpu",
                f"HTTP x{level.clients}: server CPU",
                "cores",
                "server process CPU seconds (user + system) per second of wall time while they ran",
                level.server_cpu_s / level.wall_s if level.wall_s else 0.0,
            ),
            http_figure(
                f"http_c{level.clients}_client_cpu",
                f"HTTP x{level.clients}: client CPU",
                "cores",
                "the benchmark process's CPU seconds (its MCP clients) per second of wall time while they ran",
                level.client_cpu_s / level.wall_s if level.wall_s else 0.0,
            ),
        ]
    return figures
