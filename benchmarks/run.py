"""`make bench`: luma-mcp measured over real stdio against a bare MCP server, in one run.

Both servers are real subprocesses talking to the built-in API simulator on a loopback
port, driven by the MCP SDK's `Client`. Timed figures are medians of runs interleaved
between the two servers (order swapped every round), so whatever the machine is doing
hits both alike; each is reported as a ratio against the bare server measured in the same
run, never against an old number. Sizes are what a model reads. A real-time scenario plays
a model through a 90-second generation with the default settings (skipped by `--quick`).

Then the context economy: the same model loop for 30-, 90- and 180-second videos, with the
default waits and with long ones, in-process with every duration scaled down by `SCALE`.
Over HTTP (skipped by `--quick` and `--skip-http`), the same 90-second video waited on with
the provider's callbacks and by polling alone, side by side.
Last (skipped by `--skip-http`), the server over streamable HTTP: throughput and latency
at several concurrencies (plotted to results/latency.png, see http_load.py) and memory
while 200 calls wait at once; OAuth's cost (oauth_flow.py); another tenant's latency
while one asks for more long waits than there are connections (fair_share.py); then ten
minutes of churn (churn.py: sessions, abandoned waits, sign-ins, callbacks) and the memory
and descriptors it leaves (`--churn-minutes 0` skips it).

Results go to benchmarks/results/latest.json and benchmarks/RESULTS.md, and the tables to
stdout. The exit status is non-zero only if something crashed: a missed target is a
finding to report, not a failure of the benchmark.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

import anyio
from mcp import Client, StdioServerParameters
from mcp.client.extension import advertise
from mcp.types import CallToolResult, TextContent, TextResourceContents

import churn
from fair_share import CONNECTIONS, ROUNDS, WANTED, FairShareReport, measure_fair_share
from http_load import LEVEL_TIME_LIMIT, HttpReport, free_port, http_server, mcp_client, measure_http
from http_load import http_env as http_server_env
from latency_plot import LatencyPoint, plot_latency
from luma_mcp import __version__
from luma_mcp.config import Settings
from luma_mcp.core.waiting import PollSchedule
from luma_mcp.server import create_server
from luma_mcp.server.player import VIEW_URI
from luma_mcp.simulator.app import Simulator, SimulatorServer
from oauth_flow import BATCH, CALLS, CONNECTS, OAuthReport, measure_oauth

HERE = Path(__file__).resolve().parent
RESULTS_JSON = HERE / "results" / "latest.json"
RESULTS_MD = HERE / "RESULTS.md"
LATENCY_PNG = HERE / "results" / "latency.png"
BARE_SERVER = HERE / "bare_server.py"

TOKEN = "bench-token-123456"  # noqa: S105 (the simulator accepts any token)
PROMPT = "A red fox trots through fresh snow at dawn, slow tracking shot, soft golden light"
FINISHED = ("succeeded", "failed")
MAX_MODEL_CALLS = 10  # a runaway guard for the scenarios; the target is 3
MIN_READ_GAP = 1.0  # seconds: no task should be read more often than this
VIDEO_TOOLS = ("generate_video", "extend_video", "get_task")  # the tools the issue-3 size budget covers
# A client that renders MCP Apps views, as it says so in its capabilities.
APPS_HOST = advertise("io.modelcontextprotocol/ui", {"mimeTypes": ["text/html;profile=mcp-app"]})

# The context economy runs in-process on a clock SCALE times faster: the poll schedule, the
# waits and the video lengths are all divided by it, so the same calls happen in the same
# order, in a fifth of the time.
SCALE = 5
ECONOMY_DURATIONS = (30, 90, 180)  # seconds a video takes, in real time
QUEUE_SECONDS = 2  # of which it is queued
SCALED_SCHEDULE = PollSchedule(first=5 / SCALE, maximum=15 / SCALE, heartbeat=4 / SCALE, min_interval=1 / SCALE)

HTTP_CONCURRENCY = (1, 10, 50)
HTTP_CALLS_PER_LEVEL = 600
HTTP_WAITING_CALLS = 200
HTTP_WAITING_SESSIONS = 50

Side = Literal["ours", "bare"]


class BenchmarkError(Exception):
    """Something did not work (as opposed to a target missed)."""


# --- figures --------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    op: Literal["<=", ">="]
    value: float
    on: Literal["ratio", "value"] = "value"

    def met(self, measured: float) -> bool:
        return measured <= self.value if self.op == "<=" else measured >= self.value

    def __str__(self) -> str:
        return f"{'ratio ' if self.on == 'ratio' else ''}{self.op} {self.value:g}"


@dataclass
class Figure:
    key: str
    label: str
    unit: str
    description: str
    ours: float
    bare: float | None = None
    target: Target | None = None
    section: Literal["stdio", "economy", "callbacks", "http"] = "stdio"  # which table of RESULTS.md shows it

    @property
    def ratio(self) -> float | None:
        return self.ours / self.bare if self.bare else None

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        measured = self.ratio if self.target.on == "ratio" else self.ours
        return None if measured is None else self.target.met(measured)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["target"] = str(self.target) if self.target else None
        data.update(ratio=self.ratio, met=self.met)
        return data


def p90(values: Sequence[float]) -> float:
    return statistics.quantiles(values, n=10, method="inclusive")[8]


def by_key(figures: list[Figure]) -> dict[str, Figure]:
    return {f.key: f for f in figures}


def say(text: str) -> None:
    # Progress goes to stderr: stdout carries only the final table.
    print(text, file=sys.stderr, flush=True)


# --- the simulator --------------------------------------------------------------------


def simulator(queue_seconds: float, processing_seconds: float) -> SimulatorServer:
    """A simulator server, not yet started."""
    return SimulatorServer(Simulator(queue_seconds=queue_seconds, processing_seconds=processing_seconds))


# --- servers and calls ----------------------------------------------------------------


def server_env(sim_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    # Drop any LUMA_* the caller's shell has set: the figures are for the defaults. And let the
    # servers write bytecode caches, as an installed package has them: with PYTHONDONTWRITEBYTECODE
    # (set on some machines) every start would compile our modules afresh, but not the SDK's,
    # which pip compiled when it installed them.
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LUMA_", "ACEDATACLOUD_")) and k != "PYTHONDONTWRITEBYTECODE"
    }
    return {
        **inherited,
        "ACEDATACLOUD_API_TOKEN": TOKEN,
        "ACEDATACLOUD_API_BASE_URL": sim_url,
        # A ledger of the benchmark's own: the default one is the user's, where simulated tasks
        # do not belong and whose earlier tasks would answer a repeated prompt (paying once).
        "LUMA_LEDGER_PATH": str(data_dir / "ledger.sqlite3"),
        "LUMA_DOWNLOAD_DIR": str(data_dir / "downloads"),
        **extra,
    }


def server_params(side: Side, sim_url: str, data_dir: Path) -> StdioServerParameters:
    args = ["-m", "luma_mcp"] if side == "ours" else [str(BARE_SERVER)]
    env = server_env(sim_url, data_dir, LUMA_LOG_LEVEL="WARNING")
    # cwd: a directory with no `.env`, so the server's settings are the environment's alone.
    return StdioServerParameters(command=sys.executable, args=args, env=env, cwd=HERE)


def text_of(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


def result_bytes(result: CallToolResult) -> int:
    """What the model reads of a result: its text plus its structured JSON (compact)."""
    structured = result.structured_content
    json_bytes = 0 if structured is None else len(json.dumps(structured, separators=(",", ":")).encode())
    return len(text_of(result).encode()) + json_bytes


def task_of(result: CallToolResult) -> dict[str, Any]:
    """The one task of a generate_video (a TaskResult) or get_task (a TaskList) result."""
    data = result.structured_content or {}
    return dict(data["tasks"][0] if "tasks" in data else data)


def status_of(result: CallToolResult) -> str:
    return str(task_of(result).get("status"))


async def call(client: Client, name: str, arguments: dict[str, Any]) -> CallToolResult:
    result = await client.call_tool(name, arguments)
    if result.is_error:
        raise BenchmarkError(f"{name}({arguments}) failed: {text_of(result)}")
    return result


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


# --- sizes ----------------------------------------------------------------------------


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


# --- the 90-second generation ---------------------------------------------------------


@dataclass
class ModelCall:
    tool: str
    started_s: float  # since the first call
    took_s: float
    status: str
    result_bytes: int


@dataclass
class Scenario:
    calls: list[ModelCall] = field(default_factory=list)
    video_url: str | None = None
    wall_s: float = 0.0
    submits: int = 0
    task_reads: int = 0
    read_gaps_s: list[float] = field(default_factory=list)
    progress_notifications: int = 0

    @property
    def result_bytes(self) -> int:
        return sum(c.result_bytes for c in self.calls)


async def play_model(client: Client, scenario: Scenario) -> None:
    """Do what a model told by the tool texts does: generate, then get_task until finished."""

    async def count_progress(progress: float, total: float | None, message: str | None) -> None:
        scenario.progress_notifications += 1

    start = time.perf_counter()
    tool = "generate_video"
    arguments: dict[str, Any] = {"prompt": PROMPT}  # no wait_seconds: the default applies
    task_id = ""
    while len(scenario.calls) < MAX_MODEL_CALLS:
        called = time.perf_counter()
        result = await client.call_tool(tool, arguments, progress_callback=count_progress)
        if result.is_error:
            raise BenchmarkError(f"{tool} failed: {text_of(result)}")
        status = status_of(result)
        scenario.calls.append(
            ModelCall(tool, called - start, time.perf_counter() - called, status, result_bytes(result))
        )
        task = task_of(result)
        task_id = task_id or str(task["task_id"])
        if status in FINISHED:
            scenario.video_url = task.get("video_url")
            scenario.wall_s = time.perf_counter() - start
            return
        tool, arguments = "get_task", {"task_id": task_id, "wait_seconds": next_wait(result)}
    raise BenchmarkError(f"no finished video after {MAX_MODEL_CALLS} tool calls")


def next_wait(result: CallToolResult) -> int:
    """The wait_seconds of the call the result names next: what a model told by it passes."""
    next_call = str((result.structured_content or {}).get("next_call"))
    found = re.search(r"wait_seconds=(\d+)", next_call)
    if found is None:
        raise BenchmarkError(f"an unfinished result named no next call with a wait: {text_of(result)}")
    return int(found.group(1))


def record_upstream(scenario: Scenario, recorded: Simulator) -> None:
    """What the API saw of the scenario, from the simulator's log."""
    scenario.submits = recorded.count("/luma/videos")
    scenario.task_reads = recorded.count("/luma/tasks")
    reads = sorted(r.at for r in recorded.requests if r.path == "/luma/tasks")
    scenario.read_gaps_s = [b - a for a, b in pairwise(reads)]
    if scenario.video_url is None:
        raise BenchmarkError(f"the generation ended without a video: {scenario.calls[-1]}")


