"""How many MCP sessions may be open: per tenant and in all, and how long an unused one lives.

HTTP-only (stdio never imports it). What this module guarantees, once `SessionCaps.attach`
has wrapped the SDK's session manager:
- At most `max_sessions` sessions are open in all and `per_tenant` per principal
  (`principal_of`: the verified bearer's issuer and subject). Decided under the SDK's
  session-creation lock (no race between concurrent opens); a refusal is left in the
  request's `SessionRefusal` for `admission.AdmissionMiddleware` to answer.
- The table is shared fairly, not first come, first served: when it is full, a tenant that
  would still be within its fair share (`max_sessions` / tenants holding sessions, itself
  included) gets its session by closing the least recently used idle session (no request
  in flight) of the tenant holding the most; a tenant beyond its share gets 429, and 503
  only if no session over anyone's share is idle.
- `Retry-After` is the earliest moment a session could expire: an idle one at its last
  use plus its idle timeout, a busy one no sooner than its idle timeout from now.
- A session not used beyond its handshake expires after the short `unused_seconds`, any
  other after the SDK's normal idle timeout. Every way a session ends frees its place.
"""

from __future__ import annotations

import contextvars
import logging
import math
from dataclasses import dataclass

import anyio
from mcp.server.auth.middleware.bearer_auth import AuthorizationContext
from mcp.server.streamable_http import StreamableHTTPServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

log = logging.getLogger(__name__)

Tenant = tuple[str | None, str]  # (issuer, subject or else client id) of the verified bearer


def principal_of(requestor: AuthorizationContext | None) -> Tenant | None:
    """Whose sessions and requests these are: the subject (the tenant, or the access key's
    holder), not the client id, which OAuth lets anyone multiply by registering applications.
    None: the server has no authentication (loopback only, one user)."""
    return (requestor["issuer"], requestor["subject"] or requestor["client_id"]) if requestor else None


@dataclass
class _Held:
    tenant: Tenant | None
    transport: StreamableHTTPServerTransport
    requests: int = 0


@dataclass
class SessionRefusal:
    """Why a session was not opened: filled in by the admission hook, 0 while it was not refused."""

    status: int = 0
    message: str = ""
    retry_after: float = 0.0


# Set by the middleware for each request that may open a session; filled in by the admission
# hook (which runs in the same task, under the SDK's session-creation lock).
SESSION_REFUSAL: contextvars.ContextVar[SessionRefusal | None] = contextvars.ContextVar(
    "luma_mcp_session_refusal", default=None
)
# Requests beyond the opening one before a session counts as used: the `initialized`
# notification is part of the handshake, anything after it is real use.
_HANDSHAKE_REQUESTS = 1


