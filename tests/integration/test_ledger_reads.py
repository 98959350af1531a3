"""SQLite reads on the event loop, on a connection of their own: a get_task's read does not
wait behind this process's writes (a write can wait up to 30 s for another process's lock),
and sees every commit at once."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import anyio
import pytest

from luma_mcp.api.models import TaskStatus
from luma_mcp.core.ledger import SQLiteLedger
from luma_mcp.core.results import TaskResult

pytestmark = pytest.mark.anyio


async def test_a_read_does_not_wait_behind_a_write_that_waits_for_another_process(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    ledger = SQLiteLedger(path)
    view = ledger.for_tenant("")
    reserved = await view.reserve("generate", {"prompt": "a fox"})
    await view.accept(reserved.entry.row_id, "task-1", TaskResult(task_id="task-1", status=TaskStatus.PENDING))
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another process is writing, for 1.5 s
    release = threading.Timer(1.5, lambda: other.execute("COMMIT"))
    took: dict[str, float] = {}

    async def write() -> None:
        started = time.monotonic()
        await view.reserve("generate", {"prompt": "a hare"})  # waits for the other process's lock
        took["write"] = time.monotonic() - started

    try:
        release.start()
        with anyio.fail_after(20):
            async with anyio.create_task_group() as group:
                group.start_soon(write)
                await anyio.sleep(0.2)  # the write is waiting now, holding this process's connection
                started = time.monotonic()
                found = await view.find(["task-1"])
                took["read"] = time.monotonic() - started
    finally:
        release.join()
        other.close()
        ledger.close()
    assert found["task-1"].task_id == "task-1"
    assert took["write"] >= 1.0  # the write did wait ...
    assert took["read"] < 0.5, took  # ... the read did not (in a worker thread it waited ~1.3 s)


async def test_a_read_sees_another_process_commit_at_once(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    ours, theirs = SQLiteLedger(path), SQLiteLedger(path)
    try:
        reserved = await ours.for_tenant("").reserve("generate", {"prompt": "a fox"})
        pending = TaskResult(task_id="task-1", status=TaskStatus.PENDING)
        await ours.for_tenant("").accept(reserved.entry.row_id, "task-1", pending)
        assert (await ours.for_tenant("").find(["task-1"]))["task-1"].result == pending  # our reader is open
        done = TaskResult(task_id="task-1", status=TaskStatus.SUCCEEDED, video_url="https://cdn.example/v.mp4")
        await theirs.for_tenant("").record([done])
        entry = (await ours.for_tenant("").find(["task-1"]))["task-1"]
        assert entry.result is not None and entry.result.status is TaskStatus.SUCCEEDED
    finally:
        ours.close()
        theirs.close()
