"""Client ID metadata documents: an OAuth client named by an https URL, whose JSON document
at that URL says what it is called and where it may be sent back to (the second way, beside
dynamic registration, that a client identifies itself; draft-ietf-oauth-client-id-metadata-
document, as the MCP authorization spec of 2025-11-25 asks).

What this module guarantees:
- `ClientDocuments.is_document_id` is the SDK client's own rule (https, a path other than
  "/"): any other client_id is not a document's.
- `get` returns a client record (client_id the URL, `token_endpoint_auth_method` "none", the
  document's redirect URIs, name and links) only for a document served with 200 and a JSON
  content type, at most `MAX_DOCUMENT_BYTES`, whose `client_id` is exactly the URL, with at
  least one redirect URI, no secret and no auth method other than "none". Anything else is
  None, with the reason logged at warning (the URL, never the document's body).
- Whoever names the URL is a stranger, so a fetch is one GET: no redirect is followed (the
  draft forbids it; a 3xx is a failure), it connects only through `guarded_http`'s backend
  (https, every resolved address public, the connection made to exactly those addresses),
  reads the body incrementally and stops past `MAX_DOCUMENT_BYTES`, ends within `timeout`
  however slowly the server sends, and sends no cookie, credential or accepted encoding and
  uses no proxy from the environment.
- What a stranger can make the server hold or do: at most `MAX_CONCURRENT_FETCHES` fetches
  at once, of which at most 2 from one document host and 2 for one requesting address
  (`fetch_slots`: a get that finds no slot gets None, not remembered, and one slow host
  never delays another's documents), one fetch for any number of concurrent gets of one URL,
  at most `cache_size` remembered outcomes (least recently used dropped first), and a URL
  fetched again no sooner than `retry_seconds` after its last fetch, failed or not.
- A document is remembered for `cache_seconds`, or for its Cache-Control max-age if shorter
  (no-store and no-cache count as 0), but never less than `retry_seconds`.
"""

from __future__ import annotations

import json
import logging
import ssl
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlparse, urlsplit

import anyio
import httpx
from mcp.shared.auth import OAuthClientInformationFull
from pydantic import ValidationError

from luma_mcp import __version__
from luma_mcp.checks.urls import normalize_host
from luma_mcp.core.guarded_http import _GuardedBackend, guarded_transport
from luma_mcp.oauth.fetch_slots import MAX_CONCURRENT_FETCHES, FetchSlots, NoFetchSlot

log = logging.getLogger(__name__)

# The draft's recommended cap; real documents are a few hundred bytes.
MAX_DOCUMENT_BYTES = 5 * 1024
MAX_URL_LENGTH = 2048
# How many times a get waits for another's fetch that was cancelled before giving up.
_MAX_WAITS = 3
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
_SHOWN_URL_CHARS = 200


class UnusableDocument(Exception):
    """Why a client ID metadata document cannot be used; logged, and the client is unknown."""


class _DocumentBackend(_GuardedBackend):
    """guarded_http's connection rule, refusing with `UnusableDocument`; only the (host, port)
    pairs in `exempt_origins` (tests: a server on loopback) are connected to as named."""

    refusal = UnusableDocument
    host_kind = "client document host"
    refusal_advice = "Client ID metadata documents are only fetched from public addresses."
    unix_socket_refusal = "Client ID metadata documents are never fetched through unix sockets."

    def __init__(self, exempt_origins: Collection[tuple[str, int | None]]) -> None:
        super().__init__(None)
        self._exempt = frozenset((normalize_host(host), port) for host, port in exempt_origins)


def _shown(client_id: str) -> str:
    return repr(client_id[:_SHOWN_URL_CHARS] + ("..." if len(client_id) > _SHOWN_URL_CHARS else ""))


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


