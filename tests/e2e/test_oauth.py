"""OAuth sign-in end to end: the SDK's OAuthClientProvider against `luma-mcp --transport http`
on loopback, the person's browser step played by form posts (Chromium does it in
test_oauth_browser.py)."""

from __future__ import annotations

import html
import sqlite3
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from luma_mcp.config import Settings
from luma_mcp.core.results import TaskResult
from luma_mcp.hosting.app import create_http_app
from luma_mcp.oauth.client_documents import ClientDocuments
from luma_mcp.simulator.app import ServerThread, SimulatorServer

from ..helpers.http import KEY, TOKEN_A, TOKEN_B, HttpServer, client, free_port, http_env
from ..helpers.oauth import (
    REDIRECT_URI,
    MemoryStorage,
    RawConnector,
    SignInByForm,
    mcp_status,
    oauth_client,
    oauth_env,
    oauth_provider,
)
from ..helpers.postgres import fresh_database
from ..helpers.tls import TlsServer, trusting

pytestmark = pytest.mark.anyio


def raw_sql_file(path: Path, statement: str) -> None:
    with sqlite3.connect(path) as db:
        db.execute(statement)


def passthrough_server(sim_server: SimulatorServer, **extra: str) -> HttpServer:
    port = free_port()
    env = http_env(sim_server, LUMA_MCP_AUTH="passthrough", **oauth_env(f"http://127.0.0.1:{port}", **extra))
    return HttpServer(env, port=port).wait_ready()


async def test_a_web_connector_signs_in_with_its_token_and_makes_videos_in_its_tenant(
    sim_server: SimulatorServer, private_folders: Path
) -> None:
    sim_server.simulator.valid_tokens = {TOKEN_A, TOKEN_B}
    server = passthrough_server(sim_server)
    try:
        sign_in = SignInByForm(TOKEN_A)
        async with oauth_client(server.url, oauth_provider(server.url, sign_in)) as connector:
            made = await connector.call_tool("generate_video", {"prompt": "A lighthouse", "wait_seconds": 20})
            task = TaskResult.model_validate(made.structured_content)
            assert task.status == "succeeded"
        assert "Test Connector" in sign_in.pages[0] and "paid Luma video generations" in sign_in.pages[0]
        async with httpx.AsyncClient() as http:
            metadata = (await http.get(f"{server.url}/.well-known/oauth-authorization-server")).json()
        assert metadata["issuer"] == server.url and metadata["code_challenge_methods_supported"] == ["S256"]
        assert metadata["authorization_response_iss_parameter_supported"] is True
        assert metadata["token_endpoint_auth_methods_supported"][0] == "none"
        # The same person with their token as a static bearer is the same tenant: they see it.
        async with client(server.url, TOKEN_A) as alice:
            listed = await alice.call_tool("list_tasks", {})
            assert [t["task_id"] for t in listed.structured_content["tasks"]] == [task.task_id]
        async with client(server.url, TOKEN_B) as bob:
            assert (await bob.call_tool("list_tasks", {})).structured_content == {"tasks": []}
    finally:
        _, log = server.stop()
    submits = [r.authorization for r in sim_server.simulator.requests if r.path == "/luma/videos"]
    assert submits == [f"Bearer {TOKEN_A}"]  # the person's own token paid, not an OAuth token
    # The canary (the person's token) is nowhere in clear: not in the log, a page or the database.
    assert TOKEN_A not in log and all(TOKEN_A not in page for page in sign_in.pages)
    ledger = private_folders / "ledger.sqlite3"
    assert TOKEN_A.encode() not in ledger.read_bytes()
    with sqlite3.connect(ledger) as db:
        grants = db.execute("SELECT sealed_token FROM oauth_grants").fetchall()
        stored = [row for table in ("oauth_tokens", "oauth_clients") for row in db.execute(f"SELECT * FROM {table}")]  # noqa: S608
    assert len(grants) == 1 and grants[0][0] and TOKEN_A not in grants[0][0]
    assert not any(TOKEN_A in str(value) for row in stored for value in row)


def location_query(answer: httpx.Response) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(answer.headers["location"]).query).items()}


