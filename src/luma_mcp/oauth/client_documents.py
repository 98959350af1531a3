"""Client ID metadata documents: an OAuth client named by an https URL, whose JSON document
at that URL says what it is called and where it may be sent back to (the second way, beside
dynamic registration, that a client identifies itself; draft-ietf-oauth-client-id-metadata-
document, as the MCP authorization spec of 2025-11-25 asks).

`ClientDocuments` is what the authorization server asks; it fetches, remembers and shares.
Which URLs and documents are used, and for how long, is `client_document_rules`; how one
fetch is made, `client_document_fetch`. What this module guarantees:
- `ClientDocuments.is_document_id` is the SDK client's own rule (https, a path other than
  "/"): any other client_id is not a document's.
- `get` returns a client record only for a document the rules accept, fetched as
  `client_document_fetch` says; anything else is None, with the reason logged at warning
  (the URL, never the document's body). A fetch ends within `timeout` however slowly the
  server sends.
- What a stranger can make the server hold or do: at most `MAX_CONCURRENT_FETCHES` fetches
  at once, of which at most 2 from one document host and 2 for one requesting address
  (`fetch_slots`: a get that finds no slot gets None, not remembered, and one slow host
  never delays another's documents), one fetch for any number of concurrent gets of one URL,
  at most `cache_size` remembered outcomes (least recently used dropped first), and a URL
  fetched again no sooner than `retry_seconds` after its last fetch, failed or not.
- A document is remembered as long as `client_document_rules.document_lifetime` says.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass, field

import anyio
import httpx
from mcp.shared.auth import OAuthClientInformationFull

from luma_mcp.checks.urls import normalize_host
from luma_mcp.oauth.client_document_fetch import document_transport, download_document
from luma_mcp.oauth.client_document_rules import (
    UnusableDocument,
    check_document_url,
    client_from_document,
    document_lifetime,
    is_document_url,
)
from luma_mcp.oauth.fetch_slots import FetchSlots, NoFetchSlot

log = logging.getLogger(__name__)

# How many times a get waits for another's fetch that was cancelled before giving up.
_MAX_WAITS = 3
_SHOWN_URL_CHARS = 200


def _shown(client_id: str) -> str:
    return repr(client_id[:_SHOWN_URL_CHARS] + ("..." if len(client_id) > _SHOWN_URL_CHARS else ""))


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
        """One GET, through the transport made at the first fetch and shared by all."""
        if self._transport is None:
            self._transport = document_transport(self._exempt_origins, self._ssl_context)
        return await download_document(self._transport, url, self._timeout)
