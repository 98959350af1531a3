"""A wrong argument reads as one plain sentence: the argument, what was given, what is allowed
(read from the tool's schema), never pydantic's report; the same over the Tasks extension."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from luma_mcp.simulator.app import Simulator

from ..helpers.common import text_of

pytestmark = pytest.mark.anyio

LIBRARY_WORDS = ("pydantic", "validation error", "Arguments", "Input should", "[type=")

CASES = [
    (
        "generate_video",
        {"prompt": "x", "aspect_ratio": "2:1"},
        'generate_video\'s aspect_ratio must be one of "16:9", "9:16", "1:1", "4:3", "3:4", "21:9" or "9:21", '
        'not "2:1".',
    ),
    (
        "generate_video",
        {"prompt": "x", "wait_seconds": 51},
        "generate_video's wait_seconds must be a whole number from 0 to 50, not 51.",
    ),
    (
        "extend_video",
        {"video_id": "v", "wait_seconds": -1},
        "extend_video's wait_seconds must be a whole number from 0 to 50, not -1.",
    ),
    (
        "generate_video",
        {"prompt": "x" * 6000},
        f'generate_video\'s prompt must be text of 1 to 5000 characters, not "{"x" * 40}…" (6000 characters).',
    ),
    ("generate_video", {}, "generate_video needs prompt, text of 1 to 5000 characters, and none was given."),
    ("generate_video", {"prompt": 5}, "generate_video's prompt must be text of 1 to 5000 characters, not 5."),
    ("generate_video", {"prompt": "x", "loop": "maybe"}, 'generate_video\'s loop must be true or false, not "maybe".'),
    (
        "get_task",
        {"task_ids": [f"t{i}" for i in range(51)]},
        "get_task's task_ids must be a list of 1 to 50 items, each text of 1 to 128 characters, "
        "not a list of 51 items.",
    ),
    ("get_task", {"task_ids": ["a", ""]}, 'get_task\'s task_ids[1] must be text of 1 to 128 characters, not "".'),
    ("list_tasks", {"limit": 0}, "list_tasks's limit must be a whole number from 1 to 100, not 0."),
    (
        "list_tasks",
        {"since": "yesterday"},
        'list_tasks\'s since must be a date and time such as 2026-01-31T12:00:00Z, not "yesterday".',
    ),
    ("download_video", {}, "download_video needs task_id, text of 1 to 128 characters, and none was given."),
    (
        "view_task_status",
        {"task_ids": []},
        "view_task_status's task_ids must be a list of 1 to 50 items, each text of 1 to 128 characters, "
        "not an empty list.",
    ),
    (
        "get_task",
        {"task_id": "t", "colour": "red"},
        'get_task has no argument "colour"; its arguments are task_id, task_ids, wait_seconds.',
    ),
]  # fmt: skip


@pytest.mark.parametrize(("tool", "args", "sentence"), CASES)
async def test_each_kind_of_wrong_argument_is_one_plain_sentence(
    mcp_client: Client, sim: Simulator, tool: str, args: dict[str, Any], sentence: str
) -> None:
    result = await mcp_client.call_tool(tool, args)
    assert result.is_error and text_of(result) == sentence
    assert not any(word in text_of(result) for word in LIBRARY_WORDS)
    assert sim.requests == []


async def test_several_wrong_arguments_get_a_sentence_each(mcp_client: Client) -> None:
    result = await mcp_client.call_tool("generate_video", {"prompt": "x", "aspect_ratio": "2:1", "wait_seconds": 99})
    assert text_of(result).count(" must be ") == 2 and text_of(result).endswith("not 99.")


async def test_hidden_characters_are_never_echoed_raw(mcp_client: Client) -> None:
    result = await mcp_client.call_tool("generate_video", {"prompt": "x", "aspect_ratio": "\x1b[31m2:1\u202e"})
    text = text_of(result)
    assert "\x1b" not in text and "\u202e" not in text and r'not "\u001b[31m2:1\u202e".' in text
    unknown = await mcp_client.call_tool("generate_video", {"prompt": "x", "se\u202eed": 1})
    assert "\u202e" not in text_of(unknown) and r'"se\u202eed"' in text_of(unknown)


async def test_prompt_arguments_missing_or_unknown_are_plain_too(mcp_client: Client) -> None:
    with pytest.raises(MCPError) as missing:
        await mcp_client.get_prompt("storyboard", {})
    assert str(missing.value) == "storyboard needs story, text, and none was given."
    with pytest.raises(MCPError) as unknown:
        await mcp_client.get_prompt("video_prompt", {"idea": "a cat", "mood": "calm"})
    assert str(unknown.value) == 'video_prompt has no argument "mood"; its arguments are idea, style.'
