"""Serving over stdio with a prompt, graceful stop on SIGINT and SIGTERM.

The SDK's stdio transport reads stdin in a worker thread that no cancellation can
interrupt, so a stop signal only took effect once the host closed stdin (SIGINT), or
killed the process without answering anyone (SIGTERM). Here stdin is read by a daemon
thread, and the server sees lines through a queue that can be ended at any time (stdio_wire.py:
a line is bounded, parsed once, and a bad one answered with an error).

Guarantees, on the first SIGINT or SIGTERM: no new request is read; `stopping` is set, so
calls that are waiting for a video answer at once with their task id; once every request
read so far has been answered (at most `SHUTDOWN_GRACE_SECONDS`), input ends and the server shuts
down as on EOF (anything still running is cancelled; ledger writes are shielded). A second
signal ends input at once. Like the SDK, fd 0 and fd 1 point at /dev/null and stderr while
serving, so stray reads and prints cannot touch the protocol. POSIX only: elsewhere the
SDK's own transport is used.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

import anyio
from anyio.abc import TaskGroup
from mcp.server import MCPServer

from luma_mcp.core.waiting import SHUTDOWN_GRACE_SECONDS
from luma_mcp.stdio.wire import InputLines, OpenRequests, Output, serve_wire

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def run_stdio(server: MCPServer[Any], stopping: threading.Event) -> None:
    """Serve `server` over stdin/stdout until EOF or a stop signal (see the module's guarantees)."""
    if sys.platform == "win32":  # pragma: no cover (no asyncio signal handlers there)
        server.run("stdio")
        return
    anyio.run(_serve, server, stopping)


async def _serve(server: MCPServer[Any], stopping: threading.Event) -> None:
    requests = OpenRequests()
    with _claimed_stdio() as (wire_in, wire_out):
        lines = InputLines(wire_in)
        output = Output(wire_out, requests)
        try:
            async with anyio.create_task_group() as signals_group:
                signals_group.start_soon(_stop_on_signals, lines, requests, stopping, signals_group)
                async with serve_wire(lines, output, requests) as (read_stream, write_stream):
                    lowlevel = server._lowlevel_server  # what MCPServer.run_stdio_async runs, with our streams
                    await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())
                signals_group.cancel_scope.cancel()
        finally:
            lines.end()  # releases a reader abandoned by a failed start, so the process can exit


async def _stop_on_signals(
    lines: InputLines, requests: OpenRequests, stopping: threading.Event, group: TaskGroup
) -> None:
    with anyio.open_signal_receiver(*STOP_SIGNALS) as received:
        async for number in received:
            name = signal.Signals(number).name
            if stopping.is_set():
                log.warning("%s again: stopping now", name)
                lines.end()
                continue
            log.info("%s: answering the %d open request(s), then stopping", name, len(requests.ids))
            stopping.set()  # waiting calls return their task ids now
            lines.pause()
            group.start_soon(_end_when_answered, lines, requests)


async def _end_when_answered(lines: InputLines, requests: OpenRequests) -> None:
    with anyio.move_on_after(SHUTDOWN_GRACE_SECONDS):
        while requests.ids:  # noqa: ASYNC110 (set by writes in other tasks; bounded by the grace period)
            await anyio.sleep(0.05)
    if requests.ids:
        log.warning("stopping with %d request(s) unanswered after %.0f s", len(requests.ids), SHUTDOWN_GRACE_SECONDS)
    lines.end()


@contextmanager
def _claimed_stdio() -> Iterator[tuple[BinaryIO, BinaryIO]]:
    """Private duplicates of fd 0 and 1 for the protocol; fd 0 reads /dev/null and fd 1 goes to stderr meanwhile."""
    sys.stdout.flush()
    try:
        wire_in_fd, wire_out_fd = os.dup(0), os.dup(1)
    except OSError:  # a closed standard descriptor: serve the streams in place, as the SDK does
        yield sys.stdin.buffer, sys.stdout.buffer
        return
    os.set_inheritable(wire_in_fd, False)
    os.set_inheritable(wire_out_fd, False)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    # closefd=False: the daemon reader may still be blocked on its descriptor at exit.
    wire_in = os.fdopen(wire_in_fd, "rb", closefd=False)
    wire_out = os.fdopen(wire_out_fd, "wb", closefd=False)
    try:
        yield wire_in, wire_out
    finally:
        wire_out.flush()
        os.dup2(wire_out_fd, 1)
        os.dup2(wire_in_fd, 0)