def test_what_the_authorization_server_refuses(sim_server: SimulatorServer, private_folders: Path) -> None:
    sim_server.simulator.valid_tokens = {TOKEN_A}
    server = passthrough_server(sim_server)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            raw = RawConnector(http)
            # Registration: only https, loopback http or an app's own scheme come back from the browser.
            for uri in ("http://evil.example/cb", "javascript:alert(1)", "https://app.example/cb#frag"):
                refused = RawConnector(http, redirect_uri=uri).register()
                assert refused.status_code == 400 and refused.json()["error"] == "invalid_redirect_uri", uri
            assert raw.register(client_name="Raw").status_code == 201
            # An unknown redirect URI is answered here, never redirected to; a loopback one may change port.
            unknown = raw.authorize(redirect_uri="https://attacker.example/cb")
            assert unknown.status_code == 400 and "not registered" in unknown.text
            assert raw.authorize(redirect_uri="http://127.0.0.1:50999/callback").status_code == 302
            assert raw.authorize(redirect_uri="http://127.0.0.1:50999/other").status_code == 400
            # A token for another resource is refused, on a page of ours (see the test below).
            elsewhere = raw.authorize(resource="https://other.example/mcp", state="s-9")
            assert elsewhere.status_code == 400 and "invalid_target" in elsewhere.text
            # The page without its cookie, or with another, is a forged post.
            page = raw.sign_in_page()
            assert TOKEN_A not in page.text and 'type="password"' in page.text
            http.cookies.clear()
            assert raw.submit(page, TOKEN_A).status_code == 403
            http.cookies.set("luma_signin", "forged", domain="127.0.0.1", path="/signin")
            assert raw.submit(page, TOKEN_A).status_code == 403
            http.cookies.clear()
            # A token Ace Data Cloud refuses is answered on the page: no code, nothing stored.
            page = raw.sign_in_page()
            wrong = raw.submit(page, "made-up-token-123")
            assert wrong.status_code == 400 and "does not accept this token" in wrong.text
            assert "made-up-token-123" not in wrong.text and 'role="alert"' in wrong.text
            # Wrong PKCE verifier, another redirect URI: refused, and the code is still unspent.
            code = raw.code(TOKEN_A)
            assert raw.token(code, verifier="x" * 50).json()["error"] == "invalid_grant"
            mismatched = raw.token(code, redirect_uri="http://127.0.0.1:50999/callback")
            assert mismatched.json()["error"] == "invalid_request"
            first = raw.token(code)
            assert first.status_code == 200
            assert mcp_status(server.url, first.json()["access_token"]).status_code == 200
            # The code again: refused, and the grant it made is revoked (someone else has the code).
            assert raw.token(code).json()["error"] == "invalid_grant"
            revoked = mcp_status(server.url, first.json()["access_token"])
            assert revoked.status_code == 401
            challenge = revoked.headers["www-authenticate"]
            assert 'error="invalid_token"' in challenge
            assert f'resource_metadata="{server.url}/.well-known/oauth-protected-resource/mcp"' in challenge
            # Refresh rotates; the old refresh token again is refused, and later (not a concurrent
            # refresh's loser) revokes the grant.
            tokens = raw.tokens(TOKEN_A)
            rotated = raw.refresh(tokens["refresh_token"])
            assert rotated.status_code == 200 and rotated.json()["refresh_token"] != tokens["refresh_token"]
            assert mcp_status(server.url, tokens["access_token"]).status_code == 401  # the old access token ended
            assert mcp_status(server.url, rotated.json()["access_token"]).status_code == 200
            assert raw.refresh(tokens["refresh_token"]).json()["error"] == "invalid_grant"
            assert mcp_status(server.url, rotated.json()["access_token"]).status_code == 200
            raw_sql_file(
                private_folders / "ledger.sqlite3",
                "UPDATE oauth_tokens SET used_at = used_at - 60 WHERE kind = 'refresh'",
            )
            assert raw.refresh(tokens["refresh_token"]).json()["error"] == "invalid_grant"
            assert mcp_status(server.url, rotated.json()["access_token"]).status_code == 401
            # Revocation ends the access and the refresh token together.
            tokens = raw.tokens(TOKEN_A)
            assert raw.revoke(tokens["access_token"]).status_code == 200
            assert mcp_status(server.url, tokens["access_token"]).status_code == 401
            assert raw.refresh(tokens["refresh_token"]).json()["error"] == "invalid_grant"
            # An expired access token is refused like a revoked one.
            tokens = raw.tokens(TOKEN_A)
            raw_sql_file(
                private_folders / "ledger.sqlite3", "UPDATE oauth_tokens SET expires_at = 0 WHERE kind = 'access'"
            )
            assert mcp_status(server.url, tokens["access_token"]).status_code == 401
            # A token whose sign-in names another resource is not one for this server's /mcp.
            tokens = raw.tokens(TOKEN_A)
            assert mcp_status(server.url, tokens["access_token"]).status_code == 200
            raw_sql_file(
                private_folders / "ledger.sqlite3", "UPDATE oauth_grants SET resource = 'https://other.example/mcp'"
            )
            assert mcp_status(server.url, tokens["access_token"]).status_code == 401
            # Revoked and expired grants leave nothing behind: only the live grants of the refreshes are kept.
            with sqlite3.connect(private_folders / "ledger.sqlite3") as db:
                grants = db.execute("SELECT count(*) FROM oauth_grants").fetchone()[0]
            assert grants == 2
    finally:
        _, log = server.stop()
    assert TOKEN_A not in log and "made-up-token-123" not in log


