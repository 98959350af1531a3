"""The MCP Tasks extension (io.modelcontextprotocol/tasks): a client that declares it gets a task
handle at once from generate_video/extend_video and follows it with tasks/get; every other
client sees what it saw before. In memory against the simulator, and over streamable HTTP
against real server processes (two tenants; two processes sharing one ledger)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client, MCPError
from mcp.client.extension import advertise
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, RequestParams, Result

from luma_mcp.core.ledger import SQLiteLedger
from luma_mcp.core.results import TaskResult
from luma_mcp.server import create_server
from luma_mcp.simulator.app import FAIL_MARKER, REFUSE_MARKER, Simulator, SimulatorServer

from ..helpers.common import FAST_SCHEDULE, make_settings, raw_sql, text_of
from ..helpers.http import KEY, TOKEN_A, TOKEN_B, HttpServer, http_env
from ..helpers.tasks_client import (
    TASKS_ID,
    CreatedTask,
    TaskListRequest,
    TaskParams,
    TaskResultRequest,
    TasksClient,
    cancel_task,
    get_task,
    update_task,
)

pytestmark = pytest.mark.anyio

HANDLE_SECONDS = 1.0  # the handle comes after the submit only; the video takes 1.6 s here


@pytest.fixture
def slow_sim(sim: Simulator) -> Simulator:
    """Videos that take long enough (1.6 s) for a handle to come well before them."""
    sim.queue_seconds, sim.processing_seconds = 0.1, 1.5
    return sim


@pytest.fixture
async def tasks(sim_server: SimulatorServer) -> AsyncIterator[tuple[Client, TasksClient]]:
    extension = TasksClient()
    async with Client(
        create_server(make_settings(sim_server.url), schedule=FAST_SCHEDULE), extensions=[extension]
    ) as c:
        yield c, extension


async def submit(client: Client, prompt: str, **arguments: Any) -> Result:
    """generate_video's raw answer: a task handle, or a plain result."""
    return await client.session.call_tool("generate_video", {"prompt": prompt, **arguments}, allow_claimed=True)


async def get_task_tool(client: Client, task_id: str) -> dict[str, Any]:
    """get_task's structured result for one task, as a plain call gives it."""
    listed = await client.call_tool("get_task", {"task_id": task_id})
    assert not listed.is_error, text_of(listed)
    tasks: list[dict[str, Any]] = (listed.structured_content or {})["tasks"]
    return tasks[0]


async def test_a_declaring_client_gets_a_handle_at_once_after_the_row_and_the_submit(
    tasks: tuple[Client, TasksClient], slow_sim: Simulator, private_folders: Path
) -> None:
    client, _ = tasks
    started = time.monotonic()
    created = await submit(client, "A lighthouse at dusk")  # the default wait_seconds (45)
    took = time.monotonic() - started
    assert isinstance(created, CreatedTask), created
    assert took < HANDLE_SECONDS, f"the handle took {took:.2f} s: the call waited for the video"
    # Already there when the handle arrived: the accepted row and the one submit; the video is not done.
    rows = raw_sql(str(private_folders / "ledger.sqlite3"), "SELECT state, task_id FROM tasks")
    assert rows == [("accepted", created.task_id)]
    assert slow_sim.count("/luma/videos") == 1 and created.task_id in slow_sim.tasks
    assert slow_sim.tasks[created.task_id].finishes_at > time.time()
    assert created.status == "working" and created.ttl_ms is None
    assert created.poll_interval_ms == round(FAST_SCHEDULE.first * 1000)
    assert created.task_id in (created.status_message or "")
    assert "may still finish and be charged" in (created.status_message or "")  # said before any cancel
    assert datetime.fromisoformat(created.created_at) <= datetime.fromisoformat(created.last_updated_at)


