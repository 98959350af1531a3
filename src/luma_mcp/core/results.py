"""What the model sees: small typed task results and the plain text beside them.

Pure functions, no I/O: a task record from the API becomes a `TaskResult` (never the
raw record, never the account's ids), and a result becomes one or two lines of text that
always carry the video URL when there is one, for a finished video its video_id and how to
continue it (`task_lines`, in every tool's text), and while unfinished the next call to make.
"""

from __future__ import annotations

import time

from pydantic import BaseModel, Field

from luma_mcp.api.errors import UNKNOWN_VIDEO_ADVICE, says_video_unknown
from luma_mcp.api.models import ErrorDetail, TaskRecord, TaskStatus, VideoResult, derive_status
from luma_mcp.checks.urls import is_web_url

# A finished video whose URL is no web address: the provider's fault, not the prompt's.
UNUSABLE_VIDEO_URL = "unusable_video_url"
_UNUSABLE_MESSAGE = "The provider reported the video done, but its video URL is not an http(s) address"
_UNUSABLE_ADVICE = "Tell the user, and ask the server's operator to check the provider before submitting again."


class TaskError(BaseModel):
    code: str | None = None
    message: str
    trace_id: str | None = None


class TaskResult(BaseModel):
    # One video task as the model needs it. (No docstring: it would be sent in every outputSchema.)

    task_id: str
    status: TaskStatus
    video_url: str | None = None
    video_id: str | None = None  # what extend_video takes
    thumbnail_url: str | None = None
    width: int | None = None
    height: int | None = None
    prompt: str | None = None
    elapsed_seconds: float | None = None
    error: TaskError | None = None
    next_call: str | None = None  # the call to make next, while unfinished
    note: str | None = None  # e.g. that an earlier identical request's task was reused


class TaskList(BaseModel):
    # Several tasks, from one batch request.

    tasks: list[TaskResult]
    not_found: list[str] = Field(default_factory=list)
    next_call: str | None = None


class ListedTask(BaseModel):
    # One compact row of list_tasks.
    task_id: str | None = None
    status: str  # pending/processing/succeeded/failed, or sending/lost/refused for submits with no task
    created: str
    prompt: str | None = None  # the first 80 characters
    video_url: str | None = None
    video_id: str | None = None  # what extend_video takes
    action: str


class TaskPage(BaseModel):
    tasks: list[ListedTask]
    next_cursor: str | None = None


class SavedVideo(BaseModel):
    task_id: str
    path: str
    size_bytes: int
    sha256: str
    thumbnail_path: str | None = None


def from_record(record: TaskRecord, now: float | None = None) -> TaskResult:
    """A task record from `/luma/tasks` as a `TaskResult`."""
    response = record.response
    result = from_video_result(record.id, response, fallback_prompt=_request_prompt(record))
    if record.elapsed is not None:
        result.elapsed_seconds = round(record.elapsed, 1)
    elif record.created_at is not None:
        end = record.finished_at or (time.time() if now is None else now)
        result.elapsed_seconds = round(max(0.0, end - record.created_at), 1)
    if result.error and not result.error.trace_id:
        result.error.trace_id = record.trace_id
    return result


def from_video_result(task_id: str, response: VideoResult | None, fallback_prompt: str | None = None) -> TaskResult:
    """The one conversion of a provider's answer (a task's `response`, a callback body) into a
    result: polls, callbacks, the ledger and the player all get theirs from here. Media URLs
    that are not http(s) (`is_web_url`) are dropped here, so no `javascript:` link gets further:
    a finished video whose URL is not one reads as failed, saying why."""
    status = derive_status(response)
    result = TaskResult(task_id=task_id, status=status, prompt=fallback_prompt)
    if response is None:
        return result
    result.prompt = response.prompt or fallback_prompt
    if status is TaskStatus.SUCCEEDED:
        result.video_url = response.video_url
        result.video_id = response.video_id
        result.thumbnail_url = response.thumbnail_url
        result.width = response.video_width
        result.height = response.video_height
    elif status is TaskStatus.FAILED:
        result.error = _task_error(response)
    return only_web_media(result, response.trace_id)


def only_web_media(result: TaskResult, trace_id: str | None = None) -> TaskResult:
    """`result` with no media URL that is not http(s): a thumbnail is dropped, a finished video
    without a usable URL reads as failed (nothing of it shown), saying why. Applied where the provider's answer
    becomes a result and again where a stored row is read (rows written before this rule)."""
    if result.thumbnail_url is not None and not is_web_url(result.thumbnail_url):
        result.thumbnail_url = None
    if result.status is TaskStatus.SUCCEEDED and not is_web_url(result.video_url or ""):
        result.status, result.video_url, result.video_id, result.thumbnail_url = TaskStatus.FAILED, None, None, None
        result.width = result.height = None
        result.error = TaskError(code=UNUSABLE_VIDEO_URL, message=_UNUSABLE_MESSAGE, trace_id=trace_id)
    return result


def _task_error(response: VideoResult) -> TaskError:
    error = response.error
    if isinstance(error, ErrorDetail):
        return TaskError(code=error.code, message=error.message or "The generation failed", trace_id=response.trace_id)
    return TaskError(message=error or "The generation failed", trace_id=response.trace_id)


