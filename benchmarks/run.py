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

Results go to benchmarks/results/latest.json and benchmarks/RESULTS.md (report.py), and the
tables to stdout. The exit status is non-zero only if something crashed: a missed target is a
finding to report, not a failure of the benchmark.

This file only parses the arguments and runs the parts in order; each part is a module named for
what it measures, with its figures and its section of RESULTS.md:
  stdio_overhead.py       cold start and get_task latency, against bare_server.py
  tool_sizes.py           tools/list and result sizes
  ninety_second_video.py  the real-time 90-s video (model_loop.py: the model's calls, shared)
  context_economy.py      30-, 90- and 180-s videos on a scaled clock
  callbacks_vs_polling.py the 90-s video over HTTP, both ways
  http_load.py            over HTTP: http_throughput.py, then wait_memory.py, on one server
  oauth_flow.py, fair_share.py, churn.py
and what they share: harness.py (figures, targets, formatting, the simulator, tool results) and
servers.py (starting the servers, over stdio and HTTP; CPU and memory from /proc).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

import churn
from callbacks_vs_polling import callback_figures, callbacks_table, callbacks_vs_polling
from context_economy import SCALE, context_economy, economy_figures, economy_table
from fair_share import fair_share_figures, measure_fair_share
from harness import PROMPT, TOKEN, Target, by_key, http_figure, say, simulator, value_table
from http_load import http_figures, measure_http, write_plot
from http_throughput import HTTP_CALLS_PER_LEVEL, HTTP_CONCURRENCY
from ninety_second_video import ninety_second_generation, scenario_figures
from oauth_flow import measure_oauth, oauth_figures
from report import METHOD, RESULTS_MD, Results, machine, markdown_table, render_markdown, write_outputs
from stdio_overhead import (
    both_sessions,
    measure_cold_start,
    measure_latency,
    overhead_figures,
    submit_instant_task,
    submit_running_tasks,
)
from tool_sizes import measure_apps_sizes, measure_sizes, size_figures
from wait_memory import HTTP_WAITING_CALLS, HTTP_WAITING_SESSIONS


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
    return Results(figures=overhead_figures(cold, latency) + size_figures(sizes), raw=raw)


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