def test_a_flood_of_sign_in_attempts_is_slowed_per_address(sim_server: SimulatorServer) -> None:
    sim_server.simulator.valid_tokens = {TOKEN_A}
    server = passthrough_server(sim_server)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            raw = RawConnector(http)
            assert raw.register().status_code == 201
            page = raw.sign_in_page()
            answers = [raw.submit(page, f"guess-{n}-abcdef") for n in range(8)]
            # A few guesses are checked with the API (and refused, or put off by the token checks'
            # own rate); after 5 refusals a minute this address waits, whatever it sends.
            statuses = [answer.status_code for answer in answers]
            assert statuses[0] == 400 and set(statuses) <= {400, 429} and statuses[5:] == [429] * 3, statuses
            assert all("Too many attempts" in a.text and int(a.headers["retry-after"]) >= 1 for a in answers[5:])
            limited = raw.submit(page, TOKEN_A)  # even the right one waits its turn
            assert limited.status_code == 429 and "Too many attempts" in limited.text
            # Registrations: 10 a minute from one address, then 429 (one was made above).
            registered = [RawConnector(http).register().status_code for _ in range(12)]
            assert registered[:5] == [201] * 5 and registered[-1] == 429, registered  # a slow run may refill one
            # Starting sign-ins (each may make the server fetch a client's document): 30 a minute.
            starts = [raw.authorize().status_code for _ in range(40)]
            assert starts[:25] == [302] * 25 and starts[-1] == 429
            # Token requests (each may fetch a client's document too): 60 a minute.
            tokens = [raw.refresh("luma_rt_made-up").status_code for _ in range(70)]
            assert set(tokens[:50]) == {400} and tokens[-1] == 429
            # A visit with a request that was not sealed here (or altered) stores and shows nothing.
            assert http.get("/signin", params={"request": "forged"}).status_code == 400
            # Views of the page (each looks its client up and sends the page), posts included: 60 a
            # minute (a burst of 60, refilled at one a second however slowly this machine runs).
            started, shown = time.monotonic(), 0
            while (view := http.get(page.url)).status_code == 200 and shown < 1_000:
                shown += 1
            assert view.status_code == 429 and 35 <= shown <= 60 + time.monotonic() - started, shown
            assert "Too many sign-in page views" in view.text and int(view.headers["retry-after"]) >= 1
            assert view.headers["content-type"].startswith("text/html")
            assert raw.submit(page, TOKEN_A).status_code == 429
    finally:
        server.stop()
    assert sim_server.simulator.count("/luma/tasks") <= 5  # each refused guess was checked at most once upstream


def ledger_clients(private_folders: Path) -> tuple[int, int]:
    """How many clients the ledger holds, and the bytes of their records."""
    with sqlite3.connect(private_folders / "ledger.sqlite3") as db:
        rows, size = db.execute("SELECT count(*), coalesce(sum(length(info)), 0) FROM oauth_clients").fetchone()
    return int(rows), int(size)