QUEUE_SECONDS_90S = 5  # of the real-time 90-s video, queued; the rest generating


async def ninety_second_generation() -> Scenario:
    scenario = Scenario()
    with tempfile.TemporaryDirectory(prefix="luma-bench-") as tmp, simulator(QUEUE_SECONDS_90S, 85) as sim:
        async with Client(server_params("ours", sim.url, Path(tmp))) as client:
            await client.list_tools()
            await play_model(client, scenario)
        record_upstream(scenario, sim.simulator)
    return scenario


# --- callbacks against polling, over HTTP ----------------------------------------------

CallbackSide = Literal["callbacks", "polling"]
CALLBACK_SIDES: tuple[CallbackSide, ...] = ("callbacks", "polling")
# The figure is for a 90-s video. Where a video ends between two polls decides how late
# polling sees it (with these calls, the polls of the second call fall 0.6 s after the 90-s
# mark: a lucky phase), so two more lengths show the other phases; callbacks do not care.
CALLBACK_VIDEOS = (90, 94, 98)


@dataclass
class CallbackRun:
    side: CallbackSide
    duration_s: int
    scenario: Scenario
    answer_after_finish_s: float  # the caller's final answer, after the simulator's task finished


async def callback_side(side: CallbackSide, duration_s: int) -> CallbackRun:
    """The model loop over HTTP against a server of its own and a simulator of its own (the
    video queued 5 s, then generating): with a public URL (the simulator calls back) or
    without (the server polls)."""
    scenario = Scenario()
    with (
        tempfile.TemporaryDirectory(prefix="luma-bench-callbacks-") as tmp,
        simulator(QUEUE_SECONDS_90S, duration_s - QUEUE_SECONDS_90S) as sim,
    ):
        port = free_port()
        env = http_server_env(sim.url, TOKEN, Path(tmp))
        if side == "callbacks":
            env["LUMA_MCP_PUBLIC_URL"] = f"http://127.0.0.1:{port}"
        async with http_server(env, Path(tmp), port) as server, mcp_client(server.url) as client:
            await warm_up(client, sim.simulator)
            await play_model(client, scenario)
            answered = time.time()  # the simulator stamps finishes_at with the same clock
        record_upstream(scenario, sim.simulator)
        [task] = sim.simulator.tasks.values()
        if side == "callbacks" and not sim.simulator.callbacks:
            raise BenchmarkError("the callbacks side got no callback from the simulator")
    return CallbackRun(side, duration_s, scenario, answered - task.finishes_at)


