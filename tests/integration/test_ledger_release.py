"""A ledger written by release 0.1.0 reads with today's code: old rows are never stranded.

`fixtures/ledger-0.1.0.sqlite3` was written through the ledger API of luma-mcp 0.1.0
(commit 673b2ba, schema 1): as the operator, a succeeded task, a failed one (with an
idempotency key), a pending extend, a refused submit, a lost one (with a key) and one left
`sending` by a kill; and one row of a passthrough tenant.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from mcp import Client

from luma_mcp.api.models import SubmitState, TaskStatus
from luma_mcp.core.ledger import Ledger, StoredResult, open_ledger
from luma_mcp.core.results import TaskError, TaskList, TaskResult
from luma_mcp.server import create_server
from luma_mcp.simulator.app import SimulatorServer

from ..helpers.common import FAST_SCHEDULE, make_settings, raw_sql

pytestmark = pytest.mark.anyio

FIXTURE = Path(__file__).parents[1] / "fixtures" / "ledger-0.1.0.sqlite3"


SUCCEEDED_0_1_0 = TaskResult(
    task_id="task-succeeded",
    status=TaskStatus.SUCCEEDED,
    video_url="https://cdn.example/v.mp4",
    video_id="vid-1",
    thumbnail_url="https://cdn.example/t.jpg",
    width=1360,
    height=752,
    prompt="a fox in snow",
    elapsed_seconds=154.0,
)
FAILED_0_1_0 = TaskResult(
    task_id="task-failed",
    status=TaskStatus.FAILED,
    prompt="sim:fail",
    elapsed_seconds=30.0,
    error=TaskError(code="generation_failed", message="The generation failed.", trace_id="tr-1"),
)


@pytest.fixture
def old_ledger(tmp_path: Path) -> Path:
    path = tmp_path / "old.sqlite3"
    shutil.copyfile(FIXTURE, path)  # the fixture itself is never written
    return path


async def test_every_row_of_an_old_ledger_reads(old_ledger: Path, sim_server: SimulatorServer) -> None:
    ledger = open_ledger(make_settings(sim_server.url, LUMA_LEDGER_PATH=str(old_ledger)))
    try:
        own = ledger.for_tenant("")
        entries, _ = await own.recent(limit=100)
        by_prompt = {e.prompt: e for e in entries}
        assert set(by_prompt) == {
            "a fox in snow",
            "sim:fail",
            "then it runs",
            "refused one",
            "lost one",
            "killed while sending",
        }
        # Every stored field of each result reads back (0.1.0 stored `TaskResult` itself).
        done = by_prompt["a fox in snow"]
        assert done.finished and done.result == SUCCEEDED_0_1_0
        failed = by_prompt["sim:fail"]
        assert failed.result == FAILED_0_1_0 and failed.idempotency_key == "key-failed"
        assert by_prompt["then it runs"].result == TaskResult(
            task_id="task-pending", status=TaskStatus.PENDING, elapsed_seconds=0.0
        )
        assert by_prompt["then it runs"].action == "extend" and by_prompt["then it runs"].task_id == "task-pending"
        assert by_prompt["refused one"].state is SubmitState.REFUSED
        assert by_prompt["lost one"].state is SubmitState.LOST
        # Left `sending` by a kill long ago: it cannot still be in flight.
        assert by_prompt["killed while sending"].state is SubmitState.LOST
        assert [e.task_id for e in (await ledger.for_tenant("9" * 64).recent())[0]] == ["task-other-tenant"]
    finally:
        ledger.close()


async def test_old_tasks_are_served_to_the_tools(old_ledger: Path, sim_server: SimulatorServer) -> None:
    settings = make_settings(sim_server.url, LUMA_LEDGER_PATH=str(old_ledger))
    async with Client(create_server(settings, schedule=FAST_SCHEDULE)) as client:
        got = await client.call_tool("get_task", {"task_ids": ["task-succeeded", "task-failed", "task-other-tenant"]})
        listing = TaskList.model_validate(got.structured_content)
        assert [(t.task_id, t.status) for t in listing.tasks] == [
            ("task-succeeded", "succeeded"),
            ("task-failed", "failed"),
        ]
        assert listing.tasks[0].video_url == "https://cdn.example/v.mp4"
        assert listing.not_found == ["task-other-tenant"]  # another tenant's row stays theirs
        page = await client.call_tool("list_tasks", {})
        statuses = [row["status"] for row in page.structured_content["tasks"]]
        assert statuses == ["lost", "lost", "pending", "failed", "succeeded"]  # newest first, refused hidden
    assert sim_server.simulator.count("/luma/videos") == 0


async def test_rows_keep_the_ledgers_own_record_not_the_tool_output(store: str, ledger: Ledger) -> None:
    """A row stores `StoredResult`: the fields 0.1.0 stored, never the advice of the moment
    (`next_call`, `note`), so renaming or adding a field of the tool output strands no row."""
    own = ledger.for_tenant("")
    for result in (SUCCEEDED_0_1_0, FAILED_0_1_0):
        reservation = await own.reserve("generate", {"prompt": result.prompt})
        advised = result.model_copy(update={"next_call": "get_task(...)", "note": "Reused task ..."})
        await own.accept(reservation.entry.row_id, result.task_id, advised)
    await own.record([SUCCEEDED_0_1_0.model_copy(update={"note": "fresh"})])  # finished: never rewritten
    [(text,), _] = raw_sql(store, "SELECT result FROM tasks ORDER BY row_id")
    stored = json.loads(text)
    assert set(stored) == set(StoredResult.model_fields) == STORED_BY_0_1_0
    found = await own.find([SUCCEEDED_0_1_0.task_id, FAILED_0_1_0.task_id])
    assert [found[r.task_id].result for r in (SUCCEEDED_0_1_0, FAILED_0_1_0)] == [SUCCEEDED_0_1_0, FAILED_0_1_0]
    # A row holding a field this version does not know (an older or newer writer's) still reads.
    raw_sql(
        store, "UPDATE tasks SET result = ? WHERE task_id = ?", (json.dumps({**stored, "url": "x"}), "task-succeeded")
    )
    assert (await own.find(["task-succeeded"]))["task-succeeded"].result == SUCCEEDED_0_1_0


STORED_BY_0_1_0 = {
    "task_id",
    "status",
    "video_url",
    "video_id",
    "thumbnail_url",
    "width",
    "height",
    "prompt",
    "elapsed_seconds",
    "error",
}
