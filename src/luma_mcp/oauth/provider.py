"""The authorization server's rules, as the SDK's `OAuthAuthorizationServerProvider`.

The SDK's handlers (`mcp.server.auth`) parse requests, check PKCE (S256), redirect URIs, code
expiry and client secrets; this decides who a client is, what /authorize leads to (our
sign-in page, `signin`), and what codes and tokens stand for (`grants`). On top of the SDK:
- Clients: every one, registered or named by its metadata document, meets `client_rules`
  (bounded sizes, no hidden controls, safe redirect schemes), checked at registration and
  at every look-up. Redirect URIs match exactly, except that a loopback redirect may use
  any port (RFC 8252 §7.3).
- Tokens are bound to this server (RFC 8707): a `resource` other than ours is refused at
  /authorize, and every token carries ours (the bearer check compares it).
- An access token reads back as the `caller.Identity` it stands for: the person's own API
  token unsealed (bring your own token), or the access key's holder while that key is still
  configured. A grant this process cannot act for (key removed, server key replaced, mode
  changed) has its tokens refused, refresh included: that person signs in again.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlencode, urlsplit

from mcp.server.auth.provider import (
    AuthorizationCode,
    AuthorizationParams,
    AuthorizeError,
    OAuthAuthorizationServerProvider,
    RefreshToken,
    RegistrationError,
    TokenError,
)
from mcp.shared.auth import InvalidScopeError, OAuthClientInformationFull, OAuthToken
from mcp.shared.auth_utils import resource_url_from_server_url
from pydantic import AnyUrl

from luma_mcp.checks.bearer import MAX_BEARER_LENGTH
from luma_mcp.core.caller import Identity
from luma_mcp.oauth.client_rules import LOOPBACK_REDIRECT_HOSTS, client_problem
from luma_mcp.oauth.grants import Credential, Grant, GrantStore, Issued
from luma_mcp.oauth.sealing import Sealer

if TYPE_CHECKING:
    from luma_mcp.oauth.client_documents import ClientDocuments

log = logging.getLogger(__name__)

SCOPE = "videos"  # the one thing a grant allows: make and read videos on the person's account
SIGNIN_PATH = "/signin"


def _same_but_port(requested: AnyUrl, registered: AnyUrl) -> bool:
    """RFC 8252 §7.3: a native app's loopback redirect may come back on any port."""
    return (
        requested.scheme == registered.scheme == "http"
        and requested.host in LOOPBACK_REDIRECT_HOSTS
        and requested.host == registered.host
        and requested.path == registered.path
        and requested.query == registered.query
    )


class RegisteredClient(OAuthClientInformationFull):
    """A client as this server sees it: any loopback port, and the one scope there is."""

    def validate_scope(self, requested_scope: str | None) -> list[str] | None:
        if requested_scope is None:
            return None
        scopes = requested_scope.split()
        if any(scope != SCOPE for scope in scopes):
            raise InvalidScopeError(f"This server has one scope, {SCOPE!r}; ask for that or none.")
        return scopes

    def validate_redirect_uri(self, redirect_uri: AnyUrl | None) -> AnyUrl:
        if redirect_uri is not None and any(_same_but_port(redirect_uri, known) for known in self.redirect_uris or []):
            return redirect_uri
        return super().validate_redirect_uri(redirect_uri)


class GrantCode(AuthorizationCode):
    grant_id: str


class GrantRefresh(RefreshToken):
    grant_id: str


def same_resource(a: str, b: str) -> bool:
    return resource_url_from_server_url(a).rstrip("/") == resource_url_from_server_url(b).rstrip("/")


