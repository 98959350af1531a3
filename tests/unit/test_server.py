"""The MCP surface through the in-memory client, against the simulator over real HTTP."""

from __future__ import annotations

import itertools
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import ResourceLink

from luma_mcp.core.results import TaskList, TaskResult
from luma_mcp.core.waiting import PollSchedule
from luma_mcp.server import create_server
from luma_mcp.simulator.app import FAIL_MARKER, REFUSE_MARKER, Simulator, SimulatorServer

from ..helpers.common import CANARY_TOKEN, FAST_SCHEDULE, make_settings, text_of

pytestmark = pytest.mark.anyio

PROMPT = "A lighthouse on a cliff at dusk, waves crashing, slow aerial orbit"
BOOKKEEPING = ("_id", "api_id", "application_id", "credential_id", "user_id")


async def generate(client: Client, **args: Any) -> Any:
    return await client.call_tool("generate_video", {"prompt": PROMPT, **args})


# --- surface ------------------------------------------------------------------------------


async def test_tools_list_names_schemas_and_annotations(mcp_client: Client) -> None:
    tools = {tool.name: tool for tool in (await mcp_client.list_tools()).tools}
    assert set(tools) == {"generate_video", "extend_video", "get_task", "list_tasks", "download_video"}
    for name in ("generate_video", "extend_video"):
        hints = tools[name].annotations
        assert hints is not None
        assert (hints.read_only_hint, hints.idempotent_hint, hints.open_world_hint) == (False, False, True)
        assert hints.destructive_hint is False
        output_schema = tools[name].output_schema
        assert output_schema is not None
        assert {"task_id", "status", "video_url", "video_id"} <= set(output_schema["properties"])
    read = tools["get_task"].annotations
    assert read is not None and read.read_only_hint and read.idempotent_hint
    assert all(tool.title for tool in tools.values())
    generate_schema = tools["generate_video"].input_schema["properties"]
    assert generate_schema["aspect_ratio"]["enum"] == ["16:9", "9:16", "1:1", "4:3", "3:4", "21:9", "9:21"]
    assert generate_schema["aspect_ratio"]["default"] == "16:9"
    assert generate_schema["wait_seconds"] == {
        "default": 45,
        "description": generate_schema["wait_seconds"]["description"],
        "maximum": 50,
        "minimum": 0,
        "type": "integer",
    }
    assert "prompt enhancement" in generate_schema["enhancement"]["description"].lower()
    assert tools["get_task"].input_schema["properties"]["task_ids"]["maxItems"] == 50
    status = tools["get_task"].output_schema["properties"]["tasks"]["items"]["properties"]["status"]  # type: ignore[index]
    assert status["enum"] == ["pending", "processing", "succeeded", "failed"]


async def test_tools_list_is_small(mcp_client: Client) -> None:
    tools = {
        t.name: t.model_dump(mode="json", by_alias=True, exclude_none=True)
        for t in (await mcp_client.list_tools()).tools
    }
    # Icons and the view's `_meta` are for the host's screen, never the model: bounded apart below.
    display = ("icons", "_meta")

    def size(names: list[str], keep: Any = lambda key: key not in display) -> int:
        entries = [{k: v for k, v in tools[n].items() if keep(k)} for n in names]
        return len(json.dumps(entries, separators=(",", ":")))

    core = size(["generate_video", "extend_video", "get_task"])
    assert core <= 5000, f"the three video tools grew to {core} bytes"
    everything = size(list(tools))
    assert everything <= 7500, f"tools/list grew to {everything} bytes"
    shown = size(list(tools), keep=lambda key: key in display)
    assert shown <= 1300, f"icons and view metadata grew to {shown} bytes"


async def test_configuration_shapes_the_schema(sim_server: SimulatorServer) -> None:
    settings = make_settings(
        sim_server.url, LUMA_DEFAULT_ASPECT_RATIO="9:16", LUMA_WAIT_SECONDS=100, LUMA_MAX_WAIT_SECONDS=240
    )
    async with Client(create_server(settings)) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    props = tools["generate_video"].input_schema["properties"]
    assert props["aspect_ratio"]["default"] == "9:16"
    assert (props["wait_seconds"]["default"], props["wait_seconds"]["maximum"]) == (100, 240)


