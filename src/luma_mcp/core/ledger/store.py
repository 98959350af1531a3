"""How each rule of the ledger runs on a backend, and what a backend supplies.

Every rule's work runs in one transaction in a worker thread (`_transaction`, the
backend's), shielded from cancellation so a cancelled tool call never leaves a write half
done, and scoped to one tenant (`tenant.Scoped`). A failure of the store itself (missing,
corrupt, read-only, full, unreachable) becomes one `LedgerUnavailable` sentence naming the
setting to change, logged once. Answers held in memory because the store would not take
them (`memory`) are written before any other write.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import ClassVar, TypeVar

import anyio

import luma_mcp.core.ledger.records as records
from luma_mcp.api.errors import LedgerError, LedgerUnavailable
from luma_mcp.api.models import SubmitState
from luma_mcp.core.ledger.finishes import Finishes
from luma_mcp.core.ledger.memory import ProcessMemory
from luma_mcp.core.ledger.queries import SCHEMA_VERSION, CallbackStatements, GrantStatements, Statements
from luma_mcp.core.ledger.scoped import Scoped, Sql
from luma_mcp.core.results import TaskResult

T = TypeVar("T")
log = logging.getLogger(__name__)


class Store:
    """A ledger's store: the file or database, its statements, and this process's memory of it."""

    setting: ClassVar[str]  # the setting that names the store, for messages that say what to change
    sql: ClassVar[Statements]  # the backend's rendering of `queries`
    grant_sql: ClassVar[GrantStatements]  # and of its OAuth statements (`oauth.grants`)
    callback_sql: ClassVar[CallbackStatements]  # and of the callback receiver's (`callbacks`)

    def __init__(self, where: str, *, stale_after: float) -> None:
        self.where = where  # for messages: the file or database this ledger lives in
        self.stale_after = stale_after  # a `sending` row older than this reads as `lost`
        self._memory = ProcessMemory(where)
        self.finishes = Finishes()  # this process's waits, woken when a task is recorded finished

    def close(self) -> None:
        pass

    # --- what a backend supplies -----------------------------------------------------------

    async def _transaction(self, work: Callable[[Sql], T], *, write: bool) -> T:
        raise NotImplementedError

    def _serialize(self, db: Scoped) -> None:
        """Make concurrent reservations of one tenant take turns (the backend's way)."""

    def _unusable(self, exc: Exception) -> LedgerUnavailable | None:
        """The store's own failure as one sentence that names the setting; None: not a store failure."""
        return None

    def _announce(self, db: Sql, task_ids: list[str]) -> None:
        """Tell other processes, in the transaction that records it, that these tasks finished
        (PostgreSQL's NOTIFY); this process's own waits are woken after it commits."""

    def _check_version(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise LedgerError(
                f"The ledger at {self.where} was written by a newer luma-mcp (schema {version}); "
                "upgrade luma-mcp or point the server at another ledger."
            )

    # --- running and reading ---------------------------------------------------------------

    async def _run(self, tenant: str, work: Callable[[Scoped], T], *, write: bool = False) -> T:
        if write and self._memory.holding():
            await self._write_held_answers()
        return await self.transact(lambda db: work(Scoped(db, tenant)), write=write)

    async def transact(self, work: Callable[[Sql], T], *, write: bool = False) -> T:
        """`work` in one transaction, shielded from cancellation (a cancelled call must not leave
        a write half done); a failure of the store itself raised as one `LedgerUnavailable`.
        Tasks go through `_run` (tenant-scoped); OAuth's tables (`oauth.grants`) come here."""
        with anyio.CancelScope(shield=True):
            try:
                outcome = await self._transaction(work, write=write)
            except Exception as exc:
                unusable = self._unusable(exc)
                if unusable is None:
                    raise
                self._memory.log_once(str(unusable))
                raise unusable from exc
        return outcome

    def _write_answer(self, db: Scoped, row_id: int, task_id: str, result: TaskResult) -> None:
        db.run(
            self.sql.accept,
            task_id=task_id,
            accepted=SubmitState.ACCEPTED,
            status=result.status,
            result=records.dump_result(result),
            now=time.time(),
            row_id=row_id,
        )

    async def _write_held_answers(self) -> None:
        """One transaction per held answer: a store still down stops the round (the caller's own
        write then reports it); an answer the store refuses for good (a constraint) is dropped,
        its task id having been logged when it was held."""
        for row, task_id, result in self._memory.held_answers():

            def work(db: Sql, row: tuple[str, int] = row, task_id: str = task_id, result: TaskResult = result) -> None:
                self._write_answer(Scoped(db, row[0]), row[1], task_id, result)

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
            self._memory.written(row)
