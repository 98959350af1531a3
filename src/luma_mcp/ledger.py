"""The task ledger: every submit written down before it is sent, so no paid video is lost.

Two backends share all of the logic below: an embedded SQLite file (WAL mode, so several
server processes on one machine can share it) and PostgreSQL (`LUMA_LEDGER_URL`, for a
fleet of replicas). Both run plain DB-API code in a worker thread.

Write order: a row is reserved before the request leaves (`reserve`), the upstream task id
is recorded the moment it is known (`accept`), before the tool reports progress or
returns, and every later status is recorded as it is read (`record`). A finished task's
result never changes, so it is served from here without asking upstream again.

The same reservation is where money is protected: a repeated idempotency key, or an
identical request within the dedupe window, returns the earlier task instead of a new
row; and the optional spending limits are counted here, inside the same transaction, so
two processes cannot both slip past them.

A submit that provably sent nothing billable (the API refused it, or it never left) leaves
no row (`forget`), so nobody can fill the ledger with made-up or broke tokens. A row still
`sending` after `sending_expiry` cannot be in flight any more (the service cuts every submit
off at `submit_deadline`): it reads as `lost`, and `new_take` frees its idempotency key.

Rows belong to a tenant ('' for the server's own token), and every query is scoped by it.
A store that cannot be used (missing, corrupt, read-only, full, unreachable) is reported
per call as one `LedgerUnavailable` sentence naming the setting to change; one unreadable
row is shown degraded rather than breaking the listing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import anyio
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_random

from luma_mcp.errors import LedgerError, LedgerUnavailable, SpendingLimitError
from luma_mcp.models import SubmitState
from luma_mcp.redact import conninfo_problem, redact_conninfo
from luma_mcp.results import TaskResult

if TYPE_CHECKING:
    from luma_mcp.config import Settings

T = TypeVar("T")
log = logging.getLogger(__name__)

# Recording a submit's answer may wait on SQLite's busy timeout (30 s) and a short retry.
ANSWER_WRITE_SECONDS = 40.0
# Rows whose bad JSON or refusals are remembered in memory: enough for a burst, bounded.
_MEMORY = 256


def submit_deadline(request_timeout: float, retry_seconds: float) -> float:
    """The longest one submit may take, from its reservation to its answer: connection retries
    before it is sent, then one request. The service cuts the submit off there."""
    return request_timeout + retry_seconds + 15.0


def sending_expiry(request_timeout: float, retry_seconds: float) -> float:
    """How old a `sending` row must be before it cannot still be in flight: the submit's own
    deadline plus the time its answer may take to be written down."""
    return submit_deadline(request_timeout, retry_seconds) + ANSWER_WRITE_SECONDS


DEFAULT_SENDING_EXPIRY = sending_expiry(30.0, 20.0)  # with the default LUMA_REQUEST_TIMEOUT and retries

# Each migration moves the schema one version up; old rows are kept. Written once for both
# backends: {serial} and {float} are the only words the two dialects spell differently.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE tasks (
        row_id          {serial},
        tenant          TEXT NOT NULL,
        task_id         TEXT,
        action          TEXT NOT NULL,
        params          TEXT NOT NULL,
        fingerprint     TEXT NOT NULL,
        idempotency_key TEXT,
        state           TEXT NOT NULL,
        status          TEXT,
        result          TEXT,
        error           TEXT,
        created_at      {float} NOT NULL,
        updated_at      {float} NOT NULL
    );
    CREATE UNIQUE INDEX tasks_by_task_id ON tasks (tenant, task_id) WHERE task_id IS NOT NULL;
    CREATE UNIQUE INDEX tasks_by_key ON tasks (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL;
    CREATE INDEX tasks_by_time ON tasks (tenant, created_at DESC, row_id DESC);
    CREATE INDEX tasks_by_fingerprint ON tasks (tenant, fingerprint, created_at DESC);
    """,
]
SQLITE_MIGRATIONS = [m.format(serial="INTEGER PRIMARY KEY AUTOINCREMENT", float="REAL") for m in MIGRATIONS]
POSTGRES_MIGRATIONS = [
    m.format(serial="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", float="DOUBLE PRECISION") for m in MIGRATIONS
]
SCHEMA_VERSION = len(MIGRATIONS)


