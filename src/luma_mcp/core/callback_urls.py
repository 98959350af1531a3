"""Each submit's callback URL: a secret of its own under the server's public URL.

Issuing one is a rule of the core (a submit carries it, its ledger row keeps its hash);
receiving the provider's POST is the HTTP edge's route (`hosting.callbacks`). The secret is
32 random bytes, sent to the provider only inside the callback URL of the wire request. The
ledger keeps its SHA-256 (`callback_hash`), never the secret; no log line, tool result or
exception carries it.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from luma_mcp.api.errors import LumaError

CALLBACK_PREFIX = "/callbacks/luma/"
SECRET_BYTES = 32  # secrets.token_urlsafe(32): 43 url-safe base64 characters, unpadded


def callback_hash(secret: str) -> str:
    """What the ledger keeps of a secret (hex SHA-256): enough to find its row, useless to forge one."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Callback:
    """One submit's callback: the URL for the wire request and the hash for its ledger row."""

    secret: str = field(repr=False)  # never printed
    url: str = field(repr=False)  # holds the secret
    hash: str

    def scrub(self, error: LumaError) -> None:
        """Take the secret out of an API error's text (the API may quote a request back)."""
        if self.secret in error.summary:
            error.summary = error.summary.replace(self.secret, "[callback secret]")
            error.args = (error.message,)


class CallbackIssuer:
    """Makes each submit's callback URL under the server's public URL, and knows whether
    callbacks are arriving.

    Only a callback that arrived proves the provider reaches this server (a public URL can be
    right for people and wrong for the provider: a proxy without the route, a firewall). So
    polling is stretched to a safety net (`VideoService.fetch`) only while callbacks arrive:
    until the first, or once none has come for `TRUST_SECONDS`, waits poll as without them."""

    TRUST_SECONDS = 3600.0

    def __init__(self, public_url: str) -> None:
        self.base = public_url.rstrip("/") + CALLBACK_PREFIX
        self._arrived_at: float | None = None  # the last genuine callback (its secret known)

    def arrived(self) -> None:
        self._arrived_at = time.monotonic()

    def arriving(self) -> bool:
        """Whether a genuine callback came here within the last `TRUST_SECONDS`."""
        return self._arrived_at is not None and time.monotonic() - self._arrived_at < self.TRUST_SECONDS

    def issue(self) -> Callback:
        secret = secrets.token_urlsafe(SECRET_BYTES)
        return Callback(secret=secret, url=self.base + secret, hash=callback_hash(secret))

    def __repr__(self) -> str:
        return f"CallbackIssuer({self.base}...)"
