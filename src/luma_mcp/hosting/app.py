"""The HTTP app: streamable HTTP at /mcp behind authentication, with health, CORS and the
sign-in's and callbacks' routes (run by `serve`).

Who may call is `authentication` (access keys, passthrough, and `LUMA_MCP_OAUTH` on top of
either). Without a mode, the server listens on loopback only: binding any other address
refuses to start. DNS-rebinding protection (Host and Origin checks) is always on.

With `LUMA_MCP_PUBLIC_URL` set, the provider calls back at `/callbacks/luma/{secret}`
(`callbacks`, unless `LUMA_MCP_CALLBACKS=false`); on PostgreSQL the lifespan also listens for
tasks other replicas record finished (`ledger.listen`), so waits here wake at once.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from mcp.server.auth.provider import TokenVerifier
from mcp.server.auth.routes import build_resource_metadata_url
from mcp.server.auth.settings import AuthSettings
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import AnyHttpUrl
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse

from luma_mcp import __version__
from luma_mcp.api.client import LumaClient
from luma_mcp.api.retries import RetryPolicy
from luma_mcp.config import Settings, split_list
from luma_mcp.core.ledger import Ledger, open_ledger
from luma_mcp.core.token_checks import TokenChecker
from luma_mcp.hosting.addresses import canonical_url, check_issuer, is_loopback
from luma_mcp.hosting.admission import AdmissionMiddleware
from luma_mcp.hosting.authentication import AccessKeyVerifier, PassthroughVerifier, in_force, token_probe
from luma_mcp.hosting.errors import ConfigurationError
from luma_mcp.hosting.inflight import InFlight, InFlightMiddleware, in_flight_limits
from luma_mcp.hosting.session_caps import SessionCaps
from luma_mcp.hosting.shutdown import CountPosts, PostsInFlight
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
    public_url = canonical_url(settings.public_url or f"http://{host}:{port}")
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

            check_issuer(public_url)
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
    # Read by the start-up log: what was built here, not a second reading of the settings.
    app.state.auth = in_force(mode, public_url if oauth is not None else None)
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