async def test_server_info_and_instructions(mcp_client: Client) -> None:
    info = mcp_client.server_info
    assert info is not None and info.name == "luma-mcp" and info.title and info.version
    assert mcp_client.instructions and "get_task" in mcp_client.instructions


# --- generate, extend, get_task ---------------------------------------------------------------


async def test_generate_waits_and_returns_a_small_typed_result(mcp_client: Client, sim: Simulator) -> None:
    result = await generate(mcp_client, aspect_ratio="1:1", loop=True, wait_seconds=10)
    assert not result.is_error
    task = TaskResult.model_validate(result.structured_content)
    assert task.status == "succeeded" and task.video_url and task.video_id and task.thumbnail_url
    assert task.width == task.height and task.prompt == PROMPT and task.elapsed_seconds is not None
    assert task.next_call is None
    text = text_of(result)
    assert task.video_url in text and f'video_id="{task.video_id}"' in text
    assert len(text.encode()) <= 600 and text.count("\n") <= 1
    links = [block for block in result.content if isinstance(block, ResourceLink)]
    assert [(str(link.uri), link.mime_type) for link in links] == [
        (task.video_url, "video/mp4"),
        (task.thumbnail_url, "image/jpeg"),
    ]
    dumped = json.dumps(result.model_dump(mode="json"))
    assert not any(f'"{key}"' in dumped for key in BOOKKEEPING)
    assert sim.submits() == [
        {
            "action": "generate",
            "prompt": PROMPT,
            "aspect_ratio": "1:1",
            "loop": True,
            "enhancement": True,
            "async": True,
        }
    ]


async def test_generate_without_waiting_tells_the_next_call(mcp_client: Client) -> None:
    result = await generate(mcp_client, wait_seconds=0)
    task = TaskResult.model_validate(result.structured_content)
    assert task.status == "pending"
    expected = f'get_task(task_id="{task.task_id}", wait_seconds=45)'
    assert task.next_call == expected and expected in text_of(result)
    assert "Do not submit again" in text_of(result)


async def test_wait_that_ends_before_the_video_returns_processing(sim_server: SimulatorServer) -> None:
    sim_server.simulator.processing_seconds = 5
    async with Client(create_server(make_settings(sim_server.url), schedule=FAST_SCHEDULE)) as client:
        started = time.monotonic()
        result = await generate(client, wait_seconds=1)
        assert time.monotonic() - started < 3.5  # not the 5 s the video takes
    task = TaskResult.model_validate(result.structured_content)
    assert task.status == "processing" and task.next_call and task.task_id in task.next_call


async def test_generate_passes_images_and_callback(mcp_client: Client, sim: Simulator) -> None:
    args = {
        "start_image_url": "https://example.com/first.png",
        "end_image_url": "https://example.com/last.png",
        "callback_url": "https://hooks.example.com/luma?secret=abc",
        "enhancement": False,
        "wait_seconds": 0,
    }
    assert not (await generate(mcp_client, **args)).is_error
    sent = sim.submits()[0]
    assert {k: sent[k] for k in ("start_image_url", "end_image_url", "callback_url", "enhancement")} == {
        k: args[k] for k in ("start_image_url", "end_image_url", "callback_url", "enhancement")
    }


async def test_extend_by_video_id_then_by_url(mcp_client: Client, sim: Simulator) -> None:
    first = TaskResult.model_validate((await generate(mcp_client, wait_seconds=10)).structured_content)
    by_id = await mcp_client.call_tool(
        "extend_video", {"video_id": first.video_id, "prompt": "the beam sweeps", "wait_seconds": 10}
    )
    assert TaskResult.model_validate(by_id.structured_content).status == "succeeded"
    by_url = await mcp_client.call_tool("extend_video", {"video_url": first.video_url, "wait_seconds": 0})
    assert not by_url.is_error
    assert sim.submits()[1] == {
        "action": "extend",
        "video_id": first.video_id,
        "prompt": "the beam sweeps",
        "async": True,
    }
    assert sim.submits()[2] == {"action": "extend", "video_url": first.video_url, "async": True}


