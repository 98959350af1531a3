"""The authorization server wired into the HTTP app: its routes, its token check, its cleanup.

Built by `http_app` when `LUMA_MCP_OAUTH` is on. The SDK's routes (`create_auth_routes`)
serve metadata, /authorize, /token, /register and /revoke over `provider.LumaAuthServer`;
this adds the sign-in page, limits registrations per address, and advertises what the SDK's
metadata leaves out (client ID metadata documents, the `iss` in redirects, the scope).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
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
from starlette.routing import BaseRoute, Route, request_response
from starlette.types import ASGIApp, Receive, Scope, Send

from luma_mcp.config import Settings
from luma_mcp.ledger import Ledger, open_ledger
from luma_mcp.oauth.grants import GrantStore, is_access_token
from luma_mcp.oauth.limits import KeyedBuckets
from luma_mcp.oauth.provider import SCOPE, SIGNIN_PATH, LumaAuthServer
from luma_mcp.oauth.sealing import Sealer
from luma_mcp.oauth.signin import SignIn
from luma_mcp.token_checks import TokenChecker, client_key, token_digest

if TYPE_CHECKING:
    from luma_mcp.oauth.client_documents import ClientDocuments

REGISTRATIONS_PER_ADDRESS_PER_MINUTE = 10
AUTHORIZATIONS_PER_ADDRESS_PER_MINUTE = 30
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

    @staticmethod
    def issued_here(bearer: str) -> bool:
        """Whether a bearer is an access token of ours (checked against the grants, not upstream)."""
        return is_access_token(bearer)

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
    documents: ClientDocuments | None = None,
) -> OAuthEdge:
    mode = settings.auth_mode
    assert mode is not None  # Settings refuses LUMA_MCP_OAUTH without a mode
    ledger = open_ledger(settings)
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
    )
    # As AuthSettings reads it: no trailing slash added (issuers are compared as strings).
    issuer_url = TypeAdapter(AnyHttpUrl, config=ConfigDict(url_preserve_empty_path=True)).validate_python(issuer)
    signin = SignIn(server, mode=mode, checker=checker, keys=keys, grant_days=settings.oauth_grant_days)
    registration = ClientRegistrationOptions(enabled=True, valid_scopes=[SCOPE], default_scopes=[SCOPE])
    revocation = RevocationOptions(enabled=True)
    routes: list[BaseRoute] = []
    for route in create_auth_routes(server, issuer_url, None, registration, revocation):
        if route.path == METADATA_PATH:
            metadata = build_metadata(issuer_url, None, registration, revocation).model_copy(
                update={
                    "client_id_metadata_document_supported": documents is not None,
                    "authorization_response_iss_parameter_supported": True,
                    # Public clients (no secret: native apps, and every metadata-document client) too.
                    "token_endpoint_auth_methods_supported": ["none", "client_secret_post", "client_secret_basic"],
                }
            )
            route = Route(
                METADATA_PATH,
                endpoint=cors_middleware(MetadataHandler(metadata).handle, ["GET", "OPTIONS"]),
                methods=["GET", "OPTIONS"],
            )
        elif route.path == "/register":
            limited = _PerAddress(route.app, KeyedBuckets(REGISTRATIONS_PER_ADDRESS_PER_MINUTE, 10), "registrations")
            route = Route("/register", endpoint=limited, methods=["POST", "OPTIONS"])
        elif route.path == "/authorize":
            # Each new metadata-document client id is a fetch this server makes: not for free.
            buckets = KeyedBuckets(AUTHORIZATIONS_PER_ADDRESS_PER_MINUTE, AUTHORIZATIONS_PER_ADDRESS_PER_MINUTE)
            route = Route(
                "/authorize", endpoint=_PerAddress(route.app, buckets, "sign-in starts"), methods=["GET", "POST"]
            )
        routes.append(route)
    routes.append(Route(SIGNIN_PATH, endpoint=signin.page, methods=["GET"]))
    routes.append(
        Route(SIGNIN_PATH, endpoint=_body_limited(request_response(signin.submit), SIGNIN_FORM_BYTES), methods=["POST"])
    )
    return OAuthEdge(routes=routes, server=server, ledger=ledger, documents=documents)


def _body_limited(app: ASGIApp, limit: int) -> ASGIApp:
    return RequestBodyLimitMiddleware(app, limit)


class _PerAddress:
    """At most so many requests a minute from one address (IPv6: one /64), preflights aside;
    429 with Retry-After beyond."""

    def __init__(self, app: ASGIApp, buckets: KeyedBuckets, what: str) -> None:
        self.app, self.buckets, self.what = app, buckets, what

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] != "OPTIONS":
            client = scope.get("client")
            key = client_key(client[0] if client else "")
            wait = self.buckets.wait(key)
            if wait:
                body = json.dumps(
                    {
                        "error": "temporarily_unavailable",
                        "error_description": f"Too many {self.what} from this address: try again after Retry-After.",
                    }
                ).encode()
                headers = [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", str(math.ceil(wait)).encode()),
                ]
                await send({"type": "http.response.start", "status": 429, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
            self.buckets.spend(key)
        await self.app(scope, receive, send)