async def warm_up(client: Client, sim: Simulator) -> None:
    """A one-second video first, on both sides, then forgotten: a server stretches its polls
    only once callbacks are seen to arrive, as they are on a server that has been running."""
    lengths = sim.queue_seconds, sim.processing_seconds
    sim.queue_seconds, sim.processing_seconds = 0.0, 1.0
    try:
        await call(client, "generate_video", {"prompt": "warm-up", "wait_seconds": 20})
    finally:
        sim.queue_seconds, sim.processing_seconds = lengths
    sim.forget()


async def callbacks_vs_polling() -> list[CallbackRun]:
    """Every side and length at once (each on its own simulator and server): they wait far
    more than they compute, so none slows another, and the lot takes 100 s, not 10 minutes."""
    runs: dict[tuple[int, CallbackSide], CallbackRun] = {}

    async def one(side: CallbackSide, duration_s: int) -> None:
        runs[duration_s, side] = await callback_side(side, duration_s)

    async with anyio.create_task_group() as tg:
        for duration_s in CALLBACK_VIDEOS:
            for side in CALLBACK_SIDES:
                tg.start_soon(one, side, duration_s)
    return [runs[d, side] for d in CALLBACK_VIDEOS for side in CALLBACK_SIDES]


# --- context economy, on a scaled clock -----------------------------------------------


@dataclass(frozen=True)
class WaitSetting:
    key: str
    label: str
    wait_seconds: int  # LUMA_WAIT_SECONDS, in real time
    max_wait_seconds: int  # LUMA_MAX_WAIT_SECONDS, in real time


WAIT_SETTINGS = (
    WaitSetting("default", "default (45/50 s)", 45, 50),
    # What a Claude Code user can set: that host lets a tool call run for minutes.
    WaitSetting("long", "long wait (240/300 s)", 240, 300),
)


@dataclass
class EconomyRun:
    duration_s: int  # the video's length in real time
    setting: WaitSetting
    scenario: Scenario


def scaled_settings(sim_url: str, setting: WaitSetting, data_dir: Path) -> Settings:
    return Settings(
        _env_file=None,
        ACEDATACLOUD_API_TOKEN=TOKEN,
        ACEDATACLOUD_API_BASE_URL=sim_url,
        LUMA_WAIT_SECONDS=setting.wait_seconds // SCALE,
        LUMA_MAX_WAIT_SECONDS=setting.max_wait_seconds // SCALE,
        LUMA_LEDGER_PATH=data_dir / "ledger.sqlite3",
        LUMA_DOWNLOAD_DIR=data_dir / "downloads",
        # Explicit, or a LUMA_LEDGER_URL in the caller's shell would put these runs in PostgreSQL.
        LUMA_LEDGER_URL=None,
    )


async def scaled_generation(duration_s: int, setting: WaitSetting) -> EconomyRun:
    """The model loop of the 90-s scenario for one video length and wait setting, in-process
    (no stdio: the clock is scaled, and the figures counted are calls, bytes and requests)."""
    scenario = Scenario()
    recorded = Simulator(queue_seconds=QUEUE_SECONDS / SCALE, processing_seconds=(duration_s - QUEUE_SECONDS) / SCALE)
    with tempfile.TemporaryDirectory(prefix="luma-bench-") as tmp, SimulatorServer(recorded) as sim:
        server = create_server(scaled_settings(sim.url, setting, Path(tmp)), schedule=SCALED_SCHEDULE)
        async with Client(server) as client:
            await play_model(client, scenario)
    record_upstream(scenario, recorded)
    return EconomyRun(duration_s, setting, scenario)


async def context_economy() -> list[EconomyRun]:
    # One after another, not at once: each run's timing then owes nothing to the others.
    runs = []
    for setting in WAIT_SETTINGS:
        for duration_s in ECONOMY_DURATIONS:
            say(f"context economy: {duration_s}-s video, {setting.label}, time / {SCALE} ...")
            runs.append(await scaled_generation(duration_s, setting))
    return runs


# --- the figures ----------------------------------------------------------------------


def fast_figures(
    cold: dict[Side, list[float]], latency: dict[Side, list[float]], sizes: dict[str, int]
) -> list[Figure]:
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


