"""How a ledger row reads, in one place: its answer if held in memory, and the
stale-`sending` rule.

A row still `sending` after `stale_after` cannot be in flight any more: `submitting` cuts
every submit off at `submit_deadline`, and writing its answer down takes at most
`ANSWER_WRITE_SECONDS` more (together: `sending_expiry`, the backends' `stale_after`). Such
a row reads as `lost` (`RowStatus._stale_before` is the rule; `_entry` applies it to each
row read, and the statements that need it, `queries.SHOWN_STATUS` and `settle_stale`, take
its very value). A finished task's result never changes (`FINISHED`).
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

import luma_mcp.core.ledger.records as records
from luma_mcp.api.models import SubmitState, TaskStatus
from luma_mcp.core.ledger.records import LedgerEntry
from luma_mcp.core.ledger.scoped import Scoped
from luma_mcp.core.ledger.store import Store

# The statuses whose result never changes, as the statements take them.
FINISHED = json.dumps(sorted(status.value for status in TaskStatus if status.finished))
STALE_ERROR = (
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


class RowStatus(Store):
    """A store whose rows read by the rules: the base of `submits.SubmitRules` and
    `tasks.TaskRules`, which both read rows."""

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
            entry = replace(entry, state=SubmitState.LOST, error=STALE_ERROR)
        return entry

    def _settle_stale(self, db: Scoped, entry: LedgerEntry, now: float) -> LedgerEntry:
        """Write down what a stale `sending` row reads as: `lost`."""
        if entry.state is SubmitState.LOST and entry.error == STALE_ERROR:
            db.run(
                self.sql.settle_stale,
                lost=SubmitState.LOST,
                error=STALE_ERROR,
                now=now,
                row_id=entry.row_id,
                sending=SubmitState.SENDING,
                stale_before=self._stale_before(),
            )
        return entry