def _is_json_type(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


@dataclass
class _Remembered:
    client: OAuthClientInformationFull | None
    until: float  # time.monotonic()


@dataclass
class _Fetch:
    """One fetch in progress, shared by every get of its URL."""

    done: anyio.Event = field(default_factory=anyio.Event)
    finished: bool = False  # False when done: the fetching get was cancelled
    client: OAuthClientInformationFull | None = None


class ClientDocuments:
    """Fetches, checks and remembers client ID metadata documents (see the module's docstring).

    `exempt_origins`, `ssl_context` and `slots` exist for tests (a document served over TLS on
    loopback by a CA of their own, other bounds); production passes none."""

    def __init__(
        self,
        *,
        timeout: float = 5.0,
        cache_seconds: float = 300.0,
        cache_size: int = 1000,
        retry_seconds: float = 30.0,
        exempt_origins: Collection[tuple[str, int | None]] = (),
        ssl_context: ssl.SSLContext | None = None,
        slots: FetchSlots | None = None,
    ) -> None:
        self._timeout = timeout
        self._cache_seconds = cache_seconds
        self._cache_size = cache_size
        self._retry_seconds = retry_seconds
        self._exempt_origins = tuple(exempt_origins)
        self._ssl_context = ssl_context
        self._remembered: OrderedDict[str, _Remembered] = OrderedDict()
        self._fetches: dict[str, _Fetch] = {}
        self._slots = slots or FetchSlots()
        self._transport: httpx.AsyncHTTPTransport | None = None  # made at the first fetch

    @staticmethod
    def is_document_id(client_id: str) -> bool:
        """Whether `client_id` names a document (else it is a registered client's, or nothing)."""
        return is_document_url(client_id)

    async def get(self, client_id: str) -> OAuthClientInformationFull | None:
        """The client a document at `client_id` describes, or None (the reason logged)."""
        for _ in range(_MAX_WAITS):
            remembered = self._recall(client_id)
            if remembered is not None:
                return remembered.client
            fetch = self._fetches.get(client_id)
            if fetch is None:
                return await self._fetch(client_id)
            await fetch.done.wait()
            if fetch.finished:
                return fetch.client
        log.warning("Client ID metadata document %s not used: its fetches kept being cancelled.", _shown(client_id))
        return None

    async def aclose(self) -> None:
        if self._transport is not None:
            await self._transport.aclose()
            self._transport = None

    def _recall(self, client_id: str) -> _Remembered | None:
        remembered = self._remembered.get(client_id)
        if remembered is None:
            return None
        if remembered.until <= time.monotonic():
            del self._remembered[client_id]
            return None
        self._remembered.move_to_end(client_id)
        return remembered

    def _remember(self, client_id: str, client: OAuthClientInformationFull | None, seconds: float) -> None:
        if seconds <= 0 or self._cache_size <= 0:
            return
        self._remembered[client_id] = _Remembered(client, time.monotonic() + seconds)
        self._remembered.move_to_end(client_id)
        while len(self._remembered) > self._cache_size:
            self._remembered.popitem(last=False)

    async def _fetch(self, client_id: str) -> OAuthClientInformationFull | None:
        fetch = self._fetches[client_id] = _Fetch()
        try:
            client, seconds = await self._load(client_id)
            if seconds is not None:
                self._remember(client_id, client, seconds)
            fetch.client, fetch.finished = client, True
            return client
        finally:
            del self._fetches[client_id]
            fetch.done.set()

    async def _load(self, client_id: str) -> tuple[OAuthClientInformationFull | None, float | None]:
        """The client (or None) and how long to remember it (None: not at all)."""
        try:
            url = check_document_url(client_id)
        except UnusableDocument as exc:  # nothing was fetched: nothing worth remembering
            log.warning("Client ID metadata document %s not used: %s.", _shown(client_id), exc)
            return None, None
        try:
            async with self._slots.slot(normalize_host(url.host), shared_wait=self._timeout):
                with anyio.fail_after(self._timeout):
                    body, cache_control = await self._download(url)
            client = client_from_document(client_id, body)
        except NoFetchSlot as exc:
            log.warning("Client ID metadata document %s not fetched: %s; the client may retry.", _shown(client_id), exc)
            return None, None
        except TimeoutError:
            reason = f"the fetch took longer than {self._timeout:g} s"
        except UnusableDocument as exc:
            reason = str(exc).rstrip(".")
        except httpx.HTTPError as exc:
            reason = f"the fetch failed ({type(exc).__name__}: {exc})"
        else:
            return client, document_lifetime(cache_control, self._cache_seconds, self._retry_seconds)
        log.warning(
            "Client ID metadata document %s not used: %s. It is not fetched again for %g s.",
            _shown(client_id),
            reason,
            self._retry_seconds,
        )
        return None, self._retry_seconds

    async def _download(self, url: httpx.URL) -> tuple[bytes, str | None]:
        """The body (at most MAX_DOCUMENT_BYTES) and Cache-Control of one GET, no redirect followed."""
        if self._transport is None:
            self._transport = guarded_transport(
                _DocumentBackend(self._exempt_origins),
                max_connections=MAX_CONCURRENT_FETCHES,
                ssl_context=self._ssl_context,
            )
        # The transport itself, not a client: no cookie jar, no redirects, no auth, no
        # Accept-Encoding (so no decompression bomb), nothing from the environment.
        request = httpx.Request(
            "GET",
            url,
            headers={"Accept": "application/json", "User-Agent": f"luma-mcp/{__version__}"},
            extensions={"timeout": httpx.Timeout(self._timeout).as_dict()},
        )
        response = await self._transport.handle_async_request(request)
        try:
            if response.is_redirect:
                raise UnusableDocument(f"the URL answered HTTP {response.status_code}, a redirect, never followed")
            if response.status_code != 200:
                raise UnusableDocument(f"the URL answered HTTP {response.status_code}, not 200")
            if not _is_json_type(response.headers.get("content-type", "")):
                raise UnusableDocument("the document's content type is not application/json")
            if response.headers.get("content-encoding", "identity").lower() != "identity":
                raise UnusableDocument("the document is encoded (compressed), which was not asked for")
            length = response.headers.get("content-length", "")
            if length.isdigit() and int(length) > MAX_DOCUMENT_BYTES:
                raise UnusableDocument(f"the document is larger than {MAX_DOCUMENT_BYTES} bytes")
            body = bytearray()
            async for chunk in response.aiter_raw():
                body += chunk
                if len(body) > MAX_DOCUMENT_BYTES:
                    raise UnusableDocument(f"the document is larger than {MAX_DOCUMENT_BYTES} bytes")
            return bytes(body), response.headers.get("cache-control")
        finally:
            with anyio.CancelScope(shield=True):  # the connection is closed even on a timeout
                await response.aclose()
