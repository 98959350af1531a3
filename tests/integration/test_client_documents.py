"""ClientDocuments against a real https server on loopback (a CA of the test's own): what a
stranger's client_id URL can and cannot make the server fetch, hold, or believe."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.shared.auth import OAuthClientInformationFull
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from luma_mcp.oauth import fetch_slots
from luma_mcp.oauth.client_document_fetch import MAX_DOCUMENT_BYTES
from luma_mcp.oauth.client_documents import ClientDocuments
from luma_mcp.oauth.fetch_slots import MAX_CONCURRENT_FETCHES, FetchSlots

from ..helpers.http import Listener
from ..helpers.tls import TlsServer, trusting

pytestmark = pytest.mark.anyio
LOGGER = "luma_mcp.oauth.client_documents"
# How long a server stalls, drips or streams at most: far beyond any bound under test.
ENDLESS_SECONDS = 30
Endpoint = Callable[[Request], Awaitable[Response]]


class DocumentHost:
    """Serves client documents, good and bad, and records every request it sees."""

    def __init__(self) -> None:
        self.url = ""  # these three are set once the server has a port
        self.origin = ("", 0)
        self.trust = ssl.create_default_context()
        self.requests: list[str] = []
        self.active = 0
        self.most_active = 0
        self.sent_endless = 0
        self._lock = threading.Lock()

    def document(self, path: str, **changes: object) -> dict[str, object]:
        body: dict[str, object] = {
            "client_id": f"{self.url}{path}",
            "client_name": "Example App",
            "redirect_uris": ["http://127.0.0.1:33418/callback"],
            "token_endpoint_auth_method": "none",
        }
        body.update(changes)
        return body

    def app(self) -> Starlette:
        async def valid(request: Request) -> Response:
            return JSONResponse(self.document(request.url.path))

        async def slow(request: Request) -> Response:
            with self._lock:
                self.active += 1
                self.most_active = max(self.most_active, self.active)
            try:
                await asyncio.sleep(float(request.query_params.get("seconds", "0.4")))
            finally:
                with self._lock:
                    self.active -= 1
            return JSONResponse(self.document(request.url.path))

        async def stall(request: Request) -> Response:
            await asyncio.sleep(1.5)
            return JSONResponse(self.document(request.url.path))

        async def max_age_0(request: Request) -> Response:
            return JSONResponse(self.document(request.url.path), headers={"Cache-Control": "max-age=0"})

        async def other_id(request: Request) -> Response:
            return JSONResponse(self.document(request.url.path, client_id=f"{self.url}/valid.json"))

        async def big(request: Request) -> Response:
            return JSONResponse(self.document(request.url.path, client_name="x" * MAX_DOCUMENT_BYTES))

        async def endless(request: Request) -> Response:
            async def chunks() -> AsyncIterator[bytes]:
                yield b'{"client_name": "'
                deadline = time.monotonic() + ENDLESS_SECONDS
                while time.monotonic() < deadline:
                    self.sent_endless += 1024
                    yield b"x" * 1024
                    await asyncio.sleep(0)  # lets Starlette see the client hang up, and stop

            return StreamingResponse(chunks(), media_type="application/json")

        async def drip(request: Request) -> Response:
            async def chunks() -> AsyncIterator[bytes]:
                yield b"{"
                deadline = time.monotonic() + ENDLESS_SECONDS
                while time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                    yield b" "

            return StreamingResponse(chunks(), media_type="application/json")

        async def redirect(request: Request) -> Response:
            return Response(status_code=302, headers={"Location": request.query_params["to"]})

        async def not_json(request: Request) -> Response:
            return Response(b'{"client_id": "oops', media_type="application/json")

        async def html(request: Request) -> Response:
            return Response(json.dumps(self.document(request.url.path)), media_type="text/html")

        async def missing(request: Request) -> Response:
            return JSONResponse({"error": "not found"}, status_code=404)

        routes: dict[str, Endpoint] = {
            "/valid.json": valid,
            "/other-id.json": other_id,
            "/big.json": big,
            "/endless.json": endless,
            "/drip.json": drip,
            "/redirect": redirect,
            "/not-json.json": not_json,
            "/page.html": html,
            "/missing.json": missing,
            "/max-age-0.json": max_age_0,
            "/slow/{name}": slow,
            "/stall/{name}": stall,
            "/docs/{name}": valid,
        }

        def recorded(endpoint: Endpoint) -> Endpoint:
            async def handler(request: Request) -> Response:
                with self._lock:
                    self.requests.append(request.url.path)
                return await endpoint(request)

            return handler

        return Starlette(routes=[Route(path, recorded(endpoint)) for path, endpoint in routes.items()])


@pytest.fixture
def host(tls_files: tuple[Path, Path, Path]) -> Iterator[DocumentHost]:
    certfile, keyfile, cafile = tls_files
    documents = DocumentHost()
    with TlsServer(documents.app(), certfile, keyfile) as server:
        documents.url, documents.origin, documents.trust = server.url, server.origin, trusting(cafile)
        yield documents


def fetcher(host: DocumentHost, **options: Any) -> ClientDocuments:
    """ClientDocuments as production makes it, but allowed to reach the test's loopback server."""
    return ClientDocuments(exempt_origins=[host.origin], ssl_context=host.trust, **options)


