"""The rules for tasks once submitted: each status recorded as it is read (a finished task's
result never changes, so it is served from the ledger without asking upstream again, and
recording it wakes the waits on it, here and in other processes), a task no longer followed
(MCP Tasks' cancel), and rows read back: by row id, by task id, newest first.
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Iterable

import luma_mcp.core.ledger.records as records
from luma_mcp.api.models import SubmitState
from luma_mcp.core.ledger.records import LedgerEntry
from luma_mcp.core.ledger.row_status import FINISHED, RowStatus
from luma_mcp.core.ledger.scoped import Scoped
from luma_mcp.core.results import TaskResult


class TaskRules(RowStatus):
    """What happens to a task after its submit, and how rows are read back. Every rule takes
    the tenant it works for; only `TenantLedger` calls them."""

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
                "finished": FINISHED,
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
            db.run(self.sql.unfollow, now=time.time(), task_id=task_id, finished=FINISHED)
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