def scenario_figures(s: Scenario) -> list[Figure]:
    figures = [
        Figure(
            key="scenario_tool_calls",
            label="90-s video: tool calls",
            unit="calls",
            description="calls from request to video URL: generate_video, then get_task with the "
            "wait_seconds its next_call names (45) until finished, default settings",
            ours=len(s.calls),
            target=Target("<=", 3),
        ),
        Figure(
            key="scenario_upstream_requests",
            label="90-s video: upstream requests",
            unit="req",
            description=f"requests to the API: {s.submits} submit(s) and {s.task_reads} task reads",
            ours=s.submits + s.task_reads,
        ),
        Figure(
            key="scenario_result_bytes",
            label="90-s video: bytes to the model",
            unit="B",
            description="text plus structured JSON of every tool result the model receives",
            ours=s.result_bytes,
        ),
        Figure(
            key="scenario_wall_s",
            label="90-s video: wall time",
            unit="s",
            description="from the generate_video call to the result with the video URL (the video takes 90 s)",
            ours=s.wall_s,
        ),
    ]
    if s.read_gaps_s:  # always, unless the first call already had the video
        figures.append(
            Figure(
                key="scenario_min_read_gap_s",
                label="90-s video: closest task reads",
                unit="s",
                description="shortest time between two /luma/tasks requests (reads of the same task)",
                ours=min(s.read_gaps_s),
                target=Target(">=", MIN_READ_GAP),
            )
        )
    return figures


def callback_figures(runs: list[CallbackRun]) -> list[Figure]:
    figures = []
    for run in runs:
        s, side = run.scenario, run.side
        what = "with callbacks" if side == "callbacks" else "polling only"
        name = f"{run.duration_s}-s video over HTTP, {what}"
        figures += [
            Figure(
                key=f"callbacks_{run.duration_s}s_{side}_answer_after_finish_s",
                label=f"{name}: answer after the video finished",
                unit="s",
                description="from the simulator's task finishing to the caller receiving the result with the video "
                "URL (same clock)",
                ours=run.answer_after_finish_s,
                target=Target("<=", 1) if side == "callbacks" else None,
                section="callbacks",
            ),
            Figure(
                key=f"callbacks_{run.duration_s}s_{side}_task_reads",
                label=f"{name}: upstream task reads",
                unit="req",
                description="/luma/tasks requests the simulator received for the video",
                ours=s.task_reads,
                section="callbacks",
            ),
            Figure(
                key=f"callbacks_{run.duration_s}s_{side}_tool_calls",
                label=f"{name}: tool calls",
                unit="calls",
                description="calls from request to video URL (generate_video, then get_task as its next_call says)",
                ours=len(s.calls),
                section="callbacks",
            ),
            Figure(
                key=f"callbacks_{run.duration_s}s_{side}_wall_s",
                label=f"{name}: wall time",
                unit="s",
                description="from the generate_video call to the result with the video URL",
                ours=s.wall_s,
                section="callbacks",
            ),
        ]
    return figures


def economy_figures(runs: list[EconomyRun]) -> list[Figure]:
    figures = []
    for run in runs:
        s = run.scenario
        # The target is for a 90-s video; the other lengths have none.
        calls_target = Target("<=", 3) if run.duration_s == 90 else None
        figures += [
            economy_figure(
                run, "tool_calls", "tool calls", "calls", "calls from request to video URL", len(s.calls), calls_target
            ),
            economy_figure(
                run,
                "result_bytes",
                "bytes to the model",
                "B",
                "text plus structured JSON of every tool result",
                s.result_bytes,
            ),
            economy_figure(
                run,
                "task_reads",
                "upstream task reads",
                "req",
                "/luma/tasks requests the simulator received",
                s.task_reads,
            ),
            economy_figure(
                run, "submits", "upstream submits", "req", "/luma/videos requests the simulator received", s.submits
            ),
            economy_figure(
                run,
                "wall_s",
                f"wall time x{SCALE}",
                "s",
                f"generate_video call to the video URL, multiplied back by {SCALE}",
                s.wall_s * SCALE,
            ),
        ]
    return figures


def economy_figure(
    run: EconomyRun, metric: str, what: str, unit: str, description: str, value: float, target: Target | None = None
) -> Figure:
    name = f"{run.duration_s}-s video"
    return Figure(
        key=f"economy_{run.duration_s}s_{run.setting.key}_{metric}",
        label=f"{name}, {run.setting.key} wait: {what}",
        unit=unit,
        description=f"{name}, {run.setting.label}, time scaled by 1/{SCALE}: {description}",
        ours=value,
        target=target,
        section="economy",
    )


def http_figures(report: HttpReport) -> list[Figure]:
    figures = []
    for level in report.levels:
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
    w = report.waiting
    figures += [
        http_figure(
            "http_upstream_during_levels",
            "HTTP: upstream requests during those calls",
            "req",
            "API requests the simulator received while the levels ran (0: all answered locally)",
            report.upstream_during_levels,
        ),
        http_figure(
            "http_rss_idle_mb",
            "HTTP: server memory, idle",
            "MB",
            "VmRSS of the server process once healthy, before any call",
            report.rss_idle_mb,
        ),
        http_figure(
            "http_rss_before_wait_mb",
            "HTTP: server memory, before the waiting calls",
            "MB",
            "VmRSS after the throughput levels, just before the waiting calls",
            w.rss_before_mb,
        ),
        http_figure(
            "http_rss_peak_mb",
            f"HTTP: server memory, peak with {w.calls} calls waiting",
            "MB",
            f"highest VmRSS sampled every 50 ms while {w.calls} generate_video(wait_seconds={w.wait_seconds}) "
            f"calls ({w.sessions} sessions x {w.calls // w.sessions}) waited on videos that take 600 s",
            w.rss_peak_mb,
        ),
        http_figure(
            "http_rss_growth_mb",
            "HTTP: memory growth while waiting",
            "MB",
            "peak minus before, i.e. what the waiting calls cost",
            w.rss_peak_mb - w.rss_before_mb,
        ),
        http_figure(
            "http_waiting_in_flight",
            "HTTP: calls in flight at once, peak",
            "calls",
            "most waiting calls sent and not yet answered at one time",
            w.max_in_flight,
        ),
        http_figure(
            "http_waiting_answers",
            "HTTP: waiting calls answered as unfinished",
            "calls",
            "answered with the task still running and its next call (none refused, none lost)",
            w.unfinished_answers,
        ),
        http_figure(
            "http_waiting_errors",
            "HTTP: waiting calls answered with an error",
            "calls",
            "isError results among the waiting calls",
            w.errors,
        ),
        http_figure(
            "http_waiting_submits",
            "HTTP: upstream submits for the waiting calls",
            "req",
            "/luma/videos requests they made (one each: distinct prompts)",
            w.submits,
        ),
        http_figure(
            "http_waiting_wall_s",
            "HTTP: waiting phase, wall time",
            "s",
            "from the first session opened to the last answer",
            w.wall_s,
        ),
        http_figure(
            "http_stop_s",
            "HTTP: stop after SIGTERM",
            "s",
            f"SIGTERM to process exit (exit status {report.exit_code}: uvicorn shuts down gracefully, then "
            f"re-raises the signal; the server logged {len(report.stderr_errors)} error line(s) in the whole run)",
            report.stop_s,
        ),
    ]
    return figures


