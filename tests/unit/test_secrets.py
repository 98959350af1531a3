"""The API token is a canary: after every kind of flow it must appear nowhere it could leak."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from luma_mcp.core.results import TaskResult
from luma_mcp.simulator.app import Simulator

from ..helpers.common import CANARY_TOKEN

pytestmark = pytest.mark.anyio


async def test_the_token_appears_nowhere(
    mcp_client: Client, sim: Simulator, private_folders: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[Any] = []

    async def call(tool: str, args: dict[str, Any]) -> Any:
        result = await mcp_client.call_tool(tool, args)
        seen.append(result.model_dump_json())
        return result

    made = await call("generate_video", {"prompt": "canary flight", "wait_seconds": 10})
    task = TaskResult.model_validate(made.structured_content)
    await call("extend_video", {"video_id": task.video_id, "prompt": "onward", "wait_seconds": 10})
    await call("get_task", {"task_ids": [task.task_id, "unknown"], "wait_seconds": 1})
    await call("list_tasks", {})
    await call("download_video", {"task_id": task.task_id, "include_thumbnail": True})
    for fault in ("429", "500", "html", "truncated", "drop"):
        sim.inject(fault, times=20)
        await call("generate_video", {"prompt": f"canary {fault}", "wait_seconds": 1})
        await call("get_task", {"task_id": task.task_id})
        sim.clear_faults()
    for code in ("invalid_token", "used_up", "token_mismatched"):
        sim.token_errors[CANARY_TOKEN] = code
        await call("generate_video", {"prompt": f"canary {code}"})
    sim.token_errors.clear()
    await call("generate_video", {"duration": 5})  # refused arguments
    for uri in ("luma://tasks", f"luma://tasks/{task.task_id}"):
        seen.append((await mcp_client.read_resource(uri)).model_dump_json())
    for name, args in (("video_prompt", {"idea": "x"}), ("storyboard", {"story": "y"})):
        seen.append((await mcp_client.get_prompt(name, args)).model_dump_json())

    assert len(seen) > 20 and caplog.records
    logged = [record.getMessage() for record in caplog.records]
    logged += [str(record.exc_info) for record in caplog.records if record.exc_info]
    for text in seen + logged:
        assert CANARY_TOKEN not in text
    stored = b"".join(p.read_bytes() for p in private_folders.rglob("*") if p.is_file())
    assert stored and CANARY_TOKEN.encode() not in stored  # ledger (and its WAL), downloads