async def test_tasks_get_goes_from_working_to_the_result_get_task_gives(
    tasks: tuple[Client, TasksClient], slow_sim: Simulator
) -> None:
    client, extension = tasks
    created = await submit(client, "Waves on black sand")
    assert isinstance(created, CreatedTask)
    final = await extension.follow(client.session, created)
    statuses = [task.status for task in extension.seen]
    assert statuses[0] == "working" and statuses[-1] == "completed" and set(statuses) == {"working", "completed"}
    updated = [datetime.fromisoformat(task.last_updated_at) for task in [created, *extension.seen]]
    assert updated == sorted(updated) and updated[-1] > updated[0]  # never back in time; moved with the status
    working = extension.seen[0]
    assert working.result is None and working.poll_interval_ms is not None
    assert working.poll_interval_ms >= FAST_SCHEDULE.min_interval * 1000
    # The final result is the tool's own rendering, identical to what get_task says of the task.
    assert final.structured_content == await get_task_tool(client, created.task_id)
    task = TaskResult.model_validate(final.structured_content)
    assert task.status == "succeeded" and task.video_url and task.video_url in text_of(final)
    assert f'To continue it: extend_video(video_id="{task.video_id}", prompt="...").' in text_of(final)
    assert not final.is_error and [b.type for b in final.content] == ["text", "resource_link", "resource_link"]
    assert extension.seen[-1].status_message and task.video_url in extension.seen[-1].status_message
    # Asked again, a finished task reads from the ledger: same answer, no upstream read.
    reads = slow_sim.count("/luma/tasks")
    again = await get_task(client.session, created.task_id)
    assert again.status == "completed" and again.result == extension.seen[-1].result
    assert slow_sim.count("/luma/tasks") == reads


async def test_call_tool_resolves_the_task_transparently(tasks: tuple[Client, TasksClient]) -> None:
    client, extension = tasks
    result = await client.call_tool("generate_video", {"prompt": "A paper boat in the rain"})
    task = TaskResult.model_validate(result.structured_content)  # and the SDK checked it against outputSchema
    assert task.status == "succeeded" and not result.is_error
    assert [c.task_id for c in extension.created] == [task.task_id] and extension.seen[-1].status == "completed"
    extended = await client.call_tool("extend_video", {"video_id": task.video_id, "prompt": "It sails away"})
    assert TaskResult.model_validate(extended.structured_content).status == "succeeded"
    assert len(extension.created) == 2  # extend_video answers with a task too


async def test_a_failed_video_completes_with_the_failed_result(tasks: tuple[Client, TasksClient]) -> None:
    client, extension = tasks
    result = await client.call_tool("generate_video", {"prompt": f"Broken {FAIL_MARKER}"})
    task = TaskResult.model_validate(result.structured_content)
    assert task.status == "failed" and task.error is not None
    assert extension.seen[-1].status == "completed"  # `failed` is for JSON-RPC errors only
    assert result.structured_content == await get_task_tool(client, task.task_id)


async def test_no_task_when_the_call_fails_or_the_task_is_done(
    tasks: tuple[Client, TasksClient], sim: Simulator
) -> None:
    client, extension = tasks
    refused = await submit(client, f"Not allowed {REFUSE_MARKER}")
    assert isinstance(refused, CallToolResult) and refused.is_error
    invalid = await submit(client, "A cat", duration=10)
    assert isinstance(invalid, CallToolResult) and invalid.is_error
    assert text_of(invalid).startswith('generate_video has no argument "duration"; its arguments are aspect_ratio')
    # A wrong argument reads exactly as it does without the extension (one sentence, from the schema).
    wrong = await submit(client, "A cat", aspect_ratio="2:1")
    assert isinstance(wrong, CallToolResult) and wrong.is_error
    assert text_of(wrong) == (
        'generate_video\'s aspect_ratio must be one of "16:9", "9:16", "1:1", "4:3", "3:4", "21:9" or "9:21", '
        'not "2:1".'
    )
    assert extension.created == []
    # Reusing a task that has finished: its result is the answer, not a handle.
    submits = sim.count("/luma/videos")
    created = await submit(client, "A fox", idempotency_key="fox-1")
    assert isinstance(created, CreatedTask)  # while it runs, the same call is a task
    done = await extension.follow(client.session, created)
    assert TaskResult.model_validate(done.structured_content).status == "succeeded"
    again = await submit(client, "A fox", idempotency_key="fox-1")
    assert isinstance(again, CallToolResult) and not again.is_error
    reused = TaskResult.model_validate(again.structured_content)
    assert reused.status == "succeeded" and reused.note and "Reused task" in reused.note
    assert sim.count("/luma/videos") == submits + 1


