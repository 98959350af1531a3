"""The server key (LUMA_MCP_OAUTH_KEY): what must stay secret at rest, yet be read back.

- `seal` / `unseal`: a person's Ace Data Cloud token and registered clients' secrets in the
  database, and the sign-in request the page carries between /authorize and the form.
  Fernet from `cryptography` (AES-128-CBC with HMAC-SHA256): a sealed value can be neither
  read nor altered without the key.
- Several keys (comma-separated) rotate: the first seals, every one unseals. A value no key
  unseals (a lost or replaced key) reads as nothing, so people sign in again; never a crash.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class Sealer:
    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ValueError("at least one server key is needed")
        self._fernet = MultiFernet([Fernet(key) for key in keys])

    def seal(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode("ascii")

    def unseal(self, sealed: str, *, max_age: float | None = None) -> str | None:
        """The value, or None when no key opens it, it was altered, or it is older than `max_age` s."""
        try:
            return self._fernet.decrypt(sealed.encode("ascii"), ttl=int(max_age) if max_age else None).decode()
        except (InvalidToken, UnicodeError, ValueError):
            return None
