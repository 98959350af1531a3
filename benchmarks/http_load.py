"""Part of `make bench` (skipped by `--skip-http`): luma-mcp served over streamable HTTP, under
concurrent clients.

One real `luma-mcp --transport http` process on a free loopback port, against the API
simulator (also on loopback). Throughput and latency at several levels of concurrency
(http_throughput.py, plotted to results/latency.png), then the server's resident memory while
200 tool calls wait at once (wait_memory.py), then its stop after SIGTERM. Every loop is bounded
in count and in time; nothing leaves this machine.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness import HERE, Figure, by_key, count, describe, fmt, http_figure, say, value_table
from http_throughput import HTTP_CALLS_PER_LEVEL, LEVEL_TIME_LIMIT, Level, finished_task, level_figures, measure_levels
from latency_plot import LatencyPoint, plot_latency
from luma_mcp.simulator.app import Simulator
from servers import http_env, http_server, rss_mb
from wait_memory import WAITING_VIDEO_SECONDS, Waiting, run_waiting, waiting_figures

LATENCY_PNG = HERE / "results" / "latency.png"


@dataclass
class HttpReport:
    levels: list[Level]
    waiting: Waiting
    rss_idle_mb: float
    upstream_during_levels: int  # API requests made while the levels ran: 0 when the ledger answers
    exit_code: int | None
    stop_s: float
    stderr_errors: list[str]


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


def error_lines(stderr: str) -> list[str]:
    # At WARNING the server logs only what went wrong: any ERROR or traceback is a finding.
    return [line for line in stderr.splitlines() if " ERROR " in line or line.startswith("Traceback")][:20]


def http_figures(report: HttpReport) -> list[Figure]:
    figures = level_figures(report.levels)
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
    ]
    figures += waiting_figures(report.waiting)
    figures += [
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


def http_section(all_figures: list[Figure], http: HttpReport, plot_written: bool, cpus: int) -> list[str]:
    figures = by_key(all_figures)
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
        if plot_written
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
    other = [f for f in all_figures if f.section == "http" and not f.key.startswith("http_c")]
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
