"""Part of `make bench`: luma-mcp served over streamable HTTP, under concurrent clients.

One real `luma-mcp --transport http` process on a free loopback port, against the API
simulator (also on loopback). Throughput and latency at several levels of concurrency,
then the server's resident memory while 200 tool calls wait at once. Every loop is bounded
in count and in time; nothing leaves this machine.
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import anyio
import httpx
import httpx2
from anyio.abc import Process
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult

from luma_mcp.simulator.app import Simulator

KEY = "bench-key"
HEALTH_TIMEOUT = 30.0  # seconds for the server to answer /health
STOP_TIMEOUT = 30.0  # its own grace period is 10 s
LEVEL_TIME_LIMIT = 120.0  # seconds of calls per concurrency level at most
WAITING_VIDEO_SECONDS = 600  # far longer than the waits, so every waiting call times out
RSS_SAMPLE_SECONDS = 0.05


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


@dataclass
class Waiting:
    calls: int
    wait_seconds: int
    sessions: int
    rss_before_mb: float = 0.0
    rss_peak_mb: float = 0.0
    max_in_flight: int = 0
    unfinished_answers: int = 0  # answered with a task still running and its next call, as expected
    errors: int = 0
    submits: int = 0
    wall_s: float = 0.0


@dataclass
class HttpReport:
    levels: list[Level]
    waiting: Waiting
    rss_idle_mb: float
    upstream_during_levels: int  # API requests made while the levels ran: 0 when the ledger answers
    exit_code: int | None
    stop_s: float
    stderr_errors: list[str]


# --- the server process ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process: it says whether the server or the clients
    (in this process, on the same cores) are the bottleneck."""
    stat = await anyio.Path(f"/proc/{pid}/stat").read_text()
    # Fields after the command name, which is in parentheses and may itself hold spaces.
    fields = stat.rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


async def rss_mb(pid: int) -> float:
    # VmRSS, not a psutil figure: nothing to install, and it is what the kernel charges the process.
    for line in (await anyio.Path(f"/proc/{pid}/status").read_text()).splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def http_env(sim_url: str, token: str, data_dir: Path) -> dict[str, str]:
    # Drop any LUMA_* the caller's shell has set: the figures are for the defaults.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("LUMA_", "ACEDATACLOUD_"))}
    return {
        **inherited,
        "ACEDATACLOUD_API_TOKEN": token,
        "ACEDATACLOUD_API_BASE_URL": sim_url,
        "LUMA_MCP_API_KEYS": KEY,
        # One key is one tenant: 200 waits and every session's event stream are beyond a tenth of the connections.
        "LUMA_MCP_MAX_REQUESTS_PER_TENANT": "400",
        "LUMA_LOG_LEVEL": "WARNING",
        "LUMA_LEDGER_PATH": str(data_dir / "ledger.sqlite3"),
        "LUMA_DOWNLOAD_DIR": str(data_dir / "downloads"),
    }


@dataclass
class ServerProcess:
    process: Process
    url: str
    log: IO[str]
    final_stderr: str = ""  # what it logged, kept once it has exited (the log file is gone then)

    def stderr(self) -> str:
        self.log.seek(0)
        return self.log.read()


@asynccontextmanager
async def http_server(env: dict[str, str], cwd: Path, port: int | None = None) -> AsyncIterator[ServerProcess]:
    """`luma-mcp --transport http` on a free loopback port (or `port`), healthy; SIGTERM when done."""
    port = port or free_port()
    command = [sys.executable, "-m", "luma_mcp", "--transport", "http", "--host", "127.0.0.1", "--port", str(port)]
    # stderr to a file, never a pipe: a pipe nobody reads fills up and stalls the server.
    with tempfile.TemporaryFile(mode="w+", prefix="luma-bench-http-") as log:
        process = await anyio.open_process(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, env=env, cwd=cwd
        )
        server = ServerProcess(process, f"http://127.0.0.1:{port}", log)
        try:
            await wait_healthy(server)
            yield server
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
            with anyio.fail_after(STOP_TIMEOUT):
                await process.wait()
            server.final_stderr = server.stderr()