async def test_a_read_error_keeps_the_task_working(tasks: tuple[Client, TasksClient], slow_sim: Simulator) -> None:
    client, _ = tasks
    created = await submit(client, "A tram in fog")
    assert isinstance(created, CreatedTask)
    slow_sim.inject("500", "/luma/tasks", times=10)
    await anyio.sleep(FAST_SCHEDULE.min_interval * 2)  # the submit's answer counts as a read until then
    troubled = await get_task(client.session, created.task_id)
    assert troubled.status == "working" and troubled.result is None
    assert troubled.status_message and "Could not check" in troubled.status_message
    assert troubled.poll_interval_ms == round(FAST_SCHEDULE.maximum * 1000)  # a struggling API is asked less
    slow_sim.clear_faults()


async def test_cancel_stops_following_the_task_not_the_video(
    tasks: tuple[Client, TasksClient], slow_sim: Simulator
) -> None:
    client, _ = tasks
    created = await submit(client, "A kite over dunes", idempotency_key="kite-1")
    assert isinstance(created, CreatedTask)
    # Nothing to update (no input is ever asked for): acknowledged, and nothing changes.
    assert (await update_task(client.session, created.task_id)).result_type == "complete"
    assert (await get_task(client.session, created.task_id)).status == "working"
    assert (await cancel_task(client.session, created.task_id)).result_type == "complete"
    cancelled = await get_task(client.session, created.task_id)
    assert cancelled.status == "cancelled" and cancelled.result is None and cancelled.poll_interval_ms is None
    message = cancelled.status_message or ""
    assert "may still finish and be charged" in message and f'get_task(task_id="{created.task_id}")' in message
    # The video goes on, and get_task and list_tasks tell what really happens to it.
    assert (await get_task_tool(client, created.task_id))["status"] in {"pending", "processing"}
    again = await submit(client, "A kite over dunes", idempotency_key="kite-1")  # no handle for it again
    assert isinstance(again, CallToolResult) and not again.is_error
    waited = await client.call_tool("get_task", {"task_id": created.task_id, "wait_seconds": 20})
    assert (waited.structured_content or {})["tasks"][0]["status"] == "succeeded"
    listed = await client.call_tool("list_tasks", {})
    assert [(t["task_id"], t["status"]) for t in (listed.structured_content or {})["tasks"]] == [
        (created.task_id, "succeeded")
    ]
    # Cancelled stays cancelled (a terminal status), and costs no more reads upstream.
    reads = slow_sim.count("/luma/tasks")
    later = await get_task(client.session, created.task_id)
    assert later.status == "cancelled" and later.last_updated_at == cancelled.last_updated_at
    await cancel_task(client.session, created.task_id)  # a second cancel changes nothing
    assert (await get_task(client.session, created.task_id)) == later
    assert slow_sim.count("/luma/tasks") == reads
    assert slow_sim.count("/luma/videos") == 1


async def test_cancel_of_a_finished_task_leaves_it_completed(tasks: tuple[Client, TasksClient], sim: Simulator) -> None:
    client, extension = tasks
    done = await client.call_tool("generate_video", {"prompt": "A red balloon"})
    task_id = TaskResult.model_validate(done.structured_content).task_id
    await cancel_task(client.session, task_id)
    after = await get_task(client.session, task_id)
    assert after.status == "completed" and after.result == extension.seen[-1].result
    # Finished upstream, though nobody has looked since the handle: cancel looks first.
    created = await submit(client, "A blue balloon")
    assert isinstance(created, CreatedTask)
    await anyio.sleep(max(0.0, sim.tasks[created.task_id].finishes_at - time.time()) + 0.05)
    await cancel_task(client.session, created.task_id)
    finished = await get_task(client.session, created.task_id)
    assert finished.status == "completed" and (finished.result or {})["structuredContent"]["status"] == "succeeded"


class FailingAfterReserve(SQLiteLedger):
    """A real SQLite ledger whose store fails ("disk I/O error", as SQLite says it) from the
    moment a submit's row is reserved: the task id can then be kept only in memory. With
    `reads_work`, only its writes fail."""

    broken = False
    reads_work = False

    async def _reserve(self, *args: Any, **kwargs: Any) -> Any:
        reservation = await super()._reserve(*args, **kwargs)
        self.broken = True
        return reservation

    async def _transaction(self, work: Any, *, write: bool) -> Any:
        if self.broken and (write or not self.reads_work):
            raise sqlite3.OperationalError("disk I/O error")
        return await super()._transaction(work, write=write)


