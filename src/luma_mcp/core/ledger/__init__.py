"""The task ledger: every submit written down before it is sent, so no paid video is lost.

- `rules`: `Ledger`, the rules together, which the backends extend; they live in `submits`
  (reservations, duplicates, spending limits, write order), `tasks` (statuses recorded as
  read, unfollowing, rows read back) and `row_status` (how a row reads: the stale-`sending`
  rule, in one place);
- `tenant`: `TenantLedger`, one caller's view, where tenant isolation is enforced;
- `store`: how a rule runs on a backend (one shielded transaction; a failing store as one
  sentence naming the setting);
- `queries`: every statement, written once; `records`: what a row stores (`StoredResult`)
  and the entry type (`LedgerEntry`);
- `memory`: what the process holds when the store fails;
- `finishes`: waits woken when a task is recorded finished (and, on PostgreSQL, by NOTIFY
  from any replica);
- `sqlite` and `postgres`: the two backends (`postgres` is imported only when
  `LUMA_LEDGER_URL` is set); `listen`: PostgreSQL's LISTEN loop for the HTTP server. These
  two are the only modules that import psycopg.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from luma_mcp.api.errors import LedgerError
from luma_mcp.checks.redact import conninfo_problem, redact_conninfo
from luma_mcp.core.ledger.queries import SCHEMA_VERSION
from luma_mcp.core.ledger.records import LedgerEntry, StoredResult
from luma_mcp.core.ledger.row_status import sending_expiry, submit_deadline
from luma_mcp.core.ledger.rules import Ledger
from luma_mcp.core.ledger.sqlite import SQLiteLedger
from luma_mcp.core.ledger.submits import SpendingLimits
from luma_mcp.core.ledger.tenant import TenantLedger

if TYPE_CHECKING:
    from luma_mcp.config import Settings
    from luma_mcp.core.ledger.postgres import PostgresLedger

__all__ = [
    "SCHEMA_VERSION",
    "Ledger",
    "LedgerEntry",
    "PostgresLedger",
    "SQLiteLedger",
    "SpendingLimits",
    "StoredResult",
    "TenantLedger",
    "ledger_url_problem",
    "open_ledger",
    "sending_expiry",
    "submit_deadline",
]


def __getattr__(name: str) -> object:
    # `from luma_mcp.core.ledger import PostgresLedger` keeps working without importing psycopg's
    # module on the SQLite path.
    if name == "PostgresLedger":
        from luma_mcp.core.ledger.postgres import PostgresLedger

        return PostgresLedger
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def ledger_url_problem(settings: Settings) -> str | None:
    """Why LUMA_LEDGER_URL cannot be used, in a sentence that quotes none of it (a mistyped URL
    can still hold a password); None when it is unset or usable. `luma-mcp` checks it at start."""
    if settings.ledger_url is None:
        return None
    url = settings.ledger_url.get_secret_value()
    if not url.startswith(("postgresql://", "postgres://")):
        return (
            "LUMA_LEDGER_URL must be a postgresql:// URL, like postgresql://user:password@host:5432/dbname; "
            "for SQLite set LUMA_LEDGER_PATH instead."
        )
    if problem := conninfo_problem(url):
        return f"LUMA_LEDGER_URL ({redact_conninfo(url)}) is not usable: {problem}."
    return None


def open_ledger(settings: Settings) -> Ledger:
    """PostgreSQL when LUMA_LEDGER_URL is set, else the SQLite file at LUMA_LEDGER_PATH."""
    stale_after = sending_expiry(settings.request_timeout, settings.retry_max_seconds)
    if problem := ledger_url_problem(settings):
        raise LedgerError(problem)
    if settings.ledger_url is not None:
        from luma_mcp.core.ledger.postgres import PostgresLedger

        return PostgresLedger(settings.ledger_url.get_secret_value(), stale_after=stale_after)
    return SQLiteLedger(settings.ledger_path, stale_after=stale_after)
