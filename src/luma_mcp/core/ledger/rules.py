"""The ledger's rules, together: every submit written down before it is sent, so no paid
video is lost, and every status recorded as it is read.

`Ledger` is the class the backends (`sqlite`, `postgres`) extend: they supply transactions
and their rendering of `queries` (`store`). Its rules live by what they are about:
- `submits`: reservations, where a duplicate is detected, spending limits, write order;
- `tasks`: statuses recorded as read, unfollowing, and rows read back;
- `row_status`: how a row reads, and the stale-`sending` rule, in one place;
- here: the one way to a tenant's rows, and the callbacks' lookups, which name no tenant.

Each rule runs for one tenant, reached only through `Ledger.for_tenant` (see `tenant`). A
store that cannot be used is reported per call as one `LedgerUnavailable` sentence naming
the setting to change; one unreadable row is shown degraded rather than breaking a listing.
"""

from __future__ import annotations

import time

from luma_mcp.core.ledger.records import LedgerEntry
from luma_mcp.core.ledger.row_status import FINISHED
from luma_mcp.core.ledger.scoped import Sql
from luma_mcp.core.ledger.submits import SubmitRules
from luma_mcp.core.ledger.tasks import TaskRules
from luma_mcp.core.ledger.tenant import TenantLedger


class Ledger(SubmitRules, TaskRules):
    """The rules, over a backend (`Store`). Every rule takes the tenant it works for; only
    `TenantLedger` calls them (`for_tenant`)."""

    def for_tenant(self, tenant: str) -> TenantLedger:
        """The ledger as one tenant sees it: the one way to its rows."""
        return TenantLedger(self, tenant)

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
        params = {"finished": FINISHED, "finished_before": now - finished_for, "created_before": now - running_for}
        await self.transact(lambda db: db.execute(self.callback_sql.prune_callbacks, params), write=True)
