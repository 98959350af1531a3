"""Nothing lost, nothing paid twice: duplicates, keys, limits, lost answers, the ledger as memory."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest
from mcp import Client

from luma_mcp.core.results import TaskList, TaskResult
from luma_mcp.server import create_server
from luma_mcp.simulator.app import FAIL_MARKER, REFUSE_MARKER, Simulator, SimulatorServer

from ..helpers.common import FAST_SCHEDULE, make_settings, text_of

pytestmark = pytest.mark.anyio

PROMPT = "A kite over a windy beach, low angle, late afternoon light"


async def generate(client: Client, **args: Any) -> Any:
    return await client.call_tool("generate_video", {"prompt": PROMPT, "wait_seconds": 0, **args})


def task(result: Any) -> TaskResult:
    assert not result.is_error, text_of(result)
    return TaskResult.model_validate(result.structured_content)


async def test_an_identical_request_reuses_the_task(mcp_client: Client, sim: Simulator) -> None:
    first = task(await generate(mcp_client))
    again = await generate(mcp_client)
    second = task(again)
    assert second.task_id == first.task_id and sim.count("/luma/videos") == 1
    assert second.note and "nothing new was paid" in second.note and "new_take=true" in second.note
    assert text_of(again).startswith(f"Reused task {first.task_id} from an identical request")
    third = task(await generate(mcp_client, new_take=True))
    assert third.task_id != first.task_id and sim.count("/luma/videos") == 2


async def test_a_reused_task_is_waited_on_like_a_new_one(mcp_client: Client, sim: Simulator) -> None:
    first = task(await generate(mcp_client))
    finished = task(await generate(mcp_client, wait_seconds=10))
    assert finished.task_id == first.task_id and finished.status == "succeeded" and finished.note
    assert sim.count("/luma/videos") == 1


async def test_an_idempotency_key_returns_the_same_task(mcp_client: Client, sim: Simulator) -> None:
    first = task(await generate(mcp_client, idempotency_key="order-42"))
    again = task(await generate(mcp_client, idempotency_key="order-42", new_take=True))
    assert again.task_id == first.task_id and "the same idempotency_key" in (again.note or "")
    other = await generate(mcp_client, prompt="something else", idempotency_key="order-42")
    assert other.is_error and "already used for a different request" in text_of(other)
    assert sim.count("/luma/videos") == 1


async def test_the_dedupe_window_can_be_turned_off(sim_server: SimulatorServer) -> None:
    settings = make_settings(sim_server.url, LUMA_DEDUPE_WINDOW_SECONDS=0)
    async with Client(create_server(settings, schedule=FAST_SCHEDULE)) as client:
        assert task(await generate(client)).task_id != task(await generate(client)).task_id
    assert sim_server.simulator.count("/luma/videos") == 2


async def test_failed_and_refused_requests_can_be_tried_again(mcp_client: Client, sim: Simulator) -> None:
    failed = task(await generate(mcp_client, prompt=f"storm {FAIL_MARKER}", wait_seconds=10))
    assert failed.status == "failed"
    assert task(await generate(mcp_client, prompt=f"storm {FAIL_MARKER}")).task_id != failed.task_id
    for _ in range(2):
        refused = await generate(mcp_client, prompt=f"bad {REFUSE_MARKER}")
        assert refused.is_error and "Rephrase" in text_of(refused)
    assert sim.count("/luma/videos") == 4


async def test_the_spending_guard(sim_server: SimulatorServer) -> None:
    settings = make_settings(sim_server.url, LUMA_MAX_SUBMITS_PER_HOUR=2)
    async with Client(create_server(settings, schedule=FAST_SCHEDULE)) as client:
        for i in range(2):
            task(await generate(client, prompt=f"clip {i}"))
        refused = await generate(client, prompt="clip 3")
        again = await generate(client, prompt="clip 0")  # a duplicate is still answered: it costs nothing
    assert refused.is_error
    assert "LUMA_MAX_SUBMITS_PER_HOUR" in text_of(refused) and "Nothing was sent" in text_of(refused)
    assert not again.is_error and sim_server.simulator.count("/luma/videos") == 2


async def test_a_lost_answer_is_recorded_and_not_resubmitted_blindly(mcp_client: Client, sim: Simulator) -> None:
    sim.inject("drop", "/luma/videos", after_processing=True)  # the task starts, the answer never comes
    lost = await generate(mcp_client)
    assert lost.is_error and "recorded in list_tasks as 'lost'" in text_of(lost)
    listing = await mcp_client.call_tool("list_tasks", {"status": "lost"})
    rows = listing.structured_content["tasks"]
    assert len(rows) == 1 and rows[0]["status"] == "lost" and "task_id" not in rows[0]
    again = await generate(mcp_client)
    assert again.is_error and "its answer was lost" in text_of(again) and "new_take=true" in text_of(again)
    assert sim.count("/luma/videos") == 1
    task(await generate(mcp_client, new_take=True))
    assert sim.count("/luma/videos") == 2


async def test_finished_tasks_are_served_from_the_ledger(mcp_client: Client, sim: Simulator) -> None:
    done = task(await generate(mcp_client, wait_seconds=10))
    assert done.status == "succeeded"
    reads = sim.count("/luma/tasks")
    for _ in range(3):
        result = await mcp_client.call_tool("get_task", {"task_id": done.task_id})
        assert TaskList.model_validate(result.structured_content).tasks[0].video_url == done.video_url
    assert sim.count("/luma/tasks") == reads


async def test_list_tasks_pages_filters_and_refreshes(mcp_client: Client, sim: Simulator) -> None:
    ids = [task(await generate(mcp_client, prompt=f"clip {i}")).task_id for i in range(5)]
    first = await mcp_client.call_tool("list_tasks", {"limit": 2})
    page = first.structured_content
    assert page is not None and [row["task_id"] for row in page["tasks"]] == ids[:2:-1][:2]
    assert f'list_tasks(cursor="{page["next_cursor"]}")' in text_of(first)
    seen = [row["task_id"] for row in page["tasks"]]
    cursor = page["next_cursor"]
    while cursor:
        more = (await mcp_client.call_tool("list_tasks", {"limit": 2, "cursor": cursor})).structured_content
        assert more is not None
        seen += [row["task_id"] for row in more["tasks"]]
        cursor = more.get("next_cursor")
    assert seen == ids[::-1]
    # The listing asks upstream about unfinished rows (one batch request), so it shows them done.
    await anyio.sleep(sim.queue_seconds + sim.processing_seconds + 0.1)
    reads = sim.count("/luma/tasks")
    still_pending = (await mcp_client.call_tool("list_tasks", {"status": "pending"})).structured_content
    assert still_pending == {"tasks": []} and sim.count("/luma/tasks") == reads + 1
    succeeded = (await mcp_client.call_tool("list_tasks", {"status": "succeeded"})).structured_content
    assert succeeded is not None and len(succeeded["tasks"]) == 5
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    none = await mcp_client.call_tool("list_tasks", {"since": future})
    assert none.structured_content == {"tasks": []} and text_of(none) == "No tasks found."
    bad = await mcp_client.call_tool("list_tasks", {"cursor": "nonsense"})
    assert bad.is_error and "call list_tasks without a cursor" in text_of(bad)


async def test_a_status_filter_finds_tasks_last_seen_unfinished(sim_server: SimulatorServer) -> None:
    """The ledger last saw the task generating; the filter must still find it succeeded."""
    sim = sim_server.simulator
    sim.queue_seconds, sim.processing_seconds = 0.1, 1.0
    async with Client(create_server(make_settings(sim_server.url), schedule=FAST_SCHEDULE)) as client:
        made = task(await generate(client))
        await anyio.sleep(0.4)
        seen = await client.call_tool("get_task", {"task_id": made.task_id})
        assert TaskList.model_validate(seen.structured_content).tasks[0].status == "processing"
        await anyio.sleep(1.0)
        for status in ("succeeded", "processing"):
            listed = (await client.call_tool("list_tasks", {"status": status})).structured_content
            assert listed is not None
            assert [row["task_id"] for row in listed["tasks"]] == ([made.task_id] if status == "succeeded" else [])


async def test_recent_tasks_resource(mcp_client: Client) -> None:
    made = task(await generate(mcp_client, wait_seconds=10))
    body = json.loads((await mcp_client.read_resource("luma://tasks")).contents[0].text)  # type: ignore[union-attr]
    assert [row["task_id"] for row in body] == [made.task_id] and body[0]["status"] == "succeeded"
    filtered = await mcp_client.read_resource("luma://tasks?status=failed")
    assert json.loads(filtered.contents[0].text) == []  # type: ignore[union-attr]


async def test_a_duplicate_of_a_submit_in_flight_waits_for_its_answer(mcp_client: Client, sim: Simulator) -> None:
    sim.inject("slow", "/luma/videos", delay=0.5)
    found: list[TaskResult] = []

    async def submit() -> None:
        found.append(task(await generate(mcp_client, idempotency_key="retry-after-timeout")))

    async with anyio.create_task_group() as tg:
        tg.start_soon(submit)
        await anyio.sleep(0.1)  # the first is now waiting on the slow API
        tg.start_soon(submit)
    assert len({t.task_id for t in found}) == 1 and sim.count("/luma/videos") == 1
    assert sum(t.note is not None for t in found) == 1


async def test_a_duplicate_of_a_submit_whose_token_is_refused_says_so(mcp_client: Client, sim: Simulator) -> None:
    sim.valid_tokens = {"someone-elses-token"}  # the server's own token is no longer accepted
    sim.inject("slow", "/luma/videos", delay=0.5)
    answers: list[str] = []

    async def submit() -> None:
        result = await generate(mcp_client, prompt="Twice, quickly")
        assert result.is_error
        answers.append(text_of(result))

    async with anyio.create_task_group() as tg:
        tg.start_soon(submit)
        await anyio.sleep(0.1)  # the first is now waiting on the slow API
        tg.start_soon(submit)
    assert sim.count("/luma/videos") == 1
    assert "invalid" in answers[0].lower()
    assert "identical request sent just before this one was refused" in answers[1]
    assert "The API token is invalid" in answers[1]  # the reason itself, not a guess
    assert (await mcp_client.call_tool("list_tasks", {"status": "refused"})).structured_content == {"tasks": []}