def unexempted(host: DocumentHost) -> ClientDocuments:
    """ClientDocuments as production makes it (trusting the test CA changes nothing it refuses)."""
    return ClientDocuments(ssl_context=host.trust)


@pytest.fixture
async def documents(host: DocumentHost) -> AsyncIterator[ClientDocuments]:
    fetching = fetcher(host)
    yield fetching
    await fetching.aclose()


def reasons(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.name == LOGGER)


# --- what a document makes ---------------------------------------------------------------


async def test_a_valid_document_over_tls_makes_the_client(host: DocumentHost, documents: ClientDocuments) -> None:
    client = await documents.get(f"{host.url}/valid.json")
    assert isinstance(client, OAuthClientInformationFull)
    assert client.client_id == f"{host.url}/valid.json" and client.token_endpoint_auth_method == "none"
    assert client.client_name == "Example App" and client.client_secret is None
    assert [str(uri) for uri in client.redirect_uris or []] == ["http://127.0.0.1:33418/callback"]
    assert host.requests == ["/valid.json"]


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("/other-id.json", "client_id is not exactly its URL"),
        ("/big.json", f"larger than {MAX_DOCUMENT_BYTES} bytes"),
        ("/not-json.json", "not JSON"),
        ("/page.html", "content type is not application/json"),
        ("/missing.json", "HTTP 404"),
    ],
)
async def test_a_document_that_cannot_be_used_makes_no_client_and_says_why(
    host: DocumentHost, documents: ClientDocuments, caplog: pytest.LogCaptureFixture, path: str, says: str
) -> None:
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert await documents.get(f"{host.url}{path}") is None
    assert says in reasons(caplog) and host.requests == [path]
    assert "Example App" not in reasons(caplog)  # the reason, never the document


# --- what a stranger's URL cannot make the server do ---------------------------------------


async def test_an_endless_document_is_cut_at_the_cap_not_at_the_time_bound(
    host: DocumentHost, caplog: pytest.LogCaptureFixture
) -> None:
    """The timeout is long: only the size cap can end this fetch early."""
    documents = fetcher(host, timeout=20)
    try:
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger=LOGGER), anyio.fail_after(15):
            assert await documents.get(f"{host.url}/endless.json") is None
        elapsed = time.monotonic() - started
    finally:
        await documents.aclose()
    assert f"larger than {MAX_DOCUMENT_BYTES} bytes" in reasons(caplog)
    assert elapsed < 5, elapsed


async def test_a_document_sent_slowly_is_given_up_at_the_time_bound(
    host: DocumentHost, caplog: pytest.LogCaptureFixture
) -> None:
    """A byte every 50 ms never trips a read timeout nor, for minutes, the size cap: only the
    bound on the whole fetch ends it."""
    documents = fetcher(host, timeout=1)
    try:
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger=LOGGER), anyio.fail_after(10):
            assert await documents.get(f"{host.url}/drip.json") is None
        elapsed = time.monotonic() - started
    finally:
        await documents.aclose()
    assert "took longer than 1 s" in reasons(caplog)
    assert 0.9 < elapsed < 5, elapsed


@pytest.fixture
def listener() -> Iterator[Listener]:
    one = Listener()
    yield one
    one.sock.close()


@pytest.mark.parametrize("target", ["same server", "loopback port"])
async def test_a_redirect_is_never_followed(
    host: DocumentHost,
    documents: ClientDocuments,
    listener: Listener,
    caplog: pytest.LogCaptureFixture,
    target: str,
) -> None:
    """Not even to a good document on the same (exempt) server; a stranger's redirect to a
    loopback port opens no connection to it."""
    to = f"{host.url}/valid.json" if target == "same server" else f"https://127.0.0.1:{listener.port}/c.json"
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert await documents.get(f"{host.url}/redirect?to={to}") is None
    assert "HTTP 302, a redirect, never followed" in reasons(caplog)
    assert host.requests == ["/redirect"] and listener.connections() == 0


