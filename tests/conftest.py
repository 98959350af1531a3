from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.types import CallToolResult, TextContent
from pydantic import SecretStr

from luma_mcp.client import LumaClient, RetryPolicy
from luma_mcp.config import Settings
from luma_mcp.ledger import Ledger, PostgresLedger, SQLiteLedger
from luma_mcp.server import create_server
from luma_mcp.simulator import Simulator, SimulatorServer
from luma_mcp.waiting import PollSchedule

from .postgres import fresh_database, postgres_server  # noqa: F401 (a fixture, shared by every test file)

EXAMPLES = Path(__file__).parent / "fixtures" / "luma-api-examples"
# A canary: tests search every message, log record and result for it.
CANARY_TOKEN = "sk-canary-7f3c9b1e5d2a4c68"
# Fast but real: tests wait tenths of seconds, never minutes.
FAST_RETRY = RetryPolicy(attempts=3, backoff=0.02, total_seconds=5.0)


def example(name: str) -> Any:
    return json.loads((EXAMPLES / name).read_text())


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def private_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own ledger and download folder; none touches the real ones."""
    monkeypatch.setenv("LUMA_LEDGER_PATH", str(tmp_path / "ledger.sqlite3"))
    monkeypatch.setenv("LUMA_DOWNLOAD_DIR", str(tmp_path / "videos"))
    return tmp_path


@pytest.fixture
def sim_server() -> Iterator[SimulatorServer]:
    with SimulatorServer(Simulator(queue_seconds=0.1, processing_seconds=0.3)) as server:
        yield server


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


def open_store(store: str, **options: Any) -> Ledger:
    if store.startswith("postgresql://"):
        return PostgresLedger(store, **options)
    return SQLiteLedger(Path(store), **options)


@pytest.fixture
def ledger(store: str) -> Iterator[Ledger]:
    opened = open_store(store)
    yield opened
    opened.close()


# --- the MCP server, in memory ----------------------------------------------------------

# Polls and heartbeats in tenths of seconds: the same loop, on a fast clock.
FAST_SCHEDULE = PollSchedule(first=0.1, maximum=0.2, heartbeat=0.15, min_interval=0.05)


def make_settings(url: str, token: str | None = CANARY_TOKEN, **env: Any) -> Settings:
    values: dict[str, Any] = {
        "ACEDATACLOUD_API_BASE_URL": url,
        "ACEDATACLOUD_API_TOKEN": token,
        "LUMA_MAX_RETRIES": 2,
        "LUMA_RETRY_BACKOFF_SECONDS": 0.02,
    }
    return Settings(_env_file=None, **values, **env)  # type: ignore[call-arg]


@pytest.fixture
async def mcp_client(sim_server: SimulatorServer) -> AsyncIterator[Client]:
    server = create_server(make_settings(sim_server.url), schedule=FAST_SCHEDULE)
    async with Client(server) as client:
        yield client


def text_of(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))
