"""What one process holds in memory for the ledger, every piece bounded and keyed by tenant.

- Held answers: task ids the API gave that the store would not take (disk full, database
  down), served as if written and written by the next write that gets through.
- Refusals: why recently forgotten reservations were refused, for identical calls waiting
  on them.
- Log-once: store failures and unreadable rows are logged once, not on every call.

Held answers and refusals are keyed by (tenant, row id): a caller reaches only its own,
whatever row id it names.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict

from luma_mcp.core.results import TaskResult

log = logging.getLogger(__name__)

# Rows whose bad JSON or refusals are remembered in memory: enough for a burst, bounded.
LIMIT = 256

Row = tuple[str, int]  # (tenant, row id)


class ProcessMemory:
    def __init__(self, where: str) -> None:
        self.where = where  # the store, for log lines
        self._held: dict[Row, tuple[str, TaskResult]] = {}
        self._refusals: OrderedDict[Row, str] = OrderedDict()
        self._bad_rows: set[int] = set()  # rows whose unreadable data was already logged
        self._logged: set[str] = set()  # store failures already logged (each call still reports its own)
        self._lock = threading.Lock()

    # --- held answers ----------------------------------------------------------------------

    def hold(self, row: Row, task_id: str, result: TaskResult) -> None:
        with self._lock:
            self._held[row] = (task_id, result)
            while len(self._held) > LIMIT:  # a store down for that long: the oldest were logged
                dropped, (lost_id, _) = next(iter(self._held.items()))
                del self._held[dropped]
                log.error(
                    "Task %s was never written to the ledger at %s; it is only in earlier logs.", lost_id, self.where
                )

    def held(self, row: Row) -> tuple[str, TaskResult] | None:
        with self._lock:
            return self._held.get(row)

    def holding(self) -> bool:
        return bool(self._held)

    def held_answers(self) -> list[tuple[Row, str, TaskResult]]:
        with self._lock:
            return [(row, task_id, result) for row, (task_id, result) in self._held.items()]

    def written(self, row: Row) -> None:
        with self._lock:
            self._held.pop(row, None)

    # --- refusals --------------------------------------------------------------------------

    def refuse(self, row: Row, reason: str) -> None:
        with self._lock:
            self._refusals[row] = reason
            while len(self._refusals) > LIMIT:
                self._refusals.popitem(last=False)

    def refusal(self, row: Row) -> str | None:
        with self._lock:
            return self._refusals.get(row)

    # --- logging once ----------------------------------------------------------------------

    def log_once(self, message: str) -> None:
        with self._lock:
            if message in self._logged or len(self._logged) >= LIMIT:
                return
            self._logged.add(message)
        log.warning("%s", message)

    def log_bad_row(self, row_id: int, exc: Exception) -> None:
        with self._lock:
            if row_id in self._bad_rows or len(self._bad_rows) >= LIMIT:
                return
            self._bad_rows.add(row_id)
        log.warning(
            "Ledger row %s in %s holds unreadable data (%s); it is listed without it.",
            row_id,
            self.where,
            type(exc).__name__,
        )