@pytest.mark.parametrize("name", ["127.0.0.1", "localhost"])
async def test_without_exemption_a_loopback_url_is_refused_before_any_connection(
    host: DocumentHost,
    listener: Listener,
    caplog: pytest.LogCaptureFixture,
    name: str,
) -> None:
    """Production passes no exempt origins: the TLS server (which would serve a valid
    document) sees no request, and a bare port sees no connection."""
    documents = unexempted(host)
    port = host.url.rsplit(":", 1)[1]
    try:
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            assert await documents.get(f"https://{name}:{port}/valid.json") is None
            assert await documents.get(f"https://{name}:{listener.port}/valid.json") is None
    finally:
        await documents.aclose()
    assert "which is not a public address; refusing to connect" in reasons(caplog)
    assert host.requests == [] and listener.connections() == 0


# --- remembering ------------------------------------------------------------------------


async def test_a_document_is_fetched_once_while_remembered_then_again(host: DocumentHost) -> None:
    documents = fetcher(host, cache_seconds=1)
    try:
        first = await documents.get(f"{host.url}/valid.json")
        second = await documents.get(f"{host.url}/valid.json")
        assert first is not None and second == first and host.requests == ["/valid.json"]
        await anyio.sleep(1.3)
        assert await documents.get(f"{host.url}/valid.json") == first
    finally:
        await documents.aclose()
    assert host.requests == ["/valid.json"] * 2


async def test_a_failure_is_remembered_for_retry_seconds(host: DocumentHost, caplog: pytest.LogCaptureFixture) -> None:
    documents = fetcher(host, retry_seconds=1)
    try:
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            for _ in range(5):
                assert await documents.get(f"{host.url}/other-id.json") is None
        assert host.requests == ["/other-id.json"]
        assert reasons(caplog).count("not exactly its URL") == 1  # one fetch, one log line
        await anyio.sleep(1.3)
        assert await documents.get(f"{host.url}/other-id.json") is None
    finally:
        await documents.aclose()
    assert host.requests == ["/other-id.json"] * 2


async def test_a_short_max_age_shortens_the_memory_but_not_below_retry_seconds(host: DocumentHost) -> None:
    documents = fetcher(host, cache_seconds=300, retry_seconds=1)
    try:
        for _ in range(3):  # max-age=0, yet not fetched again within retry_seconds
            assert await documents.get(f"{host.url}/max-age-0.json") is not None
            assert await documents.get(f"{host.url}/valid.json") is not None
        assert sorted(host.requests) == ["/max-age-0.json", "/valid.json"]
        await anyio.sleep(1.3)
        assert await documents.get(f"{host.url}/max-age-0.json") is not None
        assert await documents.get(f"{host.url}/valid.json") is not None
    finally:
        await documents.aclose()
    assert host.requests.count("/max-age-0.json") == 2 and host.requests.count("/valid.json") == 1


async def test_the_memory_keeps_the_most_recently_used(host: DocumentHost) -> None:
    documents = fetcher(host, cache_size=2)
    try:
        for name in ("a", "b", "a", "c"):  # b is the least recently used when c comes
            assert await documents.get(f"{host.url}/docs/{name}") is not None
        assert host.requests == ["/docs/a", "/docs/b", "/docs/c"]
        assert await documents.get(f"{host.url}/docs/a") is not None
        assert await documents.get(f"{host.url}/docs/c") is not None
        assert await documents.get(f"{host.url}/docs/b") is not None
    finally:
        await documents.aclose()
    assert host.requests == ["/docs/a", "/docs/b", "/docs/c", "/docs/b"]


# --- concurrency ------------------------------------------------------------------------


async def test_concurrent_gets_of_one_url_share_one_fetch(host: DocumentHost, documents: ClientDocuments) -> None:
    results: list[OAuthClientInformationFull | None] = []

    async def get() -> None:
        results.append(await documents.get(f"{host.url}/slow/shared"))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            for _ in range(20):
                tasks.start_soon(get)
    assert len(results) == 20 and all(r is not None and r == results[0] for r in results)
    assert host.requests == ["/slow/shared"]


