"""The ledger on a real SQLite file: write order, reuse rules, limits, paging, migrations, concurrency."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import anyio
import pytest

from luma_mcp.api.errors import LedgerError, SpendingLimitError
from luma_mcp.api.models import SubmitState, TaskStatus
from luma_mcp.core.ledger import (
    SCHEMA_VERSION,
    Ledger,
    SpendingLimits,
    SQLiteLedger,
)
from luma_mcp.core.results import TaskResult

from ..helpers.common import open_store, pending

pytestmark = pytest.mark.anyio

PARAMS = {"action": "generate", "prompt": "a fox"}


async def test_reserve_then_accept_then_record(ledger: Ledger) -> None:
    own = ledger.for_tenant("")
    reservation = await own.reserve("generate", PARAMS)
    assert not reservation.reused and reservation.entry.state is SubmitState.SENDING
    assert reservation.entry.task_id is None  # written before anything is sent
    await own.accept(reservation.entry.row_id, "t1", pending("t1"))
    done = TaskResult(task_id="t1", status=TaskStatus.SUCCEEDED, video_url="https://x/v.mp4")
    await own.record([done])
    entry = (await own.find(["t1"]))["t1"]
    assert entry.state is SubmitState.ACCEPTED and entry.finished and entry.result == done
    # A finished result never changes back.
    await own.record([pending("t1")])
    assert (await own.find(["t1"]))["t1"].result == done


async def test_rows_belong_to_their_tenant(ledger: Ledger) -> None:
    mine = await ledger.for_tenant("alice").reserve("generate", PARAMS, dedupe_window=300)
    await ledger.for_tenant("alice").accept(mine.entry.row_id, "t1", pending("t1"))
    assert await ledger.for_tenant("bob").find(["t1"]) == {}
    assert (await ledger.for_tenant("bob").recent())[0] == []
    theirs = await ledger.for_tenant("bob").reserve("generate", PARAMS, dedupe_window=300)
    assert not theirs.reused  # the same request from another tenant is theirs to pay for
    await ledger.for_tenant("bob").record([TaskResult(task_id="t1", status=TaskStatus.FAILED)])
    assert (await ledger.for_tenant("alice").find(["t1"]))["t1"].result == pending("t1")


async def test_idempotency_key(ledger: Ledger) -> None:
    own = ledger.for_tenant("")
    first = await own.reserve("generate", PARAMS, idempotency_key="k1")
    await own.accept(first.entry.row_id, "t1", pending("t1"))
    again = await own.reserve("generate", PARAMS, idempotency_key="k1", new_take=True)
    assert again.reused and again.entry.task_id == "t1"
    with pytest.raises(LedgerError, match="already used for a different request"):
        await own.reserve("generate", {**PARAMS, "prompt": "other"}, idempotency_key="k1")


async def test_a_refused_submit_frees_its_key_and_is_not_a_duplicate(ledger: Ledger) -> None:
    own = ledger.for_tenant("")
    first = await own.reserve("generate", PARAMS, idempotency_key="k1", dedupe_window=300)
    await own.forget(first.entry.row_id, "moderation said no")
    assert await own.entry(first.entry.row_id) is None  # nothing was charged: nothing is kept
    again = await own.reserve("generate", PARAMS, idempotency_key="k1", dedupe_window=300)
    assert not again.reused and again.entry.row_id != first.entry.row_id


async def test_a_submit_whose_token_was_refused_leaves_no_row(ledger: Ledger) -> None:
    made_up = ledger.for_tenant("made-up")
    kept = await made_up.reserve("generate", {"prompt": "kept"})
    await made_up.accept(kept.entry.row_id, "t1", pending("t1"))
    await made_up.forget(kept.entry.row_id, "no")  # only a row still being sent can be forgotten
    doomed = await made_up.reserve("generate", PARAMS, idempotency_key="k1")
    await made_up.forget(doomed.entry.row_id, "The API token was rejected")
    assert made_up.refusal(doomed.entry.row_id) == "The API token was rejected"
    assert await made_up.entry(doomed.entry.row_id) is None
    assert [e.task_id for e in (await made_up.recent(hide_refused=False))[0]] == ["t1"]
    again = await made_up.reserve("generate", PARAMS, idempotency_key="k1")
    assert not again.reused  # the key is free again


async def test_duplicate_window_new_take_and_failed_tasks(ledger: Ledger) -> None:
    own = ledger.for_tenant("")
    first = await own.reserve("generate", PARAMS, dedupe_window=300)
    await own.accept(first.entry.row_id, "t1", pending("t1"))
    duplicate = await own.reserve("generate", dict(reversed(PARAMS.items())), dedupe_window=300)
    assert duplicate.reused and duplicate.entry.task_id == "t1"  # key order does not matter
    take = await own.reserve("generate", PARAMS, dedupe_window=300, new_take=True)
    assert not take.reused
    assert not (await own.reserve("extend", PARAMS, dedupe_window=300)).reused
    # Neither a failed task nor a refused submit stands in the way of trying again.
    await own.record([TaskResult(task_id="t1", status=TaskStatus.FAILED)])
    await own.forget(take.entry.row_id, "x")
    assert not (await own.reserve("generate", PARAMS, dedupe_window=300)).reused


async def test_duplicate_window_expires(ledger: Ledger) -> None:
    own = ledger.for_tenant("")
    first = await own.reserve("generate", PARAMS, dedupe_window=0.2)
    await own.accept(first.entry.row_id, "t1", pending("t1"))
    await anyio.sleep(0.3)
    assert not (await own.reserve("generate", PARAMS, dedupe_window=0.2)).reused


async def test_spending_limits(ledger: Ledger) -> None:
    limits = SpendingLimits(per_hour=2)
    for i in range(2):
        own = ledger.for_tenant("")
        await own.reserve("generate", {"prompt": f"p{i}"}, limits=limits)
    refused = await own.reserve("generate", {"prompt": "free"}, limits=SpendingLimits())
    await own.forget(refused.entry.row_id, "no")  # refused submits cost nothing and do not count
    with pytest.raises(SpendingLimitError) as caught:
        await own.reserve("generate", {"prompt": "p3"}, limits=limits)
    message = str(caught.value)
    assert "LUMA_MAX_SUBMITS_PER_HOUR" in message and "limit is 2" in message and "UTC" in message
    assert "in about 60 min" in message
    assert len((await own.recent(limit=50))[0]) == 2  # nothing was kept for either refusal
    assert not (await ledger.for_tenant("other").reserve("generate", {"prompt": "p"}, limits=limits)).reused


async def test_recent_pages_filters_and_cursor(ledger: Ledger) -> None:
    for i in range(7):
        own = ledger.for_tenant("")
        reservation = await own.reserve("generate", {"prompt": f"p{i}"})
        await own.accept(reservation.entry.row_id, f"t{i}", pending(f"t{i}"))
    await own.record([TaskResult(task_id="t2", status=TaskStatus.SUCCEEDED, video_url="https://x/2.mp4")])
    seen: list[str | None] = []
    cursor = None
    while True:
        page, cursor = await own.recent(limit=3, cursor=cursor)
        seen += [e.task_id for e in page]
        if cursor is None:
            break
    assert seen == [f"t{i}" for i in reversed(range(7))]
    succeeded, _ = await own.recent(statuses={"succeeded"})
    assert [e.task_id for e in succeeded] == ["t2"]
    middle = (await own.find(["t3"]))["t3"].created_at
    newer, _ = await own.recent(since=middle)
    assert [e.task_id for e in newer] == ["t6", "t5", "t4", "t3"]
    older, _ = await own.recent(until=middle)
    assert [e.task_id for e in older] == ["t2", "t1", "t0"]
    with pytest.raises(LedgerError, match="without a cursor"):
        await own.recent(cursor="not-a-cursor")


async def test_reopening_keeps_rows_and_refuses_a_newer_schema(store: str) -> None:
    first = open_store(store)
    first_own = first.for_tenant("")
    reservation = await first_own.reserve("generate", PARAMS)
    await first_own.accept(reservation.entry.row_id, "t1", pending("t1"))
    first.close()
    again = open_store(store)
    assert (await again.for_tenant("").find(["t1"]))["t1"].prompt == "a fox"
    again.close()
    if store.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(store, autocommit=True) as db:
            assert db.execute("SELECT version FROM luma_schema").fetchone() == (SCHEMA_VERSION,)
            db.execute("UPDATE luma_schema SET version = %s", (SCHEMA_VERSION + 1,))
    else:
        with sqlite3.connect(store) as db:
            assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    newer = open_store(store)
    with pytest.raises(LedgerError, match="newer luma-mcp"):
        await newer.for_tenant("").find(["t1"])


def test_processes_opening_a_new_ledger_at_once_take_turns(tmp_path: Path) -> None:
    """Assistants started together open a fresh ledger file at the same moment.

    Turning a new file to WAL is the one lock SQLite does not wait for through busy_timeout
    (two openers would deadlock), so without our retry about one round in twelve here
    failed with "database is locked".
    """
    failures: list[BaseException] = []
    for round_number in range(300):
        ledgers = [SQLiteLedger(tmp_path / f"ledger-{round_number}.sqlite3") for _ in range(4)]
        start = threading.Barrier(len(ledgers))

        def open_at_once(ledger: SQLiteLedger, start: threading.Barrier) -> None:
            start.wait()
            try:
                ledger._connect()  # what the first call of every process does
            except BaseException as exc:  # surfaced below
                failures.append(exc)
            finally:
                ledger.close()

        threads = [threading.Thread(target=open_at_once, args=(ledger, start)) for ledger in ledgers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert not failures, failures[:3]
    with sqlite3.connect(tmp_path / "ledger-0.sqlite3") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_two_ledgers_on_one_store_lose_nothing(store: str) -> None:
    """Two servers share one store: every reservation lands once, one key gives one row."""
    errors: list[BaseException] = []
    row_ids: list[int] = []
    lock = threading.Lock()

    def writer(name: str) -> None:
        async def work() -> None:
            ledger = open_store(store)
            own = ledger.for_tenant("")
            for i in range(40):
                r = await own.reserve("generate", {"prompt": f"{name}-{i}"}, dedupe_window=300)
                await own.accept(r.entry.row_id, f"{name}-{i}", pending(f"{name}-{i}"))
                shared = await own.reserve("generate", PARAMS, idempotency_key="same-key")
                with lock:
                    row_ids.append(shared.entry.row_id)
            ledger.close()

        try:
            anyio.run(work)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(name,)) for name in ("a", "b")]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert time.monotonic() - started < 60
    reader = open_store(store)
    rows = [(e.task_id, e.idempotency_key) for e in anyio.run(lambda: reader.for_tenant("").recent(limit=500))[0]]
    reader.close()
    assert len(rows) == 81  # 40 + 40 + one row for the shared key
    assert len({task_id for task_id, _ in rows if task_id}) == 80
    assert len(set(row_ids)) == 1


def test_the_sqlite_path_never_imports_the_postgres_backend(tmp_path: Path) -> None:
    """psycopg is optional, and the stdio server's cold start is budgeted: a server on SQLite,
    its ledger opened and used, has imported neither psycopg nor `ledger.postgres`."""
    code = (
        "import sys, anyio\n"
        "from luma_mcp.config import Settings\n"
        "from luma_mcp.core.ledger import open_ledger\n"
        "from luma_mcp.server import create_server\n"
        f"settings = Settings(_env_file=None, LUMA_LEDGER_PATH={str(tmp_path / 'l.sqlite3')!r})\n"
        "create_server(settings)\n"
        "ledger = open_ledger(settings)\n"
        "anyio.run(ledger.for_tenant('').recent)\n"
        "print(sorted(m for m in sys.modules if m.startswith(('psycopg', 'luma_mcp.core.ledger.postgres'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
