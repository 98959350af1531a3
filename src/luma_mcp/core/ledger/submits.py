"""The submit rules: every submit written down before it is sent, so no paid video is lost.

Write order: a row is reserved before the request leaves (`reserve`), the upstream task id
is recorded the moment it is known (`accept`), before the tool reports progress or
returns; a request that went out and got no answer keeps its row as `lost` (`lose`).

The reservation is where money is protected, and where a duplicate is detected: a repeated
idempotency key, or an identical request within the dedupe window, returns the earlier task
instead of a new row; and the optional spending limits are counted inside the same
transaction, so two processes cannot both slip past them.

A submit that provably sent nothing billable (the API refused it, or it never left) leaves
no row (`forget`), so nobody can fill the ledger with made-up or broke tokens. A stale
`sending` row (`row_status`) is written down as `lost` when a reservation meets it, and
`new_take` frees its idempotency key.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from luma_mcp.api.errors import LedgerError, SpendingLimitError
from luma_mcp.api.models import SubmitState, TaskStatus
from luma_mcp.core.ledger.records import LedgerEntry
from luma_mcp.core.ledger.row_status import RowStatus
from luma_mcp.core.ledger.scoped import Scoped
from luma_mcp.core.results import TaskResult


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


class SubmitRules(RowStatus):
    """The rules of a submit, from its reservation to its answer (or its loss). Every rule
    takes the tenant it works for; only `TenantLedger` calls them."""

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


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M UTC")
