"""What slow or numerous HTTP clients can make the server hold: connections, time, log lines.

uvicorn alone can be starved by half-sent requests: it never times out a request that is
still arriving (its keep-alive timer starts only after a response, and any byte received
stops it), and its `limit_concurrency` acts only once a whole head has come, so a thousand
slow clients use up the process's descriptors first. accept() then fails, and asyncio logs
a traceback for every failed attempt (thousands a second). For the HTTP transport this
module guarantees:

- open connections never exceed a cap that fits the open-file limit (the soft limit is
  raised to the hard one at start); at the cap, the connection that has waited longest for
  a whole request (head and body) is closed to make room, so slow clients cannot lock out
  prompt ones; if every one is busy with a request, up to HEALTH_CONNECTIONS more are let in
  for one request each, answered only if it is `GET /health` (else 503), so that a load
  balancer's probe is answered even then;
- a connection must send a whole request (head and body) within the read timeout of
  opening or of its previous response, however slowly it trickles bytes;
- log lines that strangers can cause are rate-limited (`log_limits`): a flood leaves a few
  lines and a count of what was suppressed, not a full disk.

Imported only by the HTTP transport.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

# Descriptors for everything but client connections: the upstream pools (up to 100 reads
# and 100 submits), the ledger, downloads, logs.
RESERVED_FILES = 250
MIN_CONNECTIONS = 16
# asyncio accepts up to `backlog` connections in one event-loop turn, and a connection is
# counted (and someone else's closed to make room) only two turns later, when its protocol
# starts: three turns of accepts must fit in the descriptors left beyond the cap. The
# backlog is also the kernel's queue of connections not yet accepted: uvicorn's 2048 where
# descriptors allow, down to MIN_BACKLOG under a small `ulimit -n`.
MIN_BACKLOG = 64
MAX_BACKLOG = 2048
TURNS_BEFORE_COUNTED = 3
HEALTH_CONNECTIONS = 8  # beyond the cap, for health probes only, when every connection is busy
HEALTH_PATH = "/health"
BUSY_BODY = b"Every connection is busy with a request. Try again in a few seconds.\n"
BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\nretry-after: 5\r\n"
    b"connection: close\r\ncontent-length: " + str(len(BUSY_BODY)).encode() + b"\r\n\r\n" + BUSY_BODY
)


def raise_open_file_limit() -> int | None:
    """Lift the soft open-file limit to the hard one; returns the limit now in force (None: no limit known)."""
    try:
        import resource
    except ImportError:  # Windows has no such limit
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Some systems (macOS) report an infinite hard limit but refuse it as a soft one.
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.debug("could not raise the open-file limit from %d to %d: %s", soft, target, exc)
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


@dataclass(frozen=True)
class ConnectionBudget:
    max_connections: int
    backlog: int


def connection_budget(wanted: int, open_files: int | None) -> ConnectionBudget:
    """As many connections as asked for, if the open-file limit leaves room for them and a burst of accepts."""
    if open_files is None:
        return ConnectionBudget(wanted, MAX_BACKLOG)
    room = open_files - RESERVED_FILES - HEALTH_CONNECTIONS
    max_connections = max(MIN_CONNECTIONS, min(wanted, room - TURNS_BEFORE_COUNTED * MIN_BACKLOG))
    backlog = (room - max_connections) // TURNS_BEFORE_COUNTED
    return ConnectionBudget(max_connections, max(MIN_BACKLOG, min(MAX_BACKLOG, backlog)))


def budget_connections(wanted: int) -> ConnectionBudget:
    """Raise the open-file limit and fit `wanted` connections in it, warning if they do not fit."""
    open_files = raise_open_file_limit()
    budget = connection_budget(wanted, open_files)
    if budget.max_connections < wanted:
        log.warning(
            "LUMA_MCP_MAX_CONNECTIONS=%d does not fit the open-file limit (%s): serving at most %d. Raise the "
            "limit (`ulimit -n`, or LimitNOFILE= under systemd) or lower LUMA_MCP_MAX_CONNECTIONS.",
            wanted,
            open_files,
            budget.max_connections,
        )
    return budget


class ConnectionGuard:
    """Counts open connections and closes those that hold one without sending a request."""

    def __init__(self, max_connections: int, read_timeout: float) -> None:
        self.max_connections = max_connections
        self.read_timeout = read_timeout
        self._open: set[GuardedH11Protocol] = set()
        # Connections last seen waiting for a request head, longest waiting first (a dict
        # keeps insertion order). Ones that have since started a request are dropped lazily.
        self._waiting: dict[GuardedH11Protocol, None] = {}
        self._for_health: set[GuardedH11Protocol] = set()  # let in beyond the cap, for one health probe each

    def protocol_class(self) -> type[GuardedH11Protocol]:
        """uvicorn's h11 protocol, guarded by this guard (uvicorn takes a class, not an instance)."""
        guard = self

        class Guarded(GuardedH11Protocol):
            pass

        Guarded.guard = guard
        return Guarded

    def opened(self, connection: GuardedH11Protocol) -> None:
        self._open.add(connection)
        if len(self._open) <= self.max_connections:
            return
        victim = self._longest_waiting() or connection
        self._forget(victim)
        if victim is connection and len(self._for_health) < HEALTH_CONNECTIONS:
            log.warning(
                "All %d connections are busy: new ones are answered only for %s.", self.max_connections, HEALTH_PATH
            )
            self._for_health.add(connection)
            connection.health_only()
        elif victim is connection:  # every other connection is busy with a request, and the spare ones too
            log.warning("All %d connections are busy: answering new ones 503.", self.max_connections)
            connection.refuse()
        else:
            log.warning(
                "%d connections are open (the most allowed): closing the ones waiting longest for a request.",
                self.max_connections,
            )
            victim.close()

    def waiting(self, connection: GuardedH11Protocol) -> None:
        self._waiting.pop(connection, None)
        self._waiting[connection] = None  # now the most recent

    def closed(self, connection: GuardedH11Protocol) -> None:
        self._forget(connection)

    def _forget(self, connection: GuardedH11Protocol) -> None:
        self._open.discard(connection)
        self._waiting.pop(connection, None)
        self._for_health.discard(connection)

    def _longest_waiting(self) -> GuardedH11Protocol | None:
        busy = []
        victim = None
        for connection in self._waiting:
            # A request whose body is still arriving has not been made yet either: with a
            # complete head (even an authenticated one) it would otherwise hold its place.
            if connection.waiting_for_head or connection.body_pending:
                victim = connection
                break
            busy.append(connection)
        for connection in busy:
            del self._waiting[connection]
        return victim


