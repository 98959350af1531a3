"""One transaction as one tenant sees it (`Scoped`), over the slice of DB-API both backends
offer (`Sql`).

Moved here from `tenant` so that the store, the rules and the backends can use it without
importing `tenant` (which holds `TenantLedger`, and needs the rules): nothing in this module
imports anything of the ledger.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol


class Sql(Protocol):
    """The slice of DB-API both backends offer (named parameters, in the backend's spelling)."""

    def execute(self, sql: str, params: Mapping[str, Any], /) -> Any: ...

    def executemany(self, sql: str, rows: Sequence[Mapping[str, Any]], /) -> Any: ...


class Scoped:
    """One transaction, as one tenant sees it: every statement gets the tenant's parameter."""

    def __init__(self, db: Sql, tenant: str) -> None:
        self.db, self.tenant = db, tenant

    def one(self, statement: str, **params: Any) -> Any:
        return self.db.execute(statement, {**params, "tenant": self.tenant}).fetchone()

    def all(self, statement: str, **params: Any) -> list[Any]:
        return list(self.db.execute(statement, {**params, "tenant": self.tenant}).fetchall())

    def run(self, statement: str, **params: Any) -> None:
        self.db.execute(statement, {**params, "tenant": self.tenant})

    def run_many(self, statement: str, rows: Iterable[Mapping[str, Any]]) -> None:
        self.db.executemany(statement, [{**row, "tenant": self.tenant} for row in rows])
