"""Every statement the ledger's rules run, written once for both backends.

Each statement is a template: `{name}` is a parameter, `{name:rows}` a parameter holding a
JSON array, read as rows of one column, `value`. A backend renders the templates once, at
import, in its own spelling (`Dialect`): SQLite writes `:name` and `json_each(:name)`,
PostgreSQL `%(name)s` and `json_array_elements_text(%(name)s::json)`. So no statement is
rewritten per call, and no list is spliced into SQL text: every statement is static.

Written once rather than once per backend because the two dialects agree on everything
here but the spellings above and two column types (`{serial}`, `{float}`, for the
migrations); what only one backend has (SQLite's PRAGMAs, PostgreSQL's advisory locks and
schema table) stays in that backend's module.

No rule lives in these strings: statuses, states and the stale-`sending` cut-off are
parameters whose values `rules` passes. And every statement on `tasks` compares
`tenant = {tenant}`, writes by row id included; `tenant.Scoped` supplies that parameter
(tests/integration/test_ledger_tenants.py checks each statement has the clause).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

# Each migration moves the schema one version up; old rows are kept.
MIGRATIONS: tuple[str, ...] = (
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
)
SCHEMA_VERSION = len(MIGRATIONS)

# What a listing shows for a row: its task's status, else its submit state, except that a
# `sending` row older than the cut-off reads as `lost` (the rule is `rules.Ledger._stale_before`).
SHOWN_STATUS = (
    "(CASE WHEN state = {sending} AND created_at < {stale_before} THEN {lost} ELSE COALESCE(status, state) END)"
)


class Statements(NamedTuple):
    """The ledger's statements, by what they do (templates here; rendered, `Dialect.render`)."""

    by_key: str = "SELECT * FROM tasks WHERE tenant = {tenant} AND idempotency_key = {key}"
    # The latest identical request in the window, unless it failed or was refused.
    duplicate: str = (
        "SELECT * FROM tasks WHERE tenant = {tenant} AND fingerprint = {fingerprint} AND created_at >= {since} "
        "AND state != {refused} AND (status IS NULL OR status != {failed}) ORDER BY created_at DESC LIMIT 1"
    )
    release_key: str = "UPDATE tasks SET idempotency_key = NULL WHERE row_id = {row_id} AND tenant = {tenant}"
    counted_since: str = (
        "SELECT created_at FROM tasks WHERE tenant = {tenant} AND created_at > {since} AND state != {refused} "
        "ORDER BY created_at ASC"
    )
    insert: str = (
        "INSERT INTO tasks (tenant, action, params, fingerprint, idempotency_key, state, created_at, updated_at) "
        "VALUES ({tenant}, {action}, {params}, {fingerprint}, {key}, {sending}, {now}, {now}) RETURNING *"
    )
    accept: str = (
        "UPDATE tasks SET task_id = {task_id}, state = {accepted}, status = {status}, result = {result}, "
        "updated_at = {now} WHERE row_id = {row_id} AND tenant = {tenant}"
    )
    lose: str = (
        "UPDATE tasks SET state = {lost}, error = {error}, updated_at = {now} "
        "WHERE row_id = {row_id} AND tenant = {tenant} AND state = {sending}"
    )
    # `lose`, for a row the stale rule already reads as lost: written down only if it still is.
    settle_stale: str = (
        "UPDATE tasks SET state = {lost}, error = {error}, updated_at = {now} "
        "WHERE row_id = {row_id} AND tenant = {tenant} AND state = {sending} AND created_at < {stale_before}"
    )
    forget: str = "DELETE FROM tasks WHERE row_id = {row_id} AND tenant = {tenant} AND state = {sending}"
    # A finished result never changes: only rows whose status is not one of `finished`.
    record: str = (
        "UPDATE tasks SET status = {status}, result = {result}, updated_at = {now} "
        "WHERE tenant = {tenant} AND task_id = {task_id} "
        "AND (status IS NULL OR status NOT IN (SELECT value FROM {finished:rows}))"
    )
    entry: str = "SELECT * FROM tasks WHERE row_id = {row_id} AND tenant = {tenant}"
    find: str = "SELECT * FROM tasks WHERE tenant = {tenant} AND task_id IN (SELECT value FROM {task_ids:rows})"
    # Newest first; a filter whose parameter is NULL is off. (Each parameter is compared before
    # it is tested for NULL: PostgreSQL gives a parameter the type of the place it first meets.)
    recent: str = (
        "SELECT * FROM tasks WHERE tenant = {tenant} "  # noqa: S608 (a template of parameters, rendered once)
        f"AND ({SHOWN_STATUS} IN (SELECT value FROM {{statuses:rows}}) OR {{statuses}} IS NULL) "
        "AND (state != {hidden} OR {hidden} IS NULL) "
        "AND (created_at >= {since} OR {since} IS NULL) AND (created_at < {until} OR {until} IS NULL) "
        "AND (created_at < {after_time} OR (created_at = {after_time} AND row_id < {after_row}) "
        "OR {after_time} IS NULL) "
        "ORDER BY created_at DESC, row_id DESC LIMIT {limit}"
    )


TEMPLATES = Statements()


@dataclass(frozen=True)
class Dialect:
    """How one backend spells what the templates leave open."""

    parameter: str  # a named parameter, `{}` standing for its name
    rows: str  # the rows of a JSON array parameter, `{}` standing for the parameter
    serial: str  # the type of an auto-numbered primary key
    float: str  # the type of a double-precision number

    def render(self) -> tuple[Statements, tuple[str, ...]]:
        """The statements and the migrations as this backend runs them."""
        spelling = _Spelling(self)
        statements = Statements(*(template.format_map(spelling) for template in TEMPLATES))
        return statements, tuple(migration.format_map(spelling) for migration in MIGRATIONS)


class _Parameter:
    def __init__(self, name: str, dialect: Dialect) -> None:
        self.name, self.dialect = name, dialect

    def __format__(self, spec: str) -> str:
        parameter = self.dialect.parameter.format(self.name)
        if spec == "rows":
            return self.dialect.rows.format(parameter)
        if spec:
            raise ValueError(f"unknown parameter form {spec!r} in a ledger statement")
        return parameter


class _Spelling(dict[str, object]):
    def __init__(self, dialect: Dialect) -> None:
        super().__init__(serial=dialect.serial, float=dialect.float)
        self.dialect = dialect

    def __missing__(self, name: str) -> _Parameter:
        return _Parameter(name, self.dialect)