class GuardedH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, with a read timeout and a place in its guard's count."""

    guard: ClassVar[ConnectionGuard]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_timer: asyncio.TimerHandle | None = None
        # The request cycle that was current when this connection began waiting for the next
        # head: uvicorn makes a new cycle for each head it receives.
        self._waiting_after: object = None
        self._one_request = False  # let in beyond the cap for a health probe: closed after one answer

    @property
    def waiting_for_head(self) -> bool:
        """No request in progress: at most part of the next one's head has arrived."""
        return self.cycle is self._waiting_after and not self.transport.is_closing()

    @property
    def body_pending(self) -> bool:
        """A request has begun but its body is still arriving."""
        cycle = self.cycle
        return cycle is not None and cycle.more_body and not cycle.disconnected and not self.transport.is_closing()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._await_head()
        self.guard.opened(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_read_timer()
        self.guard.closed(self)
        super().connection_lost(exc)

    def close(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()

    def refuse(self) -> None:
        if not self.transport.is_closing():
            self.transport.write(BUSY_RESPONSE)
            self.transport.close()

    def health_only(self) -> None:
        """One request, served only if it is the health probe, then closed."""
        self.app = _health_only(self.app)
        self._one_request = True

    def on_response_complete(self) -> None:
        if self._one_request:
            self.close()  # (after the answer: the transport writes what it holds first)
            return
        self._await_head()  # before uvicorn's: it may start a pipelined request at once
        super().on_response_complete()

    def _await_head(self) -> None:
        self._cancel_read_timer()
        self._waiting_after = self.cycle
        self._read_timer = self.loop.call_later(self.guard.read_timeout, self._read_overdue)
        self.guard.waiting(self)

    def _read_overdue(self) -> None:
        self._read_timer = None
        # A request whose head came in time but whose body is still arriving holds the
        # connection (and the app waiting on it) just as long: it is overdue too.
        if self.waiting_for_head or self.body_pending:
            log.debug("closing a connection that sent no whole request in %.0f s", self.guard.read_timeout)
            self.close()

    def _cancel_read_timer(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None


def _health_only(app: Any) -> Any:
    async def health_or_busy(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"] == HEALTH_PATH:
            await app(scope, receive, send)
            return
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"retry-after", b"5"), (b"connection", b"close")]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": BUSY_BODY})

    return health_or_busy
