"""Sign-in starts naming slow client ID metadata documents, against the real HTTP app: they
spend their own address's fetch slots, and someone else's sign-in is not kept waiting."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from luma_mcp.config import Settings
from luma_mcp.hosting.app import create_http_app
from luma_mcp.oauth.client_documents import ClientDocuments
from luma_mcp.simulator.app import ServerThread, SimulatorServer

from ..helpers.http import free_port, http_env
from ..helpers.oauth import REDIRECT_URI, oauth_env, pkce
from ..helpers.tls import TlsServer, trusting

pytestmark = pytest.mark.anyio
SLOW_SECONDS = 5


def authorize_params(client_id: str, resource: str) -> dict[str, str]:
    _, challenge = pkce()
    return {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT_URI,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": "s",
        "resource": resource,
    }


async def test_slow_documents_named_from_one_address_take_its_two_slots_and_delay_nobody_else(
    sim_server: SimulatorServer, tls_files: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """20 /authorize from 127.0.0.1 at once, naming documents on two slow hosts (`localhost`,
    and a second TLS server on 127.0.0.2): two are fetched at once, not four (the address's
    share, not each host's); meanwhile an /authorize from 127.0.0.2 for a document on a third
    host (`127.0.0.1`, the first server by its other name) is answered at once."""
    certfile, keyfile, cafile = tls_files
    active, most = [0], [0]

    async def document(request: Request) -> JSONResponse:
        if request.url.path.startswith("/slow/"):
            active[0] += 1
            most[0] = max(most[0], active[0])
            try:
                await asyncio.sleep(SLOW_SECONDS)
            finally:
                active[0] -= 1
        body = {"client_id": str(request.url), "redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none"}
        return JSONResponse(body)

    port = free_port()
    for name, value in http_env(
        sim_server, LUMA_MCP_AUTH="passthrough", **oauth_env(f"http://127.0.0.1:{port}")
    ).items():
        monkeypatch.setenv(name, value)
    trust = trusting(cafile)
    trust.check_hostname = False  # the test CA's certificate names 127.0.0.1 and localhost only
    serving = Starlette(routes=[Route("/{path:path}", document)])
    with TlsServer(serving, certfile, keyfile) as docs, TlsServer(serving, certfile, keyfile, "127.0.0.2") as more:
        exempt = [docs.origin, ("localhost", docs.port), more.origin]
        documents = ClientDocuments(exempt_origins=exempt, ssl_context=trust)
        app = create_http_app(Settings(_env_file=None), port=port, documents=documents)
        server = ServerThread(app, port=port, lifespan=True).start()
        resource = f"{server.url}/mcp"
        elsewhere = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
        try:
            async with (
                httpx.AsyncClient(base_url=server.url, timeout=30) as flood,
                httpx.AsyncClient(base_url=server.url, timeout=30, transport=elsewhere) as someone,
            ):
                slow = [
                    f"https://{origin}/slow/{n}.json"
                    for n in range(10)
                    for origin in (f"localhost:{docs.port}", f"127.0.0.2:{more.port}")
                ]
                flooding = [
                    asyncio.ensure_future(flood.get("/authorize", params=authorize_params(url, resource)))
                    for url in slow
                ]
                deadline = time.monotonic() + 20
                while active[0] < 2 and time.monotonic() < deadline:  # noqa: ASYNC110 (counted in another thread)
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0.3)  # every flooding request has asked for its slots by now
                started = time.monotonic()
                fast = f"https://127.0.0.1:{docs.port}/fast.json"
                answer = await someone.get("/authorize", params=authorize_params(fast, resource))
                seconds = time.monotonic() - started
                flooded = await asyncio.gather(*flooding)
        finally:
            server.stop()
    print(f"fast document's /authorize during the flood: {seconds:.3f} s")
    assert answer.status_code == 302 and "/signin?request=" in answer.headers["location"], answer.text
    assert seconds < 2, seconds
    assert most[0] == 2, most  # the address's two, though each host had two more
    assert [a.status_code for a in flooded].count(400) >= 16  # "not found": the app may retry
