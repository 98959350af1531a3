"""Stopping over HTTP: every tool call in flight answers before the event streams close.

On SIGTERM (or Ctrl-C) the server stops accepting, `stopping` is set so that calls waiting
on a video return at once with their task id and next call, and only then are the
server-sent event streams closed. The order matters: sse-starlette, which carries MCP's
event streams, closes every stream of an exiting uvicorn at its next look (every 0.5 s)
whether or not an answer is still on its way, so a submit still in flight, or a wait that
took a moment to wrap up, lost its answer (and the task id in it) at random. Here it is
told to close them once no POST is left unanswered, or when the grace period is over;
open GET streams, which carry no answer, then close as before.
"""

from __future__ import annotations

import asyncio
import math
import socket
import threading
import time
from types import FrameType

import uvicorn
from sse_starlette.sse import AppStatus
from starlette.types import ASGIApp, Receive, Scope, Send

from luma_mcp.core.waiting import SHUTDOWN_GRACE_SECONDS


class PostsInFlight:
    """How many POST requests (tool calls, among others) have not finished answering."""

    def __init__(self) -> None:
        self.count = 0


class CountPosts:
    """ASGI middleware keeping `PostsInFlight` up to date."""

    def __init__(self, app: ASGIApp, posts: PostsInFlight) -> None:
        self.app = app
        self.posts = posts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        self.posts.count += 1  # one event loop: no lock needed
        try:
            await self.app(scope, receive, send)  # returns once the whole answer is sent
        finally:
            self.posts.count -= 1


class DrainingServer(uvicorn.Server):
    """uvicorn, letting tool calls in flight answer before the event streams close."""

    def __init__(self, config: uvicorn.Config, stopping: threading.Event, posts: PostsInFlight) -> None:
        super().__init__(config)
        self.stopping = stopping
        self.posts = posts
        # What AppStatus.disable_automatic_graceful_drain() does (it is untyped): the streams
        # close when `shutdown` says.
        AppStatus.enable_automatic_graceful_drain = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.stopping.set()  # waits return their task ids now
        super().handle_exit(sig, frame)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()  # no new calls while the last answers go out
        deadline = time.monotonic() + SHUTDOWN_GRACE_SECONDS
        # Polled: the count moves in request tasks, and force_exit is set by a second signal.
        while self.posts.count and not self.force_exit and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        AppStatus.should_exit = True
        # Whatever is still running gets the rest of the grace period, then is cancelled
        # (ledger writes are shielded, so even then nothing is left half-written).
        self.config.timeout_graceful_shutdown = max(1, math.ceil(deadline - time.monotonic()))
        await super().shutdown(sockets)
