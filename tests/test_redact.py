"""The database password is a canary too: in no form of connection string may it reach a
tool result, a log line or an exception message."""

from __future__ import annotations

import logging
import sys

import psycopg
import pytest
from mcp import Client

from luma_mcp.errors import LedgerError
from luma_mcp.ledger import open_ledger
from luma_mcp.redact import redact_conninfo
from luma_mcp.server import create_server
from luma_mcp.simulator import SimulatorServer

from .conftest import FAST_SCHEDULE, make_settings, text_of

pytestmark = pytest.mark.anyio

SECRET = "pw-canary-4e1d"

# Every way libpq accepts a password (or a file or key that unlocks one).
CONNECTION_STRINGS = [
    f"postgresql://luma:{SECRET}@db.example:5433/luma",
    f"postgres://luma:{SECRET}@db.example/luma",
    f"postgresql://luma@db.example:5433/luma?password={SECRET}",
    f"postgresql://luma@db.example/luma?sslmode=require&sslpassword={SECRET}&passfile=/etc/{SECRET}",
    f"postgresql://luma:{SECRET[:4]}%2D{SECRET[5:]}@db.example/luma",  # percent-encoded
    f"postgresql://luma:{SECRET}@db.example:5433,db2.example:5434/luma",  # several hosts
    f"host=db.example port=5433 dbname=luma user=luma password={SECRET}",
    f"host=db.example dbname=luma password='{SECRET} with spaces'",
    f"dbname=postgresql://luma:{SECRET}@db.example/luma",  # libpq expands a URL in dbname
    f"postgresql://luma:{SECRET}@db.example:notaport/luma",
    f"postgresql://luma:{SECRET}%zz@db.example/luma",  # unparseable: psycopg's error quotes it
    f"host=db.example password={SECRET} dbname",
    f"postgresql://luma:{SECRET[:6]}/{SECRET[6:]}@db.example/luma",  # an unencoded "/": read as host:port
]


def assert_hidden(text: str) -> None:
    assert SECRET not in text and SECRET[:6] not in text and SECRET[-8:] not in text, text


@pytest.mark.parametrize("with_psycopg", [True, False], ids=["psycopg", "fallback"])
@pytest.mark.parametrize("conninfo", CONNECTION_STRINGS)
def test_no_form_of_the_password_survives_redaction(
    monkeypatch: pytest.MonkeyPatch, conninfo: str, with_psycopg: bool
) -> None:
    if not with_psycopg:  # as without the optional `postgres` extra
        monkeypatch.setitem(sys.modules, "psycopg.conninfo", None)
    shown = redact_conninfo(conninfo)
    assert_hidden(shown)
    assert shown.startswith("postgresql://") and ("db.example" in shown or "?" in shown), shown


def test_what_stays_says_which_database() -> None:
    assert redact_conninfo(f"postgresql://luma:{SECRET}@db.example:5433/luma?password=x") == (
        "postgresql://db.example:5433/luma"
    )
    assert redact_conninfo(f"host=db.example port=5433 dbname=luma password={SECRET}") == (
        "postgresql://db.example:5433/luma"
    )


@pytest.mark.parametrize("conninfo", [*CONNECTION_STRINGS[-3:], f"mysql://root:{SECRET}@db.example/luma"])
def test_a_bad_ledger_url_is_refused_without_quoting_it(conninfo: str) -> None:
    settings = make_settings("http://127.0.0.1:9", LUMA_LEDGER_URL=conninfo)
    with pytest.raises(LedgerError) as refused:
        open_ledger(settings)
    assert "LUMA_LEDGER_URL" in str(refused.value)
    assert_hidden(str(refused.value))
    assert refused.value.__cause__ is None  # no driver error chained, whose text quotes the string


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
