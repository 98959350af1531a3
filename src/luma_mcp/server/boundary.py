"""Where an MCP call meets the service: whose service it is, how failures read, progress, results.

Every tool and resource goes through here, so each of these rules has one place:
- the caller: `video_service(ctx)` builds the service for the current request's `Caller`
  (a plain call: the SDK's `Resolve(...)` parameters measured 0.24 ms a call, 6% of get_task),
  `caller_service(state)` the same for handlers that have no tool `Context` (the Tasks methods);
- failures: `answer` turns any `LumaMcpError` into the `ToolError` whose text the model acts on;
- progress: `reporter` sends a call's progress notifications;
- wrong arguments: `argument_error` and `unknown_arguments` say, in one sentence an argument,
  what was given and what the tool's schema allows (never pydantic's report);
- results: `tool_result` pairs a task's text with its structured result and media links, and
  `video_result` is what generate_video and extend_video answer for a task, wherever it is
  asked (the tools themselves, and the Tasks extension's final result).
"""

import json
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, ContentBlock, ResourceLink, TextContent
from pydantic import BaseModel, ValidationError

from luma_mcp.api.errors import LumaMcpError
from luma_mcp.api.models import TaskStatus
from luma_mcp.core.caller import current_caller
from luma_mcp.core.results import TaskResult, task_text, with_next_call
from luma_mcp.core.service import VideoService
from luma_mcp.core.state import AppState
from luma_mcp.core.waiting import Report
from luma_mcp.server.schema import compact_schema

T = TypeVar("T")


def video_service(ctx: Context[AppState]) -> VideoService:
    """The service for the caller of the current request; a caller that cannot be served
    (no token anywhere) gets the ToolError that says what to set."""
    try:
        return caller_service(ctx.request_context.lifespan_context)
    except LumaMcpError as exc:
        raise ToolError(str(exc)) from None


def caller_service(state: AppState) -> VideoService:
    """The service for the caller of the request being handled (a `LumaMcpError` saying what
    to set when they cannot be served)."""
    return VideoService(state, current_caller(state))


async def answer(awaitable: Awaitable[T]) -> T:
    """Await service work at the tool boundary; its failures become the ToolError text the model acts on."""
    try:
        return await awaitable
    except LumaMcpError as exc:
        raise ToolError(str(exc)) from None


def reporter(ctx: Context[AppState], total: float | None = None) -> Report:
    """This call's progress notifications. `total`, when given, is the wait's length in
    seconds, which the submit's first line (sent before any wait) does not know itself."""

    async def report(progress: float, own_total: float | None, message: str) -> None:
        await ctx.report_progress(progress, (total if total is not None else own_total) or None, message)

    return report


def tool_result(text: str, structured: BaseModel, tasks: Sequence[TaskResult] = ()) -> CallToolResult:
    """The text the model reads, the structured result, and a link to each finished video."""
    content: list[ContentBlock] = [TextContent(type="text", text=text)]
    for task in tasks:
        if task.status is not TaskStatus.SUCCEEDED:
            continue
        media = [(task.video_url, "video", "video/mp4"), (task.thumbnail_url, "thumbnail", "image/jpeg")]
        content += [
            ResourceLink(type="resource_link", uri=url, name=f"{kind}-{task.task_id}", mime_type=mime)
            for url, kind, mime in media
            if url
        ]
    return CallToolResult(content=content, structured_content=structured.model_dump(mode="json", exclude_none=True))


def video_result(result: TaskResult, next_wait: int) -> CallToolResult:
    """What generate_video and extend_video answer about their task: its text, structured
    result and links, and while it is unfinished the get_task call (waiting `next_wait`) to make."""
    result = with_next_call(result.model_copy(), next_wait)
    return tool_result(task_text(result), result, [result])


# --- argument errors --------------------------------------------------------------------------
# The SDK's text for a wrong argument is pydantic's report (`1 validation error for
# generate_videoArguments ... errors.pydantic.dev`). Here it becomes one sentence an argument,
# whose "allowed" part is read from the tool's own input schema, so a new argument gets one too.

_SHOWN_CHARS = 40  # of a given text: enough to recognise it, never a whole prompt


