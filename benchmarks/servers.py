"""Starting the servers `make bench` measures: luma-mcp and the bare server as stdio
subprocesses, and `luma-mcp --transport http` as a process on a loopback port, with an MCP
session over it; and reading a process's CPU time and resident memory from /proc.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import anyio
import httpx
import httpx2
from anyio.abc import Process
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from harness import HERE, TOKEN

BARE_SERVER = HERE / "bare_server.py"

Side = Literal["ours", "bare"]

KEY = "bench-key"
HEALTH_TIMEOUT = 30.0  # seconds for the server to answer /health
STOP_TIMEOUT = 30.0  # its own grace period is 10 s


# --- over stdio -----------------------------------------------------------------------


def server_env(sim_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    # Drop any LUMA_* the caller's shell has set: the figures are for the defaults. And let the
    # servers write bytecode caches, as an installed package has them: with PYTHONDONTWRITEBYTECODE
    # (set on some machines) every start would compile our modules afresh, but not the SDK's,
    # which pip compiled when it installed them.
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LUMA_", "ACEDATACLOUD_")) and k != "PYTHONDONTWRITEBYTECODE"
    }
    return {
        **inherited,
        "ACEDATACLOUD_API_TOKEN": TOKEN,
        "ACEDATACLOUD_API_BASE_URL": sim_url,
        # A ledger of the benchmark's own: the default one is the user's, where simulated tasks
        # do not belong and whose earlier tasks would answer a repeated prompt (paying once).
        "LUMA_LEDGER_PATH": str(data_dir / "ledger.sqlite3"),
        "LUMA_DOWNLOAD_DIR": str(data_dir / "downloads"),
        **extra,
    }


def server_params(side: Side, sim_url: str, data_dir: Path) -> StdioServerParameters:
    args = ["-m", "luma_mcp"] if side == "ours" else [str(BARE_SERVER)]
    env = server_env(sim_url, data_dir, LUMA_LOG_LEVEL="WARNING")
    # cwd: a directory with no `.env`, so the server's settings are the environment's alone.
    return StdioServerParameters(command=sys.executable, args=args, env=env, cwd=HERE)


# --- over HTTP -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process: it says whether the server or the clients
    (in this process, on the same cores) are the bottleneck."""
    stat = await anyio.Path(f"/proc/{pid}/stat").read_text()
    # Fields after the command name, which is in parentheses and may itself hold spaces.
    fields = stat.rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


async def rss_mb(pid: int) -> float:
    # VmRSS, not a psutil figure: nothing to install, and it is what the kernel charges the process.
    for line in (await anyio.Path(f"/proc/{pid}/status").read_text()).splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def http_env(sim_url: str, token: str, data_dir: Path) -> dict[str, str]:
    # Drop any LUMA_* the caller's shell has set: the figures are for the defaults.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("LUMA_", "ACEDATACLOUD_"))}
    return {
        **inherited,
        "ACEDATACLOUD_API_TOKEN": token,
        "ACEDATACLOUD_API_BASE_URL": sim_url,
        "LUMA_MCP_API_KEYS": KEY,
        # One key is one tenant: 200 waits and every session's event stream are beyond a tenth of the connections.
        "LUMA_MCP_MAX_REQUESTS_PER_TENANT": "400",
        "LUMA_LOG_LEVEL": "WARNING",
        "LUMA_LEDGER_PATH": str(data_dir / "ledger.sqlite3"),
        "LUMA_DOWNLOAD_DIR": str(data_dir / "downloads"),
    }


@dataclass
class ServerProcess:
    process: Process
    url: str
    log: IO[str]
    final_stderr: str = ""  # what it logged, kept once it has exited (the log file is gone then)

    def stderr(self) -> str:
        self.log.seek(0)
        return self.log.read()


@asynccontextmanager
async def http_server(env: dict[str, str], cwd: Path, port: int | None = None) -> AsyncIterator[ServerProcess]:
    """`luma-mcp --transport http` on a free loopback port (or `port`), healthy; SIGTERM when done."""
    port = port or free_port()
    command = [sys.executable, "-m", "luma_mcp", "--transport", "http", "--host", "127.0.0.1", "--port", str(port)]
    # stderr to a file, never a pipe: a pipe nobody reads fills up and stalls the server.
    with tempfile.TemporaryFile(mode="w+", prefix="luma-bench-http-") as log:
        process = await anyio.open_process(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, env=env, cwd=cwd
        )
        server = ServerProcess(process, f"http://127.0.0.1:{port}", log)
        try:
            await wait_healthy(server)
            yield server
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
            with anyio.fail_after(STOP_TIMEOUT):
                await process.wait()
            server.final_stderr = server.stderr()


async def wait_healthy(server: ServerProcess) -> None:
    deadline = time.monotonic() + HEALTH_TIMEOUT
    async with httpx.AsyncClient(timeout=1) as http:
        while time.monotonic() < deadline:
            if server.process.returncode is not None:
                raise RuntimeError(f"the HTTP server exited: {server.stderr()[-2000:]}")
            try:
                if (await http.get(f"{server.url}/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass  # not listening yet
            await anyio.sleep(0.1)
    raise RuntimeError("the HTTP server did not become healthy")


@asynccontextmanager
async def mcp_client(url: str) -> AsyncIterator[Client]:
    """One MCP session over streamable HTTP, with the access key."""
    # Closed here: the SDK leaves an http_client it was given open, and 50 sessions a level
    # would otherwise leave their connection pools behind.
    headers = {"Authorization": f"Bearer {KEY}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=60) as http,
        Client(streamable_http_client(f"{url}/mcp", http_client=http)) as client,
    ):
        yield client
