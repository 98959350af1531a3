"""`make bench`: luma-mcp measured over real stdio against a bare MCP server, in one run.

Both servers are real subprocesses talking to the built-in API simulator on a loopback
port, driven by the MCP SDK's `Client`. Timed figures are medians of runs interleaved
between the two servers (order swapped every round), so whatever the machine is doing
hits both alike; each is reported as a ratio against the bare server measured in the same
run, never against an old number. Sizes are what a model reads. The last scenario plays a
model through a 90-second generation with the default settings.

Results go to benchmarks/results/latest.json and benchmarks/RESULTS.md, and the table to
stdout. The exit status is non-zero only if something crashed: a missed target is a
finding to report, not a failure of the benchmark.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
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
from mcp.types import CallToolResult, TextContent

from luma_mcp.simulator import Simulator, SimulatorServer

HERE = Path(__file__).resolve().parent
RESULTS_JSON = HERE / "results" / "latest.json"
RESULTS_MD = HERE / "RESULTS.md"
BARE_SERVER = HERE / "bare_server.py"

TOKEN = "some-token-123456"  # noqa: S105 (the simulator accepts any token)
PROMPT = "A red fox trots through fresh snow at dawn, slow tracking shot, soft golden light"
FINISHED = ("succeeded", "failed")
MAX_MODEL_CALLS = 10  # a runaway guard for the scenario; the target is 3
MIN_READ_GAP = 1.0  # seconds: no task should be read more often than this

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


def say(text: str) -> None:
    # Progress goes to stderr: stdout carries only the final table.
    print(text, file=sys.stderr, flush=True)


# --- the simulator --------------------------------------------------------------------


def simulator(queue_seconds: float, processing_seconds: float) -> SimulatorServer:
    """A simulator server, not yet started."""
    return SimulatorServer(Simulator(queue_seconds=queue_seconds, processing_seconds=processing_seconds))


# --- servers and calls ----------------------------------------------------------------


def server_env(sim_url: str, **extra: str) -> dict[str, str]:
    # Drop any LUMA_* the caller's shell has set: the figures are for the defaults.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("LUMA_", "ACEDATACLOUD_"))}
    return {
        **inherited,
        "ACEDATACLOUD_API_TOKEN": TOKEN,
        "ACEDATACLOUD_API_BASE_URL": sim_url,
        **extra,
    }


def server_params(side: Side, sim_url: str) -> StdioServerParameters:
    args = ["-m", "luma_mcp"] if side == "ours" else [str(BARE_SERVER)]
    env = server_env(sim_url, LUMA_LOG_LEVEL="WARNING")
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


async def measure_cold_start(sim_url: str, runs: int) -> dict[Side, list[float]]:
    params: dict[Side, StdioServerParameters] = {side: server_params(side, sim_url) for side in ("ours", "bare")}
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
async def both_sessions(sim_url: str) -> AsyncIterator[dict[Side, Client]]:
    async with AsyncExitStack() as stack:
        clients: dict[Side, Client] = {}
        for side in ("ours", "bare"):
            clients[side] = await stack.enter_async_context(Client(server_params(side, sim_url)))
            await clients[side].list_tools()  # as a host does before calling tools
        yield clients


async def submit_instant_task(ours: Client) -> str:
    result = await call(ours, "generate_video", {"prompt": PROMPT, "wait_seconds": 0})
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
    read = await call(ours, "get_task", {"task_id": task_id})
    # The simulator finishes at once, but the server first looks after its default 5 s.
    generated = await call(ours, "generate_video", {"prompt": PROMPT, "wait_seconds": 10})
    for name, result in (("get_task", read), ("generate_video", generated)):
        if status_of(result) != "succeeded":
            raise BenchmarkError(f"{name} did not succeed: {text_of(result)}")
    return {
        "tools_list": len(listing.model_dump_json(by_alias=True, exclude_none=True).encode()),
        "tools_array": len(json.dumps(tools, separators=(",", ":")).encode()),
        "tools_count": len(listing.tools),
        "get_task_text": len(text_of(read).encode()),
        "generate_text": len(text_of(generated).encode()),
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
        tool, arguments = "get_task", {"task_id": task_id, "wait_seconds": 45}
    raise BenchmarkError(f"no finished video after {MAX_MODEL_CALLS} tool calls")


async def ninety_second_generation() -> Scenario:
    scenario = Scenario()
    with simulator(queue_seconds=5, processing_seconds=85) as sim:
        async with Client(server_params("ours", sim.url)) as client:
            await client.list_tools()
            await play_model(client, scenario)
        recorded = sim.simulator
        scenario.submits = recorded.count("/luma/videos")
        scenario.task_reads = recorded.count("/luma/tasks")
        reads = sorted(r.at for r in recorded.requests if r.path == "/luma/tasks")
    scenario.read_gaps_s = [b - a for a, b in pairwise(reads)]
    if scenario.video_url is None:
        raise BenchmarkError(f"the generation ended without a video: {scenario.calls[-1]}")
    return scenario


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
            target=Target("<=", 1.5, on="ratio"),
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
            key="tools_list_bytes",
            label="tools/list result",
            unit="B",
            description=f"the whole tools/list result as JSON ({sizes['tools_count']} tools), read every session",
            ours=sizes["tools_list"],
            target=Target("<=", 5000),
        ),
        Figure(
            key="tools_array_bytes",
            label="tools array",
            unit="B",
            description="just the tools array of that result, compact JSON",
            ours=sizes["tools_array"],
            target=Target("<=", 5000),
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
            description="calls from request to video URL: generate_video, then get_task(wait_seconds=45) "
            "until finished, default settings",
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


# --- reporting ------------------------------------------------------------------------


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    if unit in ("B", "calls", "req"):
        return f"{value:.0f} {unit}"
    return f"{value:.3g} {unit}".strip() if value < 10 else f"{value:.1f} {unit}".strip()


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
        "luma_mcp": version("luma-mcp"),
    }


METHOD = (
    "Both servers run as real stdio subprocesses of the MCP SDK's Client, against the built-in API "
    "simulator on a loopback port (tasks finish at once, except in the 90-s scenario). Timed figures are "
    "medians; runs alternate between the two servers (A, B then B, A), after one untimed start each and "
    "{warmup} warm-up calls each, so machine noise hits both alike. Ratios are ours / bare, both measured "
    "in this same run. The bare server (benchmarks/bare_server.py) is one MCPServer tool that makes the "
    "same single httpx request as our get_task and returns the raw answer; both log at WARNING."
)


def render_markdown(report: dict[str, Any], figures: list[Figure], scenario: Scenario | None) -> str:
    m = report["machine"]
    parts = [
        "# luma-mcp benchmarks",
        "",
        f"Run {report['date']} on {m['cpu_count']} CPUs, {m['platform']}, Python {m['python']}, "
        f"mcp {m['mcp']}, luma-mcp {m['luma_mcp']}. Written by `make bench` (benchmarks/run.py); "
        "raw numbers in benchmarks/results/latest.json.",
        "",
        markdown_table(figures),
        "",
        "## Method",
        "",
        report["method"],
        "",
        "## Figures",
        "",
        *[f"- **{f.label}**: {f.description}." for f in figures],
    ]
    if scenario is None:
        parts += ["", "The 90-second generation was skipped (`--quick`)."]
    else:
        parts += ["", "## The 90-second generation, call by call", "", *scenario_lines(scenario)]
    return "\n".join(parts) + "\n"


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


# --- main -----------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark luma-mcp against a bare MCP server.")
    parser.add_argument("--runs", type=int, default=15, help="cold starts per server (default 15)")
    parser.add_argument("--calls", type=int, default=300, help="timed get_task calls per server (default 300)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed get_task calls per server first")
    parser.add_argument("--batch", type=int, default=10, help="calls per turn when alternating servers")
    parser.add_argument("--quick", action="store_true", help="skip the 90-second generation (~100 s)")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.batch < 1 or args.calls < 2 or args.warmup < 0:
        parser.error("--runs and --batch must be at least 1, --calls at least 2 (for a p90)")
    return args


async def run(args: argparse.Namespace) -> tuple[list[Figure], Scenario | None, dict[str, Any]]:
    raw: dict[str, Any] = {}
    with simulator(queue_seconds=0, processing_seconds=0) as sim:
        say(f"cold start: {args.runs} runs per server ...")
        cold = await measure_cold_start(sim.url, args.runs)
        async with both_sessions(sim.url) as clients:
            running = await submit_running_tasks(clients["ours"], sim.simulator, args.warmup + args.calls)
            say(f"get_task latency: {args.calls} calls per server ...")
            latency = await measure_latency(clients, running, warmup=args.warmup, calls=args.calls, batch=args.batch)
            task_id = await submit_instant_task(clients["ours"])
            say("sizes ...")
            sizes = await measure_sizes(clients["ours"], task_id)
    raw.update(cold_start_s=cold, get_task_s=latency, sizes=sizes)
    figures = fast_figures(cold, latency, sizes)
    scenario: Scenario | None = None
    if not args.quick:
        say("90-second generation with default settings (about 100 s) ...")
        scenario = await ninety_second_generation()
        figures += scenario_figures(scenario)
        raw["scenario"] = asdict(scenario)
    return figures, scenario, raw


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    figures, scenario, raw = anyio.run(run, args)
    report: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "method": METHOD.format(warmup=args.warmup),
        "settings": dict(vars(args)),
        "figures": [f.as_json() for f in figures],
        "raw": raw,
    }
    markdown = render_markdown(report, figures, scenario)
    write_outputs(report, markdown)
    print(markdown_table(figures))
    missed = [f.label for f in figures if f.met is False]
    say(f"\n{len(missed)} target(s) missed{': ' + ', '.join(missed) if missed else ''}. Wrote {RESULTS_MD}.")


if __name__ == "__main__":
    main()
