"""Churn against a real HTTP server process: what many users do over hours, squeezed into minutes.

Workers loop until a deadline (and a round count), each round one of: an MCP session that makes
a video and reads it with short waits, then closes; a session whose wait is abandoned midway
(the client goes away mid-call); a 2025-era session opened by hand and ended with DELETE; an OAuth
sign-in (register, authorize, sign-in form, token, a call with the token, revoke) from its own
loopback address, as each person comes from their own; and forged callbacks. The provider (the
simulator) delivers the genuine callbacks itself, to the public URL the server gave it.

`measure_churn` samples the server's RSS and open descriptors while it is idle after a warm-up,
and again idle at the end: growth between the two is what the traffic left behind. Traffic goes to
loopback only. Used by tests/e2e/test_churn.py (briefly) and benchmarks/churn.py (ten minutes).
"""

from __future__ import annotations

import itertools
import os
import random
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from luma_mcp.simulator.app import Simulator, SimulatorServer

from .http import INITIALIZE, MCP_HEADERS, HttpServer, free_port, rss_mb
from .oauth import OAUTH_KEY, REDIRECT_URI, hidden_fields, pkce

KEY = "churn-key-7c1d9e3f5a"
TOKEN = "churn-token-0123456789"  # the simulator takes any token
MAX_ROUNDS = 100_000  # a runaway guard beside the deadline
SETTLE_SECONDS = 30.0  # for the server to go idle: every abandoned wait ends within its wait_seconds
ABANDONED_WAIT_SECONDS = 5


@dataclass
class Sample:
    at: float  # seconds since the start
    rss_mb: float
    fds: int


@dataclass
class ChurnReport:
    warm: Sample
    end: Sample
    seconds: float  # of churn after the warm-up
    actions: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    samples: list[Sample] = field(default_factory=list)  # during the churn (not idle)

    @property
    def rss_growth_mb(self) -> float:
        return self.end.rss_mb - self.warm.rss_mb


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@contextmanager
def churn_server(
    data_dir: Path, queue_seconds: float = 0.2, processing_seconds: float = 1.0
) -> Iterator[tuple[HttpServer, Simulator]]:
    """The simulator and `luma-mcp --transport http` with keys, OAuth and callbacks on, on loopback."""
    with SimulatorServer(Simulator(queue_seconds=queue_seconds, processing_seconds=processing_seconds)) as sim:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("ACEDATACLOUD_", "LUMA_"))}
        env = dict(
            inherited,
            ACEDATACLOUD_API_TOKEN=TOKEN,
            ACEDATACLOUD_API_BASE_URL=sim.url,
            LUMA_MCP_API_KEYS=KEY,
            LUMA_MCP_OAUTH="true",
            LUMA_MCP_OAUTH_KEY=OAUTH_KEY,
            LUMA_MCP_PUBLIC_URL=url,  # callbacks on: the simulator posts them back here
            LUMA_LEDGER_PATH=str(data_dir / "ledger.sqlite3"),
            LUMA_DOWNLOAD_DIR=str(data_dir / "videos"),
            LUMA_POLL_INITIAL_SECONDS="1",
            LUMA_POLL_MAX_SECONDS="2",
            LUMA_LOG_LEVEL="WARNING",
        )
        server = HttpServer(env, port=port).wait_ready()
        try:
            yield server, sim.simulator
        finally:
            server.stop()


