"""Who may open what at /mcp: the ASGI middleware that applies the bearer checks and session caps.

HTTP-only (stdio never imports it). For the app `http_app.create_http_app` builds, it guarantees:
- Only printable-ASCII bearers of at most 512 characters are ever looked at; anything else is
  a 401 at the edge, before it can reach a header sent upstream.
- Passthrough: a bearer reaches the MCP layer (a session, a tool call, a ledger row) only after
  `token_checks.TokenChecker` has seen the API accept it; a refusal is a 401 with the API's
  reason, no verdict yet a 429 or 503 with `Retry-After`. An access token this server issued
  at sign-in (`issued_here`) is not sent upstream: the token verifier checks it against its grant.
- Sessions: a request that would open one beyond `session_caps.SessionCaps` gets 429 (tenant)
  or 503 (server) with the `Retry-After` the caps computed, not the SDK's bare 503; a
  successful request on a session counts as its use.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from mcp.server.streamable_http import MCP_SESSION_ID_HEADER
from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from luma_mcp.checks.bearer import MAX_BEARER_LENGTH, acceptable_bearer
from luma_mcp.core.token_checks import TokenChecker, Unsure
from luma_mcp.hosting.session_caps import SESSION_REFUSAL, SessionCaps, SessionRefusal


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _bearer(scope: Scope) -> str | None:
    authorization = _header(scope, b"authorization")
    if authorization is None or authorization[:7].lower() != "bearer ":
        return None
    return authorization[7:]


async def send_json(
    send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


RETRY_AFTER_CAP = 600  # seconds: the longest Retry-After ever said (a session may idle for 30 minutes)


def retry_after_header(seconds: float) -> list[tuple[bytes, bytes]]:
    return [(b"retry-after", str(min(RETRY_AFTER_CAP, max(1, math.ceil(seconds)))).encode())]


def jsonrpc_error(message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": None, "error": {"code": -32000, "message": message}}


class AdmissionMiddleware:
    """Wraps the whole app; acts on requests to the MCP endpoint only (`/health` passes untouched)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        path: str,
        checker: TokenChecker | None,
        caps: SessionCaps,
        resource_metadata_url: str | None,
        issued_here: Callable[[str], bool] | None = None,
    ) -> None:
        self.app, self.path, self.checker, self.caps = app, path, checker, caps
        self.resource_metadata_url = resource_metadata_url
        self.issued_here = issued_here

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].rstrip("/") != self.path or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        token = _bearer(scope)
        if token is not None and not acceptable_bearer(token):
            await self._refuse(
                send, f"The bearer token must be printable ASCII (no spaces), at most {MAX_BEARER_LENGTH} characters."
            )
            return
        if token is not None and self.checker is not None and not (self.issued_here and self.issued_here(token)):
            client = scope.get("client")
            outcome = await self.checker.check(token, client[0] if client else "")
            if isinstance(outcome, Unsure):
                retry = retry_after_header(outcome.retry_after)
                await send_json(send, outcome.status, jsonrpc_error(outcome.message), retry)
                return
            if outcome.refusal is not None:
                await self._refuse(send, outcome.refusal)
                return
        await self._sessions(scope, receive, send)

    async def _sessions(self, scope: Scope, receive: Receive, send: Send) -> None:
        session_id = _header(scope, MCP_SESSION_ID_HEADER.encode())
        version = _header(scope, MCP_PROTOCOL_VERSION_HEADER.encode())
        if session_id is not None:

            async def watch(message: Message) -> None:
                # Counted as the answer starts, while the request is still in flight: the
                # transport restarts its idle countdown when the request ends, with the timeout then set.
                if message["type"] == "http.response.start" and 200 <= message["status"] < 300:
                    self.caps.served(session_id)
                await send(message)

            await self.app(scope, receive, watch)
            return
        if version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS:
            await self.app(scope, receive, send)  # sessionless protocol era: no session to cap
            return
        # May open a session: the admission hook fills `refusal` if a cap says no, and the
        # SDK's own answer (a bare 503) is replaced by one with the right status and Retry-After.
        refusal = SessionRefusal()
        reset = SESSION_REFUSAL.set(refusal)
        started = False

        async def unless_refused(message: Message) -> None:
            nonlocal started
            if refusal.status:
                return
            started = True
            await send(message)

        try:
            await self.app(scope, receive, unless_refused)
        finally:
            SESSION_REFUSAL.reset(reset)
        if refusal.status and not started:
            await send_json(
                send, refusal.status, jsonrpc_error(refusal.message), retry_after_header(refusal.retry_after)
            )

    async def _refuse(self, send: Send, description: str) -> None:
        challenge = f'Bearer error="invalid_token", error_description="{description}"'
        if self.resource_metadata_url:
            challenge += f', resource_metadata="{self.resource_metadata_url}"'
        await send_json(
            send,
            401,
            {"error": "invalid_token", "error_description": description},
            [(b"www-authenticate", challenge.encode())],
        )
