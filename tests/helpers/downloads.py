"""download_video as the tests call it: a finished task to download, the call, the files left."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mcp import Client

from luma_mcp.core.results import TaskResult


async def finished_task(client: Client, prompt: str = "A paper lantern rising at night") -> TaskResult:
    result = await client.call_tool("generate_video", {"prompt": prompt, "wait_seconds": 10})
    task = TaskResult.model_validate(result.structured_content)
    assert task.status == "succeeded"
    return task


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


async def download(client: Client, **args: Any) -> Any:
    return await client.call_tool("download_video", args)
