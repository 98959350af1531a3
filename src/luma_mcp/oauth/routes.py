"""The authorization server wired into the HTTP app: its routes, its token check, its cleanup.

Built by `http_app` when `LUMA_MCP_OAUTH` is on. The SDK's routes (`create_auth_routes`)
serve metadata, /authorize, /token, /register and /revoke over `provider.LumaAuthServer`;
this adds the sign-in page, limits each route per address (and a registration's body to
`client_rules.MAX_REGISTRATION_BYTES`), answers /authorize's errors with a page of ours rather
than a redirect (`pages.AuthorizeErrorsAsPages`), and advertises what the SDK's metadata
leaves out (client ID metadata documents, the `iss` in redirects, the scope).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mcp.server.auth.handlers.metadata import MetadataHandler
from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.server.auth.routes import build_metadata, cors_middleware, create_auth_routes
from mcp.server.auth.settings import ClientRegistrationOptions, RevocationOptions
from mcp.server.transport_security import RequestBodyLimitMiddleware
from pydantic import AnyHttpUrl, ConfigDict, TypeAdapter
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route, request_response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from luma_mcp.config import Settings
from luma_mcp.core.ledger import Ledger
from luma_mcp.core.token_checks import KeyedBuckets, TokenChecker, client_key, token_digest
from luma_mcp.oauth import fetch_slots
from luma_mcp.oauth.client_rules import MAX_REGISTRATION_BYTES
from luma_mcp.oauth.grants import GrantStore, is_access_token
from luma_mcp.oauth.pages import AuthorizeErrorsAsPages, notice
from luma_mcp.oauth.provider import SCOPE, SIGNIN_PATH, LumaAuthServer
from luma_mcp.oauth.sealing import Sealer
from luma_mcp.oauth.signin import SignIn

if TYPE_CHECKING:
    from luma_mcp.oauth.client_documents import ClientDocuments

REGISTRATIONS_PER_ADDRESS_PER_MINUTE = 10
STARTS_PER_ADDRESS_PER_MINUTE = 30
TOKEN_REQUESTS_PER_ADDRESS_PER_MINUTE = 60
SIGNIN_PAGES_PER_ADDRESS_PER_MINUTE = 60  # GET and POST /signin together: a sign-in takes two or more
SIGNIN_FORM_BYTES = 16_384
METADATA_PATH = "/.well-known/oauth-authorization-server"
PRUNE_SECONDS = 600
log = logging.getLogger(__name__)


@dataclass
class OAuthEdge:
    routes: list[BaseRoute]
    server: LumaAuthServer
    ledger: Ledger
    documents: ClientDocuments | None
    _pruning: asyncio.Task[None] = field(init=False)

    def verifier(self, static: TokenVerifier) -> TokenVerifier:
        """Access tokens issued here checked against the grants; any other bearer as before."""
        return _EitherVerifier(self.server, static)

    async def __aenter__(self) -> OAuthEdge:
        # Expired sign-ins (and their sealed API tokens) go even when nobody signs in.
        self._pruning = asyncio.get_running_loop().create_task(self._prune_now_and_then())
        return self

    async def __aexit__(self, *_: object) -> None:
        self._pruning.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._pruning
        if self.documents is not None:
            await self.documents.aclose()
        self.ledger.close()

    async def _prune_now_and_then(self) -> None:
        while True:
            await asyncio.sleep(PRUNE_SECONDS)
            try:
                await self.server.grants.prune()
            except Exception as exc:  # the store is down: the next round tries again
                log.warning("Expired sign-ins could not be deleted now: %s", exc)


class _EitherVerifier(TokenVerifier):
    def __init__(self, server: LumaAuthServer, static: TokenVerifier) -> None:
        self._server, self._static = server, static

    async def verify_token(self, token: str) -> AccessToken | None:
        if is_access_token(token):
            return await self._server.load_access_token(token)
        return await self._static.verify_token(token)


def oauth_edge(
    settings: Settings,
    *,
    issuer: str,
    resource: str,
    checker: TokenChecker | None,
    keys: TokenVerifier | None,
    ledger: Ledger,
    documents: ClientDocuments | None = None,
) -> OAuthEdge:
    """The sign-in's parts; its grants live in `ledger` (the MCP server's own, shared: one pool)
    which the edge closes when it stops."""
    mode = settings.auth_mode
    assert mode is not None  # Settings refuses LUMA_MCP_OAUTH without a mode
    grants = GrantStore(
        ledger,
        access_seconds=settings.oauth_access_seconds,
        grant_seconds=settings.oauth_grant_days * 86_400,
        max_clients=settings.oauth_max_clients,
    )
    live_keys = frozenset(token_digest(key).hex() for key in settings.access_keys()) if mode == "keys" else frozenset()
    server = LumaAuthServer(
        grants=grants,
        sealer=Sealer(settings.oauth_keys()),
        issuer=issuer,
        resource=resource,
        mode=mode,
        live_keys=live_keys,
        documents=documents,
        app_schemes=settings.oauth_app_scheme_set(),
    )
    # As AuthSettings reads it: no trailing slash added (issuers are compared as strings).
    issuer_url = TypeAdapter(AnyHttpUrl, config=ConfigDict(url_preserve_empty_path=True)).validate_python(issuer)
    signin = SignIn(server, mode=mode, checker=checker, keys=keys, grant_days=settings.oauth_grant_days)
    registration = ClientRegistrationOptions(enabled=True, valid_scopes=[SCOPE], default_scopes=[SCOPE])
    revocation = RevocationOptions(enabled=True)
    limits = {  # per address (IPv6: per /64) and minute; /authorize and /token may fetch a client's document
        "/register": (REGISTRATIONS_PER_ADDRESS_PER_MINUTE, "registrations"),
        "/authorize": (STARTS_PER_ADDRESS_PER_MINUTE, "sign-in starts"),
        "/token": (TOKEN_REQUESTS_PER_ADDRESS_PER_MINUTE, "token requests"),
        "/revoke": (TOKEN_REQUESTS_PER_ADDRESS_PER_MINUTE, "revocations"),
    }
    routes: list[BaseRoute] = []
    for route in create_auth_routes(server, issuer_url, None, registration, revocation):
        assert isinstance(route, Route)
        if route.path == METADATA_PATH:
            metadata = build_metadata(issuer_url, None, registration, revocation).model_copy(
                update={
                    "client_id_metadata_document_supported": documents is not None,
                    "authorization_response_iss_parameter_supported": True,
                    # Public clients (no secret: native apps, and every metadata-document client) too.
                    "token_endpoint_auth_methods_supported": ["none", "client_secret_post", "client_secret_basic"],
                }
            )
            handler = cors_middleware(MetadataHandler(metadata).handle, ["GET", "OPTIONS"])
            route = Route(METADATA_PATH, endpoint=handler, methods=["GET", "OPTIONS"])
        elif route.path in limits:
            per_minute, what = limits[route.path]
            app = route.app
            if route.path == "/authorize":
                app = AuthorizeErrorsAsPages(app, f"{server.signin_url}?")
            elif route.path == "/register":  # a stranger's body: cut off long before the SDK's 4 MiB
                app = _RegistrationBodyLimit(app)
            limited = _PerAddress(app, KeyedBuckets(per_minute, per_minute), what, page=route.path == "/authorize")
            route = Route(route.path, endpoint=limited, methods=list(route.methods or []))
        routes.append(route)
    # Each view of the page looks its client up (maybe fetching its document) and sends the page.
    views = KeyedBuckets(SIGNIN_PAGES_PER_ADDRESS_PER_MINUTE, SIGNIN_PAGES_PER_ADDRESS_PER_MINUTE)
    page = _PerAddress(request_response(signin.page), views, "sign-in page views", page=True)
    form = RequestBodyLimitMiddleware(request_response(signin.submit), SIGNIN_FORM_BYTES)
    routes.append(Route(SIGNIN_PATH, endpoint=page, methods=["GET"]))
    routes.append(
        Route(SIGNIN_PATH, endpoint=_PerAddress(form, views, "sign-in page views", page=True), methods=["POST"])
    )
    return OAuthEdge(routes=routes, server=server, ledger=ledger, documents=documents)


class _RegistrationBodyLimit:
    """POST /register's body at most `MAX_REGISTRATION_BYTES` (the SDK's own limit, set lower),
    refused in RFC 7591's words before anything parses it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = RequestBodyLimitMiddleware(app, MAX_REGISTRATION_BYTES)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refused = False

        async def in_oauth_words(message: Message) -> None:
            nonlocal refused
            if message["type"] == "http.response.start" and message["status"] == 413:
                refused = True
                return
            if refused:  # the limit's plain-text body, replaced
                if not message.get("more_body", False):
                    description = (
                        f"This registration is larger than {MAX_REGISTRATION_BYTES} bytes; "
                        "send only the metadata the app needs."
                    )
                    error = {"error": "invalid_client_metadata", "error_description": description}
                    await JSONResponse(error, 413)(scope, receive, send)
                return
            await send(message)

        await self.app(scope, receive, in_oauth_words)


class _PerAddress:
    """At most so many requests a minute from one address (IPv6: one /64), preflights aside;
    429 with Retry-After beyond (an HTML notice if `page`: a person's browser asked)."""

    def __init__(self, app: ASGIApp, buckets: KeyedBuckets, what: str, *, page: bool = False) -> None:
        self.app, self.buckets, self.what, self.page = app, buckets, what, page

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] != "OPTIONS":
            client = scope.get("client")
            key = client_key(client[0] if client else "")
            fetch_slots.requester.set(key)  # whose share of document fetches this request spends
            wait = self.buckets.wait(key)
            if wait:
                seconds = str(math.ceil(wait))
                if self.page:
                    message = f"Too many {self.what} from this address. Wait {seconds} seconds, then try again."
                    await notice(429, message, headers={"Retry-After": seconds})(scope, receive, send)
                    return
                description = f"Too many {self.what} from this address: try again after Retry-After."
                error = {"error": "temporarily_unavailable", "error_description": description}
                await JSONResponse(error, 429, {"Retry-After": seconds})(scope, receive, send)
                return
            self.buckets.spend(key)
        await self.app(scope, receive, send)
