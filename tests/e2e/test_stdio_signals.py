"""Stopping the stdio server with a signal, as hosts and terminals do: it ends promptly, and a
call that was waiting answers with its task id before the process exits."""

from __future__ import annotations

import queue
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from luma_mcp.simulator.app import Simulator, SimulatorServer

from ..helpers.common import CANARY_TOKEN
from ..helpers.stdio import RawStdioServer, server_env

# Far above what a prompt stop takes (well under a second), far below "never".
STOP_WITHIN_SECONDS = 6.0


@pytest.fixture
def slow_sim() -> Iterator[SimulatorServer]:
    """Videos that take minutes: a waiting call is still waiting when the signal comes."""
    with SimulatorServer(Simulator(queue_seconds=1.0, processing_seconds=300.0)) as server:
        yield server


def start(sim: SimulatorServer) -> RawStdioServer:
    server = RawStdioServer(
        server_env(
            ACEDATACLOUD_API_TOKEN=CANARY_TOKEN,
            ACEDATACLOUD_API_BASE_URL=sim.url,
            LUMA_POLL_INITIAL_SECONDS="1",
            LUMA_POLL_MAX_SECONDS="1",
            LUMA_PROGRESS_INTERVAL_SECONDS="0.5",
        )
    )
    server.initialize()
    return server


def exit_code_within(server: RawStdioServer, seconds: float) -> int | None:
    try:
        return server.proc.wait(timeout=seconds)
    except Exception:
        server.kill()  # the failure is reported by the caller; leave nothing running
        return None


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_the_server_and_the_waiting_call_gets_its_task_id(
    slow_sim: SimulatorServer, private_folders: Path, stop: signal.Signals
) -> None:
    server = start(slow_sim)
    arguments = {"prompt": "a slow boat", "wait_seconds": 45}
    call = server.send("tools/call", {"name": "generate_video", "arguments": arguments, "_meta": {"progressToken": 7}})
    server.wait_for(lambda m: m.get("method") == "notifications/progress")  # submitted: now it waits
    [(task_id,)] = sqlite3.connect(private_folders / "ledger.sqlite3").execute("SELECT task_id FROM tasks").fetchall()
    assert task_id

    signalled = time.monotonic()
    server.proc.send_signal(stop)
    try:
        answer = server.wait_for(lambda m: m.get("id") == call, timeout=STOP_WITHIN_SECONDS)
    except (queue.Empty, EOFError):
        answer = {}
    code = exit_code_within(server, STOP_WITHIN_SECONDS)
    stopped_in = time.monotonic() - signalled
    stderr = server.proc.stderr.read() if server.proc.stderr else ""

    assert code == 0 and stopped_in < STOP_WITHIN_SECONDS, (code, stopped_in, stderr[-2000:])
    result = answer.get("result", {})
    text = result["content"][0]["text"]
    assert not result.get("isError") and task_id in text and "get_task" in text, text
    assert result["structuredContent"]["task_id"] == task_id
    assert f"{stop.name}: answering the 1 open request(s), then stopping" in stderr
    rows = sqlite3.connect(private_folders / "ledger.sqlite3").execute("SELECT task_id, state FROM tasks").fetchall()
    assert rows == [(task_id, "accepted")]
    assert len(slow_sim.simulator.submits()) == 1  # paid once, and not again on the way out


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_idle_server_stops_at_once_on_a_signal(slow_sim: SimulatorServer, stop: signal.Signals) -> None:
    server = start(slow_sim)
    signalled = time.monotonic()
    server.proc.send_signal(stop)
    code = exit_code_within(server, STOP_WITHIN_SECONDS)
    assert code == 0 and time.monotonic() - signalled < STOP_WITHIN_SECONDS
