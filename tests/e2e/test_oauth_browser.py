"""The person's step of the OAuth sign-in in a real browser: headless Chromium opens the sign-in
page the SDK's `OAuthClientProvider` sends it to, the person reads it, types their token, and the
page's redirect brings the code to the connector's own loopback listener.

What only a browser proves: Chromium applies the page's CSP `form-action` to the redirect after
the form post, so the page must allow the client's redirect origin or the person never gets back
to the app; the CSRF cookie must be set and sent on plain-http loopback; and the page shows the
person what they are agreeing to, never what they typed. Screenshots land in test-output/oauth/
(signin.png is the one in docs/oauth-signin.png).
"""

from __future__ import annotations

import html
import socket
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import anyio
import pytest
from mcp.client.auth import OAuthClientProvider
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientMetadata
from pydantic import AnyUrl

from luma_mcp.core.results import TaskResult
from luma_mcp.oauth.signin import CSRF_COOKIE
from luma_mcp.simulator.app import SimulatorServer

from ..helpers.browser import LAUNCH_ARGS, ROOT, chromium
from ..helpers.http import TOKEN_A, HttpServer, free_port, http_env
from ..helpers.oauth import MemoryStorage, oauth_client, oauth_env

playwright_api = pytest.importorskip(
    "playwright.async_api", reason="Playwright is in the dev extra: pip install -e '.[dev]'"
)

pytestmark = pytest.mark.anyio

SHOTS = ROOT / "test-output" / "oauth"
APP_NAME = "Test Connector"
WRONG_TOKEN = "acedata-token-mallory-999999"  # well formed, but the API does not know it
LABEL = "Your Ace Data Cloud API token"
# Every wait is bounded: a page or redirect on loopback takes milliseconds, these leave a busy
# 2-core machine ample room and still fail within seconds when the browser is stuck.
PAGE_TIMEOUT_MS = 20_000
CALLBACK_SECONDS = 20.0


class Callback:
    """The connector's side of the redirect: a real HTTP listener on a loopback address (`host`,
    IPv4 or IPv6) that keeps the query of every request to /callback, as a native app's loopback
    redirect handler does. It also serves the app's own page (/app), from another site
    (`localhost`), with the link that sends the person to sign in, as a web connector does."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.hits: list[dict[str, str]] = []
        self.referers: list[str | None] = []
        self._arrived = threading.Condition()
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = {name: values[-1] for name, values in parse_qs(url.query).items()}
                if url.path == "/callback":
                    with listener._arrived:
                        listener.hits.append(query)
                        listener.referers.append(self.headers.get("referer"))
                        listener._arrived.notify_all()
                    self._answer(200, "<!doctype html><title>Connected</title><p>You can close this window.</p>")
                elif url.path == "/app" and "to" in query:
                    to = html.escape(query["to"])
                    self._answer(200, f'<!doctype html><title>{APP_NAME}</title><a href="{to}">Connect luma-mcp</a>')
                else:
                    self._answer(404, "not found")

            def _answer(self, status: int, body: str) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # stderr stays for what matters

        class Server(ThreadingHTTPServer):
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
            daemon_threads = True

        self._server = Server((host, 0), Handler)
        self.port = self._server.server_address[1]
        self.origin = f"http://{'[' + host + ']' if ':' in host else host}:{self.port}"
        self.redirect_uri = f"{self.origin}/callback"
        self._thread = threading.Thread(target=self._server.serve_forever, name="oauth-callback", daemon=True)
        self._thread.start()

    def app_page(self, authorization_url: str) -> str:
        return f"http://localhost:{self.port}/app?{urlencode({'to': authorization_url})}"

    def wait(self, count: int) -> dict[str, str]:
        """The `count`th request to /callback, once it has come (bounded)."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.hits) >= count, timeout=CALLBACK_SECONDS):
                raise AssertionError(f"the browser never reached {self.redirect_uri} (within {CALLBACK_SECONDS} s)")
            return self.hits[count - 1]

    async def result(self) -> AuthorizationCodeResult:
        """The SDK's callback_handler: what the last redirect brought."""
        hit = self.hits[-1]
        if "code" not in hit:
            raise SignInDenied(hit)
        return AuthorizationCodeResult(code=hit["code"], state=hit.get("state"), iss=hit.get("iss"))

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class SignInDenied(Exception):
    """The redirect came back without a code (the person cancelled)."""


@dataclass
class Seen:
    """What the person saw on one page, and what the browser said about it."""

    url: str
    status: int
    came_from: str  # the URL that redirected here, if any
    text: str
    html: str
    typed: str  # what the token field holds
    headers: dict[str, str]