class Churn:
    def __init__(self, url: str, rng: random.Random) -> None:
        self.url = url
        self.rng = rng
        self.addresses = itertools.cycle(f"127.0.{a}.{b}" for a in range(1, 4) for b in range(2, 255))
        self.prompts = itertools.count()  # each prompt new: the same one again is the same video, not a new one
        self.actions: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()

    @asynccontextmanager
    async def mcp(self, bearer: str) -> AsyncIterator[Client]:
        # Closed here: the SDK leaves an http_client it was given open, with its connections.
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {bearer}"}, timeout=60) as http,
            Client(streamable_http_client(f"{self.url}/mcp", http_client=http)) as client,
        ):
            yield client

    async def session(self) -> None:
        async with self.mcp(KEY) as client:
            made = await client.call_tool(
                "generate_video", {"prompt": f"churn {next(self.prompts)}: a boat", "wait_seconds": 2}
            )
            assert made.structured_content is not None, made
            task_id = made.structured_content["task_id"]
            await client.call_tool("get_task", {"task_id": task_id, "wait_seconds": 2})
            await client.call_tool("list_tasks", {"limit": 3})

    async def abandoned_wait(self) -> None:
        with anyio.move_on_after(self.rng.uniform(0.3, 1.5)):  # the client goes away mid-wait
            async with self.mcp(KEY) as client:
                arguments = {"prompt": f"churn {next(self.prompts)}: abandoned", "wait_seconds": ABANDONED_WAIT_SECONDS}
                await client.call_tool("generate_video", arguments)

    async def deleted_session(self) -> None:
        headers = {**MCP_HEADERS, "Authorization": f"Bearer {KEY}"}
        async with httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30) as http:
            opened = await http.post("/mcp", json=INITIALIZE)
            assert opened.status_code == 200, opened.text
            session = opened.headers.get("mcp-session-id")
            if session:
                http.headers["mcp-session-id"] = session
            await http.post("/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"})
            listed = await http.post("/mcp", json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
            assert listed.status_code == 200, listed.text
            if session:
                assert (await http.delete("/mcp")).status_code in (200, 204)

    async def sign_in(self) -> None:
        transport = httpx.AsyncHTTPTransport(local_address=next(self.addresses))
        async with httpx.AsyncClient(base_url=self.url, transport=transport, timeout=30) as http:
            registered = await http.post(
                "/register", json={"redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none"}
            )
            assert registered.status_code == 201, registered.text
            client_id = registered.json()["client_id"]
            verifier, challenge = pkce()
            started = await http.get(
                "/authorize",
                params={"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT_URI,
                        "code_challenge": challenge, "code_challenge_method": "S256", "state": "s",
                        "resource": f"{self.url}/mcp"},
            )  # fmt: skip
            assert started.status_code == 302, started.text
            page = await http.get(started.headers["location"])
            answer = await http.post("/signin", data={**hidden_fields(page.text), "secret": KEY, "action": "allow"})
            assert answer.status_code == 303, answer.text
            code = parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]
            token = await http.post(
                "/token",
                data={"grant_type": "authorization_code", "code": code, "client_id": client_id,
                      "code_verifier": verifier, "redirect_uri": REDIRECT_URI},
            )  # fmt: skip
            assert token.status_code == 200, token.text
            access = token.json()["access_token"]
            async with self.mcp(access) as client:
                listed = await client.call_tool("list_tasks", {"limit": 3})
                assert not listed.is_error, listed
            revoked = await http.post("/revoke", data={"token": access, "client_id": client_id, "client_secret": ""})
            assert revoked.status_code == 200, revoked.text

    async def forged_callbacks(self) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as http:
            for _ in range(3):
                path = f"/callbacks/luma/{secrets.token_urlsafe(24)}"
                forged = await http.post(path, json={"task_id": "forged", "data": [{"state": "completed"}]})
                assert 400 <= forged.status_code < 500, forged.status_code

    def pick(self) -> tuple[str, Callable[[], Any]]:
        roll = self.rng.random()
        for share, name, action in (
            (0.35, "session", self.session),
            (0.25, "abandoned_wait", self.abandoned_wait),
            (0.15, "deleted_session", self.deleted_session),
            (0.10, "sign_in", self.sign_in),
        ):
            if roll < share:
                return name, action
            roll -= share
        return "forged_callbacks", self.forged_callbacks

    async def run(self, seconds: float, workers: int) -> None:
        deadline = time.monotonic() + seconds
        rounds = itertools.count()

        async def worker() -> None:
            while time.monotonic() < deadline and next(rounds) < MAX_ROUNDS:
                name, action = self.pick()
                self.actions[name] += 1
                try:
                    with anyio.fail_after(90):
                        await action()
                except Exception as exc:  # counted and reported: a churn run is not stopped by one failure
                    self.failures[f"{name}: {type(exc).__name__}: {str(exc)[:200]}"] += 1

        async with anyio.create_task_group() as group:
            for _ in range(workers):
                group.start_soon(worker)


async def idle_sample(pid: int, started: float, floor_fds: int | None = None) -> Sample:
    """The server's RSS and descriptors once it is idle: its descriptors stop falling (or reach `floor_fds`)."""
    deadline = time.monotonic() + SETTLE_SECONDS
    await anyio.sleep(ABANDONED_WAIT_SECONDS + 1)  # every abandoned wait has run out
    fds = open_fds(pid)
    while time.monotonic() < deadline and (floor_fds is None or fds > floor_fds):
        await anyio.sleep(1)
        now = open_fds(pid)
        if floor_fds is None and now >= fds:
            break
        fds = now
    return Sample(time.monotonic() - started, rss_mb(pid), open_fds(pid))


async def measure_churn(
    url: str, pid: int, *, warmup_seconds: float, churn_seconds: float, workers: int = 6, seed: int = 20
) -> ChurnReport:
    """Warm up, sample idle, churn for `churn_seconds` (sampling as it goes), sample idle again."""
    started = time.monotonic()
    churn = Churn(url, random.Random(seed))
    await churn.run(warmup_seconds, workers)
    warm = await idle_sample(pid, started)
    samples: list[Sample] = []

    async def sample_while_churning() -> None:
        while True:
            await anyio.sleep(max(churn_seconds / 20, 1))
            samples.append(Sample(time.monotonic() - started, rss_mb(pid), open_fds(pid)))

    churned = time.monotonic()
    async with anyio.create_task_group() as group:
        group.start_soon(sample_while_churning)
        await churn.run(churn_seconds, workers)
        group.cancel_scope.cancel()
    seconds = time.monotonic() - churned
    end = await idle_sample(pid, started, floor_fds=warm.fds)
    return ChurnReport(warm, end, seconds, churn.actions, churn.failures, samples)
