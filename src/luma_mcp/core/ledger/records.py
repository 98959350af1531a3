"""What one ledger row stores, and how it reads back (`LedgerEntry`).

A row's `result` is the ledger's own record, `StoredResult`, not the model-facing
`TaskResult`: the tool output may rename or add fields without stranding old rows. The two
meet at one point, `to_stored` and `from_stored` below. Reading ignores fields it does not
know, so rows written by any release (which stored `TaskResult` itself, with `next_call`
and `note`) still read. A row with unreadable data reads degraded, never as an error: one
bad row must not break every listing. Also here: the opaque cursor `list_tasks` pages with.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict

from luma_mcp.api.errors import LedgerError
from luma_mcp.api.models import SubmitState, TaskStatus
from luma_mcp.core.results import TaskError, TaskResult, only_web_media

T = TypeVar("T")


@dataclass(frozen=True)
class LedgerEntry:
    row_id: int
    tenant: str
    task_id: str | None
    action: str
    params: dict[str, Any]
    state: SubmitState
    result: TaskResult | None
    error: str | None
    idempotency_key: str | None
    created_at: float
    updated_at: float
    callback_expected: bool = False  # the submit carried our callback URL (its secret's hash is kept)
    unfollowed_at: float | None = None  # when tasks/cancel stopped following it

    @property
    def finished(self) -> bool:
        return self.result is not None and self.result.status.finished

    @property
    def prompt(self) -> str | None:
        prompt = self.params.get("prompt")
        return prompt if isinstance(prompt, str) else None


class StoredError(BaseModel):
    model_config = ConfigDict(extra="ignore", defer_build=True)  # built on first use, not at start-up

    code: str | None = None
    message: str
    trace_id: str | None = None


class StoredResult(BaseModel):
    """A task's latest known result, as a row keeps it."""

    model_config = ConfigDict(extra="ignore", defer_build=True)  # built on first use, not at start-up

    task_id: str
    status: TaskStatus
    video_url: str | None = None
    video_id: str | None = None
    thumbnail_url: str | None = None
    width: int | None = None
    height: int | None = None
    prompt: str | None = None
    elapsed_seconds: float | None = None
    error: StoredError | None = None


def to_stored(result: TaskResult) -> StoredResult:
    """What a row keeps of a result: the task, never the advice of the moment (`next_call`, `note`)."""
    error = result.error
    return StoredResult(
        task_id=result.task_id,
        status=result.status,
        video_url=result.video_url,
        video_id=result.video_id,
        thumbnail_url=result.thumbnail_url,
        width=result.width,
        height=result.height,
        prompt=result.prompt,
        elapsed_seconds=result.elapsed_seconds,
        error=None if error is None else StoredError(code=error.code, message=error.message, trace_id=error.trace_id),
    )


def from_stored(stored: StoredResult) -> TaskResult:
    error = stored.error
    result = TaskResult(
        task_id=stored.task_id,
        status=stored.status,
        video_url=stored.video_url,
        video_id=stored.video_id,
        thumbnail_url=stored.thumbnail_url,
        width=stored.width,
        height=stored.height,
        prompt=stored.prompt,
        elapsed_seconds=stored.elapsed_seconds,
        error=None if error is None else TaskError(code=error.code, message=error.message, trace_id=error.trace_id),
    )
    return only_web_media(result)  # a row may predate the rule


def dump_result(result: TaskResult) -> str:
    return to_stored(result).model_dump_json()


def load_result(text: str) -> TaskResult:
    """A stored result; a ValueError (pydantic's) when it cannot be read."""
    return from_stored(StoredResult.model_validate_json(text))


def read_row(row: Any, unreadable: Callable[[int, Exception], None]) -> LedgerEntry:
    """A row as it is stored; what cannot be read is left out and reported to `unreadable`."""
    row_id, task_id = row["row_id"], row["task_id"]
    problems: list[ValueError] = []

    def readable(read: Callable[[], T], fallback: T) -> T:
        try:
            return read()
        except ValueError as exc:  # JSON, enum and pydantic errors are ValueErrors
            problems.append(exc)
            return fallback

    # An unknown state: a task id means the API accepted it; without one a video may exist.
    state = readable(lambda: SubmitState(row["state"]), SubmitState.ACCEPTED if task_id else SubmitState.LOST)
    loaded: object = readable(lambda: json.loads(row["params"]), {})
    result = readable(lambda: load_result(row["result"]) if row["result"] else None, None)
    created_at = readable(lambda: moment(row["created_at"]), 0.0)
    updated_at = readable(lambda: moment(row["updated_at"]), created_at)
    unfollowed = row["unfollowed_at"]
    unfollowed_at = None if unfollowed is None else readable(lambda: moment(unfollowed), updated_at)
    if problems:
        unreadable(row_id, problems[0])
    return LedgerEntry(
        row_id=row_id,
        tenant=row["tenant"],
        task_id=task_id,
        action=row["action"],
        params=loaded if isinstance(loaded, dict) else {},
        state=state,
        result=result,
        error=row["error"],
        idempotency_key=row["idempotency_key"],
        created_at=created_at,
        updated_at=updated_at,
        callback_expected=row["callback_hash"] is not None,
        unfollowed_at=unfollowed_at,
    )


def moment(value: Any) -> float:
    """A stored timestamp, if it is one a date can be made of (years 1970 to 9999)."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"not a timestamp: {type(value).__name__}") from None
    if not 0 <= seconds < 253402300800:  # NaN fails too
        raise ValueError("a timestamp out of range")
    return seconds


def encode_cursor(created_at: float, row_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps([created_at, row_id]).encode()).decode()


def decode_cursor(cursor: str) -> tuple[float, int]:
    refused = LedgerError("That cursor is not one list_tasks gave; call list_tasks without a cursor.")
    try:
        created_at, row_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        position = float(created_at), int(row_id)
    except (ValueError, TypeError, OverflowError) as exc:  # OverflowError: int(1e999)
        raise refused from exc
    # Only what encode_cursor writes: a finite time and a row id both databases can compare.
    if not math.isfinite(position[0]) or not 0 <= position[1] < 2**63:
        raise refused
    return position
