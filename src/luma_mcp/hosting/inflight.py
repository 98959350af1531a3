"""How many requests one caller may have in flight at /mcp: per session, per tenant and in all.

HTTP-only (stdio never imports it). A request being answered holds a connection, and the
connection guard (`http_limits`) never closes such a connection for a newcomer: without a
bound, one tenant's long waits (or open event streams) could hold every connection and
leave other tenants, and `/health`, a bare `503`. For the app `http_app.create_http_app`
builds, this module guarantees:
- at most `per_session` requests of one session, `per_tenant` of one tenant (sessionless
  requests included) and `total` of all tenants are in flight at /mcp; the excess is
  answered at once, `429` (session or tenant) or `503` (server), with a `Retry-After` saying
  when the earliest of those requests must have ended;
- `total` leaves a tenth of the connections (at least 2) free of MCP requests, so that at
  the connection cap the guard finds an idle connection to close for a newcomer (another
  tenant, a health probe); by default a tenant may hold a tenth of the connections.
  Closing a session (DELETE) is never refused.

The tenant is the verified principal the session caps use (`session_caps.principal_of`), so
this middleware sits inside the SDK's authentication: unauthenticated requests pass on to
its `401` uncounted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, authorization_context
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER
from starlette.types import ASGIApp, Receive, Scope, Send

from luma_mcp.hosting.admission import jsonrpc_error, retry_after_header, send_json
from luma_mcp.hosting.session_caps import Tenant, principal_of

SESSION_HEADER = MCP_SESSION_ID_HEADER.lower().encode()


@dataclass(frozen=True)
class InFlightLimits:
    total: int
    per_tenant: int
    per_session: int


def in_flight_limits(max_connections: int, per_tenant: int | None, per_session: int) -> InFlightLimits:
    """Caps that leave room: all MCP requests together hold at most nine tenths of the
    connections, one tenant (by default) a tenth, one session no more than its tenant."""
    total = max_connections - max(2, max_connections // 10)
    tenant = min(total, per_tenant if per_tenant is not None else max(2, max_connections // 10))
    return InFlightLimits(total=total, per_tenant=tenant, per_session=min(per_session, tenant))


@dataclass
class _Count:
    started: dict[int, float] = field(default_factory=dict)  # request number -> when it started (bounded ones)
    held: int = 0


K = TypeVar("K")


@dataclass(frozen=True)
class Refusal:
    status: int
    message: str
    retry_after: float


class InFlight:
    """Counts the requests in flight, by session, tenant and in all; says no beyond the limits.

    `longest` is how long a bounded request (a POST: a tool call waits at most
    LUMA_MAX_WAIT_SECONDS) can take; open event streams (GET) have no end to expect.
    """

    def __init__(self, limits: InFlightLimits, *, longest: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits, self.longest, self._clock = limits, longest, clock
        self._all = _Count()
        self._tenants: dict[Tenant | None, _Count] = {}
        self._sessions: dict[tuple[Tenant | None, str], _Count] = {}
        self._next = 0

    def held(self, tenant: Tenant | None, session: str | None = None) -> int:
        scope = self._sessions.get((tenant, session)) if session is not None else self._tenants.get(tenant)
        return scope.held if scope else 0

    def enter(self, tenant: Tenant | None, session: str | None, *, bounded: bool) -> int | Refusal:
        """A request number to `leave` with once it has ended, or why it may not start."""
        session_count = self._sessions.get((tenant, session)) if session is not None else None
        tenant_count = self._tenants.get(tenant)
        limits = self.limits
        if session_count is not None and session_count.held >= limits.per_session:
            return Refusal(
                429,
                f"This session has {limits.per_session} requests in flight, the most allowed: wait for one to "
                "finish, or try again after Retry-After.",
                self._retry_after(session_count),
            )
        # Tenant None (no authentication: loopback only) is one user, held back only by the total.
        if tenant is not None and tenant_count is not None and tenant_count.held >= limits.per_tenant:
            return Refusal(
                429,
                f"You have {limits.per_tenant} requests in flight, the most allowed: wait for one to finish, "
                "or try again after Retry-After.",
                self._retry_after(tenant_count),
            )
        if self._all.held >= limits.total:
            return Refusal(
                503,
                "The server is answering as many requests as it allows: try again after Retry-After.",
                self._retry_after(self._all),
            )
        self._next += 1
        number, now = self._next, self._clock()
        if session is not None:
            session_count = self._sessions.setdefault((tenant, session), _Count())
        tenant_count = self._tenants.setdefault(tenant, _Count())
        for count in (session_count, tenant_count, self._all):
            if count is not None:
                count.held += 1
                if bounded:
                    count.started[number] = now
        return number

    def leave(self, number: int, tenant: Tenant | None, session: str | None) -> None:
        if session is not None:
            _release(self._sessions, (tenant, session), number)
        _release(self._tenants, tenant, number)
        self._all.held -= 1
        self._all.started.pop(number, None)

    def _retry_after(self, count: _Count) -> float:
        """When the earliest bounded request in `count` must have ended; open streams give no such moment."""
        if not count.started:
            return self.longest
        ends = min(count.started.values()) + self.longest
        return ends - self._clock()


def _release(table: dict[K, _Count], key: K, number: int) -> None:
    count = table[key]
    count.held -= 1
    count.started.pop(number, None)
    if not count.held:
        del table[key]  # made-up session ids leave nothing behind


class InFlightMiddleware:
    """Counts each authenticated request at `path`; must sit inside the SDK's authentication."""

    def __init__(self, app: ASGIApp, *, path: str, in_flight: InFlight) -> None:
        self.app, self.path, self.in_flight = app, path, in_flight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Closing a session (DELETE) frees what it holds: never refused.
        if (
            scope["type"] != "http"
            or scope["path"].rstrip("/") != self.path
            or scope["method"] in ("OPTIONS", "DELETE")
        ):
            await self.app(scope, receive, send)
            return
        user = scope.get("user")  # set by the SDK's authentication, when the server has any
        if user is not None and not isinstance(user, AuthenticatedUser):
            await self.app(scope, receive, send)  # not signed in: the SDK answers 401, uncounted
            return
        tenant = principal_of(authorization_context(user)) if user is not None else None
        session = next((v.decode("latin-1") for k, v in scope["headers"] if k == SESSION_HEADER), None)
        entered = self.in_flight.enter(tenant, session, bounded=scope["method"] != "GET")
        if isinstance(entered, Refusal):
            retry = retry_after_header(entered.retry_after)
            await send_json(send, entered.status, jsonrpc_error(entered.message), retry)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight.leave(entered, tenant, session)
