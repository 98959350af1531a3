"""The ledger in one SQLite file (WAL mode): several server processes on one machine share it
through SQLite's own locks. Every write takes the write lock up front (`BEGIN IMMEDIATE`), so
writers take turns and a reservation's duplicate check and insert are one step.

Reads run on the event loop itself, on a read-only connection of their own: in WAL mode a
reader never waits for a writer, and an indexed read takes microseconds, where a hop to a
worker thread took a quarter of a millisecond of every get_task. Should SQLite ever make such
a read wait (busy, or anything else amiss), it gives up at once and the read runs in a worker
thread like a write, which waits its turn or reports the store's failure."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import anyio

from luma_mcp.api.errors import LedgerUnavailable
from luma_mcp.core.ledger.queries import CALLBACK_TEMPLATES, GRANT_TEMPLATES, TEMPLATES, Dialect
from luma_mcp.core.ledger.rules import DEFAULT_SENDING_EXPIRY, Ledger
from luma_mcp.core.ledger.scoped import Sql

T = TypeVar("T")

DIALECT = Dialect(parameter=":{}", rows="json_each({})", serial="INTEGER PRIMARY KEY AUTOINCREMENT", float="REAL")
SQL, GRANT_SQL = DIALECT.render(TEMPLATES), DIALECT.render(GRANT_TEMPLATES)
CALLBACK_SQL = DIALECT.render(CALLBACK_TEMPLATES)
MIGRATIONS = DIALECT.migrations()


class SQLiteLedger(Ledger):
    """One file; several processes on one machine share it through SQLite's locks."""

    setting = "LUMA_LEDGER_PATH"
    sql = SQL
    grant_sql = GRANT_SQL
    callback_sql = CALLBACK_SQL

    def __init__(self, path: Path, *, stale_after: float = DEFAULT_SENDING_EXPIRY) -> None:
        super().__init__(str(path), stale_after=stale_after)
        self.path = path
        # Opened on first use (in a worker thread), so start-up and tools/list never wait on disk.
        self._db: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None  # for the event loop's reads, once the file is set up
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # One connection per process, used by one thread at a time; other processes
            # coordinate through SQLite's file locks (busy_timeout waits for them).
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            try:
                db.row_factory = sqlite3.Row
                self._use_wal(db)
                db.execute("PRAGMA synchronous=NORMAL")
                db.execute("PRAGMA busy_timeout=30000")
                self._in_transaction(db, lambda _: self._migrate(db))
            except BaseException:
                db.close()  # a file that is no ledger: the next call tries (and reports) again
                raise
            self._db = db
        return self._db

    def _unusable(self, exc: Exception) -> LedgerUnavailable | None:
        if isinstance(exc, OSError):
            why, todo = "its folder cannot be created", "point it at a file in a folder this user can write"
        elif not (isinstance(exc, sqlite3.OperationalError) or type(exc) is sqlite3.DatabaseError):
            return None  # a constraint or a bug: not the store's fault
        else:
            why, todo = _sqlite_failure(str(exc))
        return LedgerUnavailable(
            f"The task ledger {self.where} cannot be used: {why} ({exc}); {todo}, "
            f"or set {self.setting} to another file (or LUMA_LEDGER_URL to PostgreSQL)."
        )

    @staticmethod
    def _use_wal(db: sqlite3.Connection) -> None:
        # Switching a new file to WAL needs an exclusive lock that SQLite does not wait for
        # through busy_timeout, so two processes opening a fresh ledger at once take turns here.
        from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_random  # not at start-up

        for attempt in Retrying(
            retry=retry_if_exception(lambda exc: isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)),
            wait=wait_random(0.005, 0.05),
            stop=stop_after_delay(30),
            reraise=True,
        ):
            with attempt:
                db.execute("PRAGMA journal_mode=WAL")

    def _migrate(self, db: sqlite3.Connection) -> None:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        self._check_version(version)
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in filter(str.strip, script.split(";")):
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {number}")

    @staticmethod
    def _in_transaction(db: sqlite3.Connection, work: Callable[[Sql], T]) -> T:
        db.execute("BEGIN IMMEDIATE")  # the write lock up front: every writer takes turns
        try:
            outcome = work(db)
        except BaseException:
            if db.in_transaction:  # SQLite has already rolled back after some errors (a full disk)
                db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return outcome

    async def _transaction(self, work: Callable[[Sql], T], *, write: bool) -> T:
        if not write and self._reader is not None:
            try:
                return work(self._reader)
            except sqlite3.Error:
                pass  # busy, or the file is amiss: the worker thread's read waits or says why

        def locked() -> T:
            with self._lock:
                db = self._connect()
                return self._in_transaction(db, work) if write else work(db)

        outcome = await anyio.to_thread.run_sync(locked)
        if self._reader is None and self._db is not None:
            self._reader = self._open_reader()
        return outcome

    def _open_reader(self) -> sqlite3.Connection | None:
        """A read-only connection that never waits (busy_timeout 0); None if it cannot be had."""
        try:
            reader = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error:
            return None
        reader.row_factory = sqlite3.Row
        reader.execute("PRAGMA query_only=1")
        reader.execute("PRAGMA busy_timeout=0")
        return reader

    def close(self) -> None:
        with self._lock:
            for connection in (self._db, self._reader):
                if connection is not None:
                    connection.close()
            self._db = self._reader = None


def _sqlite_failure(message: str) -> tuple[str, str]:
    """What an SQLite error says about the file, and what to do about it."""
    message = message.lower()
    if "full" in message:
        return "the disk is full", "free some space on it"
    if "readonly" in message or "read-only" in message:
        return "the file is read-only", "make it writable by this user"
    if "not a database" in message or "malformed" in message or "corrupt" in message:
        return "the file is not an intact SQLite ledger", "move it aside (or restore a backup)"
    if "locked" in message or "busy" in message:
        return "another process has held it locked for 30 s", "try again in a moment"
    if "unable to open" in message:
        return "it cannot be opened (a folder, or a place this user cannot write)", "point it at a writable file"
    return "SQLite reports an error", "check the file"
