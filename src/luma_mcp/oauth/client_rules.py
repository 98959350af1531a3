"""What a client may be: the rules every client record meets, however it came (a stranger's
registration at /register, or a stranger's client ID metadata document).

`client_problem` is the one check; `provider.LumaAuthServer` applies it when a client
registers and whenever a client is looked up (a document's, and a stored one registered
under older rules). What it guarantees:
- Size: every string at most `MAX_TEXT_CHARS` (`client_name` `MAX_NAME_CHARS`), every list at
  most `MAX_ITEMS` entries, and the record as stored at most `MAX_CLIENT_RECORD_BYTES`; the
  body of POST /register itself is cut off at `MAX_REGISTRATION_BYTES` (`routes`).
- Text a person may be shown has no control character (C0, C1, DEL) and no bidirectional
  control (U+202A-U+202E, U+2066-U+2069, U+200E, U+200F, U+061C), which could reorder or
  hide what the sign-in page says.
- Redirect URIs (`redirect_problem`): https; plain http only to a loopback host; or an app's
  own scheme, if it is reverse-domain (has a period, RFC 8252 §7.1: `com.example.app:`) or
  one the operator lists (`LUMA_MCP_OAUTH_APP_SCHEMES`); never a fragment or a user part.
  Any other scheme may start a program on the person's machine (`ms-msdt:`, `search-ms:`)
  or run in the page (`javascript:`, `data:`).
"""

from __future__ import annotations

from typing import Any

from mcp.server.auth.provider import RegistrationErrorCode
from mcp.shared.auth import OAuthClientInformationFull
from pydantic import AnyUrl

from luma_mcp.checks.plain_text import is_hidden_control

MAX_REGISTRATION_BYTES = 16_384
MAX_CLIENT_RECORD_BYTES = 4_096
MAX_NAME_CHARS = 100
MAX_TEXT_CHARS = 512
MAX_ITEMS = 10
LOOPBACK_REDIRECT_HOSTS = frozenset({"127.0.0.1", "[::1]", "localhost"})
# Never an app's scheme, even if an operator lists it: these run code or read files in the browser.
UNSAFE_SCHEMES = frozenset({"javascript", "data", "file", "vbscript", "blob", "about", "ftp", "ws", "wss"})
# Fields whose length this server decides, not the client: the id (a document's is its URL, checked there).
_OWN_FIELDS = frozenset({"client_id", "client_id_issued_at", "client_secret_expires_at"})


def record_bytes(client: OAuthClientInformationFull) -> int:
    """The size of `client` as `grants.GrantStore.add_client` stores it (its secret is sealed apart)."""
    return len(client.model_dump_json(exclude={"client_secret"}, exclude_none=True).encode())


def client_problem(
    client: OAuthClientInformationFull, app_schemes: frozenset[str] = frozenset()
) -> tuple[RegistrationErrorCode, str] | None:
    """Why `client` cannot be a client here (RFC 7591's error code and one sentence saying what
    to change), or None."""
    record = client.model_dump(mode="json", exclude={"client_secret"}, exclude_none=True)
    for name, value in record.items():
        if name not in _OWN_FIELDS and (problem := _value_problem(name, value)):
            return "invalid_client_metadata", problem
    size = record_bytes(client)
    if size > MAX_CLIENT_RECORD_BYTES:
        return (
            "invalid_client_metadata",
            f"This registration would be stored as {size} bytes; at most {MAX_CLIENT_RECORD_BYTES} are kept: "
            "send shorter metadata.",
        )
    for uri in client.redirect_uris or []:
        if problem := redirect_problem(uri, app_schemes):
            return "invalid_redirect_uri", problem
    return None


def _value_problem(where: str, value: Any) -> str | None:
    if isinstance(value, list):
        items: list[Any] = value
        if len(items) > MAX_ITEMS:
            return f"{where} has {len(items)} entries; at most {MAX_ITEMS} are kept: send only the ones the app uses."
        return next((p for i, item in enumerate(items) if (p := _value_problem(f"{where}[{i}]", item))), None)
    if isinstance(value, dict):
        members: dict[str, Any] = value
        if len(members) > MAX_ITEMS * 2:
            return f"{where} has {len(members)} members; at most {MAX_ITEMS * 2} are kept."
        return next((p for key, item in members.items() if (p := _value_problem(f"{where}.{key}", item))), None)
    if not isinstance(value, str):
        return None
    limit = MAX_NAME_CHARS if where == "client_name" else MAX_TEXT_CHARS
    if len(value) > limit:
        return f"{where} is {len(value)} characters long; at most {limit} are kept: shorten it."
    if hidden := next((char for char in value if is_hidden_control(char)), None):
        return (
            f"{where} has the invisible control character U+{ord(hidden):04X}, which could hide or reorder what "
            "the sign-in page shows: remove it."
        )
    return None


def redirect_problem(uri: AnyUrl, app_schemes: frozenset[str] = frozenset()) -> str | None:
    """Why `uri` cannot be a redirect URI, or None (the rule is the module's docstring's). Never
    a fragment or a user part, which would make the page's "you will be sent back to" read as
    another host."""
    if uri.fragment is not None:
        return f"Redirect URI {uri} has a fragment; redirect URIs must not."
    if uri.username is not None or uri.password is not None:
        return f"Redirect URI {uri} has a user part; redirect URIs must not."
    scheme = uri.scheme
    if scheme == "https":
        return None
    if scheme == "http":
        if uri.host in LOOPBACK_REDIRECT_HOSTS:
            return None
        return f"Redirect URI {uri} is plain http to a host other than this machine's loopback: use https."
    if scheme not in UNSAFE_SCHEMES and ("." in scheme or scheme in app_schemes):
        return None
    return (
        f"Redirect URI {uri} uses the scheme {scheme}:, which this server does not send browsers to: use https, "
        "http to a loopback address, or an app scheme in reverse-domain form (com.example.app:/callback)."
    )
