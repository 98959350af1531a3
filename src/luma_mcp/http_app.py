"""Serving many users: streamable HTTP at /mcp, with authentication, health and CORS.

Two ways to authenticate (see README, "Serving over HTTP"):
- access keys (`LUMA_MCP_API_KEYS` / `LUMA_MCP_API_KEYS_FILE`): the server spends its own
  `ACEDATACLOUD_API_TOKEN`; clients must present one of the keys as a bearer token.
- passthrough (`LUMA_MCP_AUTH=passthrough`): each caller's bearer is their own Ace Data
  Cloud token, used for their upstream calls only; their tasks are theirs alone.

Without either, the server listens on loopback only: binding any other address refuses to
start. DNS-rebinding protection (Host and Origin checks) is always on.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import threading
from types import FrameType

import uvicorn
from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse

from luma_mcp import __version__
from luma_mcp.config import Settings, split_list
from luma_mcp.http_limits import ConnectionGuard, budget_connections, rate_limit_logs
from luma_mcp.server import create_server

log = logging.getLogger(__name__)

LOOPBACK_HOSTS = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
LOOPBACK_ORIGINS = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
# Headers a browser client must be allowed to read from MCP responses.
EXPOSED_HEADERS = ["Mcp-Session-Id", "Mcp-Protocol-Version", "WWW-Authenticate"]
SHUTDOWN_GRACE_SECONDS = 10


class ConfigurationError(Exception):
    """The server must not start as configured; the message says why and what to set."""


class AccessKeyVerifier(TokenVerifier):
    """Accepts one of the configured access keys, compared in constant time."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ConfigurationError("No access keys configured: set LUMA_MCP_API_KEYS or LUMA_MCP_API_KEYS_FILE.")
        self._digests = [hashlib.sha256(key.encode()).digest() for key in keys]

    async def verify_token(self, token: str) -> AccessToken | None:
        digest = hashlib.sha256(token.encode()).digest()
        matched = False
        for known in self._digests:  # every key compared, match or not: no timing signal
            matched |= hmac.compare_digest(digest, known)
        return AccessToken(token=token, client_id="access-key", scopes=[]) if matched else None


class PassthroughVerifier(TokenVerifier):
    """Any plausible bearer is the caller's own API token; the API itself judges it."""

    async def verify_token(self, token: str) -> AccessToken | None:
        if not token or len(token) > 512 or any(c.isspace() for c in token):
            return None
        return AccessToken(token=token, client_id="acedata-token", scopes=[])


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def create_http_app(
    settings: Settings, host: str = "127.0.0.1", port: int = 8000, stopping: threading.Event | None = None
) -> Starlette:
    mode = settings.auth_mode
    if mode is None and not is_loopback(host):
        raise ConfigurationError(
            f"Refusing to listen on {host} without authentication: anyone who can reach it could spend "
            "the account's credits. Set LUMA_MCP_API_KEYS (clients send one as a bearer token) or "
            "LUMA_MCP_AUTH=passthrough (clients send their own Ace Data Cloud token), or bind 127.0.0.1."
        )
    if mode == "keys" and settings.api_token is None:
        log.warning("Access keys are set but ACEDATACLOUD_API_TOKEN is not: every tool call will ask for it.")
    public_url = (settings.public_url or f"http://{host}:{port}").rstrip("/")
    verifier: TokenVerifier | None = None
    auth: AuthSettings | None = None
    if mode is not None:
        verifier = AccessKeyVerifier(settings.access_keys()) if mode == "keys" else PassthroughVerifier()
        auth = AuthSettings(
            issuer_url=public_url,  # no OAuth server here: keys and API tokens are issued elsewhere
            resource_server_url=f"{public_url}/mcp",
            validate_token_resource=False,  # the verifier knows its own tokens
        )
    mcp = create_server(settings, token_verifier=verifier, auth=auth, stopping=stopping)

    @mcp.custom_route("/health", methods=["GET"])  # type: ignore[untyped-decorator]
    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "version": __version__})

    cors = split_list(settings.cors_origins)
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[*LOOPBACK_HOSTS, *split_list(settings.allowed_hosts)],
        allowed_origins=[*LOOPBACK_ORIGINS, *split_list(settings.allowed_origins), *cors],
    )
    app = mcp.streamable_http_app(transport_security=security, host=host)
    if cors:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=cors,
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "Mcp-Session-Id", "Mcp-Protocol-Version", "Last-Event-ID"],
            expose_headers=EXPOSED_HEADERS,
        )
    return app


class _Server(uvicorn.Server):
    """uvicorn, telling waiting tool calls to wrap up as soon as a stop signal arrives."""

    def __init__(self, config: uvicorn.Config, stopping: threading.Event) -> None:
        super().__init__(config)
        self.stopping = stopping

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.stopping.set()  # waits return their task ids now, well inside the grace period
        super().handle_exit(sig, frame)


def serve_http(settings: Settings, host: str, port: int) -> None:
    stopping = threading.Event()
    app = create_http_app(settings, host, port, stopping)
    rate_limit_logs(logging.getLogger().handlers)
    budget = budget_connections(settings.http_max_connections)
    guard = ConnectionGuard(budget.max_connections, settings.http_read_timeout)
    log.info("serving MCP at http://%s:%d/mcp (auth: %s)", host, port, settings.auth_mode or "none, loopback only")
    log.info(
        "at most %d open connections; requests read within %d s; idle connections closed after %d s",
        budget.max_connections,
        settings.http_read_timeout,
        settings.http_keep_alive,
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        http=guard.protocol_class(),
        # MCP has no WebSocket transport, and an upgraded connection would leave the guard's
        # count: upgrade requests are answered as plain HTTP.
        ws="none",
        # uvicorn answers 503 when connections or requests in progress reach this. The guard
        # keeps connections at max_connections, but the ones it has just closed stay in
        # uvicorn's count for one more event-loop turn (up to a backlog of them): room for
        # those, so that uvicorn's limit only ever bounds requests in progress.
        limit_concurrency=budget.max_connections + budget.backlog + 1,
        backlog=budget.backlog,
        timeout_keep_alive=settings.http_keep_alive,
        # On SIGTERM: stop accepting; calls that are waiting return at once with their task
        # ids; anything still running after the grace period is cancelled (ledger writes are
        # shielded, so even then nothing is left half-written).
        timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
    )
    _Server(config, stopping).run()