class Sql(Protocol):
    """The slice of DB-API both backends offer the ledger's queries (written with `?`)."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]], /) -> Any: ...


@dataclass(frozen=True)
class LedgerEntry:
    row_id: int
    tenant: str
    task_id: str | None
    action: str
    params: dict[str, Any]
    state: SubmitState
    result: TaskResult | None
    error: str | None
    idempotency_key: str | None
    created_at: float
    updated_at: float

    @property
    def finished(self) -> bool:
        return self.result is not None and self.result.status.finished

    @property
    def prompt(self) -> str | None:
        prompt = self.params.get("prompt")
        return prompt if isinstance(prompt, str) else None


@dataclass(frozen=True)
class Reservation:
    entry: LedgerEntry
    reused: bool  # True: an earlier submit answers this request; send nothing


@dataclass(frozen=True)
class SpendingLimits:
    per_hour: int | None = None
    per_day: int | None = None


def fingerprint(action: str, params: dict[str, Any]) -> str:
    canonical = json.dumps({"action": action, "params": params}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M UTC")


class Ledger:
    """The ledger's rules, over a backend that runs `work(sql)` in one transaction."""

    where: str  # for messages: the file or database this ledger lives in
    setting: str  # the setting that names the store, for messages that say what to change

    def __init__(self, *, stale_after: float = DEFAULT_SENDING_EXPIRY) -> None:
        self.stale_after = stale_after  # a `sending` row older than this reads as `lost`
        # Answers the API gave that the store would not take (disk full, database down): kept
        # here, served as if written, and written by the next write that gets through.
        self._unwritten: dict[int, tuple[str, TaskResult]] = {}
        # Why recently forgotten reservations were refused, for identical calls waiting on them.
        self._refusals: OrderedDict[int, str] = OrderedDict()
        self._bad_rows: set[int] = set()  # rows whose unreadable JSON was already logged
        self._logged: set[str] = set()  # store failures already logged (each call still reports its own)
        self._memory_lock = threading.Lock()

    async def _transaction(self, work: Callable[[Sql], T], *, write: bool) -> T:
        raise NotImplementedError

    def _serialize(self, sql: Sql, tenant: str) -> None:
        """Make concurrent reservations of one tenant take turns (the backend's way)."""

    def _unusable(self, exc: Exception) -> LedgerUnavailable | None:
        """The store's own failure as one sentence that names the setting; None: not a store failure."""
        return None

    async def _run(self, work: Callable[[Sql], T], write: bool = False) -> T:
        if write and self._unwritten:
            await self._write_held_answers()
        # Shielded: a cancelled tool call must not leave a write half done.
        with anyio.CancelScope(shield=True):
            try:
                outcome = await self._transaction(work, write=write)
            except Exception as exc:
                unusable = self._unusable(exc)
                if unusable is None:
                    raise
                self._log_once(str(unusable))
                raise unusable from exc
        return outcome

    def close(self) -> None:
        pass

    def _check_version(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise LedgerError(
                f"The ledger at {self.where} was written by a newer luma-mcp (schema {version}); "
                "upgrade luma-mcp or point the server at another ledger."
            )

    def _entry(self, row: Any) -> LedgerEntry:
        """A row as an entry. Unreadable JSON shows the row degraded (logged once), never an
        error: one bad row must not break every listing."""
        row_id = row["row_id"]
        task_id, error = row["task_id"], row["error"]
        problems: list[ValueError] = []

        def readable(read: Callable[[], T], fallback: T) -> T:
            try:
                return read()
            except ValueError as exc:  # JSON, enum and pydantic errors are ValueErrors
                problems.append(exc)
                return fallback

        # An unknown state: a task id means the API accepted it; without one a video may exist.
        state = readable(lambda: SubmitState(row["state"]), SubmitState.ACCEPTED if task_id else SubmitState.LOST)
        loaded: object = readable(lambda: json.loads(row["params"]), {})
        params: dict[str, Any] = loaded if isinstance(loaded, dict) else {}
        result = readable(lambda: TaskResult.model_validate_json(row["result"]) if row["result"] else None, None)
        created_at = readable(lambda: _moment(row["created_at"]), 0.0)
        updated_at = readable(lambda: _moment(row["updated_at"]), created_at)
        if problems:
            self._log_bad_row(row_id, problems[0])
        held = self._unwritten.get(row_id)
        if held is not None and task_id is None:
            task_id, result = held
            state = SubmitState.ACCEPTED
        if state is SubmitState.SENDING and created_at < time.time() - self.stale_after:
            state, error = SubmitState.LOST, _STALE_ERROR
        return LedgerEntry(
            row_id=row_id,
            tenant=row["tenant"],
            task_id=task_id,
            action=row["action"],
            params=params,
            state=state,
            result=result,
            error=error,
            idempotency_key=row["idempotency_key"],
            created_at=created_at,
            updated_at=updated_at,
        )

    def _log_once(self, message: str) -> None:
        with self._memory_lock:
            if message in self._logged or len(self._logged) >= _MEMORY:
                return
            self._logged.add(message)
        log.warning("%s", message)

    def _log_bad_row(self, row_id: int, exc: Exception) -> None:
        with self._memory_lock:
            if row_id in self._bad_rows or len(self._bad_rows) >= _MEMORY:
                return
            self._bad_rows.add(row_id)
        log.warning(
            "Ledger row %s in %s holds unreadable data (%s); it is listed without it.",
            row_id,
            self.where,
            type(exc).__name__,
        )

    # --- submits -----------------------------------------------------------------------

    async def reserve(
        self,
        tenant: str,
        action: str,
        params: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        dedupe_window: float = 0.0,
        new_take: bool = False,
        limits: SpendingLimits = SpendingLimits(),
    ) -> Reservation:
        """Write the intent to submit, or return the earlier submit that answers it."""
        digest = fingerprint(action, params)

        def work(db: Sql) -> Reservation:
            self._serialize(db, tenant)
            now = time.time()
            if idempotency_key is not None:
                row = db.execute(
                    "SELECT * FROM tasks WHERE tenant = ? AND idempotency_key = ?", (tenant, idempotency_key)
                ).fetchone()
                if row is not None:
                    if row["fingerprint"] != digest:
                        raise LedgerError(
                            f"idempotency_key {idempotency_key!r} was already used for a different request. "
                            "Use a new key for a new request, or resend the same arguments to get that task."
                        )
                    earlier = self._settle_stale(db, self._entry(row), now)
                    if not (new_take and earlier.task_id is None):
                        return Reservation(earlier, reused=True)
                    # A new take of a submit whose task id never came: the lost row keeps its
                    # place in the listing, the key moves to the new one.
                    db.execute("UPDATE tasks SET idempotency_key = NULL WHERE row_id = ?", (earlier.row_id,))
            elif not new_take and dedupe_window > 0:
                row = db.execute(
                    "SELECT * FROM tasks WHERE tenant = ? AND fingerprint = ? AND created_at >= ? "
                    "AND state != ? AND COALESCE(status, '') != 'failed' ORDER BY created_at DESC LIMIT 1",
                    (tenant, digest, now - dedupe_window, SubmitState.REFUSED),
                ).fetchone()
                if row is not None:
                    return Reservation(self._settle_stale(db, self._entry(row), now), reused=True)
            self._check_limits(db, tenant, limits, now)
            cursor = db.execute(
                "INSERT INTO tasks (tenant, action, params, fingerprint, idempotency_key, state, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
                (tenant, action, json.dumps(params), digest, idempotency_key, SubmitState.SENDING, now, now),
            )
            return Reservation(self._entry(cursor.fetchone()), reused=False)

        return await self._run(work, write=True)

    @staticmethod
    def _settle_stale(db: Sql, entry: LedgerEntry, now: float) -> LedgerEntry:
        """Write down what a stale `sending` row reads as: `lost`."""
        if entry.state is SubmitState.LOST and entry.error == _STALE_ERROR:
            db.execute(
                "UPDATE tasks SET state = ?, error = ?, updated_at = ? WHERE row_id = ? AND state = ?",
                (SubmitState.LOST, _STALE_ERROR, now, entry.row_id, SubmitState.SENDING),
            )
        return entry

    @staticmethod
    def _check_limits(db: Sql, tenant: str, limits: SpendingLimits, now: float) -> None:
        for limit, window, name in ((limits.per_hour, 3600, "hour"), (limits.per_day, 86400, "day")):
            if not limit:
                continue
            rows = db.execute(
                "SELECT created_at FROM tasks WHERE tenant = ? AND created_at > ? AND state != ? "
                "ORDER BY created_at ASC",
                (tenant, now - window, SubmitState.REFUSED),
            ).fetchall()
            if len(rows) >= limit:
                # A rolling window: the oldest submit in it leaves the window first.
                frees_at = rows[len(rows) - limit]["created_at"] + window
                minutes = max(1, round((frees_at - now) / 60))
                variable = f"LUMA_MAX_SUBMITS_PER_{name.upper()}"
                raise SpendingLimitError(
                    f"Spending guard: {len(rows)} videos were submitted in the last {name}, the limit is {limit} "
                    f"({variable}). The next submit is allowed at {_iso(frees_at)} (in about {minutes} min). "
                    "Nothing was sent."
                )

    async def accept(self, row_id: int, task_id: str, result: TaskResult) -> None:
        def work(db: Sql) -> None:
            self._write_answer(db, row_id, task_id, result)

        await self._run(work, write=True)

    @staticmethod
    def _write_answer(db: Sql, row_id: int, task_id: str, result: TaskResult) -> None:
        db.execute(
            "UPDATE tasks SET task_id = ?, state = ?, status = ?, result = ?, updated_at = ? WHERE row_id = ?",
            (task_id, SubmitState.ACCEPTED, result.status, result.model_dump_json(), time.time(), row_id),
        )

    def hold_answer(self, row_id: int, task_id: str, result: TaskResult) -> None:
        """The API accepted the submit but the store would not record it: serve the answer from
        memory (identical calls get the task at once) and write it with the next write that works."""
        with self._memory_lock:
            self._unwritten[row_id] = (task_id, result)
            while len(self._unwritten) > _MEMORY:  # a store down for that long: the oldest were logged
                dropped, (lost_id, _) = next(iter(self._unwritten.items()))
                del self._unwritten[dropped]
                log.error(
                    "Task %s was never written to the ledger at %s; it is only in earlier logs.", lost_id, self.where
                )

    async def _write_held_answers(self) -> None:
        """One transaction per held answer: a store still down stops the round (the caller's own
        write then reports it); an answer the store refuses for good (a constraint) is dropped,
        its task id having been logged when it was held."""
        for row_id, (task_id, result) in list(self._unwritten.items()):

            def work(db: Sql, row_id: int = row_id, task_id: str = task_id, result: TaskResult = result) -> None:
                self._write_answer(db, row_id, task_id, result)

            try:
                with anyio.CancelScope(shield=True):
                    await self._transaction(work, write=True)
            except Exception as exc:
                if self._unusable(exc) is not None:
                    log.debug("held task ids still cannot be written: %s", exc)
                    return
                log.error("Task %s cannot be written to the ledger at %s: %s", task_id, self.where, exc)
            else:
                log.warning("Task %s, held in memory, is now written to the ledger at %s.", task_id, self.where)
            with self._memory_lock:
                self._unwritten.pop(row_id, None)

    async def lose(self, row_id: int, error: str) -> None:
        """The request went out and no answer came: keep the row (and its key), allow a new take."""

        def work(db: Sql) -> None:
            db.execute(
                "UPDATE tasks SET state = ?, error = ?, updated_at = ? WHERE row_id = ? AND state = ?",
                (SubmitState.LOST, error, time.time(), row_id, SubmitState.SENDING),
            )

        await self._run(work, write=True)

    async def forget(self, row_id: int, reason: str) -> None:
        """Nothing billable was sent (the API refused it, or it never left): the reservation
        goes, so no token, made-up or broke, can fill the ledger; the key and the request are
        free to be tried again. `reason` answers identical calls that were waiting on it."""
        with self._memory_lock:
            self._refusals[row_id] = reason
            while len(self._refusals) > _MEMORY:
                self._refusals.popitem(last=False)

        def work(db: Sql) -> None:
            db.execute("DELETE FROM tasks WHERE row_id = ? AND state = ?", (row_id, SubmitState.SENDING))

        await self._run(work, write=True)

    def refusal(self, row_id: int) -> str | None:
        """Why a forgotten reservation was refused, when this process forgot it recently."""
        with self._memory_lock:
            return self._refusals.get(row_id)

    # --- results -------------------------------------------------------------------------

    async def record(self, tenant: str, results: Iterable[TaskResult]) -> None:
        """Store the latest known result of tasks this tenant submitted (others are ignored)."""
        rows = [
            (r.status, r.model_dump_json(exclude={"next_call", "note"}), time.time(), tenant, r.task_id)
            for r in results
        ]
        if not rows:
            return

        def work(db: Sql) -> None:
            db.executemany(
                "UPDATE tasks SET status = ?, result = ?, updated_at = ? WHERE tenant = ? AND task_id = ? "
                "AND COALESCE(status, '') NOT IN ('succeeded', 'failed')",
                rows,
            )

        await self._run(work, write=True)

    async def entry(self, row_id: int) -> LedgerEntry | None:
        def work(db: Sql) -> LedgerEntry | None:
            row = db.execute("SELECT * FROM tasks WHERE row_id = ?", (row_id,)).fetchone()
            return None if row is None else self._entry(row)

        return await self._run(work)

    async def find(self, tenant: str, task_ids: list[str]) -> dict[str, LedgerEntry]:
        if not task_ids:
            return {}

        def work(db: Sql) -> dict[str, LedgerEntry]:
            marks = ",".join("?" * len(task_ids))
            rows = db.execute(
                f"SELECT * FROM tasks WHERE tenant = ? AND task_id IN ({marks})",  # noqa: S608 (placeholders only)
                (tenant, *task_ids),
            ).fetchall()
            return {row["task_id"]: self._entry(row) for row in rows}

        return await self._run(work)

    async def recent(
        self,
        tenant: str,
        *,
        statuses: Collection[str] | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 20,
        cursor: str | None = None,
        hide_refused: bool = False,
    ) -> tuple[list[LedgerEntry], str | None]:
        """Newest first, with an opaque cursor for the next page. `statuses` filters on the
        last status recorded (a task status, or the submit state for rows with none; a stale
        `sending` row counts as `lost`)."""
        where: list[str] = ["tenant = ?"]
        args: list[str | float | int] = [tenant]
        if statuses is not None:
            where.append(
                "(CASE WHEN state = ? AND created_at < ? THEN ? ELSE COALESCE(status, state) END) "
                f"IN ({','.join('?' * len(statuses))})"
            )
            args += [SubmitState.SENDING, time.time() - self.stale_after, SubmitState.LOST, *sorted(statuses)]
        if hide_refused:
            where.append("state != ?")
            args.append(SubmitState.REFUSED)
        if since is not None:
            where.append("created_at >= ?")
            args.append(since)
        if until is not None:
            where.append("created_at < ?")
            args.append(until)
        if cursor is not None:
            created_at, row_id = decode_cursor(cursor)
            where.append("(created_at < ? OR (created_at = ? AND row_id < ?))")
            args += [created_at, created_at, row_id]

        def work(db: Sql) -> tuple[list[LedgerEntry], str | None]:
            rows = db.execute(
                f"SELECT * FROM tasks WHERE {' AND '.join(where)} "  # noqa: S608 (fixed clauses, placeholders)
                "ORDER BY created_at DESC, row_id DESC LIMIT ?",
                (*args, limit + 1),
            ).fetchall()
            entries = [self._entry(row) for row in rows[:limit]]
            more = len(rows) > limit
            return entries, encode_cursor(entries[-1]) if more and entries else None

        return await self._run(work)


_STALE_ERROR = (
    "The server stopped (or lost track of the request) while this submit was being sent, and its answer "
    "was never read: a video may exist whose task id is not known here."
)


class SQLiteLedger(Ledger):
    """One file; several processes on one machine share it through SQLite's locks."""

    setting = "LUMA_LEDGER_PATH"

    def __init__(self, path: Path, *, stale_after: float = DEFAULT_SENDING_EXPIRY) -> None:
        super().__init__(stale_after=stale_after)
        self.path = path
        self.where = str(path)
        # Opened on first use (in a worker thread), so start-up and tools/list never wait on disk.
        self._db: sqlite3.Connection | None = None
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
                self._in_transaction(db, self._migrate)
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
        for attempt in Retrying(
            retry=retry_if_exception(lambda exc: isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)),
            wait=wait_random(0.005, 0.05),
            stop=stop_after_delay(30),
            reraise=True,
        ):
            with attempt:
                db.execute("PRAGMA journal_mode=WAL")

    def _migrate(self, db: Sql) -> None:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        self._check_version(version)
        for number, script in enumerate(SQLITE_MIGRATIONS[version:], start=version + 1):
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
        def locked() -> T:
            with self._lock:
                db = self._connect()
                return self._in_transaction(db, work) if write else work(db)

        return await anyio.to_thread.run_sync(locked)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


