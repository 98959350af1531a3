"""One tenant cannot lock the others out: requests in flight and sessions are shared fairly.

Real server processes on loopback against the simulator, raw HTTP. Tenant A holds long
`get_task` waits (its videos take ten minutes) beyond its limits while tenant B works and
a health probe checks in; then a small session table that A fills, and B still gets in.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from mcp_types.version import LATEST_MODERN_VERSION

from luma_mcp.simulator.app import SimulatorServer

from ..helpers.http import INITIALIZE, MCP_HEADERS, TOKEN_A, TOKEN_B, HttpServer, http_env

INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}
TOOLS_LIST = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
LIST_TASKS = {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "list_tasks", "arguments": {}}}
LONG_WAIT = 40  # seconds each of A's get_task calls waits (its video is far from done)
SESSIONLESS_LIST = {
    **TOOLS_LIST,
    "params": {
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": LATEST_MODERN_VERSION,
            "io.modelcontextprotocol/clientCapabilities": {},
        }
    },
}


def passthrough(sim_server: SimulatorServer, **env: str) -> HttpServer:
    sim_server.simulator.valid_tokens = {TOKEN_A, TOKEN_B}
    return HttpServer(http_env(sim_server, LUMA_MCP_AUTH="passthrough", **env)).wait_ready()


def mcp_headers(bearer: str, session: str | None = None) -> dict[str, str]:
    found = {**MCP_HEADERS, "Authorization": f"Bearer {bearer}"}
    if session:
        found["Mcp-Session-Id"] = session
    return found


async def open_session(http: httpx.AsyncClient, bearer: str) -> str:
    opened = await http.post("/mcp", json=INITIALIZE, headers=mcp_headers(bearer))
    assert opened.status_code == 200, opened.text
    session = opened.headers["mcp-session-id"]
    assert (await http.post("/mcp", json=INITIALIZED, headers=mcp_headers(bearer, session))).status_code == 202
    return session


async def sessionless(http: httpx.AsyncClient, bearer: str) -> httpx.Response:
    sent = {**mcp_headers(bearer), "Mcp-Protocol-Version": LATEST_MODERN_VERSION, "Mcp-Method": "tools/list"}
    return await http.post("/mcp", json=SESSIONLESS_LIST, headers=sent)


def get_task(task_id: str, wait: int) -> dict[str, Any]:
    arguments = {"task_id": task_id, "wait_seconds": wait}
    return {"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "get_task", "arguments": arguments}}


async def submitted_task(http: httpx.AsyncClient, bearer: str, session: str) -> str:
    call = {"name": "generate_video", "arguments": {"prompt": "A slow one", "wait_seconds": 0}}
    body = {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": call}
    answer = await http.post("/mcp", json=body, headers=mcp_headers(bearer, session))
    assert answer.status_code == 200, answer.text
    data = [line[6:] for line in answer.text.splitlines() if line.startswith("data: ")]
    message = json.loads(data[-1] if data else answer.text)
    return str(message["result"]["structuredContent"]["task_id"])


class Holder:
    """Tenant A's workers: each keeps one long get_task wait going on its own connection, and
    when refused tries again about half a second later (sooner than Retry-After says), until
    told to stop. More of them than the server holds connections: some are closed for newcomers."""

    def __init__(self, url: str, task_id: str) -> None:
        self.url, self.task_id = url, task_id
        self.held = 0  # waits being answered right now
        self.refusals: list[tuple[int, int, str]] = []  # status, Retry-After, message
        self.other: list[int | str] = []  # anything else (before the fix: the guard's 503, closed connections)
        self.stop = anyio.Event()

    async def worker(self, session: str | None, started: anyio.Event) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=LONG_WAIT + 30) as http:
            first = True
            while not self.stop.is_set():
                try:
                    async with http.stream(
                        "POST", "/mcp", json=get_task(self.task_id, LONG_WAIT), headers=mcp_headers(TOKEN_A, session)
                    ) as answer:
                        if first:
                            started.set()
                            first = False
                        if answer.status_code == 200:
                            self.held += 1
                            try:
                                await self.stop.wait()
                            finally:
                                self.held -= 1
                            return
                        body = (await answer.aread()).decode()
                        if answer.status_code in (429, 503) and "retry-after" in answer.headers:
                            self.refusals.append((answer.status_code, int(answer.headers["retry-after"]), body))
                        else:
                            self.other.append(answer.status_code)
                except httpx.TransportError as exc:
                    if first:
                        started.set()
                        first = False
                    self.other.append(type(exc).__name__)
                await anyio.sleep(random.uniform(0.3, 0.7))


async def settled(a: Holder) -> None:
    """Until A holds what it may and has been refused for the rest (20 s at most)."""
    deadline = time.monotonic() + 20
    while (a.held < 4 or len(a.refusals) < 13) and time.monotonic() < deadline:  # noqa: ASYNC110 (polls counts)
        await anyio.sleep(0.1)


@asynccontextmanager
async def tenant_a_saturating(url: str, sessions: list[str | None], task_id: str) -> AsyncIterator[Holder]:
    holder = Holder(url, task_id)
    async with anyio.create_task_group() as tg:
        for session in sessions:
            started = anyio.Event()
            tg.start_soon(holder.worker, session, started)
            await started.wait()  # one connection at a time: each is counted before the next
        try:
            yield holder
        finally:
            holder.stop.set()


async def b_round(url: str) -> tuple[int | str, ...]:
    """Tenant B, on a fresh connection: a session, a tool call, a health probe; their statuses."""
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as b:
            opened = await b.post("/mcp", json=INITIALIZE, headers=mcp_headers(TOKEN_B))
            session = opened.headers.get("mcp-session-id")
            await b.post("/mcp", json=INITIALIZED, headers=mcp_headers(TOKEN_B, session))
            called = await b.post("/mcp", json=LIST_TASKS, headers=mcp_headers(TOKEN_B, session))
            health = await b.get("/health")
            if session:
                await b.delete("/mcp", headers=mcp_headers(TOKEN_B, session))
            return opened.status_code, called.status_code, health.status_code
    except httpx.TransportError as exc:
        return (type(exc).__name__,)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


@pytest.mark.anyio
async def test_one_tenants_long_calls_leave_room_for_others_and_health(sim_server: SimulatorServer) -> None:
    sim_server.simulator.processing_seconds = 600  # A's video is far from done: every wait lasts
    running = passthrough(
        sim_server,
        LUMA_MCP_MAX_CONNECTIONS="16",
        LUMA_MCP_MAX_REQUESTS_PER_TENANT="4",
        LUMA_MCP_MAX_REQUESTS_PER_SESSION="2",
        LUMA_MCP_READ_TIMEOUT_SECONDS="60",
    )
    latencies: list[float] = []
    statuses: list[tuple[int | str, ...]] = []
    try:
        with anyio.fail_after(120):
            async with AsyncExitStack() as stack:
                http = await stack.enter_async_context(httpx.AsyncClient(base_url=running.url, timeout=30))
                first, second = await open_session(http, TOKEN_A), await open_session(http, TOKEN_A)
                task_id = await submitted_task(http, TOKEN_A, first)
                # Seventeen connections of A, each wanting a 40 s wait: more than all sixteen the server holds.
                wanted: list[str | None] = [first] * 9
                wanted += [second] * 8
                a = await stack.enter_async_context(tenant_a_saturating(running.url, wanted, task_id))
                await settled(a)
                assert a.held == 4, (a.held, a.refusals[-3:], a.other[-3:])  # two per session, four for the tenant
                # A's sessionless requests count toward the same tenant.
                refused = await sessionless(http, TOKEN_A)
                assert refused.status_code == 429 and "4 requests in flight" in refused.text
                # Meanwhile B, on fresh connections, opens a session and calls a tool, and health answers.
                for _ in range(15):
                    started = time.monotonic()
                    statuses.append(await b_round(running.url))
                    latencies.append(time.monotonic() - started)
                assert (await sessionless(http, TOKEN_B)).status_code == 200
                assert a.held == 4, a.held  # still saturated all along
    finally:
        _, log = running.stop()
    assert statuses == [(200, 200, 200)] * 15, (statuses, log[-2000:])
    median, p99 = statistics.median(latencies), percentile(latencies, 99)
    print(
        f"\nB's session, tool call and health probe while A holds its limit: "
        f"median {median * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms"
    )
    assert median < 2.0 and p99 < 5.0, latencies
    # Each refusal is a 429 that says why and when to come back: when A's earliest wait must end.
    assert a.refusals and all(status == 429 for status, _, _ in a.refusals), a.refusals[:3]
    assert all(1 <= retry <= LONG_WAIT + 60 for _, retry, _ in a.refusals), a.refusals[:3]
    assert {("session" in m, "You have 4" in m) for _, _, m in a.refusals} <= {(True, False), (False, True)}
    # Nothing else but, for A's connections beyond the server's sixteen, being closed for a newcomer.
    assert all(isinstance(other, str) for other in a.other), a.other[:5]
    assert "connections are busy" not in log and "Traceback" not in log


@pytest.mark.anyio
async def test_a_full_session_table_is_shared_fairly(sim_server: SimulatorServer) -> None:
    sim_server.simulator.processing_seconds = 600
    idle = 20.0
    running = passthrough(sim_server, LUMA_MCP_MAX_SESSIONS="4", LUMA_MCP_SESSION_IDLE_SECONDS=str(idle))
    last_use: dict[str, float] = {}
    try:
        with anyio.fail_after(90):
            async with AsyncExitStack() as stack:
                http = await stack.enter_async_context(httpx.AsyncClient(base_url=running.url, timeout=30))

                async def use(bearer: str, session: str) -> int:
                    status = (
                        await http.post("/mcp", json=TOOLS_LIST, headers=mcp_headers(bearer, session))
                    ).status_code
                    last_use[session] = time.monotonic()
                    return status

                s1, s2, s3, s4 = [await open_session(http, TOKEN_A) for _ in range(4)]
                task_id = await submitted_task(http, TOKEN_A, s1)
                for session in (s2, s3, s4, s1):  # least recently used first: s2, then s3
                    assert await use(TOKEN_A, session) == 200
                busy = await stack.enter_async_context(httpx.AsyncClient(base_url=running.url, timeout=60))
                # s2, the least recently used, has a request in flight: it is not idle.
                waiting = await stack.enter_async_context(
                    busy.stream("POST", "/mcp", json=get_task(task_id, LONG_WAIT), headers=mcp_headers(TOKEN_A, s2))
                )
                assert waiting.status_code == 200
                # The table is full; B holds none of it, less than its share: it gets in.
                bob = await open_session(http, TOKEN_B)
                last_use[bob] = time.monotonic()
                # A's least recently used idle session was closed to make room, no other.
                gone = await http.post("/mcp", json=TOOLS_LIST, headers=mcp_headers(TOKEN_A, s3))
                assert gone.status_code == 404
                await anyio.sleep(2)  # so that the earliest expiry is not the idle timeout itself
                for session in (s4, s1):
                    assert await use(TOKEN_A, session) == 200
                # A holds 3 of 4, beyond its share of 2: refused, told when a session could expire.
                refused = await http.post("/mcp", json=INITIALIZE, headers=mcp_headers(TOKEN_A))
                earliest = min(last_use[s] for s in (s1, s4, bob)) + idle - time.monotonic()
                assert refused.status_code == 429 and "your share" in refused.text, refused.text
                assert "mcp-session-id" not in refused.headers
                assert abs(int(refused.headers["retry-after"]) - earliest) <= 1.5, (refused.headers, earliest)
                assert await use(TOKEN_B, bob) == 200
                assert await anext(waiting.aiter_lines(), None) is not None  # s2's wait goes on
    finally:
        _, log = running.stop()
    assert "Traceback" not in log, log
