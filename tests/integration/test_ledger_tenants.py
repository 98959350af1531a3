"""Tenant isolation, exercised on the ledger itself, on both backends: one tenant's view
(`Ledger.for_tenant`) given the row id or task id of another tenant's row reads nothing and
changes nothing, and what the process holds in memory (held answers, refusals) is each
tenant's own. Each check here fails if the tenant clause is dropped from its statement."""

from __future__ import annotations

import string
from typing import Any

import pytest

from luma_mcp.api.models import SubmitState, TaskStatus
from luma_mcp.core.ledger import Ledger, SpendingLimits
from luma_mcp.core.ledger.queries import TEMPLATES, Dialect
from luma_mcp.core.results import TaskResult

from ..helpers.common import pending, raw_sql

pytestmark = pytest.mark.anyio

ROWS = "SELECT row_id, tenant, task_id, state, status, result, error, idempotency_key FROM tasks ORDER BY row_id"


async def test_another_tenants_row_ids_and_task_ids_change_nothing(store: str, ledger: Ledger) -> None:
    alice, bob = ledger.for_tenant("alice"), ledger.for_tenant("bob")
    accepted = await alice.reserve("generate", {"prompt": "accepted"})
    await alice.accept(accepted.entry.row_id, "task-a", pending("task-a"))
    sending = await alice.reserve("generate", {"prompt": "sending"})
    before = raw_sql(store, ROWS)

    await bob.accept(sending.entry.row_id, "task-b", pending("task-b"))
    await bob.accept(accepted.entry.row_id, "task-b2", pending("task-b2"))
    await bob.lose(sending.entry.row_id, "bob says lost")
    await bob.forget(sending.entry.row_id, "bob says refused")
    await bob.record([TaskResult(task_id="task-a", status=TaskStatus.FAILED)])

    assert raw_sql(store, ROWS) == before  # alice's rows, untouched by every write
    entry = await alice.entry(sending.entry.row_id)
    assert entry is not None and entry.state is SubmitState.SENDING and entry.task_id is None
    done = (await alice.find(["task-a"]))["task-a"]
    assert done.result == pending("task-a") and done.state is SubmitState.ACCEPTED


async def test_another_tenants_row_ids_and_task_ids_read_nothing(ledger: Ledger) -> None:
    alice, bob = ledger.for_tenant("alice"), ledger.for_tenant("bob")
    first = await alice.reserve("generate", {"prompt": "secret"}, idempotency_key="k1", dedupe_window=300)
    await alice.accept(first.entry.row_id, "task-a", pending("task-a"))

    assert await bob.entry(first.entry.row_id) is None
    assert await bob.find(["task-a"]) == {}
    assert await bob.recent() == ([], None)
    assert await bob.recent(statuses={"pending"}) == ([], None)
    # The same request and the same key are bob's to pay for: alice's task is not handed over.
    same = await bob.reserve("generate", {"prompt": "secret"}, dedupe_window=300)
    by_key = await bob.reserve("generate", {"prompt": "secret"}, idempotency_key="k1", dedupe_window=300)
    assert not same.reused and not by_key.reused and by_key.entry.row_id != same.entry.row_id
    # And alice's submits do not count against bob's spending limit.
    limited = await bob.reserve("generate", {"prompt": "third"}, limits=SpendingLimits(per_hour=3))
    assert not limited.reused


async def test_held_answers_and_refusals_are_each_tenants_own(store: str, ledger: Ledger) -> None:
    alice, bob = ledger.for_tenant("alice"), ledger.for_tenant("bob")
    waiting = await alice.reserve("generate", {"prompt": "waiting"})
    refused = await alice.reserve("generate", {"prompt": "refused"})
    await alice.forget(refused.entry.row_id, "alice's token was rejected")
    assert alice.refusal(refused.entry.row_id) == "alice's token was rejected"
    assert bob.refusal(refused.entry.row_id) is None

    # A held answer under bob's name for alice's row id is not alice's task id, now or once written.
    bob.hold_answer(waiting.entry.row_id, "task-b", pending("task-b"))
    entry = await alice.entry(waiting.entry.row_id)
    assert entry is not None and entry.task_id is None and entry.state is SubmitState.SENDING
    await bob.reserve("generate", {"prompt": "any write flushes held answers"})
    assert raw_sql(store, "SELECT task_id FROM tasks WHERE row_id = ?", (waiting.entry.row_id,)) == [(None,)]
    # Alice's own held answer is hers.
    alice.hold_answer(waiting.entry.row_id, "task-a", pending("task-a"))
    entry = await alice.entry(waiting.entry.row_id)
    assert entry is not None and entry.task_id == "task-a"


@pytest.mark.parametrize("dialect", [":{}", "%({})s"], ids=["sqlite", "postgres"])
def test_every_statement_names_the_tenant(dialect: str) -> None:
    """Static, and beside the behaviour above: every statement on `tasks` compares the tenant."""
    rendered = Dialect(parameter=dialect, rows="each({})", serial="", float="").render(TEMPLATES)
    tenant = dialect.format("tenant")
    for name, statement in zip(TEMPLATES._fields, rendered, strict=True):
        fields = {field for _, field, _, _ in string.Formatter().parse(getattr(TEMPLATES, name)) if field}
        assert "tenant" in fields, name
        clause: Any = f"tenant = {tenant}" if not statement.startswith("INSERT") else f"VALUES ({tenant},"
        assert clause in statement, (name, statement)