def test_a_flood_of_registrations_stores_a_few_kilobytes(sim_server: SimulatorServer, private_folders: Path) -> None:
    server = passthrough_server(sim_server)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            # A stranger's huge body is refused before anything parses it.
            body = b'{"redirect_uris": ["http://127.0.0.1:1/cb"], "client_name": "' + b"N" * 100_000 + b'"}'
            huge = http.post("/register", content=body, headers={"content-type": "application/json"})
            assert huge.status_code == 413 and huge.json()["error"] == "invalid_client_metadata"
            assert "larger than 16384 bytes" in huge.json()["error_description"]
            # Each field is bounded, and the number of redirect URIs, with a sentence naming the field.
            long_name = RawConnector(http).register(client_name="N" * 101)
            assert long_name.status_code == 400 and long_name.json()["error"] == "invalid_client_metadata"
            assert long_name.json()["error_description"].startswith("client_name is 101 characters long")
            uris = [f"https://app.example/{n}" for n in range(11)]
            many = RawConnector(http).register(redirect_uris=uris)
            assert many.status_code == 400 and many.json()["error"] == "invalid_client_metadata"
            assert many.json()["error_description"].startswith("redirect_uris has 11 entries")
            # The rest of the minute's registrations from this address, each as large as is kept.
            largest = {"client_name": "N" * 100, "contacts": ["c" * 330] * 10, "software_id": "s" * 100}
            connectors = [RawConnector(http) for _ in range(7)]
            assert [c.register(**largest).status_code for c in connectors] == [201] * 7
        rows, size = ledger_clients(private_folders)
        assert rows == 7 and 3_000 * 7 < size <= 4_096 * 7, size  # was up to 4 MiB each
        # The page of such a client is small, and shows its name cut short.
        with httpx.Client(base_url=server.url, timeout=30) as http:
            page = RawConnector(http, client_id=connectors[0].client_id).sign_in_page()
        assert page.status_code == 200 and len(page.content) < 8_000
        assert f"<bdi>{'N' * 79}…</bdi>" in page.text and "N" * 80 not in page.text
    finally:
        server.stop()


def test_a_stranger_cannot_register_a_dangerous_scheme_or_hidden_text(sim_server: SimulatorServer) -> None:
    server = passthrough_server(sim_server)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            for uri in (
                "ms-msdt:-id PCWDiagnostic",
                "search-ms:query=x",
                "file:///etc/passwd",
                "data:,hi",
                "javascript:1",
            ):
                refused = RawConnector(http, redirect_uri=uri).register()
                assert refused.status_code == 400 and refused.json()["error"] == "invalid_redirect_uri", uri
                assert "reverse-domain" in refused.json()["error_description"]
            assert RawConnector(http, redirect_uri="com.example.app:/callback").register().status_code == 201
            # Cursor's scheme has no period: allowed because LUMA_MCP_OAUTH_APP_SCHEMES lists it by default.
            cursor = RawConnector(http, redirect_uri="cursor://anysphere.cursor-mcp/oauth/callback")
            assert cursor.register().status_code == 201
            for name in ("Claude\x00", "\x1b[2JClaude", "Claude \u202eevil.example"):
                hidden = RawConnector(http).register(client_name=name)
                assert hidden.status_code == 400 and hidden.json()["error"] == "invalid_client_metadata", name
                assert hidden.json()["error_description"].startswith("client_name has the invisible control")
    finally:
        server.stop()


def test_authorize_answers_its_errors_with_a_page_and_never_redirects(sim_server: SimulatorServer) -> None:
    """RFC 9700 §4.11.2: a link to /authorize with a bad parameter must not send the browser on to
    whatever https site a stranger registered."""
    sim_server.simulator.valid_tokens = {TOKEN_A}
    server = passthrough_server(sim_server)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            raw = RawConnector(http, redirect_uri="https://app.example/cb")
            assert raw.register(client_name="Stranger").status_code == 201
            ok = raw.authorize()
            assert ok.status_code == 302 and ok.headers["location"].startswith(f"{server.url}/signin?request=")
            good = dict(ok.request.url.params)
            bad = {
                "unsupported_response_type": {**good, "response_type": "token"},
                "invalid_request": {k: v for k, v in good.items() if k != "code_challenge"},
                "invalid_scope": {**good, "scope": "admin"},
                "invalid_target": {**good, "resource": "https://other.example/mcp"},
            }
            for error, params in {**bad, "unknown client": {**good, "client_id": "nobody"}}.items():
                answer = http.get("/authorize", params=params)
                assert answer.status_code == 400 and "location" not in answer.headers, error
                assert answer.headers["content-type"].startswith("text/html"), error
                assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
                assert "not sent anywhere" in answer.text and "You can close this page" in answer.text
                assert "app.example" not in answer.text and "<a " not in answer.text, error
                assert error in answer.text or error == "unknown client", error
            # After the person saw our page, Cancel still goes back to the app.
            cancelled = raw.submit(raw.sign_in_page(), "", action="deny")
            assert cancelled.status_code == 303 and cancelled.headers["location"].startswith("https://app.example/cb?")
            back = location_query(cancelled)
            assert back["error"] == "access_denied" and back["state"] == "state-1" and back["iss"] == server.url
    finally:
        server.stop()