class LumaAuthServer(OAuthAuthorizationServerProvider[GrantCode, GrantRefresh, Identity]):
    """The SDK's provider protocol, implemented (the identity-assertion grant stays refused)."""

    def __init__(
        self,
        *,
        grants: GrantStore,
        sealer: Sealer,
        issuer: str,
        resource: str,
        mode: Literal["keys", "passthrough"],
        live_keys: frozenset[str] = frozenset(),
        documents: ClientDocuments | None = None,
        app_schemes: frozenset[str] = frozenset(),
    ) -> None:
        self.grants, self.sealer, self.documents = grants, sealer, documents
        self.app_schemes = app_schemes  # redirect schemes without a period allowed (LUMA_MCP_OAUTH_APP_SCHEMES)
        self.issuer, self.resource, self.mode = issuer, resource, mode
        self.signin_url = f"{issuer}{SIGNIN_PATH}"  # where /authorize sends a person, and nowhere else
        self._live_keys = live_keys  # access keys' digests (hex), in keys mode

    # --- clients ---------------------------------------------------------------------------

    async def get_client(self, client_id: str) -> OAuthClientInformationFull | None:
        if not 0 < len(client_id) <= MAX_BEARER_LENGTH:
            return None
        sealed_secret: str | None = None
        if self.documents is not None and self.documents.is_document_id(client_id):
            client = await self.documents.get(client_id)
        else:
            registered = await self.grants.client(client_id)
            client, sealed_secret = registered if registered else (None, None)
        if client is None:
            return None
        # A document is a stranger's too, and a stored client may predate today's rules: the same check.
        if problem := client_problem(client, self.app_schemes):
            log.warning("The OAuth client %.200s is not used: %s", client_id, problem[1])
            return None
        found = RegisteredClient.model_validate(client.model_dump(exclude_none=True))
        if sealed_secret is not None:
            # None when no server key opens it: the SDK then refuses the client, which registers again.
            found.client_secret = self.sealer.unseal(sealed_secret)
        return found

    async def register_client(self, client_info: OAuthClientInformationFull) -> None:
        if problem := client_problem(client_info, self.app_schemes):
            raise RegistrationError(*problem)
        # The SDK's random secret (if any) is what it answers with; kept sealed, so it survives key rotation.
        secret = client_info.client_secret
        if not await self.grants.add_client(client_info, self.sealer.seal(secret) if secret else None):
            raise RegistrationError(
                "invalid_client_metadata",
                "This server has registered as many applications as it keeps; try again later.",
            )

    # --- authorization ---------------------------------------------------------------------

    async def authorize(self, client: OAuthClientInformationFull, params: AuthorizationParams) -> str:
        if params.resource is not None and not same_resource(params.resource, self.resource):
            raise AuthorizeError("invalid_target", f"This server issues tokens for {self.resource} only.")
        request = {
            "client_id": client.client_id,
            "redirect_uri": str(params.redirect_uri),
            "explicit": params.redirect_uri_provided_explicitly,
            "challenge": params.code_challenge,
            "state": params.state,
            "scopes": params.scopes or [SCOPE],
        }
        # Sealed, so the page can carry it without a row per visitor and nobody can alter it.
        return f"{self.signin_url}?{urlencode({'request': self.sealer.seal(json.dumps(request))})}"

    async def load_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: str
    ) -> GrantCode | None:
        found = await self._live(authorization_code, "code", client)
        if found is None:
            return None
        details = found.details
        return GrantCode(
            code=authorization_code,
            scopes=found.grant.scopes,
            expires_at=found.expires_at,
            client_id=found.grant.client_id,
            code_challenge=details["challenge"],
            redirect_uri=AnyUrl(details["redirect_uri"]),
            redirect_uri_provided_explicitly=details["explicit"],
            resource=found.grant.resource,
            subject=found.grant.subject,
            grant_id=found.grant.grant_id,
        )

    async def exchange_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: GrantCode
    ) -> OAuthToken:
        issued = await self.grants.exchange(
            authorization_code.code, grant_id=authorization_code.grant_id, client_id=client.client_id
        )
        return self._tokens(issued, authorization_code.scopes)

    async def load_refresh_token(self, client: OAuthClientInformationFull, refresh_token: str) -> GrantRefresh | None:
        found = await self._live(refresh_token, "refresh", client)
        if found is None or not self._acts_for(found.grant)[0]:
            return None
        return GrantRefresh(
            token=refresh_token,
            client_id=found.grant.client_id,
            scopes=found.grant.scopes,
            expires_at=int(found.expires_at),
            resource=found.grant.resource,
            subject=found.grant.subject,
            grant_id=found.grant.grant_id,
        )

    async def exchange_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: GrantRefresh, scopes: list[str]
    ) -> OAuthToken:
        issued = await self.grants.exchange(
            refresh_token.token, grant_id=refresh_token.grant_id, client_id=client.client_id
        )
        return self._tokens(issued, refresh_token.scopes)

    # --- tokens ----------------------------------------------------------------------------

    async def load_access_token(self, token: str) -> Identity | None:
        found = await self.grants.find(token, "access")
        if found is None or found.spent:
            return None
        grant = found.grant
        fields: dict[str, Any] = {
            "client_id": grant.client_id,
            "scopes": grant.scopes,
            "expires_at": int(found.expires_at),
            "resource": grant.resource,
        }
        usable, api_token = self._acts_for(grant)
        if not usable:
            return None
        if api_token is not None:
            return Identity.spending(api_token, bearer=token, **fields)
        return Identity(token=token, subject=grant.subject, **fields)

    async def revoke_token(self, token: Identity | GrantRefresh) -> None:
        if isinstance(token, GrantRefresh):
            await self.grants.revoke(token.grant_id)
            return
        found = await self.grants.find(token.token, "access")
        if found is not None:
            await self.grants.revoke(found.grant.grant_id)

    # --- helpers ---------------------------------------------------------------------------

    async def _live(
        self, token: str, kind: Literal["code", "refresh"], client: OAuthClientInformationFull
    ) -> Credential | None:
        found = await self.grants.find(token, kind)
        if found is None or found.grant.client_id != client.client_id:
            return None
        if found.spent:
            if not found.stolen:  # a concurrent refresh that lost the race: refused, the winner unharmed
                return None
            # A spent code or rotated refresh token, again: someone else holds it. End the sign-in.
            await self.grants.revoke(found.grant.grant_id)
            log.warning("An OAuth %s was presented a second time: its sign-in is revoked.", kind)
            return None
        return found

    def _acts_for(self, grant: Grant) -> tuple[bool, str | None]:
        """Whether this process can act for `grant`, and with which API token (the person's own,
        unsealed; None: the server's, for an access key's holder). It cannot when the API token
        does not unseal with this server's keys, the access key is not configured here, or the
        grant was made in the other mode: its tokens are refused, refresh included, and the app
        asks the person to sign in again. The grant is left to expire rather than revoked: a
        replica configured otherwise (mid-rotation) may still act for it."""
        if self.mode == "passthrough":
            api_token = self.sealer.unseal(grant.sealed_token) if grant.sealed_token is not None else None
            if api_token is not None:
                return True, api_token
            why = "its API token does not unseal with LUMA_MCP_OAUTH_KEY"
        else:
            if grant.sealed_token is None and grant.subject in self._live_keys:
                return True, None
            why = "the access key it was made with is not configured here"
        log.warning("A sign-in's token is refused because %s: that person must sign in again.", why)
        return False, None

    def _tokens(self, issued: Issued | None, scopes: list[str]) -> OAuthToken:
        if issued is None:
            raise TokenError("invalid_grant", "This code or refresh token has already been used.")
        return OAuthToken(
            access_token=issued.access_token,
            expires_in=max(1, int(issued.access_expires_at - time.time())),
            scope=" ".join(scopes),
            refresh_token=issued.refresh_token,
        )


def redirect_origin(uri: str) -> str:
    """Where a redirect to `uri` sends the person, as the page shows it: its scheme, host and
    port (never a user part), or for an app's own scheme just `scheme:`
    (`signin.form_action_source` makes the CSP source of it)."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https"):
        return f"{parts.scheme}:"
    host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else parts.hostname or ""
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}"
