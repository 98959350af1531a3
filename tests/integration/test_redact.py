"""The database password never reaches a tool result or a log line, with a real PostgreSQL
that refuses the ledger (the redaction rules themselves are in tests/unit/test_redact.py)."""

from __future__ import annotations

import logging

import psycopg
import pytest
from mcp import Client

from luma_mcp.server import create_server
from luma_mcp.simulator.app import SimulatorServer

from ..helpers.common import FAST_SCHEDULE, make_settings, text_of
from ..helpers.redact import SECRET, assert_hidden

pytestmark = pytest.mark.anyio


async def test_the_password_in_the_query_string_never_reaches_a_tool_result(
    sim_server: SimulatorServer, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A ledger a newer luma-mcp wrote: every call explains, naming the database. The test
    # server trusts loopback, so the password in the URL is accepted and ignored.
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("CREATE TABLE luma_schema (version INTEGER NOT NULL)")
        connection.execute("INSERT INTO luma_schema (version) VALUES (999)")
    caplog.set_level(logging.DEBUG)
    url = f"{postgres_url}?password={SECRET}&application_name=luma"
    settings = make_settings(sim_server.url, LUMA_LEDGER_URL=url)
    async with Client(create_server(settings, schedule=FAST_SCHEDULE)) as client:
        result = await client.call_tool("list_tasks", {})
    text = text_of(result)
    assert result.is_error and "written by a newer luma-mcp" in text, text
    assert postgres_url.rsplit("/", 1)[1] in text  # the database is named, so the operator knows which
    assert_hidden(result.model_dump_json())
    for record in caplog.records:
        assert_hidden(record.getMessage())
        assert_hidden(str(record.exc_info))
