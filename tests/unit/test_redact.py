"""The database password is a canary too: in no form of connection string may it reach a
tool result, a log line or an exception message."""

from __future__ import annotations

import sys

import pytest

from luma_mcp.api.errors import LedgerError
from luma_mcp.checks.redact import redact_conninfo
from luma_mcp.core.ledger import open_ledger

from ..helpers.common import make_settings
from ..helpers.redact import SECRET, assert_hidden

pytestmark = pytest.mark.anyio


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
