"""The ledger in a PostgreSQL database shared by any number of replicas (psycopg 3, pooled).

The only module that imports psycopg, and only when a ledger is opened here: psycopg is an
optional dependency (`luma-dream-machine-mcp[postgres]`), and the SQLite/stdio path never imports this
module. One tenant's reservations take turns on a transaction-scoped advisory lock, so
duplicate checks and spending limits hold across replicas. The replica that starts first
creates and migrates the schema, the others wait for it on another advisory lock.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import anyio

from luma_mcp.api.errors import LedgerError, LedgerUnavailable
from luma_mcp.checks.redact import redact_conninfo
from luma_mcp.core.ledger.queries import CALLBACK_TEMPLATES, GRANT_TEMPLATES, SCHEMA_VERSION, TEMPLATES, Dialect
from luma_mcp.core.ledger.rules import DEFAULT_SENDING_EXPIRY, Ledger
from luma_mcp.core.ledger.scoped import Scoped, Sql

T = TypeVar("T")

DIALECT = Dialect(
    parameter="%({})s",
    rows="json_array_elements_text({}::json)",
    serial="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
    float="DOUBLE PRECISION",
)
SQL, GRANT_SQL = DIALECT.render(TEMPLATES), DIALECT.render(GRANT_TEMPLATES)
CALLBACK_SQL = DIALECT.render(CALLBACK_TEMPLATES)
MIGRATIONS = DIALECT.migrations()
_TENANT_TURN = "SELECT pg_advisory_xact_lock(hashtext(%(tenant)s))"
# Every replica LISTENs here (`listen`); a payload is the id of a task recorded finished.
FINISHED_CHANNEL = "luma_mcp_finished"
_NOTIFY_FINISHED = "SELECT pg_notify(%(channel)s, value) FROM json_array_elements_text(%(task_ids)s::json)"
_MIGRATION_TURN = "SELECT pg_advisory_xact_lock(7362001)"


class PostgresLedger(Ledger):
    """A PostgreSQL database shared by any number of replicas (psycopg 3 with a pool)."""

    setting = "LUMA_LEDGER_URL"
    sql = SQL
    grant_sql = GRANT_SQL
    callback_sql = CALLBACK_SQL

    def __init__(self, url: str, *, max_connections: int = 10, stale_after: float = DEFAULT_SENDING_EXPIRY) -> None:
        try:
            from psycopg.rows import dict_row
            from psycopg_pool import ConnectionPool
        except ImportError as exc:
            raise LedgerError(
                "LUMA_LEDGER_URL names PostgreSQL, but psycopg is not installed: "
                "pip install 'luma-dream-machine-mcp[postgres]'."
            ) from exc
        super().__init__(redact_conninfo(url), stale_after=stale_after)  # never the password, in any form
        self._pool = ConnectionPool(
            url, min_size=0, max_size=max_connections, kwargs={"row_factory": dict_row}, open=False
        )
        self._opened = False
        self._open_lock = threading.Lock()

    def _open(self) -> None:
        with self._open_lock:
            if not self._opened:
                self._pool.open(wait=True, timeout=30)
                with self._pool.connection() as connection, connection.transaction():
                    self._migrate(connection)
                self._opened = True

    def _migrate(self, db: Any) -> None:
        db.execute(_MIGRATION_TURN)  # replicas starting together migrate in turn
        db.execute("CREATE TABLE IF NOT EXISTS luma_schema (version INTEGER NOT NULL)")
        row = db.execute("SELECT version FROM luma_schema").fetchone()
        version = row["version"] if row else 0
        self._check_version(version)
        for script in MIGRATIONS[version:]:
            for statement in filter(str.strip, script.split(";")):
                db.execute(statement)
        if row is None:
            db.execute("INSERT INTO luma_schema (version) VALUES (%s)", (SCHEMA_VERSION,))
        elif version < SCHEMA_VERSION:
            db.execute("UPDATE luma_schema SET version = %s", (SCHEMA_VERSION,))

    def _unusable(self, exc: Exception) -> LedgerUnavailable | None:
        import psycopg

        if not isinstance(exc, psycopg.Error) or isinstance(exc, psycopg.IntegrityError):
            return None
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return LedgerUnavailable(
            f"The task ledger {self.where} cannot be used ({detail}); check that the database is up, "
            f"reachable and writable by this user, or set {self.setting} to another database."
        )

    def _serialize(self, db: Scoped) -> None:
        # Duplicate checks and spending limits read, then insert: one tenant's reservations
        # take turns across every replica (released at commit).
        db.run(_TENANT_TURN)

    def _announce(self, db: Sql, task_ids: list[str]) -> None:
        # Delivered at commit, and only if it commits: no replica wakes for a write that failed.
        db.execute(_NOTIFY_FINISHED, {"channel": FINISHED_CHANNEL, "task_ids": json.dumps(task_ids)})

    async def _transaction(self, work: Callable[[Sql], T], *, write: bool) -> T:
        def run() -> T:
            self._open()
            with self._pool.connection() as connection, connection.transaction(), connection.cursor() as cursor:
                return work(cursor)

        return await anyio.to_thread.run_sync(run)

    def close(self) -> None:
        self._pool.close()
