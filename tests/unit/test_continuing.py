"""A finished video's text says its video_id and how to continue it, whichever tool found it:
hosts that show the model only the text (pydantic-ai, openai-agents' default, langchain's
content) must be able to extend a video found by get_task or list_tasks; and a video_id the
provider does not have is told as that, not as a problem with the inputs."""

from __future__ import annotations

import re

import pytest
from mcp import Client

from luma_mcp.core.results import TaskResult
from luma_mcp.simulator.app import FAIL_MARKER, Simulator

from ..helpers.common import text_of

pytestmark = pytest.mark.anyio

EXTEND_CALL = re.compile(r'extend_video\(video_id="([^"]+)", prompt="\.\.\."\)')


async def submitted(client: Client, prompt: str) -> str:
    result = await client.call_tool("generate_video", {"prompt": prompt, "wait_seconds": 0})
    return TaskResult.model_validate(result.structured_content).task_id


async def test_a_client_reading_only_get_tasks_text_can_continue_the_video(mcp_client: Client, sim: Simulator) -> None:
    task_id = await submitted(mcp_client, "A lighthouse at dusk")
    found = await mcp_client.call_tool("get_task", {"task_id": task_id, "wait_seconds": 10})
    video_id = sim.tasks[task_id].video_id
    assert f'To continue it: extend_video(video_id="{video_id}", prompt="...").' in text_of(found)
    # Only the text: the id the model would copy from it.
    match = EXTEND_CALL.search(text_of(found))
    assert match is not None
    extended = await mcp_client.call_tool("extend_video", {"video_id": match.group(1), "prompt": "the beam sweeps"})
    assert not extended.is_error, text_of(extended)
    new_task = TaskResult.model_validate(extended.structured_content).task_id
    assert new_task != task_id and sim.submits()[-1]["video_id"] == video_id


async def test_each_finished_video_of_a_batch_names_its_own_video_id(mcp_client: Client, sim: Simulator) -> None:
    ids = [await submitted(mcp_client, f"shot {i}") for i in range(2)]
    batch = await mcp_client.call_tool("get_task", {"task_ids": ids, "wait_seconds": 10})
    lines = text_of(batch).splitlines()
    for task_id in ids:
        ready = next(i for i, line in enumerate(lines) if f"(task {task_id}" in line)
        continued = EXTEND_CALL.search(lines[ready + 1])
        assert continued is not None and continued.group(1) == sim.tasks[task_id].video_id


async def test_list_tasks_names_the_video_ids_of_finished_videos(mcp_client: Client, sim: Simulator) -> None:
    done = await submitted(mcp_client, "A finished one")
    await mcp_client.call_tool("get_task", {"task_id": done, "wait_seconds": 10})
    sim.processing_seconds = 30
    running = await submitted(mcp_client, "A running one")
    text = text_of(await mcp_client.call_tool("list_tasks", {}))
    row = next(line for line in text.splitlines() if done in line)
    assert f'video_id="{sim.tasks[done].video_id}"' in row
    assert "video_id" not in next(line for line in text.splitlines() if running in line)
    assert text.splitlines()[-1] == 'To continue a video: extend_video(video_id="<its video_id>", prompt="...").'


async def test_extending_a_video_id_the_provider_does_not_have_says_so(mcp_client: Client) -> None:
    result = await mcp_client.call_tool("extend_video", {"video_id": "0105c090-not-ours", "wait_seconds": 10})
    task = TaskResult.model_validate(result.structured_content)
    assert task.status == "failed"
    text = text_of(result)
    assert "0105c090-not-ours was not found" in text  # the provider's words, kept
    assert "The provider has no such video" in text and "(list_tasks lists them)." in text
    assert "image" not in text  # no advice about image URLs for a missing video


async def test_other_failed_videos_keep_the_advice_about_inputs(mcp_client: Client) -> None:
    result = await mcp_client.call_tool("generate_video", {"prompt": f"storm {FAIL_MARKER}", "wait_seconds": 10})
    assert "(public image URLs)" in text_of(result) and "no such video" not in text_of(result)
