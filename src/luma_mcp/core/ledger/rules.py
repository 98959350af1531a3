"""The ledger's rules: every submit written down before it is sent, so no paid video is lost.

Write order: a row is reserved before the request leaves (`reserve`), the upstream task id
is recorded the moment it is known (`accept`), before the tool reports progress or
returns, and every later status is recorded as it is read (`record`). A finished task's
result never changes, so it is served from the ledger without asking upstream again.

The same reservation is where money is protected, and where a duplicate is detected: a
repeated idempotency key, or an identical request within the dedupe window, returns the
earlier task instead of a new row; and the optional spending limits are counted inside the
same transaction, so two processes cannot both slip past them.

A submit that provably sent nothing billable (the API refused it, or it never left) leaves
no row (`forget`), so nobody can fill the ledger with made-up or broke tokens. A row still
`sending` after `stale_after` cannot be in flight any more (`submitting` cuts every submit
off at `submit_deadline`): it reads as `lost` (the rule: `Ledger._stale_before`), and
`new_take` frees its idempotency key.

Each rule runs for one tenant, reached only through `Ledger.for_tenant` (see `tenant`). The
backends (`sqlite`, `postgres`) supply transactions and their rendering of `queries`. A
store that cannot be used is reported per call as one `LedgerUnavailable` sentence naming
the setting to change; one unreadable row is shown degraded rather than breaking a listing.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import luma_mcp.core.ledger.records as records
from luma_mcp.api.errors import LedgerError, SpendingLimitError
from luma_mcp.api.models import SubmitState, TaskStatus
from luma_mcp.core.ledger.records import LedgerEntry
from luma_mcp.core.ledger.scoped import Scoped, Sql
from luma_mcp.core.ledger.store import Store
from luma_mcp.core.ledger.tenant import TenantLedger
from luma_mcp.core.results import TaskResult

# The statuses whose result never changes, as the statements take them.
_FINISHED = json.dumps(sorted(status.value for status in TaskStatus if status.finished))
_STALE_ERROR = (
    "The server stopped (or lost track of the request) while this submit was being sent, and its answer "
    "was never read: a video may exist whose task id is not known here."
)


# Recording a submit's answer may wait on SQLite's busy timeout (30 s) and a short retry.
ANSWER_WRITE_SECONDS = 40.0


def submit_deadline(request_timeout: float, retry_seconds: float) -> float:
    """The longest one submit may take, from its reservation to its answer: connection retries
    before it is sent, then one request. `submitting` cuts the submit off there."""
    return request_timeout + retry_seconds + 15.0


def sending_expiry(request_timeout: float, retry_seconds: float) -> float:
    """How old a `sending` row must be before it cannot still be in flight: the submit's own
    deadline plus the time its answer may take to be written down."""
    return submit_deadline(request_timeout, retry_seconds) + ANSWER_WRITE_SECONDS


DEFAULT_SENDING_EXPIRY = sending_expiry(30.0, 20.0)  # with the default LUMA_REQUEST_TIMEOUT and retries


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


class Ledger(Store):
    """The rules, over a backend (`Store`). Every rule takes the tenant it works for; only
    `TenantLedger` calls them (`for_tenant`)."""

    def for_tenant(self, tenant: str) -> TenantLedger:
        """The ledger as one tenant sees it: the one way to its rows."""
        return TenantLedger(self, tenant)

    def _stale_before(self) -> float:
        """The stale-`sending` rule, in one place: a `sending` row created before this moment
        cannot still be in flight and reads as `lost`. `_entry` applies it to each row read;
        the statements that need it (`SHOWN_STATUS`, `settle_stale`) take this very value."""
        return time.time() - self.stale_after

    def _entry(self, row: Any) -> LedgerEntry:
        """A row as the rules read it: with its held answer, and the stale-`sending` rule applied."""
        entry = records.read_row(row, self._memory.log_bad_row)
        held = self._memory.held((entry.tenant, entry.row_id))
        if held is not None and entry.task_id is None:
            entry = replace(entry, task_id=held[0], result=held[1], state=SubmitState.ACCEPTED)
        if entry.state is SubmitState.SENDING and entry.created_at < self._stale_before():
            entry = replace(entry, state=SubmitState.LOST, error=_STALE_ERROR)
        return entry

    # --- submits ---------------------------------------------------------------------------

    async def _reserve(
        self,
        tenant: str,
        action: str,
        params: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        dedupe_window: float = 0.0,
        new_take: bool = False,
        limits: SpendingLimits | None = None,
        callback_hash: str | None = None,
    ) -> Reservation:
        """Write the intent to submit, or return the earlier submit that answers it (whose
        callback, if any, stays the one it was sent with: `callback_hash` is then unused)."""
        digest = fingerprint(action, params)
        sql = self.sql

        def work(db: Scoped) -> Reservation:
            self._serialize(db)
            now = time.time()
            if idempotency_key is not None:
                row = db.one(sql.by_key, key=idempotency_key)
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
                    db.run(sql.release_key, row_id=earlier.row_id)
            elif not new_take and dedupe_window > 0:
                row = db.one(
                    sql.duplicate,
                    fingerprint=digest,
                    since=now - dedupe_window,
                    refused=SubmitState.REFUSED,
                    failed=TaskStatus.FAILED,
                )
                if row is not None:
                    return Reservation(self._settle_stale(db, self._entry(row), now), reused=True)
            self._check_limits(db, limits or SpendingLimits(), now)
            row = db.one(
                sql.insert,
                action=action,
                params=json.dumps(params),
                fingerprint=digest,
                key=idempotency_key,
                sending=SubmitState.SENDING,
                callback_hash=callback_hash,
                now=now,
            )
            return Reservation(self._entry(row), reused=False)

        return await self._run(tenant, work, write=True)

    def _settle_stale(self, db: Scoped, entry: LedgerEntry, now: float) -> LedgerEntry:
        """Write down what a stale `sending` row reads as: `lost`."""
        if entry.state is SubmitState.LOST and entry.error == _STALE_ERROR:
            db.run(
                self.sql.settle_stale,
                lost=SubmitState.LOST,
                error=_STALE_ERROR,
                now=now,
                row_id=entry.row_id,
                sending=SubmitState.SENDING,
                stale_before=self._stale_before(),
            )
        return entry

    def _check_limits(self, db: Scoped, limits: SpendingLimits, now: float) -> None:
        for limit, window, name in ((limits.per_hour, 3600, "hour"), (limits.per_day, 86400, "day")):
            if not limit:
                continue
            rows = db.all(self.sql.counted_since, since=now - window, refused=SubmitState.REFUSED)
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

    async def _accept(self, tenant: str, row_id: int, task_id: str, result: TaskResult) -> None:
        await self._run(tenant, lambda db: self._write_answer(db, row_id, task_id, result), write=True)

    def _hold_answer(self, tenant: str, row_id: int, task_id: str, result: TaskResult) -> None:
        """The API accepted the submit but the store would not record it: serve the answer from
        memory (identical calls get the task at once) and write it with the next write that works."""
        self._memory.hold((tenant, row_id), task_id, result)

    async def _lose(self, tenant: str, row_id: int, error: str) -> None:
        """The request went out and no answer came: keep the row (and its key), allow a new take."""

        def work(db: Scoped) -> None:
            db.run(
                self.sql.lose,
                lost=SubmitState.LOST,
                error=error,
                now=time.time(),
                row_id=row_id,
                sending=SubmitState.SENDING,
            )

        await self._run(tenant, work, write=True)

    async def _forget(self, tenant: str, row_id: int, reason: str) -> None:
        """Nothing billable was sent (the API refused it, or it never left): the reservation
        goes, so no token, made-up or broke, can fill the ledger; the key and the request are
        free to be tried again. `reason` answers identical calls that were waiting on it."""
        self._memory.refuse((tenant, row_id), reason)
        await self._run(
            tenant, lambda db: db.run(self.sql.forget, row_id=row_id, sending=SubmitState.SENDING), write=True
        )

    def _refusal(self, tenant: str, row_id: int) -> str | None:
        """Why a forgotten reservation was refused, when this process forgot it recently."""
        return self._memory.refusal((tenant, row_id))

    # --- results ---------------------------------------------------------------------------

    async def _record(self, tenant: str, results: Iterable[TaskResult]) -> None:
        """Store the latest known result of tasks this tenant submitted (others are ignored),
        and announce the finished ones: waits on them, here and in other processes, wake."""
        now = time.time()
        results = list(results)
        rows = [
            {
                "status": r.status,
                "result": records.dump_result(r),
                "now": now,
                "task_id": r.task_id,
                "finished": _FINISHED,
            }
            for r in results
        ]
        finished = [r.task_id for r in results if r.status.finished]
        if not rows:
            return

        def work(db: Scoped) -> None:
            db.run_many(self.sql.record, rows)
            if finished:
                self._announce(db.db, finished)

        await self._run(tenant, work, write=True)
        self.finishes.wake(finished)

    async def _unfollow(self, tenant: str, task_id: str) -> LedgerEntry | None:
        """Mark the task as no longer followed (MCP Tasks' cancel), unless it is recorded
        finished already; the first time counts."""

        def work(db: Scoped) -> LedgerEntry | None:
            db.run(self.sql.unfollow, now=time.time(), task_id=task_id, finished=_FINISHED)
            rows = db.all(self.sql.find, task_ids=json.dumps([task_id]))
            return self._entry(rows[0]) if rows else None

        return await self._run(tenant, work, write=True)

    async def _entry_by_id(self, tenant: str, row_id: int) -> LedgerEntry | None:
        def work(db: Scoped) -> LedgerEntry | None:
            row = db.one(self.sql.entry, row_id=row_id)
            return None if row is None else self._entry(row)

        return await self._run(tenant, work)

    async def _find(self, tenant: str, task_ids: list[str]) -> dict[str, LedgerEntry]:
        if not task_ids:
            return {}

        def work(db: Scoped) -> dict[str, LedgerEntry]:
            rows = db.all(self.sql.find, task_ids=json.dumps(task_ids))
            return {row["task_id"]: self._entry(row) for row in rows}

        return await self._run(tenant, work)

    async def _recent(
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
        after_time, after_row = records.decode_cursor(cursor) if cursor is not None else (None, None)
        params = {
            "statuses": None if statuses is None else json.dumps(sorted(statuses)),
            "sending": SubmitState.SENDING,
            "lost": SubmitState.LOST,
            "stale_before": self._stale_before(),
            "hidden": SubmitState.REFUSED if hide_refused else None,
            "since": since,
            "until": until,
            "after_time": after_time,
            "after_row": after_row,
            "limit": limit + 1,
        }

        def work(db: Scoped) -> tuple[list[LedgerEntry], str | None]:
            rows = db.all(self.sql.recent, **params)
            entries = [self._entry(row) for row in rows[:limit]]
            more = len(rows) > limit and entries
            return entries, records.encode_cursor(entries[-1].created_at, entries[-1].row_id) if more else None

        return await self._run(tenant, work)

    # --- callbacks (no tenant: a callback names none) ------------------------------------------

    async def by_callback(self, callback_hash: str) -> LedgerEntry | None:
        """The row whose submit carried the callback secret with this hash, whoever's it is
        (`entry.tenant`); everything after runs through `for_tenant(entry.tenant)`."""

        def work(db: Sql) -> LedgerEntry | None:
            row = db.execute(self.callback_sql.by_callback, {"callback_hash": callback_hash}).fetchone()
            return None if row is None else self._entry(row)

        return await self.transact(work)

    async def prune_callbacks(self, finished_for: float = 86400.0, running_for: float = 7 * 86400.0) -> None:
        """Forget the callback secrets of tasks finished `finished_for` seconds ago (repeated
        deliveries come within minutes), or started `running_for` ago: they then read as unknown."""
        now = time.time()
        params = {"finished": _FINISHED, "finished_before": now - finished_for, "created_before": now - running_for}
        await self.transact(lambda db: db.execute(self.callback_sql.prune_callbacks, params), write=True)


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M UTC")
