"""OAuth sign-in end to end: the SDK's OAuthClientProvider against `luma-mcp --transport http`
on loopback, the person's browser step played by form posts (Chromium does it in
test_oauth_browser.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from luma_mcp.results import TaskResult
from luma_mcp.simulator import SimulatorServer

from ..helpers.http import TOKEN_A, TOKEN_B, HttpServer, client, free_port, http_env
from ..helpers.oauth import SignInByForm, oauth_client, oauth_env, oauth_provider

pytestmark = pytest.mark.anyio


def passthrough_server(sim_server: SimulatorServer, **extra: str) -> HttpServer:
    port = free_port()
    env = http_env(sim_server, LUMA_MCP_AUTH="passthrough", **oauth_env(f"http://127.0.0.1:{port}", **extra))
    return HttpServer(env, port=port).wait_ready()


async def test_a_web_connector_signs_in_with_its_token_and_makes_videos_in_its_tenant(
    sim_server: SimulatorServer, private_folders: Path
) -> None:
    sim_server.simulator.valid_tokens = {TOKEN_A, TOKEN_B}
    server = passthrough_server(sim_server)
    try:
        sign_in = SignInByForm(TOKEN_A)
        async with oauth_client(server.url, oauth_provider(server.url, sign_in)) as connector:
            made = await connector.call_tool("generate_video", {"prompt": "A lighthouse", "wait_seconds": 20})
            task = TaskResult.model_validate(made.structured_content)
            assert task.status == "succeeded"
        assert "Test Connector" in sign_in.pages[0] and "paid Luma video generations" in sign_in.pages[0]
        # The same person with their token as a static bearer is the same tenant: they see it.
        async with client(server.url, TOKEN_A) as alice:
            listed = await alice.call_tool("list_tasks", {})
            assert [t["task_id"] for t in listed.structured_content["tasks"]] == [task.task_id]
        async with client(server.url, TOKEN_B) as bob:
            assert (await bob.call_tool("list_tasks", {})).structured_content == {"tasks": []}
    finally:
        _, log = server.stop()
    submits = [r.authorization for r in sim_server.simulator.requests if r.path == "/luma/videos"]
    assert submits == [f"Bearer {TOKEN_A}"]  # the person's own token paid, not an OAuth token
    # The canary (the person's token) is nowhere in clear: not in the log, a page or the database.
    assert TOKEN_A not in log and all(TOKEN_A not in page for page in sign_in.pages)
    ledger = private_folders / "ledger.sqlite3"
    assert TOKEN_A.encode() not in ledger.read_bytes()
    with sqlite3.connect(ledger) as db:
        grants = db.execute("SELECT sealed_token FROM oauth_grants").fetchall()
        stored = [row for table in ("oauth_tokens", "oauth_clients") for row in db.execute(f"SELECT * FROM {table}")]  # noqa: S608
    assert len(grants) == 1 and grants[0][0] and TOKEN_A not in grants[0][0]
    assert not any(TOKEN_A in str(value) for row in stored for value in row)
