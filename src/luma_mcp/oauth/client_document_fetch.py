"""One fetch of a client ID metadata document, made for a stranger (whoever names the URL).

A fetch is one GET: no redirect is followed (the draft forbids it; a 3xx is a failure), it
connects only through `guarded_http`'s backend (https, every resolved address public, the
connection made to exactly those addresses), reads the body incrementally and stops past
`MAX_DOCUMENT_BYTES`, and sends no cookie, credential or accepted encoding and uses no proxy
from the environment. Only a 200 with a JSON content type is a document. Every failure is an
`UnusableDocument` (or httpx's error) for `client_documents` to log; the caller bounds the
time (`anyio.fail_after`), and closing the response is shielded so a timeout still closes it.
"""

from __future__ import annotations

import ssl
from collections.abc import Collection

import anyio
import httpx

from luma_mcp import __version__
from luma_mcp.checks.urls import normalize_host
from luma_mcp.core.guarded_http import _GuardedBackend, guarded_transport
from luma_mcp.oauth.client_document_rules import UnusableDocument
from luma_mcp.oauth.fetch_slots import MAX_CONCURRENT_FETCHES

# The draft's recommended cap; real documents are a few hundred bytes.
MAX_DOCUMENT_BYTES = 5 * 1024


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


def _is_json_type(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def document_transport(
    exempt_origins: Collection[tuple[str, int | None]], ssl_context: ssl.SSLContext | None
) -> httpx.AsyncHTTPTransport:
    """The transport documents are fetched through: guarded_http's, one pool for all fetches."""
    return guarded_transport(
        _DocumentBackend(exempt_origins),
        max_connections=MAX_CONCURRENT_FETCHES,
        ssl_context=ssl_context,
    )


async def download_document(
    transport: httpx.AsyncHTTPTransport, url: httpx.URL, io_timeout: float
) -> tuple[bytes, str | None]:
    """The body (at most MAX_DOCUMENT_BYTES) and Cache-Control of one GET, no redirect followed.
    `io_timeout` bounds each connect, read and write; the caller bounds the whole fetch."""
    # The transport itself, not a client: no cookie jar, no redirects, no auth, no
    # Accept-Encoding (so no decompression bomb), nothing from the environment.
    request = httpx.Request(
        "GET",
        url,
        headers={"Accept": "application/json", "User-Agent": f"luma-mcp/{__version__}"},
        extensions={"timeout": httpx.Timeout(io_timeout).as_dict()},
    )
    response = await transport.handle_async_request(request)
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
