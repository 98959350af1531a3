"""Fetching a task's media over HTTP: every hop checked, every address resolved once and public.

What this module guarantees, for `download.save` and anything else that fetches media:
- `check_url` lets a hop through only if it is https, or plain http to the API's own host
  and port (`urls.origin`; where a simulator serves media), with a plain host (no userinfo).
- `checked_get` follows redirects from a checked URL by hand, at most `MAX_REDIRECTS`, each
  hop checked again.
- `guarded_client` connects only through `_GuardedBackend`: the host name is resolved once,
  every address it resolves to must pass `urls.is_public_address` (no loopback, private,
  link-local, shared, multicast, reserved or cloud metadata address, also when embedded in
  IPv6), and the connection is made to exactly those checked addresses, so a name cannot
  resolve to something else between the check and the connect. Only the API's own host
  and port are exempt: the operator chose it. No proxy from the environment is used, and
  no cookies or credentials are sent.
- `guarded_transport` is that connection rule for other fetchers (client ID metadata
  documents): a subclass of `_GuardedBackend` says what its refusals raise and say.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import ssl
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, cast

import anyio
import httpx

from luma_mcp import __version__
from luma_mcp.api.errors import DownloadError
from luma_mcp.checks.urls import is_public_address, normalize_host, origin

if TYPE_CHECKING:  # httpx imports httpcore only when a transport is made: so do we
    import httpcore

MAX_REDIRECTS = 5
_REDIRECTS = (301, 302, 303, 307, 308)


def _api_origin(api_base_url: str) -> tuple[str, int | None]:
    """The API's own (host, port), read as httpx reads it, like every hop compared with it."""
    return origin(str(httpx.URL(api_base_url)))


def check_url(url: str, api_base_url: str) -> httpx.URL:
    """The URL, if this hop may be fetched: https, or http to the API's own host and port."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        raise DownloadError(f"The task's media URL {url!r} is not a valid URL; refusing to fetch it.") from None
    if not parsed.host or parsed.userinfo:
        raise DownloadError(f"The task's media URL {url} has no plain host; refusing to fetch it.")
    if parsed.scheme == "https":
        return parsed
    if parsed.scheme == "http" and origin(str(parsed)) == _api_origin(api_base_url):
        return parsed
    raise DownloadError(f"The task's media URL {url} is not https; refusing to fetch it.")


class _GuardedBackend:
    """An httpcore network backend (its interface, by duck typing: httpcore is imported only
    when a download starts) that resolves each host once, refuses it unless every address is
    public, then connects to those same addresses (no second lookup an attacker's DNS could
    answer differently). `exempt` is the one (host, port) connected to as named, or None."""

    # What a refusal raises and says: a download's here; other fetchers subclass.
    refusal: type[Exception] = DownloadError
    host_kind = "media host"
    refusal_advice = "The task's result cannot be saved from here: use its video_url."
    unix_socket_refusal = "Downloads never use unix sockets."

    def __init__(self, exempt: tuple[str, int | None] | None) -> None:
        import httpcore

        self._exempt: frozenset[tuple[str, int | None]] = frozenset([exempt] if exempt is not None else [])
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if (normalize_host(host), port) in self._exempt:
            return await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        try:
            with anyio.fail_after(timeout):
                infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, TimeoutError):
            raise self.refusal(f"The {self.host_kind} {host} could not be resolved; try again later.") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        refused = [a for a in addresses if not is_public_address(a)]
        if refused or not addresses:
            raise self.refusal(
                f"The {self.host_kind} {host} resolves to {', '.join(refused) or 'nothing'}, which is not a public "
                f"address; refusing to connect. {self.refusal_advice}"
            )
        import httpcore

        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise self.refusal(self.unix_socket_refusal)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """httpx's default verification (certifi's CAs), loaded once: loading takes tens of ms."""
    return httpx.create_ssl_context(trust_env=False)


def guarded_transport(
    backend: _GuardedBackend, *, max_connections: int, ssl_context: ssl.SSLContext | None = None
) -> httpx.AsyncHTTPTransport:
    """An httpx transport whose every connection passes `backend`, with no environment proxy
    (it would hide the real destination). TLS is verified against certifi's CAs unless
    `ssl_context` (tests: a CA of their own) says otherwise."""
    import httpcore

    transport = httpx.AsyncHTTPTransport(trust_env=False)
    # httpx takes no network backend; give its transport a pool built on ours (httpcore's
    # public API), with the same TLS verification httpx would use.
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=ssl_context or _tls_context(),
        max_connections=max_connections,
        network_backend=cast("httpcore.AsyncNetworkBackend", backend),
    )
    return transport


def guarded_client(api_base_url: str, timeout: float) -> httpx.AsyncClient:
    """An HTTP client for media downloads whose connections pass `_GuardedBackend`: no
    environment proxy (it would hide the real destination), no cookies or credentials."""
    transport = guarded_transport(_GuardedBackend(_api_origin(api_base_url)), max_connections=4)
    return httpx.AsyncClient(
        transport=transport,
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": f"luma-mcp/{__version__}"},
    )


@contextlib.asynccontextmanager
async def checked_get(http: httpx.AsyncClient, url: httpx.URL, api_base_url: str) -> AsyncIterator[httpx.Response]:
    """GET `url` (a hop `check_url` let through), following at most MAX_REDIRECTS redirects
    by hand, each of them checked."""
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        response = await http.send(http.build_request("GET", current), stream=True)
        if response.status_code not in _REDIRECTS or "location" not in response.headers:
            try:
                yield response
            finally:
                await response.aclose()
            return
        location = response.headers["location"]  # httpx has refused one that is not a valid URL
        await response.aclose()
        try:
            current = check_url(str(current.join(location)), api_base_url)
        except DownloadError as exc:
            raise DownloadError(f"{url} redirected elsewhere: {exc}") from None
    raise DownloadError(f"{url} redirected more than {MAX_REDIRECTS} times; not saved. Try again later.")
