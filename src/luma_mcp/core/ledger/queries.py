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
parameters whose values the rules (`submits`, `tasks`, `row_status`) pass. And every
statement on `tasks` compares `tenant = {tenant}`, writes by row id included; `scoped.Scoped`
supplies that parameter (tests/integration/test_ledger_tenants.py checks each statement has
the clause). The one exception, kept apart in `CallbackStatements`: finding a row by its
callback secret's hash.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, TypeVar

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
    # 2: OAuth sign-in (`luma_mcp.oauth`): registered clients, grants (one per sign-in, with
    # the person's API token sealed) and their codes and tokens, kept only as hashes.
    """
    CREATE TABLE oauth_clients (
        client_id     TEXT PRIMARY KEY,
        info          TEXT NOT NULL,
        sealed_secret TEXT,
        created_at    {float} NOT NULL,
        expires_at    {float} NOT NULL
    );
    CREATE INDEX oauth_clients_by_expiry ON oauth_clients (expires_at);
    CREATE TABLE oauth_grants (
        grant_id     TEXT PRIMARY KEY,
        client_id    TEXT NOT NULL,
        tenant       TEXT NOT NULL,
        subject      TEXT NOT NULL,
        sealed_token TEXT,
        scopes       TEXT NOT NULL,
        resource     TEXT NOT NULL,
        created_at   {float} NOT NULL,
        expires_at   {float} NOT NULL
    );
    CREATE INDEX oauth_grants_by_subject ON oauth_grants (subject, created_at);
    CREATE INDEX oauth_grants_by_client ON oauth_grants (client_id);
    CREATE INDEX oauth_grants_by_expiry ON oauth_grants (expires_at);
    CREATE TABLE oauth_tokens (
        token_hash  TEXT PRIMARY KEY,
        kind        TEXT NOT NULL,
        grant_id    TEXT NOT NULL,
        expires_at  {float} NOT NULL,
        used_at     {float},
        details     TEXT
    );
    CREATE INDEX oauth_tokens_by_grant ON oauth_tokens (grant_id);
    CREATE INDEX oauth_tokens_by_expiry ON oauth_tokens (expires_at);
    """,
    # 3: long jobs (issue 13): the hash of the secret in our callback URL, when the submit
    # carried one, and when the MCP Tasks extension stopped following the task (tasks/cancel).
    """
    ALTER TABLE tasks ADD COLUMN callback_hash TEXT;
    ALTER TABLE tasks ADD COLUMN unfollowed_at {float};
    CREATE UNIQUE INDEX tasks_by_callback ON tasks (callback_hash) WHERE callback_hash IS NOT NULL;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

# What a listing shows for a row: its task's status, else its submit state, except that a
# `sending` row older than the cut-off reads as `lost` (the rule is `row_status.RowStatus._stale_before`).
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
        "INSERT INTO tasks (tenant, action, params, fingerprint, idempotency_key, state, callback_hash, "
        "created_at, updated_at) "
        "VALUES ({tenant}, {action}, {params}, {fingerprint}, {key}, {sending}, {callback_hash}, {now}, {now}) "
        "RETURNING *"
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
    # Only while it runs: the database orders a cancel and a finish, whatever the clocks say.
    unfollow: str = (
        "UPDATE tasks SET unfollowed_at = {now} WHERE tenant = {tenant} AND task_id = {task_id} "
        "AND unfollowed_at IS NULL AND (status IS NULL OR status NOT IN (SELECT value FROM {finished:rows}))"
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


class GrantStatements(NamedTuple):
    """OAuth sign-in's statements (`oauth.grants`): clients, grants, and their codes and tokens.

    A token is found by its hash only; a grant read through a token is live (not expired);
    single use (codes, rotated refresh tokens) is one conditional update whose row count says
    who used it first.
    """

    add_client: str = (
        "INSERT INTO oauth_clients (client_id, info, sealed_secret, created_at, expires_at) "
        "VALUES ({client_id}, {info}, {sealed_secret}, {now}, {expires_at})"
    )
    client: str = "SELECT info, sealed_secret FROM oauth_clients WHERE client_id = {client_id} AND expires_at > {now}"
    live_clients: str = "SELECT COUNT(*) AS clients FROM oauth_clients WHERE expires_at > {now}"
    # When full, the oldest registration nobody has signed in with makes room.
    evict_unused_client: str = (
        "DELETE FROM oauth_clients WHERE client_id = (SELECT c.client_id FROM oauth_clients c "
        "WHERE NOT EXISTS (SELECT 1 FROM oauth_grants g WHERE g.client_id = c.client_id) "
        "ORDER BY c.created_at LIMIT 1)"
    )
    keep_client: str = (
        "UPDATE oauth_clients SET expires_at = {expires_at} WHERE client_id = {client_id} AND expires_at < {expires_at}"
    )
    add_grant: str = (
        "INSERT INTO oauth_grants (grant_id, client_id, tenant, subject, sealed_token, scopes, resource, "
        "created_at, expires_at) VALUES ({grant_id}, {client_id}, {tenant}, {subject}, {sealed_token}, {scopes}, "
        "{resource}, {now}, {expires_at})"
    )
    # A subject's grants beyond the newest {keep}: the oldest go first.
    surplus_grants: str = (
        "SELECT grant_id FROM oauth_grants WHERE subject = {subject} ORDER BY created_at DESC, grant_id "
        "LIMIT 100 OFFSET {keep}"
    )
    extend_grant: str = "UPDATE oauth_grants SET expires_at = {expires_at} WHERE grant_id = {grant_id}"
    # Changes nothing: takes the live grant's row lock (PostgreSQL; SQLite's writers take turns
    # anyway), so an exchange and a revoke of one grant on two replicas go one after the other.
    lock_grant: str = (
        "UPDATE oauth_grants SET expires_at = expires_at WHERE grant_id = {grant_id} AND expires_at > {now}"
    )
    issue: str = (
        "INSERT INTO oauth_tokens (token_hash, kind, grant_id, expires_at, details) "
        "VALUES ({token_hash}, {kind}, {grant_id}, {expires_at}, {details})"
    )
    by_hash: str = (
        "SELECT t.kind, t.expires_at AS token_expires_at, t.used_at, t.details, g.grant_id, g.client_id, "
        "g.tenant, g.subject, g.sealed_token, g.scopes, g.resource, g.expires_at "
        "FROM oauth_tokens t JOIN oauth_grants g ON g.grant_id = t.grant_id "
        "WHERE t.token_hash = {token_hash} AND t.kind = {kind} AND g.expires_at > {now}"
    )
    spend: str = (
        "UPDATE oauth_tokens SET used_at = {now} "
        "WHERE token_hash = {token_hash} AND grant_id = {grant_id} AND used_at IS NULL"
    )
    drop_kind: str = "DELETE FROM oauth_tokens WHERE grant_id = {grant_id} AND kind = {kind}"
    # Spent refresh tokens of a grant but the one just spent (kept to catch its reuse).
    drop_spent: str = (
        "DELETE FROM oauth_tokens WHERE grant_id = {grant_id} AND kind = {kind} AND used_at IS NOT NULL "
        "AND token_hash != {token_hash}"
    )
    drop_grant_tokens: str = "DELETE FROM oauth_tokens WHERE grant_id = {grant_id}"
    drop_grant: str = "DELETE FROM oauth_grants WHERE grant_id = {grant_id}"
    prune_tokens: str = "DELETE FROM oauth_tokens WHERE expires_at < {now}"
    prune_grant_tokens: str = (
        "DELETE FROM oauth_tokens WHERE grant_id IN (SELECT grant_id FROM oauth_grants WHERE expires_at < {now})"
    )
    prune_grants: str = "DELETE FROM oauth_grants WHERE expires_at < {now}"
    prune_clients: str = "DELETE FROM oauth_clients WHERE expires_at < {now}"


GRANT_TEMPLATES = GrantStatements()


class CallbackStatements(NamedTuple):
    """The callback receiver's statements (`callbacks`): the one read of `tasks` by something
    other than a tenant, since a callback names no tenant. It finds a row by the hash of the
    secret only our URL held; everything after runs as that row's tenant (`for_tenant`)."""

    by_callback: str = "SELECT * FROM tasks WHERE callback_hash = {callback_hash}"
    # A finished task's secret stays usable a while (the provider may deliver again), then
    # goes: so does a task's that never finished in a week.
    prune_callbacks: str = (
        "UPDATE tasks SET callback_hash = NULL WHERE callback_hash IS NOT NULL "
        "AND ((status IN (SELECT value FROM {finished:rows}) AND updated_at < {finished_before}) "
        "OR created_at < {created_before})"
    )


CALLBACK_TEMPLATES = CallbackStatements()
StatementsT = TypeVar("StatementsT", Statements, GrantStatements, CallbackStatements)


@dataclass(frozen=True)
class Dialect:
    """How one backend spells what the templates leave open."""

    parameter: str  # a named parameter, `{}` standing for its name
    rows: str  # the rows of a JSON array parameter, `{}` standing for the parameter
    serial: str  # the type of an auto-numbered primary key
    float: str  # the type of a double-precision number

    def render(self, templates: StatementsT) -> StatementsT:
        """`templates` (one of the statement tuples above) as this backend runs them."""
        spelling = _Spelling(self)
        return type(templates)(*(template.format_map(spelling) for template in templates))

    def migrations(self) -> tuple[str, ...]:
        """The migrations as this backend runs them."""
        spelling = _Spelling(self)
        return tuple(migration.format_map(spelling) for migration in MIGRATIONS)


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
