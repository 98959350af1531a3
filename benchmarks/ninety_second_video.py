"""Part of `make bench` (skipped by `--quick`): a model through a 90-second generation in real
time, over stdio with the default settings: its tool calls, the bytes it reads, the requests the
API receives and how close together the task is read.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from mcp import Client

from harness import Figure, Target, simulator
from model_loop import Scenario, play_model, record_upstream
from servers import server_params

MIN_READ_GAP = 1.0  # seconds: no task should be read more often than this
QUEUE_SECONDS_90S = 5  # of the real-time 90-s video, queued; the rest generating


async def ninety_second_generation() -> Scenario:
    scenario = Scenario()
    with tempfile.TemporaryDirectory(prefix="luma-bench-") as tmp, simulator(QUEUE_SECONDS_90S, 85) as sim:
        async with Client(server_params("ours", sim.url, Path(tmp))) as client:
            await client.list_tools()
            await play_model(client, scenario)
        record_upstream(scenario, sim.simulator)
    return scenario


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


def scenario_lines(s: Scenario) -> list[str]:
    lines = [
        f"{i}. at {c.started_s:5.1f} s `{c.tool}` took {c.took_s:4.1f} s -> {c.status}, {c.result_bytes} B"
        for i, c in enumerate(s.calls, 1)
    ]
    gaps = ", ".join(f"{g:.2f}" for g in s.read_gaps_s)
    return [*lines, "", f"Gaps between task reads (s): {gaps}. Progress notifications: {s.progress_notifications}."]