async def test_a_cancelled_get_leaves_the_others_their_answer(host: DocumentHost, documents: ClientDocuments) -> None:
    """The get that fetches is cancelled while a second waits for its fetch: the second
    fetches again itself and gets its answer (nobody waits forever, nobody gets a wrong None)."""
    url = f"{host.url}/stall/cancelled"  # answered after 1.5 s
    waited: list[OAuthClientInformationFull | None] = []

    first = anyio.CancelScope()

    async def fetch_first() -> None:
        with first:
            await documents.get(url)

    async def wait() -> None:
        waited.append(await documents.get(url))

    with anyio.fail_after(15):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(fetch_first)
            for _ in range(1000):  # until the first get's request has reached the server
                await anyio.sleep(0.01)
                if host.requests:
                    break
            tasks.start_soon(wait)
            await anyio.sleep(0.1)  # the second get is now waiting for the first's fetch
            first.cancel()
    assert first.cancelled_caught
    assert waited != [] and waited[0] is not None and waited[0].client_id == url
    assert host.requests == ["/stall/cancelled"] * 2


async def test_fetches_at_once_are_bounded(host: DocumentHost) -> None:
    """In all (here, with the bounds per host and per address lifted: one host on loopback)."""
    documents = fetcher(host, slots=FetchSlots(per_host=100, per_requester=100))
    count = MAX_CONCURRENT_FETCHES + 6
    results: list[OAuthClientInformationFull | None] = []

    async def get(n: int) -> None:
        results.append(await documents.get(f"{host.url}/slow/{n}"))

    try:
        with anyio.fail_after(15):
            async with anyio.create_task_group() as tasks:
                for n in range(count):
                    tasks.start_soon(get, n)
    finally:
        await documents.aclose()
    assert len(results) == count and all(r is not None for r in results)
    assert len(host.requests) == count and 1 < host.most_active <= MAX_CONCURRENT_FETCHES


# --- one slow host, or one address, against everyone else --------------------------------

SLOW_SECONDS = 5  # the slow host answers after this: as long as a fetch may take


async def flood_then_fast(
    host: DocumentHost, caplog: pytest.LogCaptureFixture, addresses: list[str]
) -> tuple[float, OAuthClientInformationFull | None]:
    """20 gets of documents on a host that takes 5 s to answer (`localhost`, the slow one),
    from `addresses` in turn; once it is saturated, a get of a document on another host
    (`127.0.0.1`) from another address: how long that took, and what it got."""
    port = host.origin[1]
    documents = fetcher(host)
    documents._exempt_origins += (("localhost", port),)  # the same loopback server, by its other name
    fast: list[tuple[float, OAuthClientInformationFull | None]] = []

    async def slow(n: int) -> None:
        fetch_slots.requester.set(addresses[n % len(addresses)])
        await documents.get(f"https://localhost:{port}/slow/{n}?seconds={SLOW_SECONDS}")

    try:
        with caplog.at_level(logging.WARNING, logger=LOGGER), anyio.fail_after(3 * SLOW_SECONDS + 10):
            async with anyio.create_task_group() as tasks:
                for n in range(20):
                    tasks.start_soon(slow, n)
                while host.active < min(2, len(addresses) * 2):  # noqa: ASYNC110 (the server's own count)
                    await anyio.sleep(0.01)
                await anyio.sleep(0.2)  # every get of the flood has now asked for its slots
                fetch_slots.requester.set("192.0.2.77")  # someone else, signing in meanwhile
                started = time.monotonic()
                client = await documents.get(f"{host.url}/docs/fast")
                fast.append((time.monotonic() - started, client))
    finally:
        await documents.aclose()
    return fast[0]


async def test_a_slow_host_flooded_from_many_addresses_never_delays_another_hosts_document(
    host: DocumentHost, caplog: pytest.LogCaptureFixture
) -> None:
    seconds, client = await flood_then_fast(host, caplog, [f"198.51.100.{n}" for n in range(20)])
    print(f"fast host's document during a slow-host flood from 20 addresses: {seconds:.3f} s")
    assert client is not None and client.client_id == f"{host.url}/docs/fast"
    assert seconds < 1.5, seconds  # it never waited for the slow host's fetches
    assert host.most_active <= 2  # the slow host got 2 fetches at once, whoever asked
    assert "fetches from this document's host are already in progress" in reasons(caplog)


async def test_one_address_gets_two_fetches_at_once(host: DocumentHost, caplog: pytest.LogCaptureFixture) -> None:
    seconds, client = await flood_then_fast(host, caplog, ["203.0.113.5"])
    assert client is not None and seconds < 1.5, seconds
    assert host.most_active <= 2
    assert "fetches for the requesting address are already in progress" in reasons(caplog)