def oauth_figures(report: OAuthReport) -> list[Figure]:
    sign_in = (
        "from nothing to a session's first answered list_tasks, for the SDK's OAuthClientProvider: discovery, "
        "registration, the sign-in page opened and posted (two requests standing for the browser), code "
        f"exchange, initialize; median of {CONNECTS}"
    )
    calls = f"{CALLS} list_tasks(limit=5) calls on one session each, in alternating batches of {BATCH}"
    oauth_ms, bearer_ms = (OAuthReport.median_ms(v) for v in (report.call_oauth_s, report.call_bearer_s))
    return [
        http_figure(
            "oauth_connect_ms",
            "OAuth: connect with sign-in",
            "ms",
            sign_in,
            OAuthReport.median_ms(report.connect_oauth_s),
        ),
        http_figure(
            "oauth_bearer_connect_ms",
            "OAuth: connect with a static bearer (baseline)",
            "ms",
            f"the same, with the API token as a static bearer header; median of {CONNECTS}",
            OAuthReport.median_ms(report.connect_bearer_s),
        ),
        http_figure(
            "oauth_call_ms", "OAuth: a call with an OAuth token", "ms", f"{calls}: median, OAuth token", oauth_ms
        ),
        http_figure(
            "oauth_call_ratio",
            "OAuth: per-call time, OAuth token / static bearer",
            "x",
            f"{calls}: the OAuth token's median (a grant lookup and an unseal per request) over the static bearer's "
            f"({bearer_ms:.2f} ms)",
            oauth_ms / bearer_ms,
        ),
    ]


def fair_share_figures(report: FairShareReport) -> list[Figure]:
    what = (
        f"tenant B opens a session, calls list_tasks and probes /health on fresh connections, {ROUNDS} rounds, "
        f"while tenant A asks for {WANTED} long get_task waits of {CONNECTIONS} connections (retrying refusals)"
    )
    return [
        http_figure(
            "fair_b_median_ms", "Fair share: B's round, median", "ms", what, FairShareReport.ms(report.b_busy_s, 50)
        ),
        http_figure("fair_b_p99_ms", "Fair share: B's round, p99", "ms", what, FairShareReport.ms(report.b_busy_s, 99)),
        http_figure(
            "fair_b_idle_median_ms",
            "Fair share: B's round with A idle (baseline)",
            "ms",
            f"the same {ROUNDS} rounds before A starts: median",
            FairShareReport.ms(report.b_idle_s, 50),
        ),
        http_figure("fair_b_failures", "Fair share: B's rounds failed", "calls", what, report.b_failures),
        http_figure(
            "fair_a_held", "Fair share: A's waits held", "calls", f"of the {WANTED} A asked for", report.a_held
        ),
    ]


def http_figure(key: str, label: str, unit: str, description: str, value: float) -> Figure:
    return Figure(key=key, label=label, unit=unit, description=description, ours=value, section="http")


# --- reporting ------------------------------------------------------------------------


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    if unit in ("B", "calls", "req"):
        return f"{value:.0f} {unit}"
    return f"{value:.3g} {unit}".strip() if value < 10 else f"{value:.1f} {unit}".strip()


def count(value: float) -> str:
    return f"{value:.0f}"


def markdown_table(figures: list[Figure]) -> str:
    lines = ["| Figure | Ours | Bare | Ours/bare | Target | Met |", "|---|---:|---:|---:|---|:-:|"]
    for f in figures:
        met = {True: "yes", False: "**no**", None: ""}[f.met]
        ratio = f"{f.ratio:.2f}" if f.ratio is not None else "—"
        lines.append(
            f"| {f.label} | {fmt(f.ours, f.unit)} | {fmt(f.bare, f.unit)} | {ratio} | {f.target or ''} | {met} |"
        )
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "mcp": version("mcp"),
        "luma_mcp": __version__,
    }


METHOD = (
    "Both servers run as real stdio subprocesses of the MCP SDK's Client, against the built-in API "
    "simulator on a loopback port (tasks finish at once, except in the 90-s scenario). Timed figures are "
    "medians; runs alternate between the two servers (A, B then B, A), after one untimed start each and "
    "{warmup} warm-up calls each, so machine noise hits both alike. Ratios are ours / bare, both measured "
    "in this same run. The bare server (benchmarks/bare_server.py) is one MCPServer tool that makes the "
    "same single httpx request as our get_task and returns the raw answer; both log at WARNING."
)


ECONOMY_METHOD = (
    "Each run plays the model in-process (the MCP SDK's in-memory Client on `create_server`, so no stdio): "
    "generate_video without wait_seconds (the default applies), then get_task(task_id, wait_seconds=W) with "
    "the W its result's next_call names, until the task has succeeded. Time is scaled by 1/{scale}: the poll "
    "schedule (first look after 5 s, backing off to 15 s, progress every 4 s, no task read twice within 1 s), "
    "the waits (45/50 s become 9/10 s, 240/300 s become 48/60 s) and the video ({queue} s queued, the rest "
    "generating) are all divided by {scale}. The server so makes the same decisions in the same order, and "
    "the calls, bytes and requests equal the real-time ones up to scheduling jitter (a look that falls "
    "within milliseconds of the video finishing can land on either side of it). Two things do differ: the "
    "numbers the model reads are smaller (elapsed 18 s instead of 90, wait_seconds=9 instead of 45), so a "
    "result has a few bytes fewer than in real time; and the floor of one read per task per second is "
    "exercised here at 1/{scale} s, so it is the real-time 90-s run above that confirms it."
)

