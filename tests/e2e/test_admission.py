"""Who gets in at /mcp and what they may hold: real server processes on loopback, raw HTTP.

Passthrough bearers are checked with the (simulated) API before they get anything; unknown
tokens are checked at a bounded rate; sessions belong to their tenant and are capped.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp_types.version import LATEST_MODERN_VERSION

from luma_mcp.core.caller import tenant_of
from luma_mcp.core.results import TaskResult
from luma_mcp.simulator.app import SimulatorServer

from ..helpers.http import (
    INITIALIZE,
    KEY,
    MCP_HEADERS,
    TOKEN_A,
    TOKEN_B,
    HttpServer,
    client,
    free_port,
    http_env,
    rss_mb,
)

INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}
TOOLS_LIST = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}


def passthrough(sim_server: SimulatorServer, **env: str) -> HttpServer:
    sim_server.simulator.valid_tokens = {TOKEN_A, TOKEN_B}
    return HttpServer(http_env(sim_server, LUMA_MCP_AUTH="passthrough", **env)).wait_ready()


@pytest.fixture
def server(sim_server: SimulatorServer) -> Iterator[HttpServer]:
    running = passthrough(sim_server)
    yield running
    running.stop()


def headers(bearer: str | bytes, session: str | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {
        **MCP_HEADERS,
        "Authorization": b"Bearer " + bearer if isinstance(bearer, bytes) else f"Bearer {bearer}",
    }
    if session:
        found["Mcp-Session-Id"] = session
    return found


def rpc(url: str, bearer: str | bytes, body: dict[str, Any], session: str | None = None) -> httpx.Response:
    return httpx.post(f"{url}/mcp", json=body, headers=headers(bearer, session), timeout=30)


def open_session(url: str, bearer: str, used: bool = False) -> str:
    """initialize + initialized (and, if `used`, one tools/list); the session id."""
    opened = rpc(url, bearer, INITIALIZE)
    assert opened.status_code == 200, opened.text
    session = opened.headers["mcp-session-id"]
    assert rpc(url, bearer, INITIALIZED, session).status_code == 202
    if used:
        assert rpc(url, bearer, TOOLS_LIST, session).status_code == 200
    return session


def token_reads(sim_server: SimulatorServer, bearer: str | None = None) -> int:
    return sum(
        1
        for r in sim_server.simulator.requests
        if r.path == "/luma/tasks" and (bearer is None or r.authorization == f"Bearer {bearer}")
    )


def ledger_tenants(folder: Path) -> list[str]:
    path = folder / "ledger.sqlite3"
    if not path.exists():
        return []
    with sqlite3.connect(path) as db:
        return [row[0] for row in db.execute("SELECT tenant FROM tasks")]


# --- item 3: a bearer that is not printable ASCII --------------------------------------


def test_a_non_ascii_bearer_is_refused_at_the_edge(sim_server: SimulatorServer, private_folders: Path) -> None:
    keyed = HttpServer(http_env(sim_server, ACEDATACLOUD_API_TOKEN=TOKEN_A, LUMA_MCP_API_KEYS=KEY)).wait_ready()
    open_ = passthrough(sim_server)
    try:
        for running, good in ((open_, TOKEN_A), (keyed, KEY)):
            for bad in (good.encode() + b"\xe9", b"\xff" * 8, good.encode() + b"\x01", good.encode()[:4] + b" x"):
                refused = rpc(running.url, bad, INITIALIZE)
                assert refused.status_code == 401, (bad, refused.status_code)
                assert "printable ASCII" in refused.headers["www-authenticate"]
            assert rpc(running.url, good, INITIALIZE).status_code == 200  # and the server is fine
    finally:
        _, passthrough_log = open_.stop()
        keyed.stop()
    assert token_reads(sim_server) == 1  # only the good token was ever sent upstream
    assert "Traceback" not in passthrough_log
    assert ledger_tenants(private_folders) == []


# --- item 1: bearers are checked with the API, at a bounded rate --------------------------


def test_made_up_tokens_get_401_after_one_read_each_and_no_session(
    server: HttpServer, sim_server: SimulatorServer
) -> None:
    for _ in range(3):
        refused = rpc(server.url, "made-up-token-1234", INITIALIZE)
        assert refused.status_code == 401 and "mcp-session-id" not in refused.headers
        assert "does not accept this token (invalid_token)" in refused.headers["www-authenticate"]
        assert "resource_metadata=" in refused.headers["www-authenticate"]
    assert token_reads(sim_server, "made-up-token-1234") == 1  # the verdict is cached
    assert rpc(server.url, TOKEN_A, INITIALIZE).status_code == 200
    assert rpc(server.url, TOKEN_A, INITIALIZE).status_code == 200
    assert token_reads(sim_server, TOKEN_A) == 1
    read = next(r for r in sim_server.simulator.requests if r.authorization == f"Bearer {TOKEN_A}")
    assert read.body == {"action": "retrieve", "id": "00000000-0000-0000-0000-000000000000"}  # unbilled
    assert sim_server.simulator.count("/luma/videos") == 0


def test_a_broke_token_is_told_why(sim_server: SimulatorServer) -> None:
    sim_server.simulator.token_errors = {"broke-token-123456": "used_up"}
    running = passthrough(sim_server)
    try:
        sim_server.simulator.valid_tokens = None  # the token exists; its balance does not
        refused = rpc(running.url, "broke-token-123456", INITIALIZE)
    finally:
        running.stop()
    assert refused.status_code == 401 and "balance is used up" in refused.headers["www-authenticate"]


def test_unknown_tokens_are_checked_at_a_bounded_rate_per_address(
    sim_server: SimulatorServer, private_folders: Path
) -> None:
    running = passthrough(sim_server, LUMA_MCP_TOKEN_CHECKS_PER_ADDRESS_PER_SECOND="1")
    statuses: list[int] = []
    try:
        started = time.monotonic()
        with httpx.Client(timeout=30) as http:
            for n in range(30):
                answer = http.post(f"{running.url}/mcp", json=INITIALIZE, headers=headers(f"junk-{n:04d}-abcdef"))
                statuses.append(answer.status_code)
                if answer.status_code == 429:
                    assert int(answer.headers["retry-after"]) >= 1
                    assert "try again" in answer.json()["error"]["message"]
        elapsed = time.monotonic() - started
        checked = token_reads(sim_server)
        # A bucket of 4 (4 s of 1/s) plus what refilled meanwhile; the rest waited, unchecked.
        assert statuses.count(401) == checked <= 4 + elapsed + 1, (statuses, elapsed)
        assert statuses.count(429) >= 30 - (4 + elapsed + 1) and set(statuses) == {401, 429}
        # Another address has its own budget: a real user there is checked at once.
        with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.3"), timeout=30) as other:
            assert other.post(f"{running.url}/mcp", json=INITIALIZE, headers=headers(TOKEN_A)).status_code == 200
    finally:
        running.stop()
    assert ledger_tenants(private_folders) == []


def test_concurrent_requests_with_one_new_token_share_one_read(sim_server: SimulatorServer) -> None:
    running = passthrough(sim_server)
    try:
        sim_server.simulator.inject("slow", "/luma/tasks", delay=1.0)
        answers: list[int] = []

        async def opener() -> None:
            async with httpx.AsyncClient(timeout=30) as http:
                answer = await http.post(f"{running.url}/mcp", json=INITIALIZE, headers=headers(TOKEN_B))
                answers.append(answer.status_code)

        async def main() -> None:
            with anyio.fail_after(30):
                async with anyio.create_task_group() as tg:
                    for _ in range(8):
                        tg.start_soon(opener)

        anyio.run(main)
    finally:
        running.stop()
    assert answers == [200] * 8
    assert token_reads(sim_server, TOKEN_B) == 1


def test_an_api_that_cannot_answer_gives_503_and_no_verdict(sim_server: SimulatorServer) -> None:
    running = passthrough(sim_server)
    try:
        sim_server.simulator.inject("503", "/luma/tasks")
        unsure = rpc(running.url, TOKEN_A, INITIALIZE)
        assert unsure.status_code == 503 and int(unsure.headers["retry-after"]) >= 1
        assert "cannot be checked right now" in unsure.json()["error"]["message"]
        assert rpc(running.url, TOKEN_A, INITIALIZE).status_code == 200  # asked again, not cached as refused
        # A bare 403 page (a proxy or firewall in front of the API) says nothing about the token either.
        sim_server.simulator.inject("html", "/luma/tasks", status=403)
        assert rpc(running.url, TOKEN_B, INITIALIZE).status_code == 503
        assert rpc(running.url, TOKEN_B, INITIALIZE).status_code == 200
    finally:
        running.stop()
    env = {
        **http_env(sim_server, LUMA_MCP_AUTH="passthrough"),
        "ACEDATACLOUD_API_BASE_URL": f"http://127.0.0.1:{free_port()}",
    }
    nowhere = HttpServer(env).wait_ready()
    try:
        unreachable = rpc(nowhere.url, TOKEN_A, INITIALIZE)
        assert unreachable.status_code == 503 and "retry-after" in unreachable.headers
    finally:
        _, log = nowhere.stop()
    assert TOKEN_A not in log


def test_a_forwarded_address_gets_its_own_budget_from_a_local_proxy(sim_server: SimulatorServer) -> None:
    """uvicorn trusts X-Forwarded-For from 127.0.0.1 (its default), so behind a local proxy
    the per-address budget is per real client."""
    running = passthrough(sim_server, LUMA_MCP_TOKEN_CHECKS_PER_ADDRESS_PER_SECOND="0.1")
    try:
        with httpx.Client(timeout=30) as http:

            def from_(address: str, n: int) -> int:
                sent = {**headers(f"junk-{address}-{n}-abcdef"), "X-Forwarded-For": address}
                return http.post(f"{running.url}/mcp", json=INITIALIZE, headers=sent).status_code

            first = [from_("203.0.113.7", n) for n in range(3)]
            second = from_("203.0.113.8", 0)
    finally:
        running.stop()
    assert first == [401, 429, 429] and second == 401


# --- item 1: sessions belong to their tenant, and are capped ---------------------------------


def test_another_tenant_cannot_drive_or_close_a_session(server: HttpServer) -> None:
    alice = open_session(server.url, TOKEN_A)
    assert rpc(server.url, TOKEN_B, TOOLS_LIST, alice).status_code == 404
    deleted = httpx.delete(f"{server.url}/mcp", headers=headers(TOKEN_B, alice))
    assert deleted.status_code == 404
    listed = rpc(server.url, TOKEN_A, TOOLS_LIST, alice)
    assert listed.status_code == 200 and "generate_video" in listed.text


def test_another_access_key_cannot_drive_a_session(sim_server: SimulatorServer) -> None:
    running = HttpServer(
        http_env(sim_server, ACEDATACLOUD_API_TOKEN=TOKEN_A, LUMA_MCP_API_KEYS=f"{KEY},second-key-0123456")
    ).wait_ready()
    try:
        session = open_session(running.url, KEY)
        assert rpc(running.url, "second-key-0123456", TOOLS_LIST, session).status_code == 404
        assert httpx.delete(f"{running.url}/mcp", headers=headers("second-key-0123456", session)).status_code == 404
        assert rpc(running.url, KEY, TOOLS_LIST, session).status_code == 200
    finally:
        running.stop()


def test_a_token_in_use_stays_trusted_without_new_checks(sim_server: SimulatorServer) -> None:
    """A verdict lasts LUMA_MCP_TOKEN_CACHE_SECONDS from the last use, not from the check:
    a user already in is never checked again (and so never turned away by a flood) mid-work."""
    running = passthrough(sim_server, LUMA_MCP_TOKEN_CACHE_SECONDS="2")
    try:
        session = open_session(running.url, TOKEN_A, used=True)
        until = time.monotonic() + 4.5
        while time.monotonic() < until:
            assert rpc(running.url, TOKEN_A, TOOLS_LIST, session).status_code == 200
            time.sleep(0.5)
        assert token_reads(sim_server, TOKEN_A) == 1
        time.sleep(2.5)  # unused for longer than the cache period: checked again
        assert rpc(running.url, TOKEN_A, TOOLS_LIST, session).status_code == 200
        assert token_reads(sim_server, TOKEN_A) == 2
    finally:
        running.stop()


def test_session_caps_per_tenant_and_overall(sim_server: SimulatorServer) -> None:
    running = passthrough(sim_server, LUMA_MCP_MAX_SESSIONS_PER_TENANT="2", LUMA_MCP_MAX_SESSIONS="3")
    try:
        first = open_session(running.url, TOKEN_A)
        open_session(running.url, TOKEN_A)
        too_many = rpc(running.url, TOKEN_A, INITIALIZE)
        assert too_many.status_code == 429 and int(too_many.headers["retry-after"]) >= 1
        assert "sessions open" in too_many.json()["error"]["message"] and "mcp-session-id" not in too_many.headers
        open_session(running.url, TOKEN_B)  # another tenant is not held back by the first
        full = rpc(running.url, TOKEN_B, INITIALIZE)  # full, and B holds its fair share (3 / 2 tenants)
        assert full.status_code == 429 and int(full.headers["retry-after"]) >= 1
        assert "your share" in full.json()["error"]["message"]
        # Closing a session makes room again; the server counted it.
        assert httpx.delete(f"{running.url}/mcp", headers=headers(TOKEN_A, first)).status_code == 200
        assert rpc(running.url, TOKEN_A, INITIALIZE).status_code == 200
        # The sessionless protocol era opens no session: not counted, not capped.
        sessionless = {
            **TOOLS_LIST,
            "params": {
                "_meta": {
                    "io.modelcontextprotocol/protocolVersion": LATEST_MODERN_VERSION,
                    "io.modelcontextprotocol/clientCapabilities": {},
                }
            },
        }
        modern = httpx.post(
            f"{running.url}/mcp",
            json=sessionless,
            headers={**headers(TOKEN_A), "Mcp-Protocol-Version": LATEST_MODERN_VERSION, "Mcp-Method": "tools/list"},
            timeout=30,
        )
        assert modern.status_code == 200, modern.text
    finally:
        running.stop()


def test_a_session_never_used_expires_sooner(sim_server: SimulatorServer) -> None:
    running = passthrough(sim_server, LUMA_MCP_MAX_SESSIONS_PER_TENANT="1", LUMA_MCP_UNUSED_SESSION_SECONDS="1")
    try:
        bob = open_session(running.url, TOKEN_B, used=True)
        opened_at = time.monotonic()
        open_session(running.url, TOKEN_A)  # abandoned after the handshake
        assert rpc(running.url, TOKEN_A, INITIALIZE).status_code == 429
        freed_after = None
        while time.monotonic() - opened_at < 20:  # the cap frees once the unused session expired
            if rpc(running.url, TOKEN_A, INITIALIZE).status_code == 200:
                freed_after = time.monotonic() - opened_at
                break
            time.sleep(0.2)
        assert freed_after is not None and freed_after >= 0.9
        time.sleep(1.5)  # bob's session, idle longer than 1 s by now, was used: it stays
        assert rpc(running.url, TOKEN_B, TOOLS_LIST, bob).status_code == 200
    finally:
        running.stop()


# --- done-when: a flood of junk bearers leaves real users served ---------------------------

FLOOD = 2000
FLOOD_WORKERS = 20


@pytest.mark.anyio
async def test_a_junk_bearer_flood_leaves_real_users_served(sim_server: SimulatorServer, private_folders: Path) -> None:
    sim = sim_server.simulator
    sim.queue_seconds, sim.processing_seconds = 0, 0.2
    running = passthrough(sim_server)
    statuses: dict[int, int] = {}
    result: Any = None
    try:
        memory_before = rss_mb(running.proc.pid)
        memory_peak = memory_before
        started = time.monotonic()
        with anyio.fail_after(180):

            async def attacker(worker: int) -> None:
                nonlocal memory_peak
                # From ten addresses of another network than the real user's, as strangers would be.
                transport = httpx.AsyncHTTPTransport(local_address=f"127.0.1.{2 + worker % 10}")
                async with httpx.AsyncClient(transport=transport, timeout=30) as http:
                    for n in range(worker, FLOOD, FLOOD_WORKERS):
                        junk = f"junk-{n:05d}-0123456789abcdef"
                        answer = await http.post(f"{running.url}/mcp", json=INITIALIZE, headers=headers(junk))
                        statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
                        if n % 200 == 0:
                            memory_peak = max(memory_peak, rss_mb(running.proc.pid))

            async def real_user() -> None:
                nonlocal result
                await anyio.sleep(0.5)  # the flood is under way
                async with client(running.url, TOKEN_A) as c:
                    result = await c.call_tool("generate_video", {"prompt": "Real user, mid-flood", "wait_seconds": 20})

            async with anyio.create_task_group() as tg:
                for worker in range(FLOOD_WORKERS):
                    tg.start_soon(attacker, worker)
                tg.start_soon(real_user)
        elapsed = time.monotonic() - started
        memory_peak = max(memory_peak, rss_mb(running.proc.pid))
    finally:
        running.stop()
    assert sum(statuses.values()) == FLOOD and set(statuses) <= {401, 429}, statuses
    junk_reads = token_reads(sim_server) - token_reads(sim_server, TOKEN_A)
    # The overall burst (20) at most, then the junk networks' shared 1 check/s.
    assert junk_reads == statuses.get(401, 0) <= 20 + 4 + elapsed + 1, (junk_reads, elapsed)
    assert result is not None and not result.is_error
    assert TaskResult.model_validate(result.structured_content).status == "succeeded"
    assert ledger_tenants(private_folders) == [tenant_of(TOKEN_A)]
    growth = memory_peak - memory_before
    assert growth < 50, f"server memory grew by {growth:.0f} MB"
    print(f"\n{FLOOD} junk initializes in {elapsed:.1f} s: {statuses}; {junk_reads} reads; memory +{growth:.1f} MB")
