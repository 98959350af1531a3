"""Resources: the caller's recent tasks and one task, as JSON (the same service as the tools).

(No `from __future__ import annotations`: the SDK reads these signatures to find the Context.)
"""

import json

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceError, ToolError

from luma_mcp.api.errors import LumaMcpError
from luma_mcp.core.state import AppState
from luma_mcp.server.boundary import video_service


async def recent_tasks(ctx: Context[AppState], status: str | None = None) -> str:
    try:
        service = video_service(ctx)
        rows, _ = await service.list(
            status=status or None, since=None, until=None, limit=20, cursor=None, refresh=False
        )
    except (ToolError, LumaMcpError) as exc:
        raise ResourceError(str(exc)) from None
    return json.dumps([row.model_dump(exclude_none=True) for row in rows])


async def task(task_id: str, ctx: Context[AppState]) -> str:
    try:
        results = await video_service(ctx).fetch([task_id])
    except (ToolError, LumaMcpError) as exc:
        raise ResourceError(str(exc)) from None
    if task_id not in results:
        raise ResourceError(f"No task with id {task_id}.")
    return results[task_id].model_dump_json(exclude_none=True)


def add_resources(mcp: MCPServer[AppState]) -> None:
    # A template (with an optional ?status=) rather than a static resource: only templates
    # are handed the request context, which says whose tasks to list.
    mcp.resource(
        "luma://tasks{?status}",
        name="recent-tasks",
        title="Recent video tasks",
        description="The 20 most recent video tasks submitted from here, as JSON (luma://tasks)",
        mime_type="application/json",
    )(recent_tasks)
    mcp.resource(
        "luma://tasks/{task_id}",
        name="task",
        title="Video task",
        description="One video task's status and result, as JSON",
        mime_type="application/json",
    )(task)