CALLBACKS_METHOD = (
    "`luma-mcp --transport http` processes, all at once, each with its own simulator (the video queued 5 s, "
    "then generating) and its own SQLite ledger, default settings, WARNING logs. Those marked callbacks have "
    "LUMA_MCP_PUBLIC_URL set to their own loopback address, so their submits carry a callback URL and the "
    "simulator POSTs the finished video there; the others have none and poll (5 s, backing off to 15 s). "
    "An MCP client over streamable HTTP plays the model as in the 90-s run above: generate_video with the "
    "default wait (45 s), then get_task with the wait its next_call names, until the video is there. The "
    "answer time is the client's clock at the final result minus the simulator's finishes_at (one host, "
    "one clock). Each server first makes a one-second video, then forgets it (as a server that has been "
    "running: polls are stretched only once callbacks are seen to arrive). With callbacks a wait's looks on "
    "schedule read the ledger, the task upstream only every 60 s as a safety net and at each call's last "
    "look, and the callback wakes it; the reads counted are every /luma/tasks request the simulator "
    "received after the warm-up. The 90-s video is the issue's figure. How late polling sees a video depends "
    "on where its end falls between two polls (up to 15 s apart): with these calls the 90-s end falls just "
    "before one, a lucky phase, so the 94- and 98-s videos show the others."
)

HTTP_METHOD = (
    "One `luma-mcp --transport http` process on a free loopback port (access key, WARNING logs, ledger in a "
    "temporary directory), against the simulator with tasks that finish at once. The clients are MCP SDK "
    "sessions in the benchmark's own process, on the same {cpus} cores as the server, so at high concurrency "
    "part of each latency is the clients' own work. Per level, every session is opened and makes one untimed "
    "call first; then {calls} calls in all, shared evenly, alternate get_task(task_id) of one finished task "
    "(answered from the ledger) and list_tasks(limit=5), each session one call at a time, bounded by {limit:.0f} "
    "s. Memory: the server's VmRSS from /proc, sampled every 50 ms while {waiting} generate_video calls "
    "({sessions} sessions x {per} at once) each wait {wait} s on videos that take 600 s."
)


def render_markdown(report: dict[str, Any], results: Results) -> str:
    m = report["machine"]
    stdio = [f for f in results.figures if f.section == "stdio"]
    parts = [
        "# luma-mcp benchmarks",
        "",
        f"Run {report['date']} on {m['cpu_count']} CPUs, {m['platform']}, Python {m['python']}, "
        f"mcp {m['mcp']}, luma-mcp {m['luma_mcp']}. Written by `make bench` (benchmarks/run.py); "
        "raw numbers in benchmarks/results/latest.json.",
        "",
        markdown_table(stdio),
        "",
        "## Method",
        "",
        report["method"],
        "",
        "## Figures",
        "",
        *describe(stdio),
    ]
    if results.scenario is None:
        parts += ["", "The 90-second generation was skipped (`--quick`)."]
    else:
        parts += ["", "## The 90-second generation, call by call", "", *scenario_lines(results.scenario)]
    parts += ["", *economy_section(results)]
    if results.callbacks:
        parts += ["", *callbacks_section(results)]
    else:
        parts += ["", "The callbacks-against-polling run was skipped (`--quick` or `--skip-http`)."]
    if results.http is None:
        parts += ["", "The HTTP measurements were skipped (`--skip-http`)."]
    else:
        parts += ["", *http_section(results, results.http, int(m["cpu_count"] or 0))]
    return "\n".join(parts) + "\n"


def describe(figures: list[Figure]) -> list[str]:
    return [f"- **{f.label}**: {f.description}." for f in figures]


def met_cell(figure: Figure) -> str:
    return {True: "yes", False: "**no**", None: ""}[figure.met]


def economy_table(figures: dict[str, Figure], runs: list[EconomyRun]) -> list[str]:
    lines = [
        "| Video | Setting | Tool calls | Bytes to the model | Upstream task reads | Submits | Wall time x5 "
        "| Target (calls) | Met |",
        "|---|---|---:|---:|---:|---:|---:|---|:-:|",
    ]
    for run in runs:
        key = f"economy_{run.duration_s}s_{run.setting.key}"
        calls, bytes_, reads, submits, wall = (
            figures[f"{key}_{name}"] for name in ("tool_calls", "result_bytes", "task_reads", "submits", "wall_s")
        )
        lines.append(
            f"| {run.duration_s} s | {run.setting.label} | {count(calls.ours)} | {fmt(bytes_.ours, 'B')} "
            f"| {count(reads.ours)} | {count(submits.ours)} | {fmt(wall.ours, 's')} | {calls.target or ''} "
            f"| {met_cell(calls)} |"
        )
    return lines


def economy_section(results: Results) -> list[str]:
    figures = by_key(results.figures)
    parts = [
        f"## Context economy: 30-, 90- and 180-second videos (time scaled by 1/{SCALE})",
        "",
        ECONOMY_METHOD.format(scale=SCALE, queue=QUEUE_SECONDS),
        "",
        *economy_table(figures, results.economy),
        "",
        "- **Tool calls**: calls from the request to the result with the video URL "
        "(the issue's target, <= 3, is for a 90-s video).",
        "- **Bytes to the model**: UTF-8 text content plus compact structured JSON of every tool result.",
        "- **Upstream task reads** and **Submits**: /luma/tasks and /luma/videos requests the simulator received.",
        f"- **Wall time x5**: from the generate_video call to the video URL, multiplied back by {SCALE}.",
    ]
    real = results.scenario
    scaled = next((r.scenario for r in results.economy if r.duration_s == 90 and r.setting.key == "default"), None)
    if real is not None and scaled is not None:
        parts += [
            "",
            f"Real time against scaled, 90-s video, default settings: {len(real.calls)} against {len(scaled.calls)} "
            f"calls, {real.result_bytes} against {scaled.result_bytes} B, {real.task_reads} against "
            f"{scaled.task_reads} task reads, {real.submits} against {scaled.submits} submit(s).",
        ]
    return parts