def _request_prompt(record: TaskRecord) -> str | None:
    prompt = (record.request or {}).get("prompt")
    return prompt if isinstance(prompt, str) else None


# --- text -------------------------------------------------------------------------------

_NOT_CHARGED = "Failed tasks are not charged"
_FAILED_ADVICE = f"{_NOT_CHARGED}: adjust the prompt or inputs (public image URLs) and submit again."


def get_task_call(task_ids: list[str], wait_seconds: int) -> str:
    if len(task_ids) == 1:
        return f'get_task(task_id="{task_ids[0]}", wait_seconds={wait_seconds})'
    ids = ", ".join(f'"{i}"' for i in task_ids)
    return f"get_task(task_ids=[{ids}], wait_seconds={wait_seconds})"


def with_next_call(result: TaskResult, wait_seconds: int) -> TaskResult:
    result.next_call = None if result.status.finished else get_task_call([result.task_id], wait_seconds)
    return result


def _seconds(value: float | None) -> str:
    return f"{value:.0f} s" if value is not None else "moments"


def status_line(result: TaskResult) -> str:
    """One line about one task."""
    if result.status is TaskStatus.SUCCEEDED:
        size = f", {result.width}x{result.height}" if result.width and result.height else ""
        return (
            f"Video ready: {result.video_url} (task {result.task_id}{size}, took {_seconds(result.elapsed_seconds)})."
        )
    if result.status is TaskStatus.FAILED:
        error = result.error or TaskError(message="The generation failed")
        facts = ", ".join(f for f in (error.code, f"trace_id {error.trace_id}" if error.trace_id else None) if f)
        return f"Task {result.task_id} failed: {error.message.rstrip('.')}" + (f" ({facts})." if facts else ".")
    doing = "is queued" if result.status is TaskStatus.PENDING else "is generating"
    return f"Task {result.task_id} {doing} ({_seconds(result.elapsed_seconds)} so far; videos take 1-5 minutes)."


def extend_call(video_id: str) -> str:
    return f'extend_video(video_id="{video_id}", prompt="...")'


def task_lines(result: TaskResult) -> list[str]:
    """What every text says of one task: its status line and, for a finished video, how to
    continue it. Hosts that show the model only the text (not the structured result) need the
    video_id written out, whichever tool found the video."""
    line = status_line(result)
    if result.status is TaskStatus.SUCCEEDED and result.video_id:
        return [line, f"To continue it: {extend_call(result.video_id)}."]
    return [line]


def task_text(result: TaskResult) -> str:
    """The text beside a single task's structured result: one or two lines (and a note)."""
    if result.note:
        return f"{result.note}\n{task_text(result.model_copy(update={'note': None}))}"
    if result.status is TaskStatus.SUCCEEDED:
        return "\n".join(task_lines(result))
    line = status_line(result)
    if result.status is TaskStatus.FAILED:
        error = result.error or TaskError(message="")
        if error.code == UNUSABLE_VIDEO_URL:
            return f"{line}\n{_UNUSABLE_ADVICE}"
        if says_video_unknown(error.message):
            return f"{line}\n{_NOT_CHARGED}. {UNKNOWN_VIDEO_ADVICE}"
        return f"{line}\n{_FAILED_ADVICE}"
    return f"{line}\nNext: {result.next_call}. Do not submit again: that would pay for a second video."


def list_text(tasks: TaskList) -> str:
    lines = [line for task in tasks.tasks for line in task_lines(task)]
    lines += [f"Task {task_id}: not found (check the id)." for task_id in tasks.not_found]
    if tasks.next_call:
        lines.append(f"Next: {tasks.next_call}.")
    return "\n".join(lines)


def page_text(page: TaskPage) -> str:
    """The text beside a list_tasks page: one line a task (a finished video's with its video_id),
    how to continue one, and how to get the next page."""
    if not page.tasks:
        return "No tasks found."
    lines = [
        " · ".join(
            part
            for part in (
                row.created.replace("T", " ")[:16],
                row.status,
                row.task_id or "(no task id)",
                f'"{row.prompt}"' if row.prompt else row.action,
                row.video_url,
                f'video_id="{row.video_id}"' if row.video_id else None,
            )
            if part
        )
        for row in page.tasks
    ]
    if any(row.video_id for row in page.tasks):
        lines.append(f"To continue a video: {extend_call('<its video_id>')}.")
    if page.next_cursor:
        lines.append(f'More: list_tasks(cursor="{page.next_cursor}").')
    return "\n".join(lines)


def progress_message(results: list[TaskResult]) -> str:
    """A line a person can read while waiting."""
    if len(results) == 1:
        result = results[0]
        if result.status is TaskStatus.PENDING:
            return f"Task {result.task_id}: queued ({_seconds(result.elapsed_seconds)})"
        if result.status is TaskStatus.PROCESSING:
            return f"Task {result.task_id}: generating for {_seconds(result.elapsed_seconds)}"
        return f"Task {result.task_id}: {'done' if result.status is TaskStatus.SUCCEEDED else 'failed'}"
    done = sum(r.status is TaskStatus.SUCCEEDED for r in results)
    failed = sum(r.status is TaskStatus.FAILED for r in results)
    running = len(results) - done - failed
    parts = [f"{done} done", f"{running} generating"] + ([f"{failed} failed"] if failed else [])
    return f"{len(results)} tasks: " + ", ".join(parts)
