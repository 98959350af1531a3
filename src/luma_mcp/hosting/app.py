"""Serving many users: streamable HTTP at /mcp, with authentication, health and CORS.

Two ways to authenticate (see README, "Serving over HTTP"):
- access keys (`LUMA_MCP_API_KEYS` / `LUMA_MCP_API_KEYS_FILE`): the server spends its own
  `ACEDATACLOUD_API_TOKEN`; clients must present one of the keys as a bearer token.
- passthrough (`LUMA_MCP_AUTH=passthrough`): each caller's bearer is their own Ace Data
  Cloud token, used for their upstream calls only; their tasks are theirs alone.

With `LUMA_MCP_OAUTH` on top of either, web connectors sign in instead (`oauth`): they get
OAuth tokens that stand for a key or for the person's own token. Without a mode, the server
listens on loopback only: binding any other address refuses to start. DNS-rebinding
protection (Host and Origin checks) is always on.

With `LUMA_MCP_PUBLIC_URL` set, the provider calls back at `/callbacks/luma/{secret}`
(`callbacks`, unless `LUMA_MCP_CALLBACKS=false`); on PostgreSQL the lifespan also listens for
tasks other replicas record finished (`ledger.listen`), so waits here wake at once.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import logging
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import uvicorn
from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.server.auth.routes import build_resource_metadata_url
from mcp.server.auth.settings import AuthSettings
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import AnyHttpUrl, ConfigDict, SecretStr, TypeAdapter, ValidationError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse

from luma_mcp import __version__
from luma_mcp.api.client import LumaClient
from luma_mcp.api.errors import CONSOLE_URL, LumaBalanceError, LumaError
from luma_mcp.api.retries import RetryPolicy
from luma_mcp.checks.bearer import acceptable_bearer
from luma_mcp.config import Settings, split_list
from luma_mcp.core.caller import Identity
from luma_mcp.core.ledger import Ledger, open_ledger
from luma_mcp.core.token_checks import Probe, ProviderUnavailable, TokenChecker, Verdict, token_digest
from luma_mcp.core.waiting import SHUTDOWN_GRACE_SECONDS
from luma_mcp.hosting.admission import AdmissionMiddleware
from luma_mcp.hosting.inflight import InFlight, InFlightMiddleware, in_flight_limits
from luma_mcp.hosting.limits import HEALTH_CONNECTIONS, ConnectionGuard, budget_connections
from luma_mcp.hosting.log_limits import rate_limit_logs
from luma_mcp.hosting.session_caps import SessionCaps
from luma_mcp.hosting.shutdown import CountPosts, DrainingServer, PostsInFlight
from luma_mcp.server import create_server

if TYPE_CHECKING:
    from luma_mcp.core.callback_urls import CallbackIssuer
    from luma_mcp.oauth.client_documents import ClientDocuments
    from luma_mcp.oauth.routes import OAuthEdge

log = logging.getLogger(__name__)

LOOPBACK_HOSTS = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
LOOPBACK_ORIGINS = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
# Headers a browser client must be allowed to read from MCP responses.
EXPOSED_HEADERS = ["Mcp-Session-Id", "Mcp-Protocol-Version", "WWW-Authenticate"]
MCP_PATH = "/mcp"
TOKEN_CHECK_TIMEOUT = 10.0


class ConfigurationError(Exception):
    """The server must not start as configured; the message says why and what to set."""


class AccessKeyVerifier(TokenVerifier):
    """Accepts one of the configured access keys, compared in constant time."""

    def __init__(self, keys: list[str], resource: str) -> None:
        if not keys:
            raise ConfigurationError("No access keys configured: set LUMA_MCP_API_KEYS or LUMA_MCP_API_KEYS_FILE.")
        self._digests = [token_digest(key) for key in keys]
        self._resource = resource

    async def verify_token(self, token: str) -> AccessToken | None:
        if not acceptable_bearer(token):
            return None
        digest = token_digest(token)
        matched = False
        for known in self._digests:  # every key compared, match or not: no timing signal
            matched |= hmac.compare_digest(digest, known)
        # The subject binds each session to the key that opened it.
        if not matched:
            return None
        return Identity(token=token, client_id="access-key", scopes=[], subject=digest.hex(), resource=self._resource)


class PassthroughVerifier(TokenVerifier):
    """A bearer is the caller's own API token, accepted once the API has accepted it.

    The check itself (one unbilled read, cached, rate-bounded) is made by the admission
    middleware in front, which can answer 429/503 with Retry-After; this only reads its verdict.
    """

    def __init__(self, checker: TokenChecker, resource: str) -> None:
        self._checker, self._resource = checker, resource

    async def verify_token(self, token: str) -> AccessToken | None:
        if not acceptable_bearer(token) or not self._checker.accepted(token):
            return None
        return Identity.spending(token, bearer=token, client_id="acedata-token", scopes=[], resource=self._resource)


def token_probe(luma: LumaClient) -> Probe:
    """Asks the API whether it accepts a token, with one unbilled read over `luma`'s connections."""

    async def probe(token: str) -> Verdict:
        try:
            refusal = await luma.with_token(SecretStr(token)).check_token()
        except LumaError as exc:
            raise ProviderUnavailable(exc.summary) from None
        if refusal is None:
            return Verdict()
        if isinstance(refusal, LumaBalanceError):
            return Verdict(f"Ace Data Cloud refused this token: its balance is used up. Top it up at {CONSOLE_URL}.")
        code = f" ({refusal.code})" if refusal.code else ""
        return Verdict(f"Ace Data Cloud does not accept this token{code}: send your own API token from {CONSOLE_URL}.")

    return probe


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def create_http_app(
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = 8000,
    stopping: threading.Event | None = None,
    *,
    documents: ClientDocuments | None = None,
    max_connections: int | None = None,
) -> Starlette:
    """The HTTP app. `documents` fetches client ID metadata documents for the sign-in (None:
    the default, `oauth.client_documents.ClientDocuments()`; tests pass one that trusts their
    own TLS server). `max_connections`: the connections the server really holds (None:
    LUMA_MCP_MAX_CONNECTIONS), of which requests in flight leave some free."""
    mode = settings.auth_mode
    if mode is None and not is_loopback(host):
        raise ConfigurationError(
            f"Refusing to listen on {host} without authentication: anyone who can reach it could spend "
            "the account's credits. Set LUMA_MCP_API_KEYS (clients send one as a bearer token) or "
            "LUMA_MCP_AUTH=passthrough (clients send their own Ace Data Cloud token), or bind 127.0.0.1."
        )
    if mode == "keys" and settings.api_token is None:
        log.warning("Access keys are set but ACEDATACLOUD_API_TOKEN is not: every tool call will ask for it.")
    public_url = _canonical(settings.public_url or f"http://{host}:{port}")
    verifier: TokenVerifier | None = None
    auth: AuthSettings | None = None
    checker: TokenChecker | None = None
    checks: LumaClient | None = None
    if mode == "passthrough":
        # Token checks get their own client: short timeout, no retries (a slow API means 503, not a queue).
        checks = LumaClient(
            token=None,
            base_url=settings.api_base_url,
            timeout=min(settings.request_timeout, TOKEN_CHECK_TIMEOUT),
            retry=RetryPolicy(attempts=0),
        )
        checker = TokenChecker(
            token_probe(checks),
            per_second=settings.token_checks_per_second,
            per_address_per_second=settings.token_checks_per_address,
            cache_seconds=settings.token_cache_seconds,
            cache_size=settings.token_cache_size,
        )
    resource = f"{public_url}{MCP_PATH}"
    oauth: OAuthEdge | None = None
    shared: Ledger | None = None
    if mode is not None:
        static: TokenVerifier = (
            AccessKeyVerifier(settings.access_keys(), resource)
            if checker is None
            else PassthroughVerifier(checker, resource)
        )
        verifier = static
        if settings.oauth:
            from luma_mcp.oauth.client_documents import ClientDocuments  # HTTP with sign-in only
            from luma_mcp.oauth.grants import is_access_token
            from luma_mcp.oauth.routes import oauth_edge

            _check_issuer(public_url)
            shared = ledger = open_ledger(settings)  # one store (and pool) for tasks and sign-ins
            oauth = oauth_edge(
                settings,
                issuer=public_url,
                resource=resource,
                checker=checker,
                keys=static if mode == "keys" else None,
                ledger=ledger,
                documents=documents or ClientDocuments(),
            )
            verifier = oauth.verifier(static)
        auth = AuthSettings(
            issuer_url=public_url,  # signs people in with LUMA_MCP_OAUTH; else keys and tokens come from elsewhere
            resource_server_url=resource,
            validate_token_resource=True,  # every bearer is checked as one for this server's /mcp
        )
    issuer: CallbackIssuer | None = None
    edge: AbstractAsyncContextManager[Any] | None = None
    if (settings.callbacks and settings.public_url) or settings.ledger_url is not None:
        # HTTP with a public URL, or replicas on PostgreSQL, only.
        from luma_mcp.hosting.callbacks import CallbackReceiver, callbacks_issuer, ledger_edge

        issuer = callbacks_issuer(
            settings,
            api_is_loopback=is_loopback(urlsplit(settings.api_base_url).hostname or ""),
            public_is_loopback=is_loopback(urlsplit(public_url).hostname or ""),
        )
        owned = shared is None and (issuer is not None or settings.ledger_url is not None)
        if owned:
            shared = open_ledger(settings)  # the route and the listener reach it outside any call
        if shared is not None:
            edge = ledger_edge(shared, settings, close=owned)
    mcp = create_server(
        settings,
        token_verifier=verifier,
        auth=auth,
        stopping=stopping,
        remote=True,
        ledger=shared,
        callbacks=issuer,
    )

    @mcp.custom_route("/health", methods=["GET"])  # type: ignore[untyped-decorator]
    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "version": __version__})

    cors = split_list(settings.cors_origins)
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[*LOOPBACK_HOSTS, *split_list(settings.allowed_hosts)],
        allowed_origins=[*LOOPBACK_ORIGINS, *split_list(settings.allowed_origins), *cors],
    )
    app = mcp.streamable_http_app(
        transport_security=security,
        host=host,
        max_sessions=settings.max_sessions,  # also enforced (fairly, with Retry-After) by SessionCaps
        session_idle_timeout=settings.session_idle_seconds,
    )
    caps = SessionCaps(
        max_sessions=settings.max_sessions,
        per_tenant=settings.max_sessions_per_tenant,
        unused_seconds=settings.unused_session_seconds,
    )
    caps.attach(mcp.session_manager)
    limits = in_flight_limits(
        max_connections or settings.http_max_connections,
        settings.max_requests_per_tenant,
        settings.max_requests_per_session,
    )
    app.state.in_flight = InFlight(limits, longest=settings.max_wait_seconds + settings.request_timeout)
    # Innermost, after the SDK's authentication: it counts by the verified principal.
    app.user_middleware.append(Middleware(InFlightMiddleware, path=MCP_PATH, in_flight=app.state.in_flight))
    app.add_middleware(
        AdmissionMiddleware,
        path=MCP_PATH,
        checker=checker,
        caps=caps,
        resource_metadata_url=str(build_resource_metadata_url(AnyHttpUrl(resource))) if auth else None,
        issued_here=is_access_token if oauth is not None else None,
    )
    app.state.posts = PostsInFlight()  # for DrainingServer: answers still to go out when stopping
    app.add_middleware(CountPosts, posts=app.state.posts)
    if oauth is not None:
        app.router.routes.extend(oauth.routes)
    if issuer is not None and shared is not None:
        app.router.routes.append(CallbackReceiver(shared, issuer).route())
    held: list[AbstractAsyncContextManager[Any]] = [*([checks] if checks else []), *([oauth] if oauth else [])]
    if edge is not None:  # last in, first out: the listener stops before the sign-in closes a shared ledger
        held.append(edge)
    if held:
        app.router.lifespan_context = _also(app.router.lifespan_context, held)
    if cors:  # added last, so outermost: its headers reach the admission answers too
        app.add_middleware(
            CORSMiddleware,
            allow_origins=cors,
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "Mcp-Session-Id", "Mcp-Protocol-Version", "Last-Event-ID"],
            expose_headers=EXPOSED_HEADERS,
        )
    return app