@pytest.mark.parametrize(
    "args",
    [{}, {"video_id": "abc", "video_url": "https://example.com/v.mp4"}],
    ids=["neither", "both"],
)
async def test_extend_needs_exactly_one_source(mcp_client: Client, sim: Simulator, args: dict[str, str]) -> None:
    result = await mcp_client.call_tool("extend_video", {"prompt": "more", **args})
    assert result.is_error and "exactly one of video_id" in text_of(result)
    assert sim.submits() == []


async def test_get_task_one_and_many(mcp_client: Client, sim: Simulator) -> None:
    ids = [
        TaskResult.model_validate(
            (await generate(mcp_client, prompt=f"shot {i}", wait_seconds=0)).structured_content
        ).task_id
        for i in range(3)
    ]
    single = await mcp_client.call_tool("get_task", {"task_id": ids[0]})
    assert [t.task_id for t in TaskList.model_validate(single.structured_content).tasks] == ids[:1]
    reads_before = sim.count("/luma/tasks")
    batch = await mcp_client.call_tool("get_task", {"task_ids": [*ids, "unknown-id"], "wait_seconds": 10})
    listing = TaskList.model_validate(batch.structured_content)
    assert [t.task_id for t in listing.tasks] == ids and listing.not_found == ["unknown-id"]
    assert all(t.status == "succeeded" for t in listing.tasks) and listing.next_call is None
    for task in listing.tasks:
        assert task.video_url and task.video_url in text_of(batch)
    assert "unknown-id: not found" in text_of(batch)
    # One batch request to look at all four, then only the unfinished ones while waiting.
    first_read = sim.requests[next(i for i, r in enumerate(sim.requests) if r.path == "/luma/tasks" and i >= 0) :]
    assert any(r.body.get("action") == "retrieve_batch" for r in first_read if r.path == "/luma/tasks")
    assert sim.count("/luma/tasks") > reads_before


async def test_get_task_unfinished_batch_names_the_next_call(mcp_client: Client, sim: Simulator) -> None:
    sim.processing_seconds = 30
    ids = [
        TaskResult.model_validate(
            (await generate(mcp_client, prompt=f"shot {i}", wait_seconds=0)).structured_content
        ).task_id
        for i in range(2)
    ]
    listing = TaskList.model_validate((await mcp_client.call_tool("get_task", {"task_ids": ids})).structured_content)
    assert listing.next_call == f'get_task(task_ids=["{ids[0]}", "{ids[1]}"], wait_seconds=45)'


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({}, "Pass task_id (one task) or task_ids"),
        ({"task_id": "a", "task_ids": ["b"]}, "Pass task_id (one task) or task_ids"),
        ({"task_id": "no-such-task"}, "No task with id no-such-task"),
    ],
)
async def test_get_task_errors(mcp_client: Client, args: dict[str, Any], message: str) -> None:
    result = await mcp_client.call_tool("get_task", args)
    assert result.is_error and message in text_of(result)


@pytest.mark.parametrize(
    ("tool", "args"),
    [
        ("get_task", {"task_ids": [f"t{i}" for i in range(51)]}),
        ("get_task", {"task_id": "x", "wait_seconds": 51}),
        ("generate_video", {"prompt": ""}),
        ("generate_video", {"prompt": "x", "aspect_ratio": "2:1"}),
        ("generate_video", {"prompt": "x", "wait_seconds": -1}),
    ],
)
async def test_schema_validation_rejects_before_anything_is_sent(
    mcp_client: Client, sim: Simulator, tool: str, args: dict[str, Any]
) -> None:
    result = await mcp_client.call_tool(tool, args)
    assert result.is_error and f"{tool}'s " in text_of(result) and " must be " in text_of(result)
    assert sim.requests == []


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://localhost:8000/a.png", "cannot reach"),
        ("http://192.168.1.10/a.png", "cannot reach"),
        ("file:///etc/passwd", "must be a full public http(s) URL"),
        ("not a url", "must be a full public http(s) URL"),
    ],
)
async def test_image_urls_must_be_public(mcp_client: Client, sim: Simulator, url: str, message: str) -> None:
    result = await generate(mcp_client, start_image_url=url)
    assert result.is_error and message in text_of(result) and "start_image_url" in text_of(result)
    assert sim.submits() == []


