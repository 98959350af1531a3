"""Part of `make bench` (skipped by `--quick` and `--skip-http`): a 90-second video over HTTP,
waited on with the provider's callbacks and by polling alone, side by side (and 94- and 98-s
videos, for the other phases of polling): how late each answers after the video finished, and
how often it reads the task upstream.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import anyio
from mcp import Client

from harness import TOKEN, BenchmarkError, Figure, Target, by_key, call, count, fmt, met_cell, simulator
from luma_mcp.simulator.app import Simulator
from model_loop import Scenario, play_model, record_upstream
from ninety_second_video import QUEUE_SECONDS_90S
from servers import free_port, http_env, http_server, mcp_client

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
        env = http_env(sim.url, TOKEN, Path(tmp))
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


def callbacks_section(all_figures: list[Figure], runs: list[CallbackRun]) -> list[str]:
    figures = by_key(all_figures)
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
            for run in runs
        ],
    ]
