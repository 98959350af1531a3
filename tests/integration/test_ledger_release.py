"""A ledger written by release 0.1.0 reads with today's code: old rows are never stranded.

`fixtures/ledger-0.1.0.sqlite3` was written through the ledger API of luma-mcp 0.1.0
(commit 673b2ba, schema 1): as the operator, a succeeded task, a failed one (with an
idempotency key), a pending extend, a refused submit, a lost one (with a key) and one left
`sending` by a kill; and one row of a passthrough tenant.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from mcp import Client

from luma_mcp.ledger import open_ledger
from luma_mcp.models import SubmitState
from luma_mcp.results import TaskList
from luma_mcp.server import create_server
from luma_mcp.simulator import SimulatorServer

from ..helpers.common import FAST_SCHEDULE, make_settings

pytestmark = pytest.mark.anyio

FIXTURE = Path(__file__).parents[1] / "fixtures" / "ledger-0.1.0.sqlite3"


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
        done = by_prompt["a fox in snow"]
        assert done.finished and done.result is not None and done.result.video_url == "https://cdn.example/v.mp4"
        assert done.result.video_id == "vid-1" and (done.result.width, done.result.height) == (1360, 752)
        failed = by_prompt["sim:fail"]
        assert failed.result is not None and failed.result.error is not None
        assert failed.result.error.code == "generation_failed" and failed.idempotency_key == "key-failed"
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
