"""Part of `make bench`: the context economy, i.e. what a model spends on 30-, 90- and 180-second
videos, with the default waits and with long ones: tool calls, bytes read, upstream task reads and
submits. In-process (the MCP SDK's in-memory Client on `create_server`), with every duration
scaled down by SCALE.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from mcp import Client

from harness import TOKEN, Figure, Target, by_key, count, fmt, met_cell, say
from luma_mcp.config import Settings
from luma_mcp.core.waiting import PollSchedule
from luma_mcp.server import create_server
from luma_mcp.simulator.app import Simulator, SimulatorServer
from model_loop import Scenario, play_model, record_upstream

# The context economy runs in-process on a clock SCALE times faster: the poll schedule, the
# waits and the video lengths are all divided by it, so the same calls happen in the same
# order, in a fifth of the time.
SCALE = 5
ECONOMY_DURATIONS = (30, 90, 180)  # seconds a video takes, in real time
QUEUE_SECONDS = 2  # of which it is queued
SCALED_SCHEDULE = PollSchedule(first=5 / SCALE, maximum=15 / SCALE, heartbeat=4 / SCALE, min_interval=1 / SCALE)


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


def economy_section(all_figures: list[Figure], runs: list[EconomyRun], real: Scenario | None) -> list[str]:
    """RESULTS.md's section; `real` is the real-time 90-s video, when it ran, to compare with."""
    figures = by_key(all_figures)
    parts = [
        f"## Context economy: 30-, 90- and 180-second videos (time scaled by 1/{SCALE})",
        "",
        ECONOMY_METHOD.format(scale=SCALE, queue=QUEUE_SECONDS),
        "",
        *economy_table(figures, runs),
        "",
        "- **Tool calls**: calls from the request to the result with the video URL "
        "(the issue's target, <= 3, is for a 90-s video).",
        "- **Bytes to the model**: UTF-8 text content plus compact structured JSON of every tool result.",
        "- **Upstream task reads** and **Submits**: /luma/tasks and /luma/videos requests the simulator received.",
        f"- **Wall time x5**: from the generate_video call to the video URL, multiplied back by {SCALE}.",
    ]
    scaled = next((r.scenario for r in runs if r.duration_s == 90 and r.setting.key == "default"), None)
    if real is not None and scaled is not None:
        parts += [
            "",
            f"Real time against scaled, 90-s video, default settings: {len(real.calls)} against {len(scaled.calls)} "
            f"calls, {real.result_bytes} against {scaled.result_bytes} B, {real.task_reads} against "
            f"{scaled.task_reads} task reads, {real.submits} against {scaled.submits} submit(s).",
        ]
    return parts