async def test_the_simulators_own_media_urls_are_accepted(mcp_client: Client) -> None:
    first = TaskResult.model_validate((await generate(mcp_client, wait_seconds=10)).structured_content)
    result = await mcp_client.call_tool("extend_video", {"video_url": first.video_url, "wait_seconds": 0})
    assert not result.is_error, text_of(result)


async def test_unknown_arguments_are_refused_not_dropped(mcp_client: Client, sim: Simulator) -> None:
    result = await generate(mcp_client, duration=10, seed=3)
    assert result.is_error
    assert 'generate_video has no argument "duration", "seed"; its arguments are aspect_ratio' in text_of(result)
    assert sim.submits() == []


# --- failures the model must be able to act on ----------------------------------------------------


async def test_failed_task(mcp_client: Client) -> None:
    result = await generate(mcp_client, prompt=f"storm {FAIL_MARKER}", wait_seconds=10)
    assert not result.is_error  # the call worked; the video did not
    task = TaskResult.model_validate(result.structured_content)
    assert task.status == "failed" and task.error is not None and task.error.trace_id
    text = text_of(result)
    assert task.task_id in text and task.error.message.rstrip(".") in text and task.error.trace_id in text
    assert "not charged" in text


@pytest.mark.parametrize(
    ("token_error", "expected"),
    [
        ("invalid_token", "ACEDATACLOUD_API_TOKEN"),
        ("token_mismatched", "issued for the Luma service"),
        ("used_up", "Buy more credits"),
        ("disabled", "Enable the credential"),
    ],
)
async def test_account_errors_reach_the_model(
    mcp_client: Client, sim: Simulator, token_error: str, expected: str
) -> None:
    sim.token_errors[CANARY_TOKEN] = token_error
    result = await generate(mcp_client)
    assert result.is_error
    text = text_of(result)
    assert expected in text and "trace_id" in text and token_error in text
    assert CANARY_TOKEN not in text


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("429", "Wait 3 seconds"),
        ("500", "try again in a minute"),
        ("html", "not JSON (text/html)"),
        ("drop", "may have been started"),
    ],
)
async def test_submit_failures_reach_the_model(mcp_client: Client, sim: Simulator, fault: str, expected: str) -> None:
    sim.inject(fault, "/luma/videos", retry_after=3)  # type: ignore[arg-type]
    result = await generate(mcp_client)
    assert result.is_error and expected in text_of(result)
    assert sim.count("/luma/videos") == 1  # never sent twice


async def test_moderation_refusal(mcp_client: Client) -> None:
    result = await generate(mcp_client, prompt=f"something {REFUSE_MARKER}")
    assert result.is_error and "Rephrase the prompt" in text_of(result)


async def test_a_read_failure_while_waiting_keeps_the_task_id(mcp_client: Client, sim: Simulator) -> None:
    sim.processing_seconds = 5
    sim.inject("500", "/luma/tasks", times=50)
    result = await generate(mcp_client, wait_seconds=1)
    # Transient read errors while waiting do not fail the call: the task id comes back.
    task = TaskResult.model_validate(result.structured_content)
    assert task.task_id in sim.tasks and task.next_call


async def test_an_auth_failure_while_waiting_names_the_task(mcp_client: Client, sim: Simulator) -> None:
    sim.processing_seconds = 5

    async def revoke_soon() -> None:
        while not sim.tasks:  # noqa: ASYNC110 (the simulator runs in another thread: poll it)
            await anyio.sleep(0.01)
        sim.token_errors[CANARY_TOKEN] = "invalid_token"

    async with anyio.create_task_group() as tg:
        tg.start_soon(revoke_soon)
        result = await generate(mcp_client, wait_seconds=5)
    (task_id,) = sim.tasks
    assert result.is_error
    assert f"Task {task_id} was submitted" in text_of(result) and f'get_task(task_id="{task_id}")' in text_of(result)