async def test_the_connector_refreshes_without_signing_in_again_and_revocation_ends_it(
    sim_server: SimulatorServer, private_folders: Path
) -> None:
    sim_server.simulator.valid_tokens = {TOKEN_A}
    server = passthrough_server(sim_server)
    storage = MemoryStorage()
    sign_in = SignInByForm(TOKEN_A)
    provider = oauth_provider(server.url, sign_in, storage)
    try:
        async with oauth_client(server.url, provider) as connector:
            assert not (await connector.call_tool("list_tasks", {})).is_error
        first = storage.tokens
        assert first is not None and sign_in.sign_ins == 1
        # An hour later, on both clocks: the access token has expired, the refresh token has not.
        raw_sql_file(private_folders / "ledger.sqlite3", "UPDATE oauth_tokens SET expires_at = 0 WHERE kind = 'access'")
        provider.context.token_expiry_time = time.time() - 1
        async with oauth_client(server.url, provider) as connector:
            assert not (await connector.call_tool("list_tasks", {})).is_error
        assert sign_in.sign_ins == 1 and storage.tokens is not None
        assert storage.tokens.refresh_token != first.refresh_token  # rotated
        # The person disconnects the app: its tokens stop working, and it must ask them again.
        assert storage.client_info is not None and storage.tokens.refresh_token is not None
        with httpx.Client(base_url=server.url, timeout=30) as http:
            raw = RawConnector(http, client_id=storage.client_info.client_id)
            assert raw.revoke(storage.tokens.refresh_token).status_code == 200
        assert mcp_status(server.url, storage.tokens.access_token).status_code == 401
        async with oauth_client(server.url, provider) as connector:
            assert not (await connector.call_tool("list_tasks", {})).is_error
        assert sign_in.sign_ins == 2
    finally:
        server.stop()


async def test_access_key_holders_sign_in_with_their_key_until_it_is_withdrawn(
    sim_server: SimulatorServer, private_folders: Path
) -> None:
    port = free_port()
    env = http_env(sim_server, ACEDATACLOUD_API_TOKEN=TOKEN_A, **oauth_env(f"http://127.0.0.1:{port}"))
    server = HttpServer({**env, "LUMA_MCP_API_KEYS": f"{KEY},other-key-123"}, port=port).wait_ready()
    storage = MemoryStorage()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            raw = RawConnector(http)
            assert raw.register().status_code == 201
            page = raw.sign_in_page()
            assert "Access key" in page.text and "this server's account" in html.unescape(page.text)
            wrong = raw.submit(page, TOKEN_A)  # an API token is not an access key
            assert wrong.status_code == 400 and "not one this server accepts" in wrong.text
        sign_in = SignInByForm(KEY)
        async with oauth_client(server.url, oauth_provider(server.url, sign_in, storage)) as connector:
            made = await connector.call_tool("generate_video", {"prompt": "A key holder's idea", "wait_seconds": 0})
            assert not made.is_error
    finally:
        server.stop()
    assert [r.authorization for r in sim_server.simulator.requests if r.path == "/luma/videos"] == [f"Bearer {TOKEN_A}"]
    # The operator withdraws that key: the sign-in made with it is refused from the next
    # request, refresh included (and is left to expire).
    server = HttpServer({**env, "LUMA_MCP_API_KEYS": "other-key-123"}, port=port).wait_ready()
    try:
        assert storage.tokens is not None and storage.client_info is not None
        assert mcp_status(server.url, storage.tokens.access_token).status_code == 401
        with httpx.Client(base_url=server.url, timeout=30) as http:
            raw = RawConnector(http, client_id=storage.client_info.client_id)
            assert raw.refresh(storage.tokens.refresh_token or "").json()["error"] == "invalid_grant"
    finally:
        _, log = server.stop()
    assert "not configured here" in log and KEY not in log


