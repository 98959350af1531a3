"""The model's side of a generation, shared by the 90-s video, the context economy and callbacks
against polling: generate_video, then get_task with the wait its result names, until finished;
what the model read of each result, and what the API saw (from the simulator's log).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from mcp import Client
from mcp.types import CallToolResult

from harness import PROMPT, BenchmarkError, result_bytes, status_of, task_of, text_of
from luma_mcp.simulator.app import Simulator

FINISHED = ("succeeded", "failed")
MAX_MODEL_CALLS = 10  # a runaway guard for the scenarios; the target is 3


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
