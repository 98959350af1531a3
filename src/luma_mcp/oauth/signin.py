"""The sign-in page: where a person proves who they are before an app gets a token.

GET /signin shows which application asks, where it will send them back and what it may do,
and a form for what `LUMA_MCP_AUTH` asks of them: their own Ace Data Cloud API token
(passthrough: checked with the API by one unbilled read before anything is issued, then
kept sealed) or an access key from the operator (keys). What it guarantees:
- The authorization request rides in the form sealed (`provider.authorize`): nothing is
  stored per visitor, and nobody can alter the client, redirect, PKCE challenge or state.
- CSRF: a random value in a SameSite=Strict, HttpOnly cookie must match the form's copy.
- What the person typed is never echoed back, logged or put in a URL; a wrong entry is
  answered on the page. Failed attempts are limited per address, and per client and network
  (`token_checks.KeyedBuckets`);
  a success needs a real token or key, and each check of a new token is itself rate-bounded
  (`token_checks`).
- What an application says of itself (its name, id, redirect origin) is shown bounded, without
  control or bidirectional characters, each value isolated (`<bdi>`): it cannot reorder or
  hide the page's own words.
- The page cannot be framed, loads nothing, and may post only here and redirect only to the
  client's redirect origin (CSP; an IPv6 one by its scheme alone, which is all CSP can say),
  which gets the code, the state and our issuer (RFC 9207).
"""

from __future__ import annotations

import hmac
import html
import json
import logging
import math
import secrets
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any, Literal

from mcp.server.auth.provider import TokenVerifier, construct_redirect_uri
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from luma_mcp.api.errors import LedgerUnavailable
from luma_mcp.checks.bearer import acceptable_bearer
from luma_mcp.core.caller import OPERATOR, tenant_of
from luma_mcp.core.token_checks import KeyedBuckets, TokenChecker, Unsure, client_key, network_key
from luma_mcp.oauth.pages import html_response, notice, shown
from luma_mcp.oauth.provider import LumaAuthServer, redirect_origin

log = logging.getLogger(__name__)

REQUEST_SECONDS = 600  # how long a sign-in page stays usable
CSRF_COOKIE = "luma_signin"
ATTEMPTS_PER_ADDRESS_PER_MINUTE = 5
ATTEMPTS_PER_CLIENT_PER_MINUTE = 30
SHOWN_NAME_CHARS = 80  # an application's name, as the page shows it (each shown value is isolated: <bdi>)
SHOWN_URL_CHARS = 200  # its client id (a document's is a URL) and where it sends the person back
PAGE = Template((Path(__file__).parent / "signin.html").read_text(encoding="utf-8"))

ASK = {
    "passthrough": (
        "your Ace Data Cloud account",
        "Your Ace Data Cloud API token",
        "From platform.acedata.cloud. It is checked with Ace Data Cloud, kept encrypted on this server, and used "
        "only for this app's requests.",
    ),
    "keys": (
        "this server's account",
        "Access key",
        "The access key this server's operator gave you.",
    ),
}


@dataclass(frozen=True)
class Pending:
    """An authorization request on its way through the page (unsealed from the form)."""

    client_id: str
    redirect_uri: str
    explicit: bool
    challenge: str
    state: str | None
    scopes: list[str]
    sealed: str  # as it rides in the form


