"""VideoService driven directly, without MCP: what the tools do, against the simulator over
loopback and a real SQLite ledger. Submit once, reuse, wait, list and refuse, as the tools
rely on; the MCP layer's own tests are in test_server.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from luma_mcp.api.client import LumaClient
from luma_mcp.api.errors import ServiceError
from luma_mcp.api.models import GenerateRequest, TaskStatus
from luma_mcp.core.callback_urls import CallbackIssuer
from luma_mcp.core.ledger import SQLiteLedger
from luma_mcp.core.results import TaskResult
from luma_mcp.core.service import VideoService
from luma_mcp.simulator.app import Simulator, SimulatorServer

from ..helpers.common import FAST_SCHEDULE, make_settings
from ..helpers.service import no_report, service_for

pytestmark = pytest.mark.anyio

NO_KEY: dict[str, Any] = {"idempotency_key": None, "new_take": False}
LANTERN = GenerateRequest(prompt="A paper lantern rising at night")


@pytest.fixture
async def service(sim_server: SimulatorServer, luma: LumaClient, tmp_path: Path) -> AsyncIterator[VideoService]:
    ledger = SQLiteLedger(tmp_path / "service-ledger.sqlite3")
    yield service_for(make_settings(sim_server.url), ledger, luma)
    ledger.close()


async def test_submit_then_wait_until_it_succeeds(service: VideoService, sim: Simulator) -> None:
    reports: list[str] = []

    async def report(progress: float, total: float | None, message: str | None) -> None:
        reports.append(message or "")

    submitted = await service.submit(LANTERN, report=report, **NO_KEY)
    assert submitted.status is TaskStatus.PENDING and submitted.task_id in sim.tasks
    waited = await service.wait({submitted.task_id: submitted}, 10, report)
    done = waited[submitted.task_id]
    assert done.status is TaskStatus.SUCCEEDED and done.video_url and done.prompt == LANTERN.prompt
    assert reports[0] == f"Task {submitted.task_id}: submitted" and len(reports) > 1
    # Finished: read again from the ledger, without asking the API.
    reads = sim.count("/luma/tasks")
    assert (await service.fetch([submitted.task_id]))[submitted.task_id].status is TaskStatus.SUCCEEDED
    assert sim.count("/luma/tasks") == reads


async def test_a_task_whose_callback_is_due_is_read_upstream_only_as_a_safety_net(
    sim_server: SimulatorServer, luma: LumaClient, tmp_path: Path
) -> None:
    sim = sim_server.simulator
    sim.processing_seconds = 3600  # still running throughout
    ledger = SQLiteLedger(tmp_path / "ledger.sqlite3")
    try:
        service = service_for(make_settings(sim_server.url), ledger, luma)
        plain = await service.submit(GenerateRequest(prompt="no callback"), report=no_report, **NO_KEY)
        service.callbacks = issuer = CallbackIssuer("http://127.0.0.1:9")  # its callbacks would come there
        called_back = await service.submit(LANTERN, report=no_report, **NO_KEY)
        assert ["callback_url" in body for body in sim.submits()] == [False, True]
        await anyio.sleep(FAST_SCHEDULE.min_interval * 2)  # past the ordinary floor between reads
        await service.fetch([called_back.task_id], routine=True)
        assert sim.count("/luma/tasks") == 1  # no callback has arrived yet: polled as without one
        issuer.arrived()  # one has: the provider reaches this server
        await anyio.sleep(FAST_SCHEDULE.min_interval * 2)
        for _ in range(3):
            found = await service.fetch([called_back.task_id], routine=True)
            assert found[called_back.task_id].status is TaskStatus.PROCESSING
            assert found[called_back.task_id].elapsed_seconds is not None
        assert sim.count("/luma/tasks") == 1  # the last read stands until the safety net
        await service.fetch([plain.task_id], routine=True)
        assert sim.count("/luma/tasks") == 2  # no callback due: read on the ordinary schedule
        await service.fetch([called_back.task_id])
        assert sim.count("/luma/tasks") == 3  # not routine (the model asks, a wait's answer): read as usual
        # Its callback recorded (as the route records it): answered from the ledger, with no read.
        done = TaskResult(task_id=called_back.task_id, status=TaskStatus.SUCCEEDED, video_url="https://x/v.mp4")
        await ledger.for_tenant("").record([done])
        assert (await service.fetch([called_back.task_id]))[called_back.task_id] == done
        assert sim.count("/luma/tasks") == 3
    finally:
        ledger.close()


async def test_an_identical_request_reuses_the_task_and_pays_once(service: VideoService, sim: Simulator) -> None:
    first = await service.submit(LANTERN, report=no_report, **NO_KEY)
    again = await service.submit(GenerateRequest(prompt=LANTERN.prompt), report=no_report, **NO_KEY)
    assert again.task_id == first.task_id and again.note and "nothing new was paid" in again.note
    assert sim.count("/luma/videos") == 1
    take = await service.submit(LANTERN, report=no_report, idempotency_key=None, new_take=True)
    assert take.task_id != first.task_id and sim.count("/luma/videos") == 2


async def test_list_with_a_status_filter(service: VideoService, sim: Simulator) -> None:
    finished = await service.submit(LANTERN, report=no_report, **NO_KEY)
    await service.wait({finished.task_id: finished}, 10, no_report)
    sim.queue_seconds = 600  # the next task stays pending
    running = await service.submit(GenerateRequest(prompt="A slow tide"), report=no_report, **NO_KEY)

    def listing(status: str | None) -> Any:
        return service.list(status=status, since=None, until=None, limit=20, cursor=None, refresh=True)

    rows, cursor = await listing("succeeded")
    assert [row.task_id for row in rows] == [finished.task_id] and cursor is None
    rows, _ = await listing("pending")
    assert [row.task_id for row in rows] == [running.task_id]
    rows, _ = await listing(None)
    assert {row.task_id for row in rows} == {finished.task_id, running.task_id}


async def test_a_download_of_an_unfinished_task_is_refused(
    service: VideoService, sim: Simulator, private_folders: Path
) -> None:
    sim.processing_seconds = 600
    pending = await service.submit(LANTERN, report=no_report, **NO_KEY)
    with pytest.raises(ServiceError, match="no video to save yet") as refused:
        await service.download(
            pending.task_id, filename=None, include_thumbnail=True, overwrite=False, report=no_report
        )
    assert "get_task" in str(refused.value)
    assert not any(r.path.startswith("/media/") for r in sim.requests)
    assert not (private_folders / "videos").exists()
    with pytest.raises(ServiceError, match="No task with id no-such-task"):
        await service.download("no-such-task", filename=None, include_thumbnail=True, overwrite=False, report=no_report)
