"""Serving many users: real uvicorn processes on loopback, driven over streamable HTTP."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from luma_mcp.core.results import TaskList, TaskResult
from luma_mcp.simulator.app import SimulatorServer

from ..helpers.common import text_of
from ..helpers.downloads import files_in
from ..helpers.http import (
    INITIALIZE,
    KEY,
    MCP_HEADERS,
    TOKEN_A,
    TOKEN_B,
    HttpServer,
    client,
    free_port,
    handshake,
    http_env,
)
from ..helpers.oauth import OAUTH_KEY, oauth_env


@pytest.fixture
def keyed_server(sim_server: SimulatorServer) -> Iterator[HttpServer]:
    server = HttpServer(http_env(sim_server, ACEDATACLOUD_API_TOKEN=TOKEN_A, LUMA_MCP_API_KEYS=f"other-key,{KEY}"))
    yield server.wait_ready()
    server.stop()


def post(url: str, **headers: str) -> httpx.Response:
    return httpx.post(f"{url}/mcp", json=INITIALIZE, headers={**MCP_HEADERS, **headers}, timeout=10)


def test_keys_are_required_and_checked(keyed_server: HttpServer) -> None:
    health = httpx.get(f"{keyed_server.url}/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    for headers in ({}, {"Authorization": "Bearer wrong-key"}, {"Authorization": f"Basic {KEY}"}):
        refused = post(keyed_server.url, **headers)
        assert refused.status_code == 401
        challenge = refused.headers["www-authenticate"]
        assert challenge.startswith("Bearer") and "resource_metadata=" in challenge
    assert post(keyed_server.url, Authorization=f"Bearer {KEY}").status_code == 200


def test_bad_host_and_bad_origin_are_refused(keyed_server: HttpServer) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    assert post(keyed_server.url, Host="attacker.example", **auth).status_code == 421
    assert post(keyed_server.url, Origin="http://attacker.example", **auth).status_code == 403
    assert post(keyed_server.url, Origin=f"http://localhost:{keyed_server.port}", **auth).status_code == 200


@pytest.mark.anyio
async def test_tools_over_http_with_progress(keyed_server: HttpServer, sim: Any) -> None:
    sim.processing_seconds = 2
    messages: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        messages.append(message or "")

    async with client(keyed_server.url, KEY) as c:
        assert len((await c.list_tools()).tools) == 5
        wrong = await c.call_tool("generate_video", {"prompt": "x", "aspect_ratio": "2:1"})
        assert wrong.is_error and text_of(wrong) == (
            'generate_video\'s aspect_ratio must be one of "16:9", "9:16", "1:1", "4:3", "3:4", "21:9" or "9:21", '
            'not "2:1".'
        )
        result = await c.call_tool(
            "generate_video", {"prompt": "Fireflies over a meadow", "wait_seconds": 20}, progress_callback=on_progress
        )
        task = TaskResult.model_validate(result.structured_content)
        assert task.status == "succeeded" and task.video_url is not None and task.video_url in text_of(result)
    assert messages[0] == f"Task {task.task_id}: submitted" and messages[-1] == f"Task {task.task_id}: done"
    assert any("generating for" in m for m in messages)


def test_refuses_a_public_address_without_auth(sim_server: SimulatorServer) -> None:
    server = HttpServer(http_env(sim_server, ACEDATACLOUD_API_TOKEN=TOKEN_A), host="0.0.0.0")  # noqa: S104
    server.proc.wait(timeout=30)
    code, stderr = server.stop()
    assert code == 2
    assert "Refusing to listen on 0.0.0.0 without authentication" in stderr and "LUMA_MCP_API_KEYS" in stderr


@pytest.mark.anyio
async def test_passthrough_tenants_are_isolated(sim_server: SimulatorServer, private_folders: Path) -> None:
    sim_server.simulator.valid_tokens = {TOKEN_A, TOKEN_B}
    server = HttpServer(http_env(sim_server, LUMA_MCP_AUTH="passthrough", LUMA_HTTP_DOWNLOADS="true")).wait_ready()
    try:
        async with client(server.url, TOKEN_A) as alice:
            made = await alice.call_tool("generate_video", {"prompt": "A shared idea", "wait_seconds": 20})
            task = TaskResult.model_validate(made.structured_content)
            assert task.status == "succeeded"
            saved = await alice.call_tool("download_video", {"task_id": task.task_id})
            assert not saved.is_error
        async with client(server.url, TOKEN_B) as bob:
            seen = await bob.call_tool("get_task", {"task_id": task.task_id})
            assert seen.is_error and "No task with id" in text_of(seen)
            peek = await bob.call_tool("view_task_status", {"task_ids": [task.task_id]})  # the player view's tool
            assert peek.structured_content == {"tasks": [], "not_found": [task.task_id]}
            assert (await bob.call_tool("list_tasks", {})).structured_content == {"tasks": []}
            stolen = await bob.call_tool("download_video", {"task_id": task.task_id})
            assert stolen.is_error and "No task with id" in text_of(stolen)
            own = await bob.call_tool("generate_video", {"prompt": "A shared idea", "wait_seconds": 0})
            assert TaskResult.model_validate(own.structured_content).task_id != task.task_id  # not reused across
        # A made-up token is turned away at the door (the API refused it), before any session.
        denied = post(server.url, Authorization="Bearer not-a-real-token")
        assert denied.status_code == 401 and "does not accept this token" in denied.headers["www-authenticate"]
    finally:
        server.stop()
    assert sim_server.simulator.count("/luma/videos") == 2
    submits = [r.authorization for r in sim_server.simulator.requests if r.path == "/luma/videos"]
    assert submits == [f"Bearer {TOKEN_A}", f"Bearer {TOKEN_B}"]
    ledger = (private_folders / "ledger.sqlite3").read_bytes()
    assert TOKEN_A.encode() not in ledger and TOKEN_B.encode() not in ledger
    with sqlite3.connect(private_folders / "ledger.sqlite3") as db:
        tenants = {row[0] for row in db.execute("SELECT tenant FROM tasks WHERE state = 'accepted'")}
        assert db.execute("SELECT count(*) FROM tasks").fetchone()[0] == 2  # a made-up token leaves no row
    assert len(tenants) == 2 and all(len(t) == 64 for t in tenants)  # sha256 hex, one per caller
    saved_files = [p for p in (private_folders / "videos").rglob("*.mp4")]
    assert len(saved_files) == 1 and saved_files[0].parent.name in {t[:16] for t in tenants}


def test_sigterm_during_a_wait_answers_the_call_and_leaves_the_ledger_whole(
    sim_server: SimulatorServer, private_folders: Path
) -> None:
    sim_server.simulator.processing_seconds = 60
    server = HttpServer(http_env(sim_server, ACEDATACLOUD_API_TOKEN=TOKEN_A, LUMA_MCP_API_KEYS=KEY)).wait_ready()
    headers = {**MCP_HEADERS, "Authorization": f"Bearer {KEY}"}
    call = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {
            "name": "generate_video",
            "arguments": {"prompt": "Long exposure city", "wait_seconds": 45},
            "_meta": {"progressToken": "p"},
        },
    }
    answer: dict[str, Any] | None = None
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as http:
        handshake(http)
        started = 0.0
        with http.stream("POST", "/mcp", json=call) as stream:
            for line in stream.iter_lines():
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                if message.get("method") == "notifications/progress" and not started:
                    started = time.monotonic()
                    server.proc.send_signal(signal.SIGTERM)  # mid-wait
                if message.get("id") == 2:
                    answer = message
                    break
    code, stderr = server.stop()
    stopped_in = time.monotonic() - started
    # uvicorn shuts down gracefully, then re-raises the signal so the exit status tells of it.
    assert code in (0, -signal.SIGTERM) and stopped_in < 5, stderr
    assert "Finished server process" in stderr and "Traceback" not in stderr
    # The waiting call was answered, not cut off: its task id and the next call to make.
    assert answer is not None and not answer["result"].get("isError")
    task = TaskResult.model_validate(answer["result"]["structuredContent"])
    assert task.status in ("pending", "processing") and task.next_call and task.task_id in task.next_call
    with sqlite3.connect(private_folders / "ledger.sqlite3") as db:
        rows = db.execute("SELECT task_id, state FROM tasks").fetchall()
    assert rows == [(task.task_id, "accepted")]


def test_sigterm_during_a_submit_still_answers_with_its_task_id(
    sim_server: SimulatorServer, private_folders: Path
) -> None:
    """The API takes 2 s to accept the submit and the stop signal comes meanwhile: the call
    must still answer with the task id the API gave. (Before, the event stream was closed
    by sse-starlette within half a second of the signal, and the paid task id with it.)"""
    sim = sim_server.simulator
    sim.processing_seconds = 60
    sim.inject("slow", "/luma/videos", delay=2.0)
    server = HttpServer(http_env(sim_server, ACEDATACLOUD_API_TOKEN=TOKEN_A, LUMA_MCP_API_KEYS=KEY)).wait_ready()
    headers = {**MCP_HEADERS, "Authorization": f"Bearer {KEY}"}
    call = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": "generate_video", "arguments": {"prompt": "Slow to accept", "wait_seconds": 45}},
    }
    answer: dict[str, Any] | None = None
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as http:
        handshake(http)
        with http.stream("POST", "/mcp", json=call) as stream:
            deadline = time.monotonic() + 10
            while sim.count("/luma/videos") == 0 and time.monotonic() < deadline:
                time.sleep(0.02)
            server.proc.send_signal(signal.SIGTERM)  # the submit is at the API, its answer 2 s away
            for line in stream.iter_lines():
                if line.startswith("data:") and (message := json.loads(line[5:])).get("id") == 2:
                    answer = message
                    break
    code, stderr = server.stop()
    assert code in (0, -signal.SIGTERM) and "Traceback" not in stderr, stderr
    assert answer is not None and not answer["result"].get("isError"), answer
    task = TaskResult.model_validate(answer["result"]["structuredContent"])
    assert task.task_id in sim.tasks and task.next_call
    with sqlite3.connect(private_folders / "ledger.sqlite3") as db:
        assert db.execute("SELECT task_id, state FROM tasks").fetchall() == [(task.task_id, "accepted")]


@pytest.mark.anyio
async def test_two_replicas_share_a_postgres_ledger(
    sim_server: SimulatorServer, postgres_url: str, private_folders: Path
) -> None:
    sim_server.simulator.processing_seconds = 1.5
    env = http_env(
        sim_server,
        ACEDATACLOUD_API_TOKEN=TOKEN_A,
        LUMA_MCP_API_KEYS=KEY,
        LUMA_LEDGER_URL=postgres_url,
        LUMA_HTTP_DOWNLOADS="true",
    )
    one, two = HttpServer(env).wait_ready(), HttpServer(env).wait_ready()
    try:
        async with client(one.url, KEY) as first, client(two.url, KEY) as second:
            made = await first.call_tool("generate_video", {"prompt": "Two replicas, one ledger", "wait_seconds": 0})
            task_id = TaskResult.model_validate(made.structured_content).task_id
            listed = (await second.call_tool("list_tasks", {})).structured_content
            assert listed is not None and [row["task_id"] for row in listed["tasks"]] == [task_id]
            # A host retrying through the other replica pays nothing more.
            again = await second.call_tool("generate_video", {"prompt": "Two replicas, one ledger", "wait_seconds": 0})
            assert TaskResult.model_validate(again.structured_content).task_id == task_id
            keyed = [
                await replica.call_tool(
                    "generate_video", {"prompt": "keyed", "idempotency_key": "k-1", "wait_seconds": 0}
                )
                for replica in (first, second)
            ]
            assert len({TaskResult.model_validate(r.structured_content).task_id for r in keyed}) == 1
            waited = await second.call_tool("get_task", {"task_id": task_id, "wait_seconds": 20})
            assert TaskList.model_validate(waited.structured_content).tasks[0].status == "succeeded"
            saved = await second.call_tool("download_video", {"task_id": task_id})
            assert not saved.is_error, text_of(saved)
        assert sim_server.simulator.count("/luma/videos") == 2
    finally:
        one.stop()
        two.stop()


def test_cors_for_browser_clients(sim_server: SimulatorServer) -> None:
    app = "https://app.example.com"
    server = HttpServer(
        http_env(sim_server, ACEDATACLOUD_API_TOKEN=TOKEN_A, LUMA_MCP_API_KEYS=KEY, LUMA_MCP_CORS_ORIGINS=app)
    )
    try:
        server.wait_ready()
        preflight = httpx.options(
            f"{server.url}/mcp",
            headers={
                "Origin": app,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type, mcp-protocol-version",
            },
        )
        assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == app
        answer = post(server.url, Origin=app, Authorization=f"Bearer {KEY}")
        assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == app
        assert "mcp-session-id" in answer.headers["access-control-expose-headers"].lower()
        assert post(server.url, Origin="https://other.example", Authorization=f"Bearer {KEY}").status_code == 403
    finally:
        server.stop()


BY_KEY = {"LUMA_MCP_API_KEYS": KEY}
BY_TOKEN = {"LUMA_MCP_AUTH": "passthrough"}


@pytest.mark.parametrize(
    ("auth", "oauth", "says"),
    [
        ({}, False, "(auth: none, loopback only)"),
        (BY_KEY, False, "(auth: access keys)"),
        (BY_TOKEN, False, "(auth: each caller's own Ace Data Cloud token (passthrough))"),
        (BY_KEY, True, "(auth: OAuth sign-in (issuer {issuer}) with access keys)"),
        (
            BY_TOKEN,
            True,
            "(auth: OAuth sign-in (issuer {issuer}) with each caller's own Ace Data Cloud token (passthrough))",
        ),
    ],
    ids=["none", "keys", "passthrough", "oauth-keys", "oauth-passthrough"],
)
def test_the_start_up_log_names_the_authentication_in_force(
    sim_server: SimulatorServer, auth: dict[str, str], oauth: bool, says: str
) -> None:
    """An operator reads from the first line whether people sign in, and how; no secret is in it."""
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    sign_in = oauth_env(issuer) if oauth else {}
    server = HttpServer(http_env(sim_server, ACEDATACLOUD_API_TOKEN=TOKEN_A, **auth, **sign_in), port=port)
    try:
        server.wait_ready()
    finally:
        _, stderr = server.stop()
    line = next(line for line in stderr.splitlines() if "serving MCP at" in line)
    assert line.endswith(f"serving MCP at {issuer}/mcp {says.format(issuer=issuer)}"), line
    assert KEY not in stderr and TOKEN_A not in stderr and OAUTH_KEY not in stderr


@pytest.mark.anyio
async def test_over_http_downloads_are_off_and_the_answer_gives_the_url(
    sim_server: SimulatorServer, private_folders: Path
) -> None:
    """A real HTTP server (loopback, no auth): the file would land on the server, so it says
    so and hands over the video_url instead."""
    server = HttpServer(http_env(sim_server, ACEDATACLOUD_API_TOKEN="t")).wait_ready()
    try:
        async with client(server.url) as remote:
            made = await remote.call_tool("generate_video", {"prompt": "Far away", "wait_seconds": 20})
            video_url = made.structured_content["video_url"]
            result = await remote.call_tool("download_video", {"task_id": made.structured_content["task_id"]})
    finally:
        server.stop()
    assert result.is_error and "download_video is off on this server" in text_of(result)
    assert video_url in text_of(result)
    assert not any(r.path.startswith("/media/") for r in sim_server.simulator.requests)
    assert files_in(private_folders / "videos") == []


def test_the_stdio_path_imports_none_of_the_http_edge() -> None:
    """HTTP-only modules stay off the stdio server's cold start (they are imported by `cli`
    only for --transport http)."""
    code = "import sys, luma_mcp.cli; print(','.join(m for m in sys.modules if m.startswith('luma_mcp')))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    modules = set(loaded.stdout.strip().split(","))
    assert "luma_mcp.server" in modules  # the probe sees the stdio path
    edge = {m for m in modules if m.startswith(("luma_mcp.hosting", "luma_mcp.oauth"))}
    assert not edge, edge
    http_only = {"luma_mcp.core.token_checks", "luma_mcp.core.ledger.listen", "luma_mcp.core.ledger.postgres"}
    assert modules.isdisjoint(http_only), modules & http_only
