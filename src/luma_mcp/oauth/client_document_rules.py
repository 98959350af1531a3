"""Which client ID metadata documents may be used, decided without the network: which
client_ids name a document (`is_document_url`, the SDK client's own rule), which of those URLs
are fetched (`check_document_url`), which documents make a client (`client_from_document`),
and how long one is remembered (`document_lifetime`). `client_documents` applies them around
each fetch (`client_document_fetch`).

What a document must be: its `client_id` exactly its URL, at least one redirect URI, no
secret and no auth method other than "none"; the client record made from it has client_id
the URL, `token_endpoint_auth_method` "none", and only the document's redirect URIs, name
and links (`COPIED_MEMBERS`). A document is remembered for `cache_seconds`, or for its
Cache-Control max-age if shorter (no-store and no-cache count as 0), but never less than
`retry_seconds`.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any
from urllib.parse import unquote, urlparse, urlsplit

import httpx
from mcp.shared.auth import OAuthClientInformationFull
from pydantic import ValidationError

MAX_URL_LENGTH = 2048
SUPPORTED_GRANT_TYPES = ("authorization_code", "refresh_token")
# Members copied from a document into the client record. Nothing else is: no secret, no
# issuer, no keys (a public client authenticates with nothing).
COPIED_MEMBERS = (
    "redirect_uris",
    "scope",
    "client_name",
    "client_uri",
    "logo_uri",
    "contacts",
    "tos_uri",
    "policy_uri",
    "software_id",
    "software_version",
    "application_type",
)


class UnusableDocument(Exception):
    """Why a client ID metadata document cannot be used; logged, and the client is unknown."""


def is_document_url(client_id: str) -> bool:
    """The SDK client's rule (`is_valid_client_metadata_url`): an https URL with a path other than "/"."""
    try:
        parsed = urlparse(client_id)
    except ValueError:
        return False
    return parsed.scheme == "https" and parsed.path not in ("", "/")


def check_document_url(client_id: str) -> httpx.URL:
    """The URL to fetch, if `client_id` is one the draft allows: https with a host and a path,
    no user or password, no fragment, no "." or ".." segment, no space or control character."""
    if len(client_id) > MAX_URL_LENGTH:
        raise UnusableDocument(f"the URL is longer than {MAX_URL_LENGTH} characters")
    if any(c.isspace() or unicodedata.category(c) in ("Cc", "Cf", "Cs") for c in client_id):
        raise UnusableDocument("the URL has a space or control character")
    if not is_document_url(client_id):
        raise UnusableDocument("the URL is not https with a path")
    try:
        parts = urlsplit(client_id)
        parts.port  # noqa: B018 (reading it validates it)
        url = httpx.URL(client_id)
    except (ValueError, httpx.InvalidURL) as exc:
        raise UnusableDocument(f"the URL does not parse ({exc})") from None
    if not parts.hostname or "\\" in parts.netloc:
        raise UnusableDocument("the URL has no plain host")
    if "@" in parts.netloc:
        raise UnusableDocument("the URL has a user or password")
    if "#" in client_id:
        raise UnusableDocument("the URL has a fragment")
    if any(unquote(segment) in (".", "..") for segment in parts.path.split("/")):
        raise UnusableDocument('the URL has a "." or ".." path segment')
    return url


def client_from_document(client_id: str, body: bytes) -> OAuthClientInformationFull:
    """The client record a document at `client_id` describes; `UnusableDocument` says why not."""
    try:
        document: Any = json.loads(body)
    except (ValueError, RecursionError):
        raise UnusableDocument("the document is not JSON") from None
    if not isinstance(document, dict):
        raise UnusableDocument("the document is not a JSON object")
    if document.get("client_id") != client_id:
        raise UnusableDocument("the document's client_id is not exactly its URL")
    if "client_secret" in document or "client_secret_expires_at" in document:
        raise UnusableDocument("the document has a client secret, which a document cannot keep")
    method = document.get("token_endpoint_auth_method", "none")
    if method != "none":
        raise UnusableDocument(f'the document asks for token_endpoint_auth_method {method!r:.40}; only "none" is used')
    redirect_uris = document.get("redirect_uris")
    if not isinstance(redirect_uris, list) or not redirect_uris:
        raise UnusableDocument("the document has no redirect_uris")
    response_types = document.get("response_types", ["code"])
    if not isinstance(response_types, list) or "code" not in response_types:
        raise UnusableDocument('the document\'s response_types lack "code"')
    grant_types = document.get("grant_types", list(SUPPORTED_GRANT_TYPES))
    if not isinstance(grant_types, list) or "authorization_code" not in grant_types:
        raise UnusableDocument('the document\'s grant_types lack "authorization_code"')
    record = {name: document[name] for name in COPIED_MEMBERS if name in document}
    record.update(
        {
            "client_id": client_id,
            "token_endpoint_auth_method": "none",
            "response_types": ["code"],
            # Grants this server does not give are dropped, not refused: the client asked for more.
            "grant_types": [grant for grant in SUPPORTED_GRANT_TYPES if grant in grant_types],
        }
    )
    try:
        return OAuthClientInformationFull.model_validate(record)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise UnusableDocument(f"the document's {where} is not valid: {first['msg']}") from None


def document_lifetime(cache_control: str | None, cache_seconds: float, retry_seconds: float) -> float:
    """How long a document is remembered: `cache_seconds`, or its max-age if shorter (no-store
    and no-cache: 0), but not below `retry_seconds` (nor above `cache_seconds`)."""
    max_age: float | None = None
    for directive in (cache_control or "").lower().split(","):
        name, _, value = directive.strip().partition("=")
        if name in ("no-store", "no-cache"):
            max_age = 0
            break
        if name == "max-age":
            try:
                max_age = max(0, int(value.strip().strip('"')))
            except ValueError:
                continue
    if max_age is None:
        return cache_seconds
    return min(cache_seconds, max(retry_seconds, max_age))
