"""Fixtures every tier shares: private folders, the simulator on loopback, an API client,
ledgers on both backends, and the MCP server in memory. Plain helpers are in tests/helpers."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from mcp import Client
from pydantic import SecretStr

from luma_mcp.api.client import LumaClient
from luma_mcp.core.ledger import Ledger
from luma_mcp.server import create_server
from luma_mcp.simulator.app import Simulator, SimulatorServer

from .helpers.common import CANARY_TOKEN, FAST_RETRY, FAST_SCHEDULE, make_settings, open_store
from .helpers.oauth_ledger import deployment  # noqa: F401 (a fixture: OAuth server processes on one ledger)
from .helpers.postgres import fresh_database, postgres_server  # noqa: F401 (a fixture, shared by every test file)
from .helpers.tls import tls_files  # noqa: F401 (a fixture, shared by every test file)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def private_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own ledger and download folder; none touches the real ones."""
    monkeypatch.setenv("LUMA_LEDGER_PATH", str(tmp_path / "ledger.sqlite3"))
    monkeypatch.setenv("LUMA_DOWNLOAD_DIR", str(tmp_path / "videos"))
    return tmp_path


@pytest.fixture(scope="session")
def stopping_servers() -> Iterator[list[threading.Thread]]:
    """Simulators still stopping in the background; the session waits for every one at its end."""
    stopping: list[threading.Thread] = []
    yield stopping
    for thread in stopping:
        thread.join(timeout=10)


@pytest.fixture
def sim_server(stopping_servers: list[threading.Thread]) -> Iterator[SimulatorServer]:
    server = SimulatorServer(Simulator(queue_seconds=0.1, processing_seconds=0.3)).start()
    yield server
    # uvicorn takes ~0.2 s to stop (a 0.1 s tick, then a 0.1 s grace sleep): stopping in the
    # background keeps that out of every test that uses the simulator.
    stopper = threading.Thread(target=server.stop, name="simulator-stop", daemon=True)
    stopper.start()
    stopping_servers.append(stopper)


@pytest.fixture
def sim(sim_server: SimulatorServer) -> Simulator:
    return sim_server.simulator


@pytest.fixture
async def luma(sim_server: SimulatorServer) -> AsyncIterator[LumaClient]:
    async with LumaClient(
        token=SecretStr(CANARY_TOKEN), base_url=sim_server.url, timeout=5.0, retry=FAST_RETRY
    ) as client:
        yield client


@pytest.fixture
def postgres_url(postgres_server: str) -> str:  # noqa: F811 (the fixture imported above)
    return fresh_database(postgres_server)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a ledger lives: tests that take it run against both backends."""
    if request.param == "sqlite":
        return str(tmp_path / "ledger.sqlite3")
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def ledger(store: str) -> Iterator[Ledger]:
    opened = open_store(store)
    yield opened
    opened.close()


# --- the MCP server, in memory ----------------------------------------------------------


@pytest.fixture
async def mcp_client(sim_server: SimulatorServer) -> AsyncIterator[Client]:
    server = create_server(make_settings(sim_server.url), schedule=FAST_SCHEDULE)
    async with Client(server) as client:
        yield client
