"""Part of `make bench`: what OAuth sign-in costs a web connector, over HTTP on loopback.

One `luma-mcp --transport http` process in passthrough mode with `LUMA_MCP_OAUTH` on. The
sign-in is the SDK's own `OAuthClientProvider` (discovery, registration, PKCE, code
exchange) with the person's browser step played by two requests (open the page, post the
form); the baseline is the same connection with the API token as a static bearer. Then the
per-call cost of an OAuth token (a grant lookup and an unseal per request) against the static
bearer, in interleaved batches on one session each.
"""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import httpx2
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from pydantic import AnyUrl

from harness import Figure, http_figure
from servers import free_port, http_env, http_server

OAUTH_KEY = "q6nZf2b3mCQ0o8o0l8n9u0Zk3m0mA1s2d3f4g5h6j7k="  # a throwaway server key for the run
CONNECTS = 8  # sign-ins timed (registrations are limited to 10 a minute per address)
CALLS = 200  # per side, in batches of BATCH, alternating
BATCH = 10


@dataclass
class OAuthReport:
    connect_oauth_s: list[float] = field(default_factory=list)
    connect_bearer_s: list[float] = field(default_factory=list)
    call_oauth_s: list[float] = field(default_factory=list)
    call_bearer_s: list[float] = field(default_factory=list)

    @staticmethod
    def median_ms(values: list[float]) -> float:
        return statistics.median(values) * 1000


@dataclass
class _Storage:
    tokens: OAuthToken | None = None
    client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


def signing_in(url: str, token: str) -> OAuthClientProvider:
    """A connector that signs in with `token`, its browser step played by two requests."""
    found: list[AuthorizationCodeResult] = []

    async def redirect(authorization_url: str) -> None:
        async with httpx.AsyncClient(timeout=30) as browser:
            page = await browser.get(authorization_url, follow_redirects=True)
            fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', page.text))
            posted = await browser.post(
                str(page.url.copy_with(query=None)), data={**fields, "secret": token, "action": "allow"}
            )
            query = parse_qs(urlsplit(posted.headers["location"]).query)
            found.append(AuthorizationCodeResult(code=query["code"][0], state=query["state"][0], iss=query["iss"][0]))

    async def callback() -> AuthorizationCodeResult:
        return found.pop()

    return OAuthClientProvider(
        server_url=f"{url}/mcp",
        client_metadata=OAuthClientMetadata(
            client_name="bench",
            redirect_uris=[AnyUrl("http://127.0.0.1:9/cb")],
            token_endpoint_auth_method="none",  # noqa: S106 (a method's name, not a secret)
        ),
        storage=_Storage(),
        redirect_handler=redirect,
        callback_handler=callback,
    )


@asynccontextmanager
async def session(url: str, auth: httpx2.Auth | None = None, bearer: str | None = None) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    async with (
        httpx2.AsyncClient(auth=auth, headers=headers, timeout=60) as http,
        Client(streamable_http_client(f"{url}/mcp", http_client=http)) as client,
    ):
        yield client


async def timed_connect(url: str, **how: object) -> float:
    """From nothing to a session's first answered call."""
    started = time.perf_counter()
    async with session(url, **how) as client:  # type: ignore[arg-type]
        result = await client.call_tool("list_tasks", {"limit": 5})
        if result.is_error:
            raise RuntimeError(f"list_tasks failed: {result.content}")
    return time.perf_counter() - started


async def measure_oauth(sim_url: str, token: str, data_dir: Path, say: Callable[[str], None]) -> OAuthReport:
    report = OAuthReport()
    port = free_port()
    env = {
        **http_env(sim_url, token, data_dir),
        "LUMA_MCP_AUTH": "passthrough",
        "LUMA_MCP_OAUTH": "true",
        "LUMA_MCP_OAUTH_KEY": OAUTH_KEY,
        "LUMA_MCP_PUBLIC_URL": f"http://127.0.0.1:{port}",
    }
    env.pop("LUMA_MCP_API_KEYS")
    async with http_server(env, data_dir, port=port) as server:
        say(f"OAuth: {CONNECTS} sign-ins and {CONNECTS} static-bearer connects ...")
        await timed_connect(server.url, bearer=token)  # untimed: the token's first check upstream
        for _ in range(CONNECTS):
            report.connect_oauth_s.append(await timed_connect(server.url, auth=signing_in(server.url, token)))
            report.connect_bearer_s.append(await timed_connect(server.url, bearer=token))
        say(f"OAuth: {CALLS} list_tasks calls per bearer kind ...")
        provider = signing_in(server.url, token)
        async with session(server.url, auth=provider) as oauth, session(server.url, bearer=token) as static:
            for client in (oauth, static):
                await client.call_tool("list_tasks", {"limit": 5})
            for _ in range(CALLS // BATCH):
                for client, times in ((oauth, report.call_oauth_s), (static, report.call_bearer_s)):
                    for _ in range(BATCH):
                        started = time.perf_counter()
                        await client.call_tool("list_tasks", {"limit": 5})
                        times.append(time.perf_counter() - started)
    return report


def oauth_figures(report: OAuthReport) -> list[Figure]:
    sign_in = (
        "from nothing to a session's first answered list_tasks, for the SDK's OAuthClientProvider: discovery, "
        "registration, the sign-in page opened and posted (two requests standing for the browser), code "
        f"exchange, initialize; median of {CONNECTS}"
    )
    calls = f"{CALLS} list_tasks(limit=5) calls on one session each, in alternating batches of {BATCH}"
    oauth_ms, bearer_ms = (OAuthReport.median_ms(v) for v in (report.call_oauth_s, report.call_bearer_s))
    return [
        http_figure(
            "oauth_connect_ms",
            "OAuth: connect with sign-in",
            "ms",
            sign_in,
            OAuthReport.median_ms(report.connect_oauth_s),
        ),
        http_figure(
            "oauth_bearer_connect_ms",
            "OAuth: connect with a static bearer (baseline)",
            "ms",
            f"the same, with the API token as a static bearer header; median of {CONNECTS}",
            OAuthReport.median_ms(report.connect_bearer_s),
        ),
        http_figure(
            "oauth_call_ms", "OAuth: a call with an OAuth token", "ms", f"{calls}: median, OAuth token", oauth_ms
        ),
        http_figure(
            "oauth_call_ratio",
            "OAuth: per-call time, OAuth token / static bearer",
            "x",
            f"{calls}: the OAuth token's median (a grant lookup and an unseal per request) over the static bearer's "
            f"({bearer_ms:.2f} ms)",
            oauth_ms / bearer_ms,
        ),
    ]
