"""Slow clients: half-sent requests cannot starve the HTTP server of descriptors, answers or log space.

The review that found this ran 1,100 half-sent requests against a server whose open-file
limit was 1024: `/health` and `/mcp` stopped answering and the accept loop logged 72 MB of
"Too many open files" in 30 s. These tests recreate those conditions on loopback.
"""

from __future__ import annotations

import json
import re
import resource
import select
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from luma_mcp.simulator.app import SimulatorServer

from ..helpers.http import INITIALIZE, KEY, MCP_HEADERS, TOKEN_A, HttpServer, handshake, http_env

# The reviewers' `ulimit -n` (soft and hard: raising it at start cannot help), where the
# server cannot hold a thousand; and one with room to hold the default 1000.
SERVER_OPEN_FILES = [1024, 4096]
SLOW_CONNECTIONS = 1050
# Request heads cut off part way, as a slowloris client sends them (and then nothing more).
HALF_SENT = [
    b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n",
    b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: applica",
    b"GET /mc",
]


@pytest.fixture
def open_files_for_the_test() -> Iterator[None]:
    """This process holds every slow connection itself: its soft limit must fit them all."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = SLOW_CONNECTIONS + 200
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"needs `ulimit -n` of at least {needed} for the test process (hard limit is {hard})")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def open_half_sent(port: int, count: int) -> list[socket.socket]:
    slow: list[socket.socket] = []
    deadline = time.monotonic() + 20
    try:
        for i in range(count):
            assert time.monotonic() < deadline, f"opening slow connections took over 20 s ({len(slow)} open)"
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(HALF_SENT[i % len(HALF_SENT)])
            slow.append(sock)
    except BaseException:
        close_all(slow)
        raise
    return slow


def close_all(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        sock.close()


def still_open(sockets: list[socket.socket]) -> int:
    """How many the server has not closed: a closed one reads as end-of-file (or a reset)."""
    poller = select.poll()
    by_fd = {sock.fileno(): sock for sock in sockets}
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    closed = 0
    for fd, _ in poller.poll(0):
        try:
            closed += by_fd[fd].recv(1, socket.MSG_PEEK) == b""
        except OSError:  # reset by the server
            closed += 1
    return len(sockets) - closed


def timed_get(url: str) -> tuple[float, int | str]:
    started = time.monotonic()
    try:
        status: int | str = httpx.get(url, timeout=3).status_code
    except httpx.TransportError as exc:
        status = type(exc).__name__
    return time.monotonic() - started, status


@pytest.mark.parametrize("server_open_files", SERVER_OPEN_FILES)
def test_health_answers_within_a_second_while_a_thousand_slow_connections_are_open(
    sim_server: SimulatorServer, open_files_for_the_test: None, server_open_files: int
) -> None:
    env = http_env(
        sim_server,
        ACEDATACLOUD_API_TOKEN=TOKEN_A,
        LUMA_MCP_API_KEYS=KEY,
        LUMA_MCP_READ_TIMEOUT_SECONDS="60",  # so that only the connection limit closes slow clients here
    )
    server = HttpServer(env, open_files_limit=server_open_files).wait_ready()
    slow: list[socket.socket] = []
    try:
        slow = open_half_sent(server.port, SLOW_CONNECTIONS)
        time.sleep(1)  # the server has accepted them all by now (or, before the fix, run out of descriptors)
        probes = [timed_get(f"{server.url}/health") for _ in range(5)]
        started = time.monotonic()
        try:
            mcp_status: int | str = httpx.post(
                f"{server.url}/mcp",
                json=INITIALIZE,
                headers={**MCP_HEADERS, "Authorization": f"Bearer {KEY}"},
                timeout=5,
            ).status_code
        except httpx.TransportError as exc:
            mcp_status = type(exc).__name__
        mcp_seconds = time.monotonic() - started
        open_now = still_open(slow)
    finally:
        close_all(slow)
        code, stderr = server.stop()
    assert all(status == 200 and seconds < 1.0 for seconds, status in probes), (probes, stderr[-3000:])
    assert mcp_status == 200 and mcp_seconds < 2.0, (mcp_status, mcp_seconds)
    # The server kept as many slow clients as its descriptors allow and closed the rest to make room.
    limit = re.search(r"at most (\d+) open connections", stderr)
    assert limit is not None, stderr[-3000:]
    max_connections = int(limit.group(1))
    assert max_connections - 20 <= open_now <= max_connections, open_now
    # With 4096 files the server holds the default thousand slow clients while it answers.
    assert max_connections == 1000 if server_open_files == 4096 else max_connections < server_open_files
    assert "out of system resource" not in stderr and "Too many open files" not in stderr
    assert len(stderr) < 20_000, f"{len(stderr)} bytes of log"  # a few lines, not a line per client
    assert "Traceback" not in stderr and code in (0, -15)


def closed_by_server(sock: socket.socket) -> bool:
    if not select.select([sock], [], [], 0)[0]:
        return False
    try:
        return sock.recv(4096) == b""  # (a response's bytes are read and dropped on the way)
    except OSError:
        return True


class Connections:
    """Raw client sockets to one server, all closed at the end."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.opened: list[socket.socket] = []

    def open(self, first_bytes: bytes) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        self.opened.append(sock)
        sock.sendall(first_bytes)
        return sock

    def close(self) -> None:
        close_all(self.opened)


