from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from luma_mcp.client import LumaClient, RetryPolicy
from luma_mcp.simulator import Simulator, SimulatorServer

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