@dataclass
class Person:
    """Someone at the browser: opens the authorization URL (as a desktop app has the system
    browser do, or by the link on the app's page), reads the page, types each of `attempts` in
    turn and clicks Allow (or clicks Cancel when there are none)."""

    context: Any  # a Playwright BrowserContext
    callback: Callback
    attempts: list[str]
    from_app_page: bool = False
    screenshots: bool = False  # into SHOTS: signin.png, wrong-token.png
    seen: list[Seen] = field(default_factory=list)
    cookies_on_page: list[dict[str, Any]] = field(default_factory=list)
    cookies_after: list[dict[str, Any]] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    authorization_url: str = ""
    seconds: float = 0.0  # from opening the authorization URL to the redirect's arrival

    async def redirect(self, authorization_url: str) -> None:
        """The SDK's redirect_handler: the browser step, up to the redirect reaching the callback."""
        self.authorization_url = authorization_url
        started = time.monotonic()
        page = await self.context.new_page()
        page.on("console", lambda message: self.console.append(message.text))
        arrived = len(self.callback.hits) + 1
        if self.from_app_page:
            await page.goto(self.callback.app_page(authorization_url), timeout=PAGE_TIMEOUT_MS)
            async with page.expect_navigation(timeout=PAGE_TIMEOUT_MS) as navigation:
                await page.get_by_role("link", name="Connect luma-mcp").click()
            opened = await navigation.value  # /authorize, 302 to /signin
        else:
            opened = await page.goto(authorization_url, timeout=PAGE_TIMEOUT_MS)  # /authorize, 302 to /signin
        assert opened is not None and opened.status == 200, f"the sign-in page did not open: {opened and opened.status}"
        await self._look(page, opened)
        self.cookies_on_page = await self.context.cookies()
        await self._shoot(page, "signin.png")
        if not self.attempts:
            await page.get_by_role("button", name="Cancel").click()
        for number, secret in enumerate(self.attempts, 1):
            await page.get_by_label(LABEL).fill(secret)
            if number < len(self.attempts):
                # A wrong entry: answered on the page, which comes back with an empty field.
                async with page.expect_navigation(timeout=PAGE_TIMEOUT_MS) as answered:
                    await page.get_by_role("button", name="Allow").click()
                response = await answered.value
                if response.status != 400:
                    raise AssertionError(f"a wrong token got {response.status}: {await page.inner_text('body')}")
                await self._look(page, response)
                await self._shoot(page, "wrong-token.png")
            else:
                await page.get_by_role("button", name="Allow").click()
        try:
            await page.wait_for_url(f"{self.callback.redirect_uri}?**", timeout=PAGE_TIMEOUT_MS)
        except playwright_api.TimeoutError:
            raise AssertionError(
                f"the browser never reached the redirect URI {self.callback.redirect_uri}: it is at {page.url}, "
                f"showing {await page.inner_text('body')!r}; console: {self.console}"
            ) from None
        await anyio.to_thread.run_sync(self.callback.wait, arrived)
        self.seconds = time.monotonic() - started
        self.cookies_after = await self.context.cookies()

    async def _shoot(self, page: Any, name: str) -> None:
        if self.screenshots:
            SHOTS.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(SHOTS / name), full_page=True)

    async def _look(self, page: Any, response: Any) -> None:
        self.seen.append(
            Seen(
                url=page.url,
                status=response.status,
                came_from=response.request.redirected_from.url if response.request.redirected_from else "",
                text=await page.inner_text("body"),
                html=await page.content(),
                typed=await page.get_by_label(LABEL).input_value(),
                headers=await response.all_headers(),
            )
        )


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    executable = chromium()
    async with playwright_api.async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(executable), args=LAUNCH_ARGS, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
def callback() -> Iterator[Callback]:
    listener = Callback()
    yield listener
    listener.stop()


def passthrough_server(sim_server: SimulatorServer) -> HttpServer:
    port = free_port()
    env = http_env(sim_server, LUMA_MCP_AUTH="passthrough", **oauth_env(f"http://127.0.0.1:{port}"))
    return HttpServer(env, port=port).wait_ready()


def connector(server: HttpServer, person: Person, callback: Callback) -> OAuthClientProvider:
    """The SDK's OAuth client, redirecting to the listener and sending the person to Chromium."""
    return OAuthClientProvider(
        server_url=f"{server.url}/mcp",
        client_metadata=OAuthClientMetadata(
            client_name=APP_NAME, redirect_uris=[AnyUrl(callback.redirect_uri)], token_endpoint_auth_method="none"
        ),
        storage=MemoryStorage(),
        redirect_handler=person.redirect,
        callback_handler=callback.result,
    )


async def new_context(browser: Any) -> Any:
    context = await browser.new_context(viewport={"width": 720, "height": 600}, device_scale_factor=1)
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    return context