SECOND_KEY = "second-key-0123456"
HEALTH = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
# An authenticated MCP call whose body never finishes: the app is already waiting to read it.
SLOW_BODY = (
    b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + KEY.encode() + b"\r\n"
    b"Accept: application/json, text/event-stream\r\nContent-Type: application/json\r\n"
    b'Content-Length: 100000\r\n\r\n{"jsonrpc": "2.0", "method": "initialize", "x": "'
)


def test_requests_must_arrive_in_time_and_idle_connections_close(sim_server: SimulatorServer) -> None:
    env = http_env(
        sim_server,
        ACEDATACLOUD_API_TOKEN=TOKEN_A,
        LUMA_MCP_API_KEYS=KEY,
        LUMA_MCP_READ_TIMEOUT_SECONDS="2",
        LUMA_MCP_KEEP_ALIVE_SECONDS="1",
    )
    server = HttpServer(env).wait_ready()
    clients = Connections(server.port)
    closed_after: dict[str, float] = {}
    hesitant_answered = False
    try:
        trickling = clients.open(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")  # a head that never ends
        # Answered, then it starts a head that never ends: each byte it trickles stops
        # uvicorn's keep-alive timer, so only the read timeout can end it.
        reused = clients.open(HEALTH)
        assert reused.recv(4096).startswith(b"HTTP/1.1 200")
        reused.sendall(b"GET /health HTTP/1.1\r\nX-Slow: ")
        slow_body = clients.open(SLOW_BODY)  # a whole head, then a body that never ends
        idle = clients.open(HEALTH)  # answered, then silent
        assert idle.recv(4096).startswith(b"HTTP/1.1 200")
        hesitant = clients.open(b"GET /health HTTP/1.1\r\n")  # slow, but within the timeout
        watched = {"trickling": trickling, "reused": reused, "slow_body": slow_body, "idle": idle}
        started = time.monotonic()
        while len(closed_after) < len(watched) and time.monotonic() - started < 6:
            time.sleep(0.1)
            if not hesitant_answered and time.monotonic() - started > 1:
                hesitant.sendall(b"Host: 127.0.0.1\r\n\r\n")
                hesitant_answered = hesitant.recv(4096).startswith(b"HTTP/1.1 200")
            for name, sock in watched.items():
                if name in closed_after:
                    continue
                if closed_by_server(sock):
                    closed_after[name] = time.monotonic() - started
                elif name != "idle":
                    try:
                        sock.sendall(b"a")  # one more byte of a request that never ends
                    except OSError:
                        closed_after[name] = time.monotonic() - started
    finally:
        clients.close()
        _, stderr = server.stop()
    assert hesitant_answered
    assert set(closed_after) == set(watched), (closed_after, stderr[-2000:])
    assert closed_after["idle"] < 1.8, closed_after  # LUMA_MCP_KEEP_ALIVE_SECONDS (uvicorn's default is 5)
    for name in ("trickling", "reused", "slow_body"):  # LUMA_MCP_READ_TIMEOUT_SECONDS
        assert 1.5 < closed_after[name] < 4, closed_after


def wait_closed(sock: socket.socket, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if closed_by_server(sock):
            return True
        time.sleep(0.05)
    return False


def test_at_the_connection_limit_a_slow_client_makes_room_and_busy_requests_stay(sim_server: SimulatorServer) -> None:
    sim_server.simulator.processing_seconds = 60
    env = http_env(
        sim_server,
        ACEDATACLOUD_API_TOKEN=TOKEN_A,
        LUMA_MCP_API_KEYS=f"{KEY},{SECOND_KEY}",
        LUMA_MCP_MAX_CONNECTIONS="16",
        LUMA_MCP_MAX_REQUESTS_PER_TENANT="8",  # two tenants' worth is more than all may hold: 14 of 16
        LUMA_MCP_READ_TIMEOUT_SECONDS="60",
    )
    server = HttpServer(env).wait_ready()
    clients = Connections(server.port)
    answering: list[tuple[httpx.Client, Any]] = []
    try:
        slow_head = clients.open(HALF_SENT[0])
        # Authenticated calls whose bodies never finish: they have not made a request yet either.
        slow_bodies = [clients.open(SLOW_BODY) for _ in range(15)]
        time.sleep(0.5)  # all sixteen are counted
        for i in range(16):  # each newcomer is served (and stays): room is made by the longest waiting
            newcomer = clients.open(HEALTH)
            assert newcomer.recv(4096).startswith(b"HTTP/1.1 200"), i
        assert wait_closed(slow_head, 3) and all(wait_closed(sock, 3) for sock in slow_bodies)
        # Sixteen calls of two tenants that would be answered for a long time (videos waited on):
        # fourteen are, and the server-wide cap on requests in flight answers the rest at once.
        statuses, responses = [], []
        sessions = [
            httpx.Client(base_url=server.url, headers={**MCP_HEADERS, "Authorization": f"Bearer {key}"})
            for key in [KEY] * 8 + [SECOND_KEY] * 8
        ]
        for http in sessions:
            handshake(http)
        for http in sessions:
            call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call"}
            arguments = {"prompt": "busy", "wait_seconds": 30}
            # With a progress token, so that the answer streams progress while it waits.
            call["params"] = {"name": "generate_video", "arguments": arguments, "_meta": {"progressToken": 1}}
            stream = http.stream("POST", "/mcp", json=call)
            response = stream.__enter__()  # answered 200: it streams until the video is ready
            statuses.append(response.status_code)
            responses.append(response)
            answering.append((http, stream))
        assert statuses.count(200) == 14 and statuses.count(503) == 2, statuses
        time.sleep(0.5)
        # Those fourteen are never closed for a newcomer; the two refused connections make room for it.
        for i in range(4):
            newcomer = clients.open(HEALTH)
            assert newcomer.recv(4096).startswith(b"HTTP/1.1 200"), i
        for response in responses:
            if response.status_code == 200:  # still streaming (progress every half second), not closed
                assert next(response.iter_lines(), None) is not None
    finally:
        for http, stream in answering:
            stream.__exit__(None, None, None)
            http.close()
        clients.close()
        _, stderr = server.stop()
    assert "requests in flight at /mcp" in stderr


def busy_token_check(port: int, n: int) -> socket.socket:
    """An initialize with a token never seen before, from one of four loopback addresses: the
    server is asking the (slow) API about it, so the connection is busy with a request."""
    body = json.dumps(INITIALIZE).encode()
    head = (
        f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer junk-token-{n:04d}-abcdef\r\n"
        f"Accept: application/json, text/event-stream\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(f"127.0.0.{2 + n % 4}", 0))
    sock.sendall(head + body)
    return sock


def test_health_answers_when_every_connection_is_busy(sim_server: SimulatorServer) -> None:
    # Every token check takes the longest the server waits for one (10 s), then it answers 503.
    sim_server.simulator.inject("slow", "/luma/tasks", delay=30.0, times=100)
    env = http_env(sim_server, LUMA_MCP_AUTH="passthrough", LUMA_MCP_MAX_CONNECTIONS="16")
    server = HttpServer(env).wait_ready()
    busy: list[socket.socket] = []
    spare = Connections(server.port)
    try:
        busy = [busy_token_check(server.port, n) for n in range(16)]
        deadline = time.monotonic() + 5
        while sim_server.simulator.count("/luma/tasks") < 16 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sim_server.simulator.count("/luma/tasks") == 16  # all sixteen are being checked
        for i in range(3):  # every connection is busy: a health probe is still answered
            probe = spare.open(HEALTH)
            assert probe.recv(4096).startswith(b"HTTP/1.1 200"), i
            assert wait_closed(probe, 3)  # one request, then closed
        other = spare.open(b"GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = other.recv(4096)
        assert answer.startswith(b"HTTP/1.1 503") and b"retry-after: 5" in answer.lower(), answer
        assert not any(closed_by_server(sock) for sock in busy)  # nothing busy was closed for them
    finally:
        close_all(busy)
        spare.close()
        _, stderr = server.stop()
    assert "new ones are answered only for /health" in stderr, stderr[-3000:]