async def test_no_token_lists_tools_and_every_call_says_what_to_set(sim_server: SimulatorServer) -> None:
    async with Client(create_server(make_settings(sim_server.url, token=None))) as client:
        assert len((await client.list_tools()).tools) == 5
        for tool, args in [
            ("generate_video", {"prompt": "x"}),
            ("extend_video", {"video_id": "v"}),
            ("get_task", {"task_id": "t"}),
            ("list_tasks", {}),
            ("download_video", {"task_id": "t"}),
        ]:
            result = await client.call_tool(tool, args)
            assert result.is_error and "Set ACEDATACLOUD_API_TOKEN" in text_of(result)
    assert sim_server.simulator.requests == []


# --- progress and cancellation ------------------------------------------------------------------


async def test_progress_while_waiting(sim_server: SimulatorServer) -> None:
    sim_server.simulator.queue_seconds = 0.4
    sim_server.simulator.processing_seconds = 1.0
    events: list[tuple[float, float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        events.append((time.monotonic(), progress, total, message))

    async with Client(create_server(make_settings(sim_server.url), schedule=FAST_SCHEDULE)) as client:
        result = await client.call_tool(
            "generate_video", {"prompt": PROMPT, "wait_seconds": 10}, progress_callback=on_progress
        )
    task = TaskResult.model_validate(result.structured_content)
    assert task.status == "succeeded"
    messages = [m or "" for *_, m in events]
    assert task.task_id in messages[0] and "submitted" in messages[0]
    assert any("queued" in m for m in messages) and any("generating for" in m for m in messages)
    assert messages[-1].endswith("done")
    values = [p for _, p, _, _ in events]
    assert values == sorted(values) and len(set(values)) == len(values)
    assert all(total == 10 for _, _, total, _ in events)
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(events)]
    assert max(gaps) <= FAST_SCHEDULE.heartbeat + 0.5


async def test_back_to_back_calls_do_not_read_a_task_twice_within_the_interval(sim_server: SimulatorServer) -> None:
    sim = sim_server.simulator
    sim.processing_seconds = 30
    schedule = PollSchedule(first=0.2, maximum=0.2, heartbeat=0.1, min_interval=0.6)
    async with Client(create_server(make_settings(sim_server.url), schedule=schedule)) as client:
        task = TaskResult.model_validate((await generate(client, wait_seconds=1)).structured_content)
        reads = sim.count("/luma/tasks")  # the wait ended with a last look
        again = await client.call_tool("get_task", {"task_id": task.task_id})
        assert TaskList.model_validate(again.structured_content).tasks[0].task_id == task.task_id
        assert sim.count("/luma/tasks") == reads
        await anyio.sleep(0.6)
        await client.call_tool("get_task", {"task_id": task.task_id})
        assert sim.count("/luma/tasks") == reads + 1
    times = [r.at for r in sim.requests if r.path == "/luma/tasks"]
    assert min(b - a for a, b in itertools.pairwise(times)) >= 0.55


async def test_polls_write_the_ledger_only_when_the_status_moves(
    sim_server: SimulatorServer, private_folders: Path
) -> None:
    sim = sim_server.simulator
    sim.queue_seconds, sim.processing_seconds = 0.2, 2

    def ledger_row(task_id: str) -> tuple[str, float]:
        with sqlite3.connect(private_folders / "ledger.sqlite3") as db:
            row: tuple[str, float] = db.execute(
                "SELECT status, updated_at FROM tasks WHERE task_id = ?", (task_id,)
            ).fetchone()
            return row

    async def status_of(client: Client, task_id: str, wait_seconds: int = 0) -> str:
        result = await client.call_tool("get_task", {"task_id": task_id, "wait_seconds": wait_seconds})
        return TaskList.model_validate(result.structured_content).tasks[0].status

    async with Client(create_server(make_settings(sim_server.url), schedule=FAST_SCHEDULE)) as client:
        task_id = TaskResult.model_validate((await generate(client, wait_seconds=0)).structured_content).task_id
        await anyio.sleep(0.4)
        assert await status_of(client, task_id) == "processing"
        first = ledger_row(task_id)
        reads = sim.count("/luma/tasks")
        await anyio.sleep(0.2)
        assert await status_of(client, task_id) == "processing"
        assert sim.count("/luma/tasks") == reads + 1  # it did ask upstream...
        assert ledger_row(task_id) == first  # ...and wrote nothing, as nothing moved on
        assert await status_of(client, task_id, wait_seconds=10) == "succeeded"
    status, updated_at = ledger_row(task_id)
    assert first[0] == "processing" and status == "succeeded" and updated_at > first[1]


async def test_cancelled_call_stops_waiting_and_the_task_survives(sim_server: SimulatorServer) -> None:
    sim = sim_server.simulator
    sim.processing_seconds = 3
    async with Client(create_server(make_settings(sim_server.url), schedule=FAST_SCHEDULE)) as client:
        started = time.monotonic()
        with anyio.move_on_after(0.5):
            await generate(client, wait_seconds=30)
        assert time.monotonic() - started < 2.0  # had it kept waiting, it would end with the video at 3 s
        (task_id,) = sim.tasks
        await anyio.sleep(0.2)
        reads = sim.count("/luma/tasks")
        await anyio.sleep(0.5)
        assert sim.count("/luma/tasks") == reads, "the cancelled call kept polling"
        result = await client.call_tool("get_task", {"task_id": task_id, "wait_seconds": 10})
    listing = TaskList.model_validate(result.structured_content)
    assert listing.tasks[0].status == "succeeded"


# --- resources and prompts -----------------------------------------------------------------------


async def test_task_resource(mcp_client: Client) -> None:
    task = TaskResult.model_validate((await generate(mcp_client, wait_seconds=10)).structured_content)
    templates = (await mcp_client.list_resource_templates()).resource_templates
    assert {t.uri_template for t in templates} == {"luma://tasks{?status}", "luma://tasks/{task_id}"}
    contents = (await mcp_client.read_resource(f"luma://tasks/{task.task_id}")).contents
    body = json.loads(contents[0].text)  # type: ignore[union-attr]
    assert body["status"] == "succeeded" and body["video_url"] == task.video_url
    assert not any(key in body for key in BOOKKEEPING)


async def test_prompts_add_real_guidance(mcp_client: Client) -> None:
    names = {p.name for p in (await mcp_client.list_prompts()).prompts}
    assert names == {"video_prompt", "storyboard"}
    idea = (
        await mcp_client.get_prompt("video_prompt", {"idea": "a cat on a skateboard", "style": "claymation"})
    ).messages
    text = idea[0].content.text  # type: ignore[union-attr]
    assert "a cat on a skateboard" in text and "claymation" in text
    assert "Camera" in text and "negative prompt" in text and "generate_video" in text
    board = (await mcp_client.get_prompt("storyboard", {"story": "a day at sea", "shots": "4"})).messages
    text = board[0].content.text  # type: ignore[union-attr]
    assert "4 shots" in text and "extend_video(video_id=" in text and "Never submit a shot twice" in text


async def test_a_crash_still_tells_the_model_what_to_do(
    sim_server: SimulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    server = create_server(make_settings(sim_server.url))

    @server.tool()
    def broken() -> str:  # stands in for a bug anywhere in a tool
        raise RuntimeError("internal detail that must not leak")

    async with Client(server) as client:
        result = await client.call_tool("broken", {})
    text = text_of(result)
    assert result.is_error and "broken failed inside luma-mcp (RuntimeError)" in text and "list_tasks" in text
    assert "internal detail" not in text
    assert any("internal detail" in str(r.exc_info) for r in caplog.records if r.exc_info)