async def test_a_handle_whose_task_the_ledger_could_not_record_still_resolves(
    sim_server: SimulatorServer, tmp_path: Path
) -> None:
    ledger = FailingAfterReserve(tmp_path / "failing.sqlite3")
    extension = TasksClient()
    server = create_server(make_settings(sim_server.url), schedule=FAST_SCHEDULE, ledger=ledger)
    try:
        async with Client(server, extensions=[extension]) as client:
            created = await submit(client, "A lantern on a pier")
            assert isinstance(created, CreatedTask) and created.task_id in sim_server.simulator.tasks
            assert "could not record" in (created.status_message or "")  # the person is told
            final = await extension.follow(client.session, created)  # tasks/get asks the API then
            assert TaskResult.model_validate(final.structured_content).status == "succeeded"
    finally:
        ledger.close()


async def test_a_task_the_ledger_could_not_record_cannot_be_cancelled_and_says_why(
    sim_server: SimulatorServer, slow_sim: Simulator, tmp_path: Path
) -> None:
    ledger = FailingAfterReserve(tmp_path / "failing.sqlite3")
    ledger.reads_work = True  # the row is there, its task id is not: nothing to mark
    extension = TasksClient()
    server = create_server(make_settings(sim_server.url), schedule=FAST_SCHEDULE, ledger=ledger)
    try:
        async with Client(server, extensions=[extension]) as client:
            created = await submit(client, "A lantern on a pier")
            assert isinstance(created, CreatedTask)
            with pytest.raises(MCPError) as refused:
                await cancel_task(client.session, created.task_id)
            assert refused.value.error.code == -32603  # not "unknown": tasks/get finds it
            assert "could not be recorded here" in refused.value.error.message
            assert (await get_task(client.session, created.task_id)).status == "working"
            await extension.follow(client.session, created)  # done: nothing left to stop following
            assert (await cancel_task(client.session, created.task_id)).result_type == "complete"
    finally:
        ledger.close()


async def test_unknown_ids_and_unbound_methods(tasks: tuple[Client, TasksClient]) -> None:
    client, _ = tasks
    with pytest.raises(MCPError) as unknown:
        await get_task(client.session, "00000000-0000-4000-8000-000000000000")
    assert unknown.value.error.code == -32602 and "Failed to retrieve task" in unknown.value.error.message
    with pytest.raises(MCPError) as cancel:
        await cancel_task(client.session, "00000000-0000-4000-8000-000000000000")
    assert cancel.value.error.code == -32602
    with pytest.raises(MCPError) as update:
        await update_task(client.session, "anything")
    assert update.value.error.code == -32602
    with pytest.raises(MCPError) as result:  # removed from the spec: tasks/result must be unknown
        await client.session.send_request(TaskResultRequest(params=TaskParams(task_id="anything")), CallToolResult)
    assert result.value.error.code == -32601
    with pytest.raises(MCPError) as listing:  # nor is tasks/list: one caller cannot learn of another's tasks
        await client.session.send_request(TaskListRequest(params=RequestParams()), CallToolResult)
    assert listing.value.error.code == -32601


async def test_a_client_that_did_not_declare_sees_what_it_saw_before(sim_server: SimulatorServer) -> None:
    server = create_server(make_settings(sim_server.url), schedule=FAST_SCHEDULE)
    async with Client(server) as plain, Client(server, extensions=[TasksClient()]) as declaring:
        result = await plain.call_tool("generate_video", {"prompt": "A quiet harbour", "wait_seconds": 20})
        task = TaskResult.model_validate(result.structured_content)
        assert task.status == "succeeded"  # it waited, as before
        pending = await plain.session.call_tool("generate_video", {"prompt": "A loud harbour", "wait_seconds": 0})
        assert isinstance(pending, CallToolResult) and (pending.structured_content or {}).get("next_call")
        for method in (get_task, update_task, cancel_task):
            with pytest.raises(MCPError) as refused:
                await method(plain.session, task.task_id)
            assert refused.value.error.code == -32021
        # tools/list is the same, byte for byte, whether the client declared the extension or not.
        listed = [
            json.dumps([t.model_dump(mode="json") for t in (await c.list_tools()).tools]) for c in (plain, declaring)
        ]
        assert listed[0] == listed[1]
        tools = {t.name: t for t in (await plain.list_tools()).tools}
        assert set(tools["generate_video"].input_schema["properties"]) == {
            "prompt", "aspect_ratio", "loop", "enhancement", "start_image_url", "end_image_url",
            "callback_url", "wait_seconds", "idempotency_key", "new_take",
        }  # fmt: skip
    # An older protocol has no per-request declaration: the extension is never used there.
    # (Even one that announced the extension at initialize: its calls cannot carry a declaration.)
    async with Client(server, mode="legacy", extensions=[advertise(TASKS_ID)]) as legacy:
        old = await legacy.session.call_tool("generate_video", {"prompt": "An old harbour", "wait_seconds": 20})
        assert isinstance(old, CallToolResult) and TaskResult.model_validate(old.structured_content).status.finished


