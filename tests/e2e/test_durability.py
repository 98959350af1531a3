"""Real server processes sharing one ledger: killed mid-wait, and writing side by side."""

from __future__ import annotations

import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters

from luma_mcp.core.results import TaskList, TaskResult
from luma_mcp.server import create_server
from luma_mcp.simulator.app import SimulatorServer

from ..helpers.common import CANARY_TOKEN, DEFAULT_EXPIRY, FAST_SCHEDULE, make_settings, text_of
from ..helpers.stdio import RawStdioServer, server_env

pytestmark = pytest.mark.anyio


def env_for(sim_server: SimulatorServer) -> dict[str, str]:
    return server_env(
        ACEDATACLOUD_API_TOKEN=CANARY_TOKEN,
        ACEDATACLOUD_API_BASE_URL=sim_server.url,
        LUMA_POLL_INITIAL_SECONDS="1",
        LUMA_POLL_MAX_SECONDS="1",
        LUMA_PROGRESS_INTERVAL_SECONDS="0.5",
    )


def ledger_rows(path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT task_id, state, status FROM tasks ORDER BY row_id").fetchall()


async def test_sigkill_mid_wait_loses_nothing(sim_server: SimulatorServer, private_folders: Path) -> None:
    sim_server.simulator.processing_seconds = 3
    env = env_for(sim_server)
    doomed = RawStdioServer(env)
    doomed.initialize()
    doomed.send(
        "tools/call",
        {
            "name": "generate_video",
            "arguments": {"prompt": "A lighthouse in a storm", "wait_seconds": 30},
            "_meta": {"progressToken": "p1"},
        },
    )
    # The first progress notification comes only after the task id is in the ledger.
    first = doomed.wait_for(lambda m: m.get("method") == "notifications/progress")
    task_id = first["params"]["message"].removeprefix("Task ").removesuffix(": submitted")
    doomed.kill()  # SIGKILL: no cleanup, no goodbye
    assert list(sim_server.simulator.tasks) == [task_id]
    assert ledger_rows(private_folders / "ledger.sqlite3") == [(task_id, "accepted", "pending")]

    params = StdioServerParameters(command=sys.executable, args=["-m", "luma_mcp"], env=env)
    async with Client(params) as client:
        listed = (await client.call_tool("list_tasks", {})).structured_content
        assert listed is not None and [row["task_id"] for row in listed["tasks"]] == [task_id]
        finished = await client.call_tool("get_task", {"task_id": task_id, "wait_seconds": 20})
        task = TaskList.model_validate(finished.structured_content).tasks[0]
        assert task.status == "succeeded" and task.video_url
        again = (await client.call_tool("list_tasks", {"status": "succeeded"})).structured_content
        assert again is not None and again["tasks"][0]["video_url"] == task.video_url
    assert ledger_rows(private_folders / "ledger.sqlite3") == [(task_id, "accepted", "succeeded")]
    assert sim_server.simulator.count("/luma/videos") == 1


async def test_two_processes_share_one_ledger(sim_server: SimulatorServer, private_folders: Path) -> None:
    sim_server.simulator.processing_seconds = 30
    params = StdioServerParameters(command=sys.executable, args=["-m", "luma_mcp"], env=env_for(sim_server))
    made: list[str] = []

    async def assistant(name: str) -> None:
        async with Client(params) as client, anyio.create_task_group() as tg:

            async def submit(args: dict[str, Any]) -> None:
                result = await client.call_tool("generate_video", {"wait_seconds": 0, **args})
                assert not result.is_error, result
                made.append(TaskResult.model_validate(result.structured_content).task_id)

            for i in range(8):
                tg.start_soon(submit, {"prompt": f"{name} clip {i}"})
            # Both assistants retry the same order at the same moment: one video, not two.
            tg.start_soon(submit, {"prompt": "the shared order", "idempotency_key": "order-7"})

    async with anyio.create_task_group() as tg:
        tg.start_soon(assistant, "a")
        tg.start_soon(assistant, "b")

    rows = ledger_rows(private_folders / "ledger.sqlite3")
    assert sim_server.simulator.count("/luma/videos") == 17
    assert len(rows) == 17 and all(state == "accepted" for _, state, _ in rows)
    assert {task_id for task_id, _, _ in rows} == set(made) == set(sim_server.simulator.tasks)


async def test_after_a_kill_mid_submit_retries_are_told_and_a_keyed_new_take_works(
    sim_server: SimulatorServer, private_folders: Path
) -> None:
    sim = sim_server.simulator
    sim.inject("slow", "/luma/videos", delay=2.0)  # the request arrives; the answer would come later
    env = server_env(ACEDATACLOUD_API_TOKEN=CANARY_TOKEN, ACEDATACLOUD_API_BASE_URL=sim_server.url)
    doomed = RawStdioServer(env)
    doomed.initialize()
    args = {"prompt": "A paper boat on a river", "wait_seconds": 0, "idempotency_key": "order-9"}
    doomed.send("tools/call", {"name": "generate_video", "arguments": args})
    deadline = time.monotonic() + 20
    while sim.count("/luma/videos") == 0 and time.monotonic() < deadline:  # noqa: ASYNC110 (another process)
        await anyio.sleep(0.05)
    doomed.kill()  # the request was sent, its answer is never read
    path = private_folders / "ledger.sqlite3"
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT state FROM tasks").fetchall() == [("sending",)]
        # Time passes beyond what any submit can take (the default expiry, and then some).
        db.execute("UPDATE tasks SET created_at = created_at - ?", (DEFAULT_EXPIRY + 1,))

    async with Client(create_server(make_settings(sim_server.url), schedule=FAST_SCHEDULE)) as client:
        for same in (args, {k: v for k, v in args.items() if k != "idempotency_key"}):
            started = time.monotonic()
            again = await client.call_tool("generate_video", same)
            assert time.monotonic() - started < 5  # told at once, not after waiting 35 s
            assert again.is_error and "answer was lost" in text_of(again) and "new_take=true" in text_of(again)
        lost = (await client.call_tool("list_tasks", {"status": "lost"})).structured_content
        assert lost is not None and [row["status"] for row in lost["tasks"]] == ["lost"]
        take = await client.call_tool("generate_video", {**args, "new_take": True})
        assert not take.is_error, text_of(take)
        new_id = TaskResult.model_validate(take.structured_content).task_id
        same_key = await client.call_tool("generate_video", args)
        assert TaskResult.model_validate(same_key.structured_content).task_id == new_id
    assert sim.count("/luma/videos") == 2
