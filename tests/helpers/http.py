"""The HTTP server as a real process on a free loopback port, and what talks to it: the keys
and tokens the tests use, an MCP client over streamable HTTP, the raw initialize request."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from luma_mcp.simulator.app import SimulatorServer

from .stdio import server_env

KEY = "team-key-5f1e0c2a9b7d"
TOKEN_A = "acedata-token-alice-111111"
TOKEN_B = "acedata-token-bob-222222"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


OPEN_FILES_LAUNCHER = (
    "import resource, sys; resource.setrlimit(resource.RLIMIT_NOFILE, ({limit}, {limit})); "
    "from luma_mcp.cli import main; main(sys.argv[1:])"
)


class HttpServer:
    """`luma-mcp --transport http` as a real process on a free loopback port."""

    def __init__(
        self,
        env: dict[str, str],
        *args: str,
        host: str = "127.0.0.1",
        open_files_limit: int | None = None,
        port: int | None = None,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # Logs go to a file, not a pipe: a pipe nobody reads fills up and stalls the server.
        self.log = tempfile.NamedTemporaryFile(mode="w+", prefix="luma-http-", suffix=".log")  # noqa: SIM115
        launch = ["-m", "luma_mcp"]
        if open_files_limit is not None:  # `ulimit -n N`, set by the child itself (preexec_fn is unsafe with threads)
            launch = ["-c", OPEN_FILES_LAUNCHER.format(limit=open_files_limit)]
        self.proc = subprocess.Popen(
            [sys.executable, *launch, "--transport", "http", "--host", host, "--port", str(self.port), *args],
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            text=True,
            env=env,
        )

    @property
    def stderr(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def wait_ready(self) -> HttpServer:
        # Generous: a loaded two-core machine has taken a minute to start a server.
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.stderr}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.1)
        # Called before the test's own try/finally: stop it here, or it outlives the test.
        self.proc.kill()
        self.proc.wait(timeout=30)
        raise RuntimeError(f"server did not become healthy: {self.stderr}")

    def stop(self) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        stderr = self.stderr
        self.log.close()
        return self.proc.returncode, stderr


def http_env(sim_server: SimulatorServer, **extra: str) -> dict[str, str]:
    return server_env(
        ACEDATACLOUD_API_BASE_URL=sim_server.url,
        LUMA_POLL_INITIAL_SECONDS="1",
        LUMA_POLL_MAX_SECONDS="1",
        LUMA_PROGRESS_INTERVAL_SECONDS="0.5",
        **extra,
    )


def client(url: str, bearer: str | None = None, **headers: str) -> Client:
    if bearer:
        headers["Authorization"] = f"Bearer {bearer}"
    return Client(streamable_http_client(f"{url}/mcp", http_client=httpx2.AsyncClient(headers=headers, timeout=60)))


INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def handshake(http: httpx.Client) -> None:
    """The MCP handshake over plain HTTP; the session id (if any) goes on every later request."""
    session = http.post("/mcp", json=INITIALIZE).headers.get("mcp-session-id")
    if session:
        http.headers["mcp-session-id"] = session
    http.post("/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"})


class Listener:
    """A bare TCP port that never answers: after a call, any connection made to it is waiting
    in its backlog, so "nothing connected" is checked without serving anything."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(8)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]

    def connections(self) -> int:
        count = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return count
            conn.close()
            count += 1

    def close(self) -> None:
        self.sock.close()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")
