"""A client of the MCP Tasks extension (`io.modelcontextprotocol/tasks`), built on the SDK's
`ClientExtension`: it declares the extension on every request, claims `resultType: "task"` on
tools/call, and follows a task with tasks/get at the server's `pollIntervalMs` until it ends,
bounded in polls and in time. Everything it saw is kept, for the tests to look at."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import anyio
from mcp.client.extension import ClaimContext, ClientExtension, ResultClaim
from mcp.client.session import ClientSession
from mcp_types import CallToolResult, Request, RequestParams, Result

TASKS_ID = "io.modelcontextprotocol/tasks"
TERMINAL = frozenset({"completed", "failed", "cancelled"})


class TaskFields(Result):
    # The spec's `Task` (wire names through the SDK's camelCase aliases).
    task_id: str
    status: Literal["working", "input_required", "completed", "failed", "cancelled"]
    status_message: str | None = None
    created_at: str
    last_updated_at: str
    ttl_ms: int | None
    poll_interval_ms: int | None = None


class CreatedTask(TaskFields):
    # `CreateTaskResult`: a task handle in place of a tool result.
    result_type: Literal["task"] = "task"


class DetailedTask(TaskFields):
    # `GetTaskResult`: the task now, with the final result once completed.
    result_type: Literal["complete"] = "complete"
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class Ack(Result):
    result_type: Literal["complete"] = "complete"


class TaskParams(RequestParams):
    task_id: str


class GetTask(Request[TaskParams, Literal["tasks/get"]]):
    method: Literal["tasks/get"] = "tasks/get"
    name_param = "taskId"  # the spec: tasks/* carry the task id in the Mcp-Name header


class CancelTask(Request[TaskParams, Literal["tasks/cancel"]]):
    method: Literal["tasks/cancel"] = "tasks/cancel"
    name_param = "taskId"


class UpdateTask(Request[TaskParams, Literal["tasks/update"]]):
    method: Literal["tasks/update"] = "tasks/update"
    name_param = "taskId"


class TaskResultRequest(Request[TaskParams, Literal["tasks/result"]]):
    method: Literal["tasks/result"] = "tasks/result"
    name_param = "taskId"


class TaskListRequest(Request[RequestParams, Literal["tasks/list"]]):
    method: Literal["tasks/list"] = "tasks/list"


class TaskEnded(Exception):
    """The task ended without a result (failed or cancelled)."""

    def __init__(self, task: DetailedTask) -> None:
        super().__init__(f"task {task.task_id} ended {task.status}: {task.status_message}")
        self.task = task


async def get_task(session: ClientSession, task_id: str) -> DetailedTask:
    return await session.send_request(GetTask(params=TaskParams(task_id=task_id)), DetailedTask)


async def cancel_task(session: ClientSession, task_id: str) -> Ack:
    return await session.send_request(CancelTask(params=TaskParams(task_id=task_id)), Ack)


async def update_task(session: ClientSession, task_id: str) -> Ack:
    return await session.send_request(UpdateTask(params=TaskParams(task_id=task_id)), Ack)


class TasksClient(ClientExtension):
    """Declares the extension and resolves task handles by polling tasks/get."""

    identifier = TASKS_ID

    def __init__(self, *, max_polls: int = 200, max_seconds: float = 30.0) -> None:
        self.max_polls = max_polls
        self.max_seconds = max_seconds
        self.created: list[CreatedTask] = []
        self.seen: list[DetailedTask] = []

    def claims(self) -> Sequence[ResultClaim[Any]]:
        return [ResultClaim(result_type="task", model=CreatedTask, resolve=self._resolve)]

    async def _resolve(self, created: CreatedTask, ctx: ClaimContext) -> CallToolResult:
        self.created.append(created)
        return await self.follow(ctx.session, created)

    async def follow(self, session: ClientSession, created: TaskFields) -> CallToolResult:
        """Poll until the task ends, at the interval the server asks for (at most `max_polls`
        polls and `max_seconds`); its final CallToolResult, else TaskEnded or TimeoutError."""
        deadline = anyio.current_time() + self.max_seconds
        interval = created.poll_interval_ms
        for _ in range(self.max_polls):
            left = deadline - anyio.current_time()
            if left <= 0:
                break
            await anyio.sleep(min((interval or 1000) / 1000, left))
            task = await get_task(session, created.task_id)
            self.seen.append(task)
            if task.status == "completed":
                return CallToolResult.model_validate(task.result)
            if task.status in TERMINAL:
                raise TaskEnded(task)
            interval = task.poll_interval_ms or interval
        raise TimeoutError(f"task {created.task_id} did not end within {self.max_polls} polls / {self.max_seconds} s")