def callbacks_table(figures: dict[str, Figure]) -> list[str]:
    lines = [
        "| Video | Answer after it finished: callbacks | polling | Task reads: callbacks | polling "
        "| Tool calls: callbacks | polling | Target (callbacks' answer) | Met |",
        "|---|---:|---:|---:|---:|---:|---:|---|:-:|",
    ]
    for duration_s in CALLBACK_VIDEOS:
        key = f"callbacks_{duration_s}s"
        if f"{key}_callbacks_task_reads" not in figures:
            continue
        answer, polled = (
            figures[f"{key}_callbacks_answer_after_finish_s"],
            figures[f"{key}_polling_answer_after_finish_s"],
        )
        reads = [figures[f"{key}_{side}_task_reads"].ours for side in CALLBACK_SIDES]
        calls = [figures[f"{key}_{side}_tool_calls"].ours for side in CALLBACK_SIDES]
        lines.append(
            f"| {duration_s} s | {fmt(answer.ours, 's')} | {fmt(polled.ours, 's')} | {count(reads[0])} "
            f"| {count(reads[1])} | {count(calls[0])} | {count(calls[1])} | {answer.target or ''} "
            f"| {met_cell(answer)} |"
        )
    return lines


def callbacks_section(results: Results) -> list[str]:
    figures = by_key(results.figures)
    return [
        "## A 90-second video over HTTP: callbacks against polling",
        "",
        CALLBACKS_METHOD,
        "",
        *callbacks_table(figures),
        "",
        *[
            f"- **{run.duration_s} s, {run.side}**: "
            + ", ".join(
                f"at {c.started_s:.1f} s `{c.tool}` took {c.took_s:.1f} s ({c.status})" for c in run.scenario.calls
            )
            + "."
            for run in results.callbacks
        ],
    ]


def http_section(results: Results, http: HttpReport, cpus: int) -> list[str]:
    figures = by_key(results.figures)
    w = http.waiting
    method = HTTP_METHOD.format(
        cpus=cpus,
        calls=HTTP_CALLS_PER_LEVEL,
        limit=LEVEL_TIME_LIMIT,
        waiting=w.calls,
        sessions=w.sessions,
        per=w.calls // w.sessions,
        wait=w.wait_seconds,
    )
    plot = (
        [f"![p50 and p99 latency against concurrency]({LATENCY_PNG.relative_to(HERE).as_posix()})"]
        if results.plot_written
        else ["(No plot: matplotlib is missing; `make bench` installs it.)"]
    )
    lines = [
        "| Concurrent sessions | Calls | Throughput | p50 | p99 | Errors | Server CPU | Client CPU |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for level in http.levels:
        c = f"http_c{level.clients}"
        lines.append(
            f"| {level.clients} | {len(level.latencies_s)} | {fmt(figures[c + '_calls_per_s'].ours, 'calls/s')} "
            f"| {fmt(figures[c + '_p50_ms'].ours, 'ms')} | {fmt(figures[c + '_p99_ms'].ours, 'ms')} "
            f"| {count(figures[c + '_errors'].ours)} | {fmt(figures[c + '_server_cpu'].ours, 'cores')} "
            f"| {fmt(figures[c + '_client_cpu'].ours, 'cores')} |"
        )
    other = [f for f in results.figures if f.section == "http" and not f.key.startswith("http_c")]
    return [
        "## Over streamable HTTP (`luma-mcp --transport http`)",
        "",
        method,
        "",
        *plot,
        "",
        *lines,
        "",
        "- **Throughput**: calls answered per second of wall time, from all sessions ready to the last answer.",
        "- **p50**, **p99**: time from call to result, client side: median and 99th percentile (plotted above).",
        "- **Errors**: calls answered with isError.",
        "- **Server CPU**, **Client CPU**: CPU seconds (user + system) of the server process, and of the "
        "benchmark's process (its MCP clients), per second of wall time while the calls ran; 1 is one core busy.",
        "",
        value_table(other),
        "",
        *describe(other),
    ]


def value_table(figures: list[Figure]) -> str:
    lines = ["| Figure | Value | Target | Met |", "|---|---:|---|:-:|"]
    lines += [f"| {f.label} | {fmt(f.ours, f.unit)} | {f.target or ''} | {met_cell(f)} |" for f in figures]
    return "\n".join(lines)


def scenario_lines(s: Scenario) -> list[str]:
    lines = [
        f"{i}. at {c.started_s:5.1f} s `{c.tool}` took {c.took_s:4.1f} s -> {c.status}, {c.result_bytes} B"
        for i, c in enumerate(s.calls, 1)
    ]
    gaps = ", ".join(f"{g:.2f}" for g in s.read_gaps_s)
    return [*lines, "", f"Gaps between task reads (s): {gaps}. Progress notifications: {s.progress_notifications}."]


def write_outputs(report: dict[str, Any], markdown: str) -> None:
    # Written beside and renamed: an interrupted run never leaves half a file.
    RESULTS_JSON.parent.mkdir(parents=True, exist_ok=True)
    for path, text in ((RESULTS_JSON, json.dumps(report, indent=2) + "\n"), (RESULTS_MD, markdown)):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)


def write_plot(http: HttpReport) -> bool:
    """The latency plot, or False when matplotlib (the `bench` extra) is not installed."""
    points = [
        LatencyPoint(level.clients, level.percentile_ms(50), level.percentile_ms(99), level.calls_per_s)
        for level in http.levels
    ]
    subtitle = f"{HTTP_CALLS_PER_LEVEL} calls per level, clients and server on the same {os.cpu_count()} CPUs"
    LATENCY_PNG.parent.mkdir(parents=True, exist_ok=True)
    try:
        plot_latency(points, LATENCY_PNG, subtitle)
    except ImportError as exc:
        say(f"no latency plot: {exc} (pip install -e '.[bench]')")
        return False
    return True


# --- main -----------------------------------------------------------------------------