class _PostgresSql:
    """psycopg spelled like the ledger's queries: `?` placeholders become `%s`."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._connection.execute(sql.replace("?", "%s"), params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]], /) -> None:
        with self._connection.cursor() as cursor:
            cursor.executemany(sql.replace("?", "%s"), rows)


class PostgresLedger(Ledger):
    """A PostgreSQL database shared by any number of replicas (psycopg 3 with a pool)."""

    setting = "LUMA_LEDGER_URL"

    def __init__(self, url: str, *, max_connections: int = 10, stale_after: float = DEFAULT_SENDING_EXPIRY) -> None:
        try:
            from psycopg.rows import dict_row
            from psycopg_pool import ConnectionPool
        except ImportError as exc:
            raise LedgerError(
                "LUMA_LEDGER_URL names PostgreSQL, but psycopg is not installed: pip install 'luma-mcp[postgres]'."
            ) from exc
        super().__init__(stale_after=stale_after)
        self.where = redact_conninfo(url)  # never the password, in any of its forms
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
                    self._migrate(_PostgresSql(connection))
                self._opened = True

    def _migrate(self, db: Sql) -> None:
        db.execute("SELECT pg_advisory_xact_lock(7362001)")  # replicas starting together migrate in turn
        db.execute("CREATE TABLE IF NOT EXISTS luma_schema (version INTEGER NOT NULL)")
        row = db.execute("SELECT version FROM luma_schema").fetchone()
        version = row["version"] if row else 0
        self._check_version(version)
        for script in POSTGRES_MIGRATIONS[version:]:
            for statement in filter(str.strip, script.split(";")):
                db.execute(statement)
        if row is None:
            db.execute("INSERT INTO luma_schema (version) VALUES (?)", (SCHEMA_VERSION,))
        elif version < SCHEMA_VERSION:
            db.execute("UPDATE luma_schema SET version = ?", (SCHEMA_VERSION,))

    def _unusable(self, exc: Exception) -> LedgerUnavailable | None:
        import psycopg

        if not isinstance(exc, psycopg.Error) or isinstance(exc, psycopg.IntegrityError):
            return None
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return LedgerUnavailable(
            f"The task ledger {self.where} cannot be used ({detail}); check that the database is up, "
            f"reachable and writable by this user, or set {self.setting} to another database."
        )

    def _serialize(self, sql: Sql, tenant: str) -> None:
        # Duplicate checks and spending limits read, then insert: one tenant's reservations
        # take turns across every replica (released at commit).
        sql.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (tenant,))

    async def _transaction(self, work: Callable[[Sql], T], *, write: bool) -> T:
        def run() -> T:
            self._open()
            with self._pool.connection() as connection, connection.transaction():
                return work(_PostgresSql(connection))

        return await anyio.to_thread.run_sync(run)

    def close(self) -> None:
        self._pool.close()


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


def _moment(value: Any) -> float:
    """A stored timestamp, if it is one a date can be made of (years 1970 to 9999)."""
    try:
        moment = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"not a timestamp: {type(value).__name__}") from None
    if not 0 <= moment < 253402300800:  # NaN fails too
        raise ValueError("a timestamp out of range")
    return moment


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
        return PostgresLedger(settings.ledger_url.get_secret_value(), stale_after=stale_after)
    return SQLiteLedger(settings.ledger_path, stale_after=stale_after)


def encode_cursor(entry: LedgerEntry) -> str:
    return base64.urlsafe_b64encode(json.dumps([entry.created_at, entry.row_id]).encode()).decode()


def decode_cursor(cursor: str) -> tuple[float, int]:
    refused = LedgerError("That cursor is not one list_tasks gave; call list_tasks without a cursor.")
    try:
        created_at, row_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        position = float(created_at), int(row_id)
    except (ValueError, TypeError, OverflowError) as exc:  # OverflowError: int(1e999)
        raise refused from exc
    # Only what encode_cursor writes: a finite time and a row id both databases can compare.
    if not math.isfinite(position[0]) or not 0 <= position[1] < 2**63:
        raise refused
    return position