def _also(
    lifespan: Callable[[Starlette], AbstractAsyncContextManager[Any]], held: Sequence[AbstractAsyncContextManager[Any]]
) -> Callable[[Starlette], AbstractAsyncContextManager[Any]]:
    """`lifespan`, inside what the edge holds of its own (the token checks' connections, the
    sign-in's store and its pruning): opened before it, closed after it."""

    @contextlib.asynccontextmanager
    async def both(app: Starlette) -> AsyncIterator[Any]:
        async with contextlib.AsyncExitStack() as stack:
            for context in held:
                await stack.enter_async_context(context)
            async with lifespan(app) as state:
                yield state

    return both


def _canonical(url: str) -> str:
    """The public URL as every piece compares it (issuer, resource): host lower-cased, default
    port dropped, no trailing slash, as pydantic reads it."""
    try:
        parsed = TypeAdapter(AnyHttpUrl, config=ConfigDict(url_preserve_empty_path=True)).validate_python(url)
    except ValidationError:
        raise ConfigurationError(
            f"LUMA_MCP_PUBLIC_URL ({url}) is not an http(s) URL: give the address people reach this server at, "
            "like https://mcp.example.com."
        ) from None
    return str(parsed).rstrip("/")


def _check_issuer(public_url: str) -> None:
    """The sign-in's issuer: https (plain http on loopback only, for trying it out), no path."""
    parts = urlsplit(public_url)
    if parts.scheme != "https" and not (parts.scheme == "http" and is_loopback(parts.hostname or "")):
        raise ConfigurationError(
            f"LUMA_MCP_OAUTH needs LUMA_MCP_PUBLIC_URL to be the https:// address people reach this server at "
            f"(it is {public_url}); plain http only works on this machine's loopback."
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigurationError(
            f"LUMA_MCP_OAUTH needs LUMA_MCP_PUBLIC_URL to be an origin with no path (it is {public_url}): serve "
            "luma-mcp at the root of its own host name."
        )


def serve_http(settings: Settings, host: str, port: int) -> None:
    stopping = threading.Event()
    rate_limit_logs(logging.getLogger().handlers)
    budget = budget_connections(settings.http_max_connections)
    app = create_http_app(settings, host, port, stopping, max_connections=budget.max_connections)
    guard = ConnectionGuard(budget.max_connections, settings.http_read_timeout)
    log.info("serving MCP at http://%s:%d/mcp (auth: %s)", host, port, settings.auth_mode or "none, loopback only")
    log.info(
        "at most %d open connections; requests read within %d s; idle connections closed after %d s",
        budget.max_connections,
        settings.http_read_timeout,
        settings.http_keep_alive,
    )
    limits = app.state.in_flight.limits
    log.info(
        "at most %d requests in flight at /mcp, %d per tenant, %d per session",
        limits.total,
        limits.per_tenant,
        limits.per_session,
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
        limit_concurrency=budget.max_connections + HEALTH_CONNECTIONS + budget.backlog + 1,
        backlog=budget.backlog,
        timeout_keep_alive=settings.http_keep_alive,
        # On SIGTERM: see http_shutdown.
        timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
    )
    DrainingServer(config, stopping, app.state.posts).run()
