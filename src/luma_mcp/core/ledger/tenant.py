"""Where tenant isolation is enforced: one caller's view of the ledger.

A tenant is '' for the server's own token, else a hash of the caller's token. The only
public way to the rows is `Ledger.for_tenant(tenant)`, a `TenantLedger` bound to one tenant
when the caller is known; and every statement its calls run goes through `Scoped`, which
adds that tenant as the `tenant` parameter, that every statement compares (`queries`):
reads and writes alike, writes by row id too. What the process keeps in memory (held
answers, refusals) is keyed by tenant as well. So a row id or task id of another tenant,
guessed or leaked, reads nothing and changes nothing.

`Scoped` and the `Sql` slice of DB-API live in `scoped` (below the store and the rules, which
both need them); this module holds `TenantLedger`, the view the service holds.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import anyio

    from luma_mcp.core.ledger.records import LedgerEntry
    from luma_mcp.core.ledger.rules import Ledger, Reservation, SpendingLimits
    from luma_mcp.core.results import TaskResult


class TenantLedger:
    """The ledger as one tenant sees it; the service holds only this. See `rules.Ledger`
    for what each call guarantees."""

    def __init__(self, ledger: Ledger, tenant: str) -> None:
        self._ledger = ledger
        self.tenant = tenant

    @property
    def stale_after(self) -> float:
        """How old a `sending` row must be before it reads as `lost`."""
        return self._ledger.stale_after

    async def reserve(
        self,
        action: str,
        params: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        dedupe_window: float = 0.0,
        new_take: bool = False,
        limits: SpendingLimits | None = None,
        callback_hash: str | None = None,
    ) -> Reservation:
        return await self._ledger._reserve(
            self.tenant,
            action,
            params,
            idempotency_key=idempotency_key,
            dedupe_window=dedupe_window,
            new_take=new_take,
            limits=limits,
            callback_hash=callback_hash,
        )

    async def accept(self, row_id: int, task_id: str, result: TaskResult) -> None:
        await self._ledger._accept(self.tenant, row_id, task_id, result)

    def hold_answer(self, row_id: int, task_id: str, result: TaskResult) -> None:
        self._ledger._hold_answer(self.tenant, row_id, task_id, result)

    async def lose(self, row_id: int, error: str) -> None:
        await self._ledger._lose(self.tenant, row_id, error)

    async def forget(self, row_id: int, reason: str) -> None:
        await self._ledger._forget(self.tenant, row_id, reason)

    def refusal(self, row_id: int) -> str | None:
        return self._ledger._refusal(self.tenant, row_id)

    async def record(self, results: Iterable[TaskResult]) -> None:
        await self._ledger._record(self.tenant, results)

    async def unfollow(self, task_id: str) -> LedgerEntry | None:
        return await self._ledger._unfollow(self.tenant, task_id)

    def watch(self, task_ids: Collection[str]) -> AbstractContextManager[anyio.Event]:
        """An event set when any of these tasks is recorded finished (see `finishes`); task
        ids are the provider's, so a wake for another tenant's task of the same id cannot
        happen, and would only make the wait look again."""
        return self._ledger.finishes.watch(task_ids)

    async def entry(self, row_id: int) -> LedgerEntry | None:
        return await self._ledger._entry_by_id(self.tenant, row_id)

    async def find(self, task_ids: list[str]) -> dict[str, LedgerEntry]:
        return await self._ledger._find(self.tenant, task_ids)

    async def recent(
        self,
        *,
        statuses: Collection[str] | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 20,
        cursor: str | None = None,
        hide_refused: bool = False,
    ) -> tuple[list[LedgerEntry], str | None]:
        return await self._ledger._recent(
            self.tenant,
            statuses=statuses,
            since=since,
            until=until,
            limit=limit,
            cursor=cursor,
            hide_refused=hide_refused,
        )
