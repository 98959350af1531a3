"""How many MCP sessions may be open: per tenant and in all, and how long an unused one lives.

HTTP-only (stdio never imports it). What this module guarantees, once `SessionCaps.attach`
has wrapped the SDK's session manager:
- At most `max_sessions` sessions are open in all and `per_tenant` per principal (the
  verified bearer's client id, issuer and subject). An open that would exceed either is
  refused under the SDK's session-creation lock (no race between concurrent opens), and
  the refusal (429 for the tenant, 503 for the server) is left in the request's
  `SessionRefusal` for `admission.AdmissionMiddleware` to answer with `Retry-After`.
- A session not used beyond its handshake expires after the short `unused_seconds`, any
  other after the SDK's normal idle timeout. Every way a session ends frees its place.
"""

from __future__ import annotations

import contextvars
import logging
from dataclasses import dataclass

from mcp.server.auth.middleware.bearer_auth import AuthorizationContext
from mcp.server.streamable_http import StreamableHTTPServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

log = logging.getLogger(__name__)

Tenant = tuple[str | None, str]  # (issuer, subject or else client id) of the verified bearer


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


# Set by the middleware for each request that may open a session; filled in by the admission
# hook (which runs in the same task, under the SDK's session-creation lock).
SESSION_REFUSAL: contextvars.ContextVar[SessionRefusal | None] = contextvars.ContextVar(
    "luma_mcp_session_refusal", default=None
)
# Requests beyond the opening one before a session counts as used: the `initialized`
# notification is part of the handshake, anything after it is real use.
_HANDSHAKE_REQUESTS = 1


class SessionCaps:
    """Per-tenant and overall caps on open sessions, and the short idle timeout of unused ones.

    The SDK builds its StreamableHTTPSessionManager inside `streamable_http_app()` and offers
    no factory or admission callback, so this wraps two methods of that one instance,
    `_admit_session` (decides under the SDK's creation lock: no race between concurrent
    opens) and `_discard_session` (every way a session ends goes through it). mcp is pinned
    below 2.4; tests/e2e/test_admission.py fails if either hook stops being called.
    """

    def __init__(self, *, max_sessions: int, per_tenant: int, unused_seconds: float) -> None:
        self.max_sessions, self.per_tenant, self.unused_seconds = max_sessions, per_tenant, unused_seconds
        self._held: dict[str, _Held] = {}
        self._per_tenant: dict[Tenant, int] = {}
        self._idle_seconds: float | None = None

    def attach(self, manager: StreamableHTTPSessionManager) -> None:
        admit, discard = manager._admit_session, manager._discard_session
        self._idle_seconds = manager.session_idle_timeout

        def admit_session(requestor: AuthorizationContext | None) -> StreamableHTTPServerTransport | None:
            # Whose sessions these are: the subject (the tenant, or the access key's holder), not
            # the client id, which OAuth lets anyone multiply by registering more applications.
            tenant = (requestor["issuer"], requestor["subject"] or requestor["client_id"]) if requestor else None
            refusal = self._refusal(tenant)
            if refusal is not None:
                holder = SESSION_REFUSAL.get()
                if holder is not None:
                    holder.status, holder.message = refusal
                return None
            transport = admit(requestor)
            if transport is not None and transport.mcp_session_id is not None:
                self._held[transport.mcp_session_id] = _Held(tenant, transport)
                if tenant is not None:
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

    def _refusal(self, tenant: Tenant | None) -> tuple[int, str] | None:
        if tenant is not None and self._per_tenant.get(tenant, 0) >= self.per_tenant:
            log.info("Refusing a new session: this tenant already has %d open", self.per_tenant)
            return 429, (
                f"You have {self.per_tenant} sessions open, the most allowed: close one (DELETE /mcp with its "
                "Mcp-Session-Id) or reuse it, or try again after Retry-After."
            )
        if len(self._held) >= self.max_sessions:
            log.info("Refusing a new session: %d sessions are open, the most allowed", self.max_sessions)
            return 503, "The server has as many sessions open as it allows: try again after Retry-After."
        return None

    def _forget(self, session_id: str) -> None:
        held = self._held.pop(session_id, None)
        if held is not None and held.tenant is not None:
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

    @property
    def retry_after(self) -> float:
        return self.unused_seconds  # by then abandoned sessions have made room