@dataclass
class Results:
    figures: list[Figure]
    raw: dict[str, Any]
    scenario: Scenario | None = None
    economy: list[EconomyRun] = field(default_factory=list)
    callbacks: list[CallbackRun] = field(default_factory=list)
    http: HttpReport | None = None
    plot_written: bool = False


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark luma-mcp against a bare MCP server.")
    parser.add_argument("--runs", type=int, default=15, help="cold starts per server (default 15)")
    parser.add_argument("--calls", type=int, default=300, help="timed get_task calls per server (default 300)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed get_task calls per server first")
    parser.add_argument("--batch", type=int, default=10, help="calls per turn when alternating servers")
    parser.add_argument("--quick", action="store_true", help="skip the real-time 90-second generation (~100 s)")
    parser.add_argument(
        "--skip-http", action="store_true", help="skip the HTTP part: throughput, memory, OAuth (~60 s)"
    )
    parser.add_argument(
        "--churn-minutes", type=float, default=10, help="minutes of churn over HTTP, after a 1-minute warm-up (0 skips)"
    )
    args = parser.parse_args(argv)
    if args.runs < 1 or args.batch < 1 or args.calls < 2 or args.warmup < 0:
        parser.error("--runs and --batch must be at least 1, --calls at least 2 (for a p90)")
    return args


async def run_stdio(args: argparse.Namespace) -> Results:
    with tempfile.TemporaryDirectory(prefix="luma-bench-") as tmp, simulator(0, 0) as sim:
        data_dir = Path(tmp)
        say(f"cold start: {args.runs} runs per server ...")
        cold = await measure_cold_start(sim.url, data_dir, args.runs)
        async with both_sessions(sim.url, data_dir) as clients:
            running = await submit_running_tasks(clients["ours"], sim.simulator, args.warmup + args.calls)
            say(f"get_task latency: {args.calls} calls per server ...")
            latency = await measure_latency(clients, running, warmup=args.warmup, calls=args.calls, batch=args.batch)
            task_id = await submit_instant_task(clients["ours"])
            say("sizes ...")
            sizes = await measure_sizes(clients["ours"], task_id)
        sizes |= await measure_apps_sizes(sim.url, data_dir)
    raw = {"cold_start_s": cold, "get_task_s": latency, "sizes": sizes}
    return Results(figures=fast_figures(cold, latency, sizes), raw=raw)


async def run_http(results: Results) -> None:
    with simulator(queue_seconds=0, processing_seconds=0) as sim:
        http = await measure_http(
            sim.simulator,
            sim.url,
            token=TOKEN,
            prompt=PROMPT,
            concurrency=HTTP_CONCURRENCY,
            calls_per_level=HTTP_CALLS_PER_LEVEL,
            waiting_calls=HTTP_WAITING_CALLS,
            waiting_sessions=HTTP_WAITING_SESSIONS,
            say=say,
        )
    results.http = http
    results.figures += http_figures(http)
    results.raw["http"] = asdict(http)
    with (
        simulator(queue_seconds=0, processing_seconds=0) as sim,
        tempfile.TemporaryDirectory(prefix="luma-bench-") as tmp,
    ):
        oauth = await measure_oauth(sim.url, TOKEN, Path(tmp), say)
    results.figures += oauth_figures(oauth)
    results.raw["oauth"] = asdict(oauth)
    with (
        simulator(queue_seconds=0, processing_seconds=600) as sim,
        tempfile.TemporaryDirectory(prefix="luma-bench-") as tmp,
    ):
        fair = await measure_fair_share(sim.url, Path(tmp), say)
    results.figures += fair_share_figures(fair)
    results.raw["fair_share"] = asdict(fair)


async def run_churn(results: Results, minutes: float) -> None:
    report = await churn.measure(minutes, say)
    for key, label, unit, description, value, at_most in churn.figures(report):
        figure = http_figure(key, label, unit, description, value)
        figure.target = None if at_most is None else Target("<=", at_most)
        results.figures.append(figure)
    results.raw["churn"] = {
        "warm": asdict(report.warm),
        "end": asdict(report.end),
        "seconds": report.seconds,
        "actions": dict(report.actions),
        "failures": dict(report.failures),
        "samples": [asdict(sample) for sample in report.samples],
    }


async def run(args: argparse.Namespace) -> Results:
    results = await run_stdio(args)
    if not args.quick:
        say("90-second generation with default settings (about 100 s) ...")
        results.scenario = await ninety_second_generation()
        results.figures += scenario_figures(results.scenario)
        results.raw["scenario"] = asdict(results.scenario)
    results.economy = await context_economy()
    results.figures += economy_figures(results.economy)
    results.raw["economy"] = [asdict(r) for r in results.economy]
    if not args.quick and not args.skip_http:
        say("a 90-second video over HTTP, with callbacks and polling only, side by side (about 100 s) ...")
        results.callbacks = await callbacks_vs_polling()
        results.figures += callback_figures(results.callbacks)
        results.raw["callbacks"] = [asdict(r) for r in results.callbacks]
    if not args.skip_http:
        await run_http(results)
    if not args.skip_http and args.churn_minutes > 0:
        await run_churn(results, args.churn_minutes)
    return results


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # Before the SDK's first basicConfig (at INFO) can run: the in-process servers of the
    # economy runs then log at WARNING, as the subprocess servers do (LUMA_LOG_LEVEL).
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    results = anyio.run(run, args)
    if results.http is not None:
        results.plot_written = write_plot(results.http)
    report: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "method": METHOD.format(warmup=args.warmup),
        "settings": {**vars(args), "scale": SCALE, "http_concurrency": HTTP_CONCURRENCY},
        "figures": [f.as_json() for f in results.figures],
        "raw": results.raw,
    }
    markdown = render_markdown(report, results)
    write_outputs(report, markdown)
    print(markdown_table([f for f in results.figures if f.section == "stdio"]))
    print("\n".join(["", *economy_table(by_key(results.figures), results.economy)]))
    if results.callbacks:
        print("\n".join(["", *callbacks_table(by_key(results.figures))]))
    if results.http is not None:
        print("\n" + value_table([f for f in results.figures if f.section == "http"]))
    missed = [f.label for f in results.figures if f.met is False]
    say(f"\n{len(missed)} target(s) missed{': ' + ', '.join(missed) if missed else ''}. Wrote {RESULTS_MD}.")


if __name__ == "__main__":
    main()