# --- over streamable HTTP -----------------------------------------------------------------


def http_tasks_client(url: str, bearer: str, extension: TasksClient | None = None) -> Client:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {bearer}"}, timeout=60)
    transport = streamable_http_client(f"{url}/mcp", http_client=http)
    return Client(transport, extensions=[extension or TasksClient()])


async def test_another_tenants_task_is_unknown(sim_server: SimulatorServer) -> None:
    sim_server.simulator.valid_tokens = {TOKEN_A, TOKEN_B}
    sim_server.simulator.processing_seconds = 60  # still running when bob tries: a cancel would show
    server = HttpServer(http_env(sim_server, LUMA_MCP_AUTH="passthrough")).wait_ready()
    try:
        async with http_tasks_client(server.url, TOKEN_A) as alice:
            created = await submit(alice, "Alice's garden")
            assert isinstance(created, CreatedTask)
            assert (await get_task(alice.session, created.task_id)).task_id == created.task_id
        async with http_tasks_client(server.url, TOKEN_B) as bob:
            for method in (get_task, cancel_task):
                with pytest.raises(MCPError) as stolen:
                    await method(bob.session, created.task_id)
                assert stolen.value.error.code == -32602
        async with http_tasks_client(server.url, TOKEN_A) as alice:
            assert (await get_task(alice.session, created.task_id)).status == "working"  # bob changed nothing
    finally:
        server.stop()


@pytest.fixture
def two_servers(sim_server: SimulatorServer) -> Iterator[tuple[HttpServer, HttpServer]]:
    """Two server processes on one SQLite ledger file (private_folders' LUMA_LEDGER_PATH)."""
    sim_server.simulator.processing_seconds = 1.5
    env = http_env(sim_server, ACEDATACLOUD_API_TOKEN=TOKEN_A, LUMA_MCP_API_KEYS=KEY)
    first, second = HttpServer(env), HttpServer(env)
    try:
        yield first.wait_ready(), second.wait_ready()
    finally:
        first.stop()
        second.stop()


async def test_a_task_made_on_one_process_is_followed_on_another(
    two_servers: tuple[HttpServer, HttpServer], sim: Simulator
) -> None:
    a, b = two_servers
    async with http_tasks_client(a.url, KEY) as on_a:
        started = time.monotonic()
        created = await submit(on_a, "A bridge in two cities")
        assert isinstance(created, CreatedTask) and time.monotonic() - started < HANDLE_SECONDS
        extension = TasksClient()
        async with http_tasks_client(b.url, KEY, extension) as on_b:
            final = await extension.follow(on_b.session, created)
        assert extension.seen[0].status == "working" and extension.seen[-1].status == "completed"
        assert final.structured_content == await get_task_tool(on_a, created.task_id)
        # Cancelled through B: A, on the same ledger, sees it cancelled; get_task still tells the truth.
        sim.processing_seconds = 60  # still generating whatever the machine's load
        other = await submit(on_a, "A second bridge")
        assert isinstance(other, CreatedTask)
        async with http_tasks_client(b.url, KEY) as on_b:
            await cancel_task(on_b.session, other.task_id)
        assert (await get_task(on_a.session, other.task_id)).status == "cancelled"
        assert (await get_task_tool(on_a, other.task_id))["status"] in {"pending", "processing"}
