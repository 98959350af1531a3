"""Every tool against every fault the simulator can inject, faults that do not go away.

For each cell: the call ends within its bound; the answer is either right or a tool error
whose text names the cause; every task the API accepted is in the ledger; and no submit
was sent more than once.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from luma_mcp.core.results import TaskResult
from luma_mcp.server import create_server
from luma_mcp.simulator.app import SimulatorServer

from ..helpers.common import FAST_SCHEDULE, make_settings, text_of

pytestmark = pytest.mark.anyio

# fault -> words the error must contain (any of them), when the call fails
FAULTS: dict[str, tuple[str, ...]] = {
    "429": ("rate limiting",),
    "429+retry-after": ("rate limiting",),
    "500": ("HTTP 500",),
    "502": ("HTTP 502",),
    "503": ("HTTP 503",),
    "504": ("timed out",),
    "html": ("not JSON",),
    "empty": ("empty body",),
    "truncated": ("not a JSON object", "not understood"),
    "not_json_object": ("not a JSON object",),
    "drop": ("connection",),
    "slow": ("did not answer in time",),
    "unknown_task": ("No task",),
    "null_response": (),
}
BOUND_SECONDS = 15


@dataclass
class World:
    client: Client
    sim: SimulatorServer
    done: TaskResult
    running: str
    ledger: Path


@pytest.fixture
async def world(sim_server: SimulatorServer, private_folders: Path) -> AsyncIterator[World]:
    settings = make_settings(
        sim_server.url, LUMA_REQUEST_TIMEOUT=0.5, LUMA_RETRY_MAX_SECONDS=3, LUMA_DEDUPE_WINDOW_SECONDS=0
    )
    async with Client(create_server(settings, schedule=FAST_SCHEDULE)) as client:
        made = await client.call_tool("generate_video", {"prompt": "setup: finished", "wait_seconds": 10})
        done = TaskResult.model_validate(made.structured_content)
        sim_server.simulator.processing_seconds = 600
        started = await client.call_tool("generate_video", {"prompt": "setup: running", "wait_seconds": 0})
        running = TaskResult.model_validate(started.structured_content).task_id
        yield World(client, sim_server, done, running, private_folders / "ledger.sqlite3")


def calls(world: World) -> dict[str, tuple[str, dict[str, Any]]]:
    return {
        "generate": ("generate_video", {"prompt": "a matrix cell", "wait_seconds": 1}),
        "extend": ("extend_video", {"video_id": world.done.video_id, "wait_seconds": 1}),
        "get_task": ("get_task", {"task_id": world.running, "wait_seconds": 1}),
        "get_task_batch": ("get_task", {"task_ids": [world.running, world.done.task_id]}),
        "list_tasks": ("list_tasks", {}),
        "download": ("download_video", {"task_id": world.done.task_id}),
    }


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("cell", ["generate", "extend", "get_task", "get_task_batch", "list_tasks", "download"])
async def test_fault_matrix(world: World, cell: str, fault: str) -> None:
    sim = world.sim.simulator
    kind, _, retry_after = fault.partition("+")
    path = "/luma/tasks" if kind in ("unknown_task", "null_response") else None  # record faults: reads only
    sim.inject(kind, path, times=1000, delay=2.0, retry_after=0.05 if retry_after else None)  # type: ignore[arg-type]
    submits_before = sim.count("/luma/videos")
    tool, args = calls(world)[cell]

    started = time.monotonic()
    result = await world.client.call_tool(tool, args)
    elapsed = time.monotonic() - started

    assert elapsed < BOUND_SECONDS, f"{cell} under {fault} took {elapsed:.1f} s"
    text = text_of(result)
    if result.is_error:
        assert text.strip() != f"Error executing tool {tool}", "a bare SDK error"
        assert any(word in text for word in FAULTS[fault]), f"{cell} under {fault}: {text}"
    else:
        assert result.structured_content is not None
    assert sim.count("/luma/videos") - submits_before <= 1, "a submit was sent twice"
    with sqlite3.connect(world.ledger) as db:
        recorded = {row[0] for row in db.execute("SELECT task_id FROM tasks WHERE task_id IS NOT NULL")}
    assert set(sim.tasks) <= recorded, "the API accepted a task the ledger does not have"