def argument_error(owner: str, schema: dict[str, Any], error: ValidationError) -> str:
    """One sentence for each argument `error` names (the first problem of each)."""
    schema = compact_schema(schema)
    sentences: dict[str, str] = {}
    for problem in error.errors():
        loc = [part for part in problem["loc"] if part != "arguments"] or ["arguments"]
        top = str(loc[0])
        if top in sentences:
            continue
        name = top + "".join(f"[{part}]" for part in loc[1:])
        if problem["type"] == "missing":
            allowed = allowed_values(_schema_at(schema, loc))
            sentences[top] = f"{owner} needs {name}, {allowed}, and none was given."
        else:
            allowed = allowed_values(_schema_at(schema, loc))
            sentences[top] = f"{owner}'s {name} must be {allowed}, not {shown(problem.get('input'))}."
    return " ".join(sentences.values())


def unknown_arguments(owner: str, unknown: list[str], known: list[str], hint: str = "") -> str:
    """The sentence for arguments `owner` does not have (the SDK would drop them silently)."""
    more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
    names = ", ".join(shown(name) for name in unknown[:5]) + more
    return f"{owner} has no argument {names}; its arguments are {', '.join(sorted(known))}{hint}."


def allowed_values(schema: Any) -> str:
    """What a JSON schema allows, in words ("a whole number from 0 to 50")."""
    if not isinstance(schema, dict):
        return "a valid value"
    if "enum" in schema:
        choices = [json.dumps(v) for v in schema["enum"]]
        return "one of " + (", ".join(choices[:-1]) + " or " + choices[-1] if len(choices) > 1 else choices[0])
    if "anyOf" in schema:
        return " or ".join(allowed_values(variant) for variant in schema["anyOf"])
    kind = schema.get("type")
    if kind == "string":
        if schema.get("format") == "date-time":
            return "a date and time such as 2026-01-31T12:00:00Z"
        return "text" + _range(schema.get("minLength"), schema.get("maxLength"), "character")
    if kind in ("integer", "number"):
        low, high = schema.get("minimum"), schema.get("maximum")
        words = "a whole number" if kind == "integer" else "a number"
        if low is not None and high is not None:
            return f"{words} from {low} to {high}"
        return words + (f" of at least {low}" if low is not None else f" of at most {high}" if high is not None else "")
    if kind == "boolean":
        return "true or false"
    if kind == "array":
        each = allowed_values(schema.get("items"))
        return "a list" + _range(schema.get("minItems"), schema.get("maxItems"), "item") + f", each {each}"
    if kind == "null":
        return "null"
    if kind == "object":
        return "an object"
    return "a valid value"


def shown(value: Any) -> str:
    """A value a caller sent, safe to repeat: texts cut short, hidden characters escaped."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        text = repr(value)
        return text if len(text) <= _SHOWN_CHARS else f"a {len(text)}-digit number"
    if isinstance(value, str):
        quoted = '"' + "".join(_visible(c) for c in value[:_SHOWN_CHARS]) + '"'
        return quoted if len(value) <= _SHOWN_CHARS else f'{quoted[:-1]}…" ({len(value)} characters)'
    if isinstance(value, list | tuple):
        if not value:
            return "an empty list"
        return f"a list of {len(value)} item{'s' if len(value) != 1 else ''}"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def _visible(char: str) -> str:
    if char in '"\\':
        return "\\" + char
    return char if char.isprintable() else f"\\u{ord(char):04x}"


def _range(low: int | None, high: int | None, unit: str) -> str:
    if low is not None and high is not None:
        return f" of {low} to {high} {unit}s" if low != high else f" of {low} {unit}{'s' if low != 1 else ''}"
    if high is not None:
        return f" of at most {high} {unit}{'s' if high != 1 else ''}"
    if low:
        return f" of at least {low} {unit}{'s' if low != 1 else ''}"
    return ""


def _schema_at(schema: Any, loc: list[Any]) -> Any:
    """The part of a (compact) tool schema that `loc`, a pydantic error location, points at."""
    for part in loc:
        if not isinstance(schema, dict):
            return None
        schema = schema.get("items") if isinstance(part, int) else (schema.get("properties") or {}).get(part)
    return schema