class SignIn:
    def __init__(
        self,
        server: LumaAuthServer,
        *,
        mode: Literal["keys", "passthrough"],
        checker: TokenChecker | None,
        keys: TokenVerifier | None,
        grant_days: float,
    ) -> None:
        self.server, self.mode, self.checker, self.keys = server, mode, checker, keys
        self.grant_days = grant_days
        self.secure = server.issuer.startswith("https://")
        self._per_address = KeyedBuckets(ATTEMPTS_PER_ADDRESS_PER_MINUTE, ATTEMPTS_PER_ADDRESS_PER_MINUTE)
        self._per_client = KeyedBuckets(ATTEMPTS_PER_CLIENT_PER_MINUTE, ATTEMPTS_PER_CLIENT_PER_MINUTE)

    async def page(self, request: Request) -> Response:
        pending = self._pending(request.query_params.get("request"))
        if pending is None:
            return notice(400, "This sign-in link has expired or is not valid. Go back to your app and connect again.")
        csrf = secrets.token_urlsafe(32)
        response = await self._form(pending, csrf)
        response.set_cookie(
            CSRF_COOKIE,
            csrf,
            max_age=REQUEST_SECONDS,
            path="/signin",
            secure=self.secure,
            httponly=True,
            samesite="strict",
        )
        return response

    async def submit(self, request: Request) -> Response:
        form = await request.form()
        csrf = _text(form.get("csrf"))
        cookie = request.cookies.get(CSRF_COOKIE, "")
        if not csrf or not cookie or not hmac.compare_digest(csrf.encode(), cookie.encode()):
            return notice(403, "This form was not sent from this sign-in page. Go back to your app and connect again.")
        pending = self._pending(_text(form.get("request")))
        if pending is None:
            return notice(400, "This sign-in page has expired. Go back to your app and connect again.")
        if _text(form.get("action")) == "deny":
            return self._back(pending, error="access_denied")
        address = request.client.host if request.client else ""
        # Per application within one network too: an app's id (claude.ai's) is shared by all its
        # users, and guesses from elsewhere must not lock them out.
        per_client = f"{pending.client_id} {network_key(address)}"
        wait = max(self._per_address.wait(client_key(address)), self._per_client.wait(per_client))
        if wait:
            message = f"Too many attempts. Wait {math.ceil(wait)} seconds, then try again."
            return await self._form(pending, csrf, message, 429, {"Retry-After": str(math.ceil(wait))})
        secret = _text(form.get("secret")).strip()
        try:
            proven = await self._prove(secret, address)
            if isinstance(proven, Refusal):
                # Refusals are what is limited: guesses, and checks the API could not answer.
                self._per_address.spend(client_key(address))
                self._per_client.spend(per_client)
                later = {"Retry-After": str(math.ceil(proven.retry_after))} if proven.retry_after else None
                return await self._form(pending, csrf, proven.message, proven.status, later)
            code = await self.server.grants.start_grant(
                client_id=pending.client_id,
                tenant=proven.tenant,
                subject=proven.subject,
                sealed_token=self.server.sealer.seal(secret) if self.mode == "passthrough" else None,
                scopes=pending.scopes,
                resource=self.server.resource,
                code_details={
                    "redirect_uri": pending.redirect_uri,
                    "explicit": pending.explicit,
                    "challenge": pending.challenge,
                },
            )
        except LedgerUnavailable:
            return await self._form(
                pending, csrf, "This server cannot record sign-ins right now. Try again in a minute.", 503
            )
        log.info("A sign-in for OAuth client %s succeeded.", pending.client_id)
        response = self._back(pending, code=code)
        response.delete_cookie(CSRF_COOKIE, path="/signin", secure=self.secure, httponly=True, samesite="strict")
        return response

    # --- what the person proves ------------------------------------------------------------

    async def _prove(self, secret: str, address: str) -> Proven | Refusal:
        if self.mode == "passthrough":
            if not acceptable_bearer(secret):
                return Refusal("That is not an Ace Data Cloud API token: paste the token itself, without spaces.")
            assert self.checker is not None
            outcome = await self.checker.check(secret, address)
            if isinstance(outcome, Unsure):
                message = f"Too many attempts right now. Wait {math.ceil(outcome.retry_after)} seconds, then try again."
                if outcome.status == 503:
                    message = "Ace Data Cloud cannot check the token right now. Try again in a few seconds."
                return Refusal(message, outcome.status, outcome.retry_after)
            if outcome.refusal is not None:
                return Refusal(outcome.refusal)
            tenant = tenant_of(secret)
            return Proven(tenant=tenant, subject=tenant)
        assert self.keys is not None
        holder = await self.keys.verify_token(secret)  # the key's holder, as a bearer of it would be
        if holder is None or holder.subject is None:
            return Refusal("That access key is not one this server accepts. Check it with whoever gave it to you.")
        return Proven(tenant=OPERATOR, subject=holder.subject)

    # --- pages -----------------------------------------------------------------------------

    def _pending(self, sealed: str | None) -> Pending | None:
        opened = self.server.sealer.unseal(sealed, max_age=REQUEST_SECONDS) if sealed else None
        if opened is None:
            return None
        fields: dict[str, Any] = json.loads(opened)
        return Pending(sealed=sealed or "", **fields)

    async def _form(
        self, pending: Pending, csrf: str, error: str = "", status: int = 200, headers: dict[str, str] | None = None
    ) -> Response:
        client = await self.server.get_client(pending.client_id)
        if client is None:
            return notice(400, "The application asking is no longer registered here. Go back to it and connect again.")
        account, label, hint = ASK[self.mode]
        back_to = redirect_origin(pending.redirect_uri)
        values = {
            "app": shown(client.client_name or back_to, SHOWN_NAME_CHARS),
            "client_id": shown(pending.client_id, SHOWN_URL_CHARS),
            "back_to": shown(back_to, SHOWN_URL_CHARS),
            "account": account,
            "label": label,
            "hint": hint,
            "days": f"{self.grant_days:g}",
            "request": pending.sealed,
            "csrf": csrf,
        }
        body = PAGE.substitute({key: html.escape(value) for key, value in values.items()})
        alert = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
        body = body.replace("<!--error-->", alert)
        return html_response(body, status, form_action_source(back_to), headers)

    def _back(self, pending: Pending, **params: str) -> Response:
        location = construct_redirect_uri(pending.redirect_uri, **params, state=pending.state, iss=self.server.issuer)
        return RedirectResponse(location, status_code=303, headers={"Cache-Control": "no-store"})


@dataclass(frozen=True)
class Proven:
    tenant: str
    subject: str


@dataclass(frozen=True)
class Refusal:
    message: str
    status: int = 400
    retry_after: float = 0


def form_action_source(origin: str) -> str:
    """The CSP source that lets the redirect after the post reach `origin` (browsers apply
    form-action to it): the origin itself, or for an IPv6 address such as the loopback
    `http://[::1]:8080` its scheme alone, since CSP's host grammar has no IPv6 literals and
    browsers drop such a source (and then block the redirect)."""
    scheme, separator, host = origin.partition("://")
    return f"{scheme}:" if separator and host.startswith("[") else origin


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""
