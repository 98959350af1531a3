"""Who may call /mcp: the bearer checks for each way to authenticate (see docs/hosting.md).

- access keys (`LUMA_MCP_API_KEYS` / `LUMA_MCP_API_KEYS_FILE`): the server spends its own
  `ACEDATACLOUD_API_TOKEN`; clients must present one of the keys as a bearer token.
- passthrough (`LUMA_MCP_AUTH=passthrough`): each caller's bearer is their own Ace Data
  Cloud token, used for their upstream calls only; their tasks are theirs alone.

With `LUMA_MCP_OAUTH` on top of either, web connectors sign in instead (`oauth`): they get
OAuth tokens that stand for a key or for the person's own token.
"""

from __future__ import annotations

import hmac
from typing import Literal

from mcp.server.auth.provider import AccessToken, TokenVerifier
from pydantic import SecretStr

from luma_mcp.api.client import LumaClient
from luma_mcp.api.errors import CONSOLE_URL, LumaBalanceError, LumaError
from luma_mcp.checks.bearer import acceptable_bearer
from luma_mcp.core.caller import Identity
from luma_mcp.core.token_checks import Probe, ProviderUnavailable, TokenChecker, Verdict, token_digest
from luma_mcp.hosting.errors import ConfigurationError


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


def in_force(mode: Literal["keys", "passthrough"] | None, issuer: str | None) -> str:
    """Who may call, as the start-up log names it: the mode and, when people sign in (`issuer`
    is the sign-in's issuer, None without one), where. Never a key or a token."""
    if mode is None:
        return "none, loopback only"
    bearers = "access keys" if mode == "keys" else "each caller's own Ace Data Cloud token (passthrough)"
    return bearers if issuer is None else f"OAuth sign-in (issuer {issuer}) with {bearers}"