async def wait_healthy(server: ServerProcess) -> None:
    deadline = time.monotonic() + HEALTH_TIMEOUT
    async with httpx.AsyncClient(timeout=1) as http:
        while time.monotonic() < deadline:
            if server.process.returncode is not None:
                raise RuntimeError(f"the HTTP server exited: {server.stderr()[-2000:]}")
            try:
                if (await http.get(f"{server.url}/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass  # not listening yet
            await anyio.sleep(0.1)
    raise RuntimeError("the HTTP server did not become healthy")


@asynccontextmanager
async def mcp_client(url: str) -> AsyncIterator[Client]:
    """One MCP session over streamable HTTP, with the access key."""
    # Closed here: the SDK leaves an http_client it was given open, and 50 sessions a level
    # would otherwise leave their connection pools behind.
    headers = {"Authorization": f"Bearer {KEY}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=60) as http,
        Client(streamable_http_client(f"{url}/mcp", http_client=http)) as client,
    ):
        yield client


# --- throughput and latency -----------------------------------------------------------


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


# --- memory while calls wait ----------------------------------------------------------


async def run_waiting(url: str, pid: int, waiting: Waiting, prompt: str) -> None:
    """`waiting.calls` generate_video calls at once, each waiting `wait_seconds` on a video that
    takes far longer; the server's resident memory sampled throughout."""
    per_session = waiting.calls // waiting.sessions
    in_flight = 0
    waiting.rss_before_mb = await rss_mb(pid)
    samples = [waiting.rss_before_mb]

    async def one_call(client: Client, n: int) -> None:
        nonlocal in_flight
        in_flight += 1
        waiting.max_in_flight = max(waiting.max_in_flight, in_flight)
        # A distinct prompt each: an identical one would be answered with the earlier task (paying once).
        arguments = {"prompt": f"{prompt} (take {n})", "wait_seconds": waiting.wait_seconds}
        result = await client.call_tool("generate_video", arguments)
        in_flight -= 1
        record_waiting_answer(waiting, result)

    async def session(first: int) -> None:
        async with mcp_client(url) as client, anyio.create_task_group() as tg:
            for n in range(first, first + per_session):
                tg.start_soon(one_call, client, n)

    start = time.perf_counter()
    all_answered = anyio.Event()
    with anyio.fail_after(waiting.wait_seconds + 120):
        async with anyio.create_task_group() as outer:
            outer.start_soon(sample_rss, pid, samples, all_answered)
            async with anyio.create_task_group() as tg:
                for first in range(0, waiting.calls, per_session):
                    tg.start_soon(session, first)
            all_answered.set()
    waiting.wall_s = time.perf_counter() - start
    waiting.rss_peak_mb = max(samples)


def record_waiting_answer(waiting: Waiting, result: CallToolResult) -> None:
    status = (result.structured_content or {}).get("status")
    if result.is_error:
        waiting.errors += 1
    elif status in ("pending", "processing"):
        waiting.unfinished_answers += 1


async def sample_rss(pid: int, samples: list[float], done: anyio.Event) -> None:
    # Sampled on a timer, not only when calls return: the peak is while they are all waiting.
    while not done.is_set():
        samples.append(await rss_mb(pid))
        await anyio.sleep(RSS_SAMPLE_SECONDS)


# --- all of it ------------------------------------------------------------------------


async def measure_http(
    sim: Simulator,
    sim_url: str,
    *,
    token: str,
    prompt: str,
    concurrency: Sequence[int],
    calls_per_level: int,
    waiting_calls: int,
    waiting_sessions: int,
    say: Callable[[str], None],
) -> HttpReport:
    sim.queue_seconds = sim.processing_seconds = 0
    with tempfile.TemporaryDirectory(prefix="luma-bench-http-") as tmp:
        data_dir = Path(tmp)
        async with http_server(http_env(sim_url, token, data_dir), cwd=data_dir) as server:
            rss_idle = await rss_mb(server.process.pid)
            task_id = await finished_task(server.url, prompt)
            levels, upstream = await measure_levels(
                server.url, server.process.pid, sim, task_id, concurrency, calls_per_level, say
            )
            say(f"HTTP memory: {waiting_calls} calls waiting at once ...")
            waiting = Waiting(calls=waiting_calls, wait_seconds=10, sessions=waiting_sessions)
            sim.processing_seconds = WAITING_VIDEO_SECONDS
            submits_before = sim.count("/luma/videos")
            await run_waiting(server.url, server.process.pid, waiting, prompt)
            waiting.submits = sim.count("/luma/videos") - submits_before
            stop_started = time.perf_counter()
        stop_s = time.perf_counter() - stop_started
        return HttpReport(
            levels=levels,
            waiting=waiting,
            rss_idle_mb=rss_idle,
            upstream_during_levels=upstream,
            exit_code=server.process.returncode,
            stop_s=stop_s,
            stderr_errors=error_lines(server.final_stderr),
        )


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


def error_lines(stderr: str) -> list[str]:
    # At WARNING the server logs only what went wrong: any ERROR or traceback is a finding.
    return [line for line in stderr.splitlines() if " ERROR " in line or line.startswith("Traceback")][:20]