async def test_a_token_issued_by_one_replica_works_on_another(
    sim_server: SimulatorServer, postgres_server: str
) -> None:
    """Two server processes on one PostgreSQL ledger, as behind a load balancer (one public URL)."""
    sim_server.simulator.valid_tokens = {TOKEN_A}
    ledger = fresh_database(postgres_server)
    first_port, second_port = free_port(), free_port()
    env = http_env(
        sim_server,
        LUMA_MCP_AUTH="passthrough",
        LUMA_LEDGER_URL=ledger,
        **oauth_env(f"http://127.0.0.1:{first_port}"),
    )
    first = HttpServer(env, port=first_port).wait_ready()
    second = HttpServer(env, port=second_port).wait_ready()
    storage = MemoryStorage()
    try:
        async with oauth_client(first.url, oauth_provider(first.url, SignInByForm(TOKEN_A), storage)) as connector:
            made = await connector.call_tool("generate_video", {"prompt": "Across replicas", "wait_seconds": 0})
            task_id = TaskResult.model_validate(made.structured_content).task_id
        assert storage.tokens is not None and storage.client_info is not None
        async with client(second.url, storage.tokens.access_token) as other:
            listed = await other.call_tool("list_tasks", {})
            assert [t["task_id"] for t in listed.structured_content["tasks"]] == [task_id]
        with httpx.Client(base_url=second.url, timeout=30) as http:
            raw = RawConnector(http, client_id=storage.client_info.client_id)
            refreshed = raw.refresh(storage.tokens.refresh_token or "")
            assert refreshed.status_code == 200
        assert mcp_status(first.url, refreshed.json()["access_token"]).status_code == 200
        assert mcp_status(first.url, storage.tokens.access_token).status_code == 401  # rotated away on the other
    finally:
        first.stop()
        second.stop()


async def test_a_connector_identified_by_its_metadata_document_signs_in(
    sim_server: SimulatorServer, tls_files: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other way to register: the client's id is an https URL whose document the server
    fetches (here from a TLS server on loopback that the server is told to trust and reach)."""
    sim_server.simulator.valid_tokens = {TOKEN_A}
    certfile, keyfile, cafile = tls_files
    fetched: list[str] = []

    async def document(request: Request) -> JSONResponse:
        fetched.append(request.url.path)
        hidden = request.url.path == "/hidden.json"  # a name that would reorder the page's words
        return JSONResponse(
            {
                "client_id": f"{docs.url}{request.url.path}",
                "client_name": "Document \u202eConnector" if hidden else "Document Connector",
                "redirect_uris": [REDIRECT_URI],
                "token_endpoint_auth_method": "none",
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
            }
        )

    port = free_port()
    for name, value in http_env(
        sim_server, LUMA_MCP_AUTH="passthrough", **oauth_env(f"http://127.0.0.1:{port}")
    ).items():
        monkeypatch.setenv(name, value)
    routes = [Route("/connector.json", document), Route("/hidden.json", document)]
    with TlsServer(Starlette(routes=routes), certfile, keyfile) as docs:
        documents = ClientDocuments(exempt_origins=[docs.origin], ssl_context=trusting(cafile))
        app = create_http_app(Settings(_env_file=None), port=port, documents=documents)
        server = ServerThread(app, port=port, lifespan=True).start()
        try:
            async with httpx.AsyncClient() as http:
                metadata = (await http.get(f"{server.url}/.well-known/oauth-authorization-server")).json()
            assert metadata["client_id_metadata_document_supported"] is True
            sign_in = SignInByForm(TOKEN_A)
            provider = oauth_provider(server.url, sign_in, client_metadata_url=f"{docs.url}/connector.json")
            async with oauth_client(server.url, provider) as connector:
                assert not (await connector.call_tool("list_tasks", {})).is_error
            assert "Document Connector" in sign_in.pages[0] and f"{docs.url}/connector.json" in sign_in.pages[0]
            assert fetched == ["/connector.json"]  # fetched once: /authorize, the page and /token use the cache
            # A document meets a registration's rules: this one is not a client here.
            with httpx.Client(base_url=server.url, timeout=30) as browser:
                refused = RawConnector(browser, client_id=f"{docs.url}/hidden.json").authorize()
            assert refused.status_code == 400 and "location" not in refused.headers and "not found" in refused.text
            assert fetched == ["/connector.json", "/hidden.json"]
        finally:
            server.stop()
