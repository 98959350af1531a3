"""Typed bodies of the Luma API (requests and every documented response shape).

Requests are strict (`extra="forbid"`) and serialise without null or unset fields, so
nothing the API does not have ever leaves this process. Responses are lenient
(`extra="ignore"`): unknown fields, and the account bookkeeping ids of task records
(`_id`, `user_id`, `credential_id`, ...), are dropped at parse time and never reach a caller.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from luma_mcp.config import AspectRatio


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, defer_build=True)

    def to_body(self) -> dict[str, Any]:
        """The JSON body: aliases applied, no null or unset fields."""
        return self.model_dump(by_alias=True, exclude_none=True)


class GenerateRequest(_Request):
    """`POST /luma/videos` with `action: generate` (text- or image-to-video)."""

    action: Literal["generate"] = "generate"
    prompt: str = Field(min_length=1)
    aspect_ratio: AspectRatio | None = None
    loop: bool | None = None
    enhancement: bool | None = None
    start_image_url: str | None = None
    end_image_url: str | None = None
    callback_url: str | None = None
    async_: bool | None = Field(default=None, alias="async")


class ExtendRequest(_Request):
    """`POST /luma/videos` with `action: extend`: continue an earlier video."""

    action: Literal["extend"] = "extend"
    prompt: str | None = None
    video_id: str | None = None
    video_url: str | None = None
    end_image_url: str | None = None
    callback_url: str | None = None
    async_: bool | None = Field(default=None, alias="async")

    @model_validator(mode="after")
    def _exactly_one_source(self) -> ExtendRequest:
        if (self.video_id is None) == (self.video_url is None):
            raise ValueError("extend needs exactly one of video_id or video_url")
        return self


VideoRequest = GenerateRequest | ExtendRequest


class RetrieveRequest(_Request):
    action: Literal["retrieve"] = "retrieve"
    id: str


class RetrieveBatchRequest(_Request):
    action: Literal["retrieve_batch"] = "retrieve_batch"
    ids: list[str]


class _Response(BaseModel):
    model_config = ConfigDict(extra="ignore", defer_build=True)


class ErrorDetail(_Response):
    code: str | None = None
    message: str | None = None


class ErrorBody(_Response):
    """The platform's error envelope. `error` is sometimes a bare string."""

    success: bool | None = None
    error: ErrorDetail | str | None = None
    trace_id: str | None = None

    @property
    def code(self) -> str | None:
        return self.error.code if isinstance(self.error, ErrorDetail) else None

    @property
    def message(self) -> str | None:
        return self.error.message if isinstance(self.error, ErrorDetail) else self.error


class VideoResult(_Response):
    """A finished video (blocking answer, callback body, or a task's `response`).

    Also a progress snapshot (no URL yet) or a failure (`success: false`, `error`).
    """

    success: bool | None = None
    task_id: str | None = None
    trace_id: str | None = None
    video_id: str | None = None
    prompt: str | None = None
    video_url: str | None = None
    video_width: int | None = None
    video_height: int | None = None
    state: str | None = None
    thumbnail_url: str | None = None
    thumbnail_width: int | None = None
    thumbnail_height: int | None = None
    error: ErrorDetail | str | None = None


class Accepted(_Response):
    """Answer to an async or callback submit: at least a `task_id`."""

    task_id: str = Field(min_length=1)
    success: bool | None = None
    trace_id: str | None = None


class TaskRecord(_Response):
    """One task from `POST /luma/tasks`. Bookkeeping ids are dropped by `extra="ignore"`."""

    id: str
    created_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    elapsed: float | None = None
    request: dict[str, Any] | None = None
    response: VideoResult | None = None
    # The record's trace id is kept (support asks for it); the account's ids are not.
    trace_id: str | None = None


class TaskBatch(_Response):
    items: list[TaskRecord] = Field(default_factory=list)
    count: int | None = None


class TaskStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (TaskStatus.SUCCEEDED, TaskStatus.FAILED)


class SubmitState(StrEnum):
    """Where a submit stands in the ledger; once ACCEPTED, its task has a TaskStatus."""

    SENDING = "sending"  # written, request in flight (or the process died while sending)
    ACCEPTED = "accepted"  # upstream gave a task id
    # No longer written (such submits leave no row), but older ledgers still hold some.
    REFUSED = "refused"  # upstream said no, or was never reached: nothing started, nothing charged
    LOST = "lost"  # sent, but the answer never came: a video may exist whose id we do not know


# What a listing shows for a submit: its task's status, or (no task) its submit state. A
# Literal, so tools/list spells the values out; a test checks it against the two enums.
ListStatus = Literal["pending", "processing", "succeeded", "failed", "lost", "sending", "refused"]


_FAILED_STATES = frozenset({"failed", "error", "cancelled", "canceled"})
_QUEUED_STATES = frozenset({"pending", "queued", "waiting", "submitted"})


def derive_status(response: VideoResult | None) -> TaskStatus:
    """The one rule that turns a task's `response` into a status, for every caller.

    succeeded: `success` is true and there is a video URL.
    failed: `success` is false, the state says failed, or an error is set.
    pending: no response yet, or a queued state. Anything else is still processing
    (for example a snapshot that has no URL yet).
    """
    if response is None:
        return TaskStatus.PENDING
    if response.success is True and response.video_url:
        return TaskStatus.SUCCEEDED
    state = (response.state or "").lower()
    if response.success is False or state in _FAILED_STATES or response.error:
        return TaskStatus.FAILED
    if not state or state in _QUEUED_STATES:
        return TaskStatus.PENDING
    return TaskStatus.PROCESSING