class SessionCaps:
    """Per-tenant and overall caps on open sessions, shared fairly, and the short idle timeout of unused ones.

    The SDK builds its StreamableHTTPSessionManager inside `streamable_http_app()` and offers
    no factory or admission callback, so this wraps two methods of that one instance,
    `_admit_session` (decides under the SDK's creation lock: no race between concurrent
    opens) and `_discard_session` (every way a session ends goes through it), reads the
    transport's idle countdown (`idle_scope`, `_requests_in_flight`) and, to close an idle
    session for another tenant, forgets it in the manager's tables as its discard would. mcp is pinned below
    2.4; tests/e2e/test_admission.py fails if any of these stops working.
    """

    def __init__(self, *, max_sessions: int, per_tenant: int, unused_seconds: float) -> None:
        self.max_sessions, self.per_tenant, self.unused_seconds = max_sessions, per_tenant, unused_seconds
        self._held: dict[str, _Held] = {}
        self._per_tenant: dict[Tenant | None, int] = {}
        self._idle_seconds: float | None = None
        self._manager: StreamableHTTPSessionManager | None = None

    def attach(self, manager: StreamableHTTPSessionManager) -> None:
        admit, discard = manager._admit_session, manager._discard_session
        self._idle_seconds = manager.session_idle_timeout
        self._manager = manager

        def admit_session(requestor: AuthorizationContext | None) -> StreamableHTTPServerTransport | None:
            tenant = principal_of(requestor)
            refusal = self._refusal(tenant)
            if refusal is not None:
                holder = SESSION_REFUSAL.get()
                if holder is not None:
                    holder.status, holder.message, holder.retry_after = refusal
                return None
            transport = admit(requestor)
            if transport is not None and transport.mcp_session_id is not None:
                self._held[transport.mcp_session_id] = _Held(tenant, transport)
                self._per_tenant[tenant] = self._per_tenant.get(tenant, 0) + 1
                if self._idle_seconds is not None:
                    # Until it is used, a session idles out after the short timeout. The
                    # transport reads this attribute each time a request ends.
                    transport._idle_timeout = min(self.unused_seconds, self._idle_seconds)
            return transport

        async def discard_session(session_id: str, transport: StreamableHTTPServerTransport) -> None:
            self._forget(session_id)
            await discard(session_id, transport)

        manager._admit_session = admit_session  # type: ignore[method-assign]
        manager._discard_session = discard_session  # type: ignore[method-assign]

    def _refusal(self, tenant: Tenant | None) -> tuple[int, str, float] | None:
        """Why `tenant` may not open a session now (status, message, Retry-After), or None,
        having made room if its fair share allows."""
        mine = self._per_tenant.get(tenant, 0)
        if tenant is not None and mine >= self.per_tenant:
            log.info("Refusing a new session: this tenant already has %d open", self.per_tenant)
            return (
                429,
                (
                    f"You have {self.per_tenant} sessions open, the most allowed: close one (DELETE /mcp with its "
                    "Mcp-Session-Id) or reuse it, or try again after Retry-After."
                ),
                self._earliest_expiry(tenant),
            )
        if len(self._held) < self.max_sessions:
            return None
        share = fair_share(self.max_sessions, len(self._per_tenant) + (tenant not in self._per_tenant))
        if mine + 1 > share:
            log.info("Refusing a new session: the server is full and this tenant holds its fair share")
            return (
                429,
                (
                    f"The server is full and you hold your share of its sessions ({mine}): close one (DELETE /mcp "
                    "with its Mcp-Session-Id) or reuse it, or try again after Retry-After."
                ),
                self._earliest_expiry(None),
            )
        victim = self._victim(share)
        if victim is None:
            log.info("Refusing a new session: %d sessions are open and none can be closed", self.max_sessions)
            return (
                503,
                ("The server has as many sessions open as it allows: try again after Retry-After."),
                self._earliest_expiry(None),
            )
        log.info("Closing an idle session of the tenant holding the most to open one within its fair share")
        self._close(victim)
        return None

    def _close(self, session_id: str) -> None:
        """End an idle session as its idle timeout would; gone (404) at once, as the SDK's discard does first."""
        held = self._held[session_id]
        self._forget(session_id)
        if self._manager is not None:  # (its SDK-side cap counts it no more either)
            self._manager._server_instances.pop(session_id, None)
            self._manager._session_owners.pop(session_id, None)
        assert held.transport.idle_scope is not None  # an idle session has its countdown running
        held.transport.idle_scope.cancel()  # its task then ends and discards (terminates) it

    def _victim(self, share: float) -> str | None:
        """The least recently used idle session (soonest to expire) of the tenant holding the most beyond its share."""
        for tenant, count in sorted(self._per_tenant.items(), key=lambda item: -item[1]):
            if count <= share:
                return None
            idle = [(_idle_deadline(h), sid) for sid, h in self._held.items() if h.tenant == tenant]
            expiring = [(deadline, sid) for deadline, sid in idle if deadline is not None]
            if expiring:
                return min(expiring)[1]
        return None

    def _earliest_expiry(self, tenant: Tenant | None) -> float:
        """Seconds until one of `tenant`'s sessions (None: anyone's) could expire at the soonest."""
        now = anyio.current_time()
        soonest = math.inf
        for held in self._held.values():
            if tenant is None or held.tenant == tenant:
                deadline = _idle_deadline(held)
                timeout = held.transport._idle_timeout or self.unused_seconds
                soonest = min(soonest, deadline - now if deadline is not None else timeout)
        return soonest if soonest != math.inf else self.unused_seconds

    def _forget(self, session_id: str) -> None:
        held = self._held.pop(session_id, None)
        if held is not None:
            left = self._per_tenant.get(held.tenant, 1) - 1
            if left > 0:
                self._per_tenant[held.tenant] = left
            else:
                self._per_tenant.pop(held.tenant, None)

    def served(self, session_id: str) -> None:
        """A request on an existing session was answered successfully by its owner."""
        held = self._held.get(session_id)
        if held is None:
            return
        held.requests += 1
        if held.requests > _HANDSHAKE_REQUESTS and self._idle_seconds is not None:
            held.transport._idle_timeout = self._idle_seconds  # used: the normal idle timeout from now on


def fair_share(max_sessions: int, tenants: int) -> float:
    """Sessions each tenant holding some may have when the table is full."""
    return max_sessions / max(1, tenants)


def _idle_deadline(held: _Held) -> float | None:
    """When an idle session expires (the event loop's clock), or None while a request is in flight."""
    transport = held.transport
    scope = transport.idle_scope
    if scope is None or scope.cancel_called or transport._requests_in_flight or scope.deadline == math.inf:
        return None
    return scope.deadline
