"""The stdio wire: stdin's lines read with a bound, each parsed once, and stdout written one message at a time.

A line of JSON-RPC longer than `MAX_LINE_BYTES` is refused without being held: its first
`MAX_LINE_BYTES` are read, the rest is read and dropped up to its newline, and the client gets a
JSON-RPC error (with the request's id when it leads the line, as clients write it). A line
that is not JSON (a 100,000-deep nest included: the parser has a depth limit) or not a JSON-RPC
message gets an error too, and the server reads on. Each line is parsed once, by the SDK's own
message adapter; the open requests are counted from the parsed messages, not by parsing again.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import BinaryIO

import anyio
import mcp_types as types
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.shared.message import SessionMessage
from pydantic import ValidationError

log = logging.getLogger(__name__)

# A request names URLs, not bodies; 16 MiB leaves room for an image pasted as base64 in an argument.
MAX_LINE_BYTES = 16 * 1024 * 1024
_DISCARD_CHUNK = 64 * 1024
_PARSE_IN_LOOP_BYTES = 1024 * 1024  # a longer line is parsed in a worker thread
_QUEUED_LINES = 2  # lines read ahead of the parser: with the bound, at most 32 MiB waiting
# The id, when a client writes it first (the SDK writes {"jsonrpc":"2.0","id":...}): found without parsing.
_LEADING_ID = re.compile(rb'\A\s*\{\s*(?:"jsonrpc"\s*:\s*"2\.0"\s*,\s*)?"id"\s*:\s*(-?\d{1,18}|"[^"\\]{0,200}")\s*[,}]')


@dataclass(frozen=True)
class Oversized:
    """A line longer than the bound: its start only, for the request's id."""

    head: bytes


class OpenRequests:
    """JSON-RPC requests read from the client and not yet answered on stdout."""

    def __init__(self) -> None:
        self.ids: set[types.RequestId] = set()

    def read(self, message: types.JSONRPCMessage) -> None:
        if isinstance(message, types.JSONRPCRequest):
            self.ids.add(message.id)

    def written(self, message: types.JSONRPCMessage) -> None:
        if isinstance(message, types.JSONRPCResponse | types.JSONRPCError) and message.id is not None:
            self.ids.discard(message.id)


def bounded_lines(wire: BinaryIO, limit: int = MAX_LINE_BYTES) -> Iterator[bytes | Oversized]:
    """Yield each line of `wire` (bytes), or `Oversized` for one over `limit` bytes, read through and dropped."""
    while line := wire.readline(limit + 1):
        if len(line) <= limit or line.endswith(b"\n"):
            yield line
            continue
        head = line[:256]
        del line  # the bound is the most ever held: the rest goes by in small chunks
        while (rest := wire.readline(_DISCARD_CHUNK)) and not rest.endswith(b"\n"):
            pass
        yield Oversized(head)


class InputLines:
    """stdin's lines, read by a daemon thread; `pause` stops handing them on, `end` is EOF now."""

    def __init__(self, wire: BinaryIO) -> None:
        self._wire = wire
        self._lines: queue.Queue[bytes | Oversized | None] = queue.Queue(maxsize=_QUEUED_LINES)
        self._paused = False
        threading.Thread(target=self._pump, name="luma-mcp stdin", daemon=True).start()

    def _pump(self) -> None:
        try:
            for line in bounded_lines(self._wire):
                self._lines.put(line)
        except (OSError, ValueError):
            log.debug("stdin could not be read further", exc_info=True)
        self._lines.put(None)

    async def __aiter__(self) -> AsyncIterator[bytes | Oversized]:
        while (line := await anyio.to_thread.run_sync(self._lines.get, abandon_on_cancel=True)) is not None:
            if not self._paused:  # stopping: requests after the signal are not started
                yield line

    def pause(self) -> None:
        self._paused = True

    def end(self) -> None:
        self._paused = True
        # Unblocks the reader at once; a full queue means one is about to be taken anyway.
        try:
            self._lines.put_nowait(None)
        except queue.Full:
            threading.Thread(target=self._lines.put, args=(None,), daemon=True).start()


class Output:
    """stdout for the protocol: each message written and flushed whole, then counted as answered."""

    def __init__(self, wire: BinaryIO, requests: OpenRequests) -> None:
        self._wire = wire
        self._requests = requests
        self._lock = anyio.Lock()

    async def send(self, message: types.JSONRPCMessage) -> None:
        data = message.model_dump_json(by_alias=True, exclude_unset=True).encode() + b"\n"

        def write_and_flush() -> None:
            self._wire.write(data)
            self._wire.flush()

        async with self._lock:  # the reader answers bad lines while the server answers requests
            await anyio.to_thread.run_sync(write_and_flush)
        self._requests.written(message)


@dataclass(frozen=True)
class Refused:
    """A line that is no message, and the error that answers it."""

    answer: types.JSONRPCError


def parse(line: bytes | Oversized) -> types.JSONRPCMessage | Refused:
    """The message on `line` (one parse, the SDK's own), or why there is none."""
    if isinstance(line, Oversized):
        megabytes = MAX_LINE_BYTES // (1024 * 1024)
        return _refused(line.head, types.INVALID_REQUEST, f"The message is over {megabytes} MiB: send a smaller one.")
    try:
        return types.jsonrpc_message_adapter.validate_json(line.decode("utf-8", errors="replace"), by_name=False)
    except ValidationError as exc:
        errors = exc.errors()
        if errors and errors[0]["type"] == "json_invalid":
            reason = errors[0]["msg"].removeprefix("Invalid JSON: ")
            return _refused(
                line, types.PARSE_ERROR, f"The line is not JSON ({reason}): send one JSON-RPC message a line."
            )
        return _refused(line, types.INVALID_REQUEST, "The line is not a JSON-RPC 2.0 message: check its fields.")


def _refused(line: bytes, code: int, message: str) -> Refused:
    found = _LEADING_ID.match(line[:256])
    request_id: types.RequestId | None = None
    if found:
        text = found[1].decode("utf-8", errors="replace")
        request_id = text[1:-1] if text.startswith('"') else int(text)
    return Refused(types.JSONRPCError(jsonrpc="2.0", id=request_id, error=types.ErrorData(code=code, message=message)))


Streams = tuple[MemoryObjectReceiveStream[SessionMessage | Exception], MemoryObjectSendStream[SessionMessage]]


@asynccontextmanager
async def serve_wire(lines: InputLines, output: Output, requests: OpenRequests) -> AsyncIterator[Streams]:
    """The server's read and write streams over `lines` and `output`, as the SDK's stdio transport gives them."""
    read_writer, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_stream, write_reader = anyio.create_memory_object_stream[SessionMessage](0)

    async def read() -> None:
        async with read_writer:
            async for line in lines:
                if isinstance(line, bytes) and len(line) > _PARSE_IN_LOOP_BYTES:
                    message = await anyio.to_thread.run_sync(parse, line)  # calls in progress go on meanwhile
                else:
                    message = parse(line)
                if isinstance(message, Refused):
                    log.info("refused a line from the client: %s", message.answer.error.message)
                    await output.send(message.answer)
                    continue
                requests.read(message)
                try:
                    await read_writer.send(SessionMessage(message))
                except (anyio.ClosedResourceError, anyio.BrokenResourceError):  # the server has stopped reading
                    return

    async def write() -> None:
        async with write_reader:
            async for session_message in write_reader:
                await output.send(session_message.message)

    async with anyio.create_task_group() as group:
        group.start_soon(read)
        group.start_soon(write)
        yield read_stream, write_stream