async def test_chromium_signs_in_and_the_redirect_brings_the_code_home(
    sim_server: SimulatorServer, browser: Any, callback: Callback
) -> None:
    sim_server.simulator.valid_tokens = {TOKEN_A}
    server = passthrough_server(sim_server)
    context = await new_context(browser)
    # The person starts on the app's page (another site), as with a web connector.
    person = Person(context, callback, attempts=[WRONG_TOKEN, TOKEN_A], from_app_page=True, screenshots=True)
    try:
        async with oauth_client(server.url, connector(server, person, callback)) as connected:
            made = await connected.call_tool("generate_video", {"prompt": "A lighthouse", "wait_seconds": 20})
        task = TaskResult.model_validate(made.structured_content)
        assert task.status == "succeeded"
    finally:
        await context.close()
        _, log = server.stop()

    signin, wrong = person.seen
    # The page the person saw: which app asks, what it may do (paid), where they go back to.
    assert urlsplit(signin.url).path == "/signin" and signin.status == 200
    assert signin.came_from.startswith(f"{server.url}/authorize?")
    assert f"Allow {APP_NAME} to make videos?" in signin.text
    assert "start paid Luma video generations" in signin.text
    assert f"You will be sent back to {callback.origin}." in signin.text
    assert 'type="password"' in signin.html and LABEL in signin.text
    csp = signin.headers["content-security-policy"]
    assert f"form-action 'self' {callback.origin}" in csp and "frame-ancestors 'none'" in csp
    # Its CSRF cookie: kept by the browser on plain-http loopback, sent back with the form,
    # then deleted once the sign-in was done.
    (csrf,) = [cookie for cookie in person.cookies_on_page if cookie["name"] == CSRF_COOKIE]
    assert csrf["httpOnly"] and csrf["sameSite"] == "Strict" and csrf["path"] == "/signin"
    assert not [cookie for cookie in person.cookies_after if cookie["name"] == CSRF_COOKIE]

    # A wrong token: answered on the same page, the field empty, the token nowhere in it.
    assert urlsplit(wrong.url).path == "/signin" and wrong.status == 400
    assert "Ace Data Cloud does not accept this token" in wrong.text and wrong.typed == ""
    assert WRONG_TOKEN not in wrong.html

    # The right one: Chromium followed the 303 to the listener with the code, the state the SDK
    # sent and our issuer; the SDK exchanged the code, and the token made a video.
    (hit,) = callback.hits
    state = parse_qs(urlsplit(person.authorization_url).query)["state"][0]
    assert hit["code"] and hit["state"] == state and hit["iss"] == server.url
    assert callback.referers == [None]  # the page's Referrer-Policy: the app learns nothing of it
    assert not [message for message in person.console if "Content Security Policy" in message], person.console
    submits = [r.authorization for r in sim_server.simulator.requests if r.path == "/luma/videos"]
    assert submits == [f"Bearer {TOKEN_A}"]  # the person's own token paid
    # The canaries: nothing the person typed is in a page or a log line.
    assert all(TOKEN_A not in seen.html and WRONG_TOKEN not in seen.html for seen in person.seen)
    assert TOKEN_A not in log and WRONG_TOKEN not in log
    print(f"browser step (open, a wrong token, the right one, back to the app): {person.seconds:.2f} s")


async def test_cancel_sends_the_browser_back_with_access_denied_and_the_state(
    sim_server: SimulatorServer, browser: Any, callback: Callback, private_folders: Path
) -> None:
    server = passthrough_server(sim_server)
    context = await new_context(browser)
    person = Person(context, callback, attempts=[])  # reads the page, then clicks Cancel
    try:
        with pytest.raises(ExceptionGroup) as raised:
            async with oauth_client(server.url, connector(server, person, callback)) as connected:
                await connected.list_tools()
    finally:
        await context.close()
        server.stop()
    # The browser went back to the app's redirect URI: refused, with the SDK's state and our issuer.
    assert raised.group_contains(SignInDenied)
    (hit,) = callback.hits
    state = parse_qs(urlsplit(person.authorization_url).query)["state"][0]
    assert hit == {"error": "access_denied", "state": state, "iss": server.url}
    # Nothing was checked upstream and nothing granted.
    assert sim_server.simulator.requests == []
    with sqlite3.connect(private_folders / "ledger.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM oauth_grants").fetchone() == (0,)


async def test_an_ipv6_loopback_redirect_is_followed_too(sim_server: SimulatorServer, browser: Any) -> None:
    # RFC 8252 names [::1] beside 127.0.0.1 for a native app's redirect: the CSP must let it through.
    try:
        callback = Callback("::1")
    except OSError as exc:  # a container without IPv6
        pytest.skip(f"this machine has no IPv6 loopback to listen on: {exc}")
    sim_server.simulator.valid_tokens = {TOKEN_A}
    server = passthrough_server(sim_server)
    context = await new_context(browser)
    person = Person(context, callback, attempts=[TOKEN_A])
    try:
        async with oauth_client(server.url, connector(server, person, callback)) as connected:
            listed = await connected.call_tool("list_tasks", {})
        assert listed.structured_content == {"tasks": []}
    finally:
        await context.close()
        callback.stop()
        server.stop()
    (hit,) = callback.hits
    assert hit["code"] and hit["iss"] == server.url
    (signin,) = person.seen
    assert f"You will be sent back to {callback.origin}." in signin.text  # http://[::1]:port
    assert not [message for message in person.console if "Content Security Policy" in message], person.console
