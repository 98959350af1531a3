"""The ledger's part in long jobs (issue 13), on both backends: callback secrets' hashes,
unfollowed tasks, announcements of finished tasks, and migration 3 from older schemas."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import anyio
import pytest

from luma_mcp.api.models import TaskStatus
from luma_mcp.core.ledger import Ledger
from luma_mcp.core.ledger.queries import MIGRATIONS, SCHEMA_VERSION
from luma_mcp.core.ledger.sqlite import DIALECT as SQLITE
from luma_mcp.core.results import TaskResult

from ..helpers.common import open_store, pending, raw_sql

pytestmark = pytest.mark.anyio

PARAMS = {"action": "generate", "prompt": "a fox"}
DONE = TaskResult(task_id="t1", status=TaskStatus.SUCCEEDED, video_url="https://x/v.mp4")


async def accepted(ledger: Ledger, tenant: str, task_id: str, **options: object) -> int:
    view = ledger.for_tenant(tenant)
    reservation = await view.reserve("generate", {**PARAMS, "prompt": task_id}, **options)  # type: ignore[arg-type]
    await view.accept(reservation.entry.row_id, task_id, pending(task_id))
    return reservation.entry.row_id


async def test_a_callback_hash_finds_its_row_and_tenant(ledger: Ledger) -> None:
    await accepted(ledger, "alice", "t1", callback_hash="h1")
    await accepted(ledger, "bob", "t2")
    entry = await ledger.by_callback("h1")
    assert entry is not None and (entry.tenant, entry.task_id, entry.callback_expected) == ("alice", "t1", True)
    assert await ledger.by_callback("h2") is None
    assert not (await ledger.for_tenant("bob").find(["t2"]))["t2"].callback_expected


async def test_a_reused_reservation_keeps_the_first_callback(ledger: Ledger) -> None:
    own = ledger.for_tenant("")
    first = await own.reserve("generate", PARAMS, dedupe_window=300, callback_hash="first")
    again = await own.reserve("generate", PARAMS, dedupe_window=300, callback_hash="second")
    assert again.reused and again.entry.row_id == first.entry.row_id
    assert await ledger.by_callback("second") is None  # the secret of a call that sent nothing opens nothing
    found = await ledger.by_callback("first")
    assert found is not None and found.row_id == first.entry.row_id


async def test_unfollow_is_the_tenants_own_and_the_first_time_counts(ledger: Ledger) -> None:
    await accepted(ledger, "alice", "t1")
    alice, bob = ledger.for_tenant("alice"), ledger.for_tenant("bob")
    assert await bob.unfollow("t1") is None
    assert (await alice.find(["t1"]))["t1"].unfollowed_at is None
    first = await alice.unfollow("t1")
    assert first is not None and first.unfollowed_at is not None
    again = await alice.unfollow("t1")
    assert again is not None and again.unfollowed_at == first.unfollowed_at
    assert await alice.unfollow("no-such-task") is None
    # Unfollowing changes nothing else: the task's result is still recorded as it comes.
    await alice.record([DONE])
    entry = (await alice.find(["t1"]))["t1"]
    assert entry.result == DONE and entry.unfollowed_at == first.unfollowed_at


async def test_a_task_recorded_finished_is_not_unfollowed(ledger: Ledger) -> None:
    """A cancel that comes after the finish is committed changes nothing, whatever the clocks:
    the database decides which came first."""
    await accepted(ledger, "alice", "t1")
    alice = ledger.for_tenant("alice")
    await alice.record([DONE])
    after = await alice.unfollow("t1")
    assert after is not None and after.finished and after.unfollowed_at is None


async def test_recording_a_finish_wakes_the_waits_on_it(ledger: Ledger) -> None:
    await accepted(ledger, "alice", "t1")
    await accepted(ledger, "alice", "t2")
    alice = ledger.for_tenant("alice")
    with alice.watch(["t1"]) as on_t1, alice.watch(["t1", "t2"]) as on_either:
        await alice.record([pending("t1"), pending("t2")])
        assert not on_t1.is_set() and not on_either.is_set()  # still running: nobody wakes
        await alice.record([TaskResult(task_id="t2", status=TaskStatus.FAILED)])
        assert on_either.is_set() and not on_t1.is_set()
        await alice.record([DONE])
        assert on_t1.is_set()
    assert ledger.finishes.watched() == 0  # a finished wait leaves nothing behind


@pytest.mark.parametrize("store", ["postgres"], indirect=True)
async def test_a_finish_is_notified_to_every_process_on_postgres(store: str, ledger: Ledger) -> None:
    import psycopg

    from luma_mcp.core.ledger.postgres import FINISHED_CHANNEL

    await accepted(ledger, "alice", "t1")
    await accepted(ledger, "alice", "t2")
    async with await psycopg.AsyncConnection.connect(store, autocommit=True) as listener:
        await listener.execute(f"LISTEN {FINISHED_CHANNEL}")
        await ledger.for_tenant("alice").record([pending("t1"), DONE, pending("t2")])
        heard = []
        with anyio.move_on_after(5):
            async for notice in listener.notifies(timeout=5):
                heard.append(notice.payload)
                break
        assert heard == ["t1"]
        # Nothing more: a task still running is not announced.
        assert [n async for n in listener.notifies(timeout=0.3)] == []


async def test_old_callback_secrets_are_forgotten(store: str, ledger: Ledger) -> None:
    for task_id in ("old-finished", "young-finished", "old-running", "young-running"):
        await accepted(ledger, "", task_id, callback_hash=f"hash-{task_id}")
    await ledger.for_tenant("").record(
        [TaskResult(task_id=t, status=TaskStatus.SUCCEEDED) for t in ("old-finished", "young-finished")]
    )
    day, week = 86400, 7 * 86400
    raw_sql(store, "UPDATE tasks SET updated_at = updated_at - ? WHERE task_id = ?", (day + 60, "old-finished"))
    raw_sql(store, "UPDATE tasks SET created_at = created_at - ? WHERE task_id = ?", (week + 60, "old-running"))
    await ledger.prune_callbacks()
    kept = {
        t
        for t in ("old-finished", "young-finished", "old-running", "young-running")
        if await ledger.by_callback(f"hash-{t}")
    }
    assert kept == {"young-finished", "young-running"}


def build_v2_sqlite(path: Path) -> None:
    """A ledger as release 2 of the schema left it, with one finished task in it."""
    with sqlite3.connect(path) as db:
        for script in SQLITE.migrations()[:2]:
            db.executescript(script)
        db.execute("PRAGMA user_version = 2")
        db.execute(
            "INSERT INTO tasks (tenant, task_id, action, params, fingerprint, state, status, result, created_at, "
            "updated_at) VALUES ('', 't-old', 'generate', ?, 'f', 'accepted', 'succeeded', ?, 1.0, 2.0)",
            (json.dumps(PARAMS), DONE.model_copy(update={"task_id": "t-old"}).model_dump_json()),
        )


async def test_migration_3_keeps_a_version_2_sqlite_ledger(tmp_path: Path) -> None:
    path = tmp_path / "v2.sqlite3"
    build_v2_sqlite(path)
    ledger = open_store(str(path))
    try:
        own = ledger.for_tenant("")
        old = (await own.find(["t-old"]))["t-old"]
        assert old.finished and old.prompt == "a fox" and not old.callback_expected and old.unfollowed_at is None
        await accepted(ledger, "", "t-new", callback_hash="h-new")
        assert (await ledger.by_callback("h-new")) is not None
    finally:
        ledger.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == len(MIGRATIONS) == 3


async def test_migration_3_keeps_a_version_2_postgres_ledger(postgres_url: str) -> None:
    import psycopg

    from luma_mcp.core.ledger.postgres import DIALECT as POSTGRES

    with psycopg.connect(postgres_url, autocommit=True) as db:
        for script in POSTGRES.migrations()[:2]:
            for statement in filter(str.strip, script.split(";")):
                db.execute(statement)
        db.execute("CREATE TABLE luma_schema (version INTEGER NOT NULL)")
        db.execute("INSERT INTO luma_schema (version) VALUES (2)")
        db.execute(
            "INSERT INTO tasks (tenant, task_id, action, params, fingerprint, state, status, result, created_at, "
            "updated_at) VALUES ('', 't-old', 'generate', %s, 'f', 'accepted', 'succeeded', %s, 1.0, 2.0)",
            (json.dumps(PARAMS), DONE.model_copy(update={"task_id": "t-old"}).model_dump_json()),
        )
    ledger = open_store(postgres_url)
    try:
        old = (await ledger.for_tenant("").find(["t-old"]))["t-old"]
        assert old.finished and not old.callback_expected and old.unfollowed_at is None
        await accepted(ledger, "", "t-new", callback_hash="h-new")
        assert (await ledger.by_callback("h-new")) is not None
    finally:
        ledger.close()
    assert raw_sql(postgres_url, "SELECT version FROM luma_schema") == [(3,)]
