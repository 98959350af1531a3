"""The ledger when things go wrong: submits that sent nothing, answers the store would not take,
submits killed mid-flight, and stores or rows that cannot be read."""

from __future__ import annotations

import base64
import json
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from luma_mcp.api.client import LumaClient
from luma_mcp.api.errors import LedgerError, LumaError, ServiceError
from luma_mcp.api.models import GenerateRequest, SubmitState, TaskStatus
from luma_mcp.core.ledger import (
    Ledger,
    PostgresLedger,
    SQLiteLedger,
)
from luma_mcp.core.results import TaskResult
from luma_mcp.server import create_server
from luma_mcp.simulator.app import SimulatorServer

from ..helpers.common import DEFAULT_EXPIRY, FAST_SCHEDULE, make_settings, open_store, raw_sql, text_of
from ..helpers.service import no_report, service_for

pytestmark = pytest.mark.anyio

PARAMS = {"action": "generate", "prompt": "a fox"}


# --- item 4: a submit that sent nothing billable leaves no row --------------------------------


async def test_tokens_that_cannot_pay_leave_no_row(store: str, sim_server: SimulatorServer, luma: LumaClient) -> None:
    """Under passthrough every bearer is a tenant: made-up, broke, disabled and unsendable
    tokens, each tried repeatedly, must leave the ledger empty (nothing was billable)."""
    sim = sim_server.simulator
    tokens = {f"broke-{i}-xxxxxxxx": "used_up" for i in range(5)}
    tokens |= {f"madeup-{i}-xxxxxxxx": "invalid_token" for i in range(5)}
    tokens |= {f"off-{i}-xxxxxxxxxxx": "disabled" for i in range(3)}
    sim.token_errors.update(tokens)
    unsendable = [f"tök-{i}-xxxxxxxx" for i in range(3)]  # no HTTP header can carry these
    ledger = open_store(store)
    settings = make_settings(sim_server.url)
    try:
        for batch in (list(tokens), unsendable):
            for token in batch:
                service = service_for(settings, ledger, luma, token)
                for attempt in range(3):
                    request = GenerateRequest(prompt=f"clip {attempt}")
                    with pytest.raises(LumaError) as caught:
                        await service.submit(request, idempotency_key=f"k{attempt}", new_take=False, report=no_report)
                    assert "nothing was sent" in str(caught.value) if batch is unsendable else caught.value.status_code
            assert raw_sql(store, "SELECT COUNT(*) FROM tasks") == [(0,)]
        assert sim.count("/luma/videos") == 3 * len(tokens)  # the unsendable ones never left
    finally:
        ledger.close()


async def test_a_request_that_cannot_be_built_leaves_no_row(sim_server: SimulatorServer, private_folders: Path) -> None:
    """A failure before anything is sent (here the base URL cannot even make a request) is
    nothing billable: a clear error, no row left `sending` forever."""
    settings = make_settings("http://xn--")  # a malformed IDNA name: building the request raises IDNAError
    async with Client(create_server(settings, schedule=FAST_SCHEDULE)) as client:
        for _ in range(2):
            answer = await client.call_tool("generate_video", {"prompt": "a fox", "wait_seconds": 0})
            assert answer.is_error and "nothing was sent" in text_of(answer), text_of(answer)
            assert "failed inside luma-mcp" not in text_of(answer)
    with sqlite3.connect(private_folders / "ledger.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM tasks").fetchone() == (0,)


async def test_refused_rows_of_older_versions_still_read(store: str, ledger: Ledger) -> None:
    """Older versions kept a `refused` row per refusal: still listed on request, never in the way."""
    own = ledger.for_tenant("")
    await own.recent()  # creates the schema
    now = time.time()
    raw_sql(
        store,
        "INSERT INTO tasks (tenant, action, params, fingerprint, state, error, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        ("", "generate", json.dumps(PARAMS), "old", "refused", "Moderation said no", now, now),
    )
    assert (await own.recent(hide_refused=True))[0] == []
    [old] = (await own.recent(statuses={"refused"}))[0]
    assert old.state is SubmitState.REFUSED and old.error == "Moderation said no" and old.prompt == "a fox"


# --- item 5: the API accepted, the ledger would not write it ------------------------------------


class FillingLedger(SQLiteLedger):
    """A real SQLite ledger whose file cannot grow once a reservation is written, as on a disk
    that is full: SQLite itself answers every write that needs a new page with its own
    "database or disk is full" (PRAGMA max_page_count), through the real driver and the
    ledger's real code. Chosen over a read-only file because the tests run as root, which
    writes read-only files all the same; `free()` gives the space back."""

    fill_after_reserve = True

    async def _reserve(self, *args: Any, **kwargs: Any) -> Any:
        reservation = await super()._reserve(*args, **kwargs)
        if self.fill_after_reserve:
            self.fill_after_reserve = False
            self._set_max_pages(None)
        return reservation

    def free(self) -> None:
        self._set_max_pages(1_000_000)

    def _set_max_pages(self, pages: int | None) -> None:
        with self._lock:
            db = self._connect()
            limit = pages or db.execute("PRAGMA page_count").fetchone()[0]
            db.execute(f"PRAGMA max_page_count = {limit}")


async def test_an_accepted_task_id_survives_a_full_disk(
    sim_server: SimulatorServer, luma: LumaClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sim = sim_server.simulator
    ledger = FillingLedger(tmp_path / "full.sqlite3")
    service = service_for(make_settings(sim_server.url), ledger, luma)
    # A long prompt: writing its answer needs new pages, which the full file cannot get.
    request = GenerateRequest(prompt="A slow pan across a quiet harbour at dawn. " * 60)
    try:
        with caplog.at_level(logging.WARNING, logger="luma_mcp"):
            result = await service.submit(request, idempotency_key="order-1", new_take=False, report=no_report)
        [task_id] = list(sim.tasks)
        assert result.task_id == task_id  # the caller has the paid task's id
        assert result.note and task_id in result.note and "could not record" in result.note
        assert "disk is full" in result.note and "LUMA_LEDGER_PATH" in result.note
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any(task_id in line and "accepted by the API" in line for line in warnings), warnings
        # Identical retries, with and without the key, get the task at once and pay nothing.
        for key in ("order-1", None):
            started = time.monotonic()
            again = await service.submit(request, idempotency_key=key, new_take=False, report=no_report)
            assert again.task_id == task_id and time.monotonic() - started < 3
        own = ledger.for_tenant("")
        listed, _ = await own.recent()
        assert [(e.task_id, e.state) for e in listed] == [(task_id, SubmitState.ACCEPTED)]
        assert sim.count("/luma/videos") == 1
        # Space comes back: the next write stores the held answer for good.
        ledger.free()
        await service.submit(GenerateRequest(prompt="another"), idempotency_key=None, new_take=False, report=no_report)
    finally:
        ledger.close()
    rows = raw_sql(str(tmp_path / "full.sqlite3"), "SELECT task_id, state FROM tasks ORDER BY row_id")
    assert rows[0] == (task_id, "accepted") and len(rows) == 2


async def test_an_accepted_task_id_survives_a_database_that_refuses_the_write(
    postgres_url: str, sim_server: SimulatorServer, luma: LumaClient, caplog: pytest.LogCaptureFixture
) -> None:
    """PostgreSQL refuses the answer's write with the SQLSTATE a full disk gives (53100,
    disk_full, raised by a trigger): the id still reaches the caller, then the store."""
    ledger = PostgresLedger(postgres_url)
    service = service_for(make_settings(sim_server.url), ledger, luma)
    own = ledger.for_tenant("")
    await own.recent()  # creates the schema
    raw_sql(
        postgres_url,
        "CREATE FUNCTION no_space() RETURNS trigger AS $$ BEGIN "
        "RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = 'disk_full'; "
        "END $$ LANGUAGE plpgsql",
    )
    raw_sql(
        postgres_url,
        "CREATE TRIGGER full_disk BEFORE UPDATE OF task_id ON tasks FOR EACH ROW EXECUTE FUNCTION no_space()",
    )
    try:
        with caplog.at_level(logging.WARNING, logger="luma_mcp"):
            result = await service.submit(
                GenerateRequest(prompt="a fox"), idempotency_key="k", new_take=False, report=no_report
            )
        [task_id] = list(sim_server.simulator.tasks)
        assert result.task_id == task_id and result.note and task_id in result.note
        assert "No space left on device" in result.note and "LUMA_LEDGER_URL" in result.note
        assert any(task_id in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
        started = time.monotonic()
        again = await service.submit(
            GenerateRequest(prompt="a fox"), idempotency_key="k", new_take=False, report=no_report
        )
        assert again.task_id == task_id and time.monotonic() - started < 3
        raw_sql(postgres_url, "DROP TRIGGER full_disk ON tasks")
        await service.submit(GenerateRequest(prompt="another"), idempotency_key=None, new_take=False, report=no_report)
    finally:
        ledger.close()
    rows = raw_sql(postgres_url, "SELECT task_id, state FROM tasks ORDER BY row_id")
    assert rows[0] == (task_id, "accepted") and len(rows) == 2 and sim_server.simulator.count("/luma/videos") == 2


# --- item 6: a submit killed in flight --------------------------------------------------------


async def test_a_stale_sending_row_reads_as_lost_and_a_new_take_frees_its_key(store: str) -> None:
    ledger = open_store(store, stale_after=1.5)
    try:
        own = ledger.for_tenant("")
        first = await own.reserve("generate", PARAMS, idempotency_key="k1", dedupe_window=300)
        plain = await own.reserve("generate", {"prompt": "other"}, dedupe_window=300)
        assert (await own.reserve("generate", PARAMS, idempotency_key="k1")).entry.state is SubmitState.SENDING
        await anyio.sleep(1.6)  # longer than any submit can take: nobody is sending these any more
        again = await own.reserve("generate", PARAMS, idempotency_key="k1")
        assert again.reused and again.entry.state is SubmitState.LOST and again.entry.error
        duplicate = await own.reserve("generate", {"prompt": "other"}, dedupe_window=300)
        assert duplicate.reused and duplicate.entry.row_id == plain.entry.row_id
        assert duplicate.entry.state is SubmitState.LOST
        assert raw_sql(store, "SELECT state FROM tasks WHERE row_id = ?", (first.entry.row_id,)) == [("lost",)]
        # The listing agrees, filtered or not.
        assert {e.state for e in (await own.recent())[0]} == {SubmitState.LOST}
        assert len((await own.recent(statuses={"lost"}))[0]) == 2
        assert (await own.recent(statuses={"sending"}))[0] == []
        # The advised new take works with the key: the key moves to a new row, the lost one stays.
        take = await own.reserve("generate", PARAMS, idempotency_key="k1", new_take=True)
        assert not take.reused and take.entry.idempotency_key == "k1"
        lost = await own.entry(first.entry.row_id)
        assert lost is not None and lost.state is SubmitState.LOST and lost.idempotency_key is None
        await own.accept(take.entry.row_id, "t2", TaskResult(task_id="t2", status=TaskStatus.PENDING))
        kept = await own.reserve("generate", PARAMS, idempotency_key="k1", new_take=True)
        assert kept.reused and kept.entry.task_id == "t2"  # a task with an id is never taken again
    finally:
        ledger.close()


def test_the_sending_expiry_follows_the_request_timeout() -> None:
    from luma_mcp.core.ledger import sending_expiry

    assert sending_expiry(30, 20) == DEFAULT_EXPIRY
    assert sending_expiry(120, 20) - sending_expiry(30, 20) == 90


# --- item 9: stores and rows that cannot be read; arguments that cannot be used ---------------


def corrupt(path: Path) -> None:
    path.write_bytes(b"this is not an SQLite file, it only has its name" * 100)


def truncated(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE filler (x TEXT)")
        db.executemany("INSERT INTO filler VALUES (?)", [("x" * 500,) for _ in range(200)])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def directory(path: Path) -> None:
    path.mkdir()


@pytest.mark.parametrize("spoil", [corrupt, truncated, directory])
async def test_an_unusable_ledger_file_is_named_in_one_sentence(
    spoil: Any, sim_server: SimulatorServer, private_folders: Path
) -> None:
    path = private_folders / "ledger.sqlite3"
    spoil(path)
    async with Client(create_server(make_settings(sim_server.url), schedule=FAST_SCHEDULE)) as client:
        for tool, arguments in (("list_tasks", {}), ("generate_video", {"prompt": "a fox", "wait_seconds": 0})):
            answer = await client.call_tool(tool, arguments)
            text = text_of(answer)
            assert answer.is_error and f"The task ledger {path} cannot be used" in text, text
            assert "LUMA_LEDGER_PATH" in text and "failed inside luma-mcp" not in text
        assert (await client.list_tools()).tools  # still answering
    assert sim_server.simulator.count("/luma/videos") == 0  # nothing is sent that could not be recorded


async def test_a_row_with_bad_json_is_listed_degraded_and_logged_once(
    store: str, ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    own = ledger.for_tenant("")
    good = await own.reserve("generate", PARAMS)
    await own.accept(good.entry.row_id, "t1", TaskResult(task_id="t1", status=TaskStatus.PENDING))
    bad = await own.reserve("generate", {"prompt": "broken"})
    await own.accept(bad.entry.row_id, "t2", TaskResult(task_id="t2", status=TaskStatus.PENDING))
    raw_sql(
        store, "UPDATE tasks SET params = ?, result = ? WHERE row_id = ?", ("{not json", '{"task', bad.entry.row_id)
    )
    odd = await own.reserve("generate", {"prompt": "odd"})
    raw_sql(store, "UPDATE tasks SET state = ? WHERE row_id = ?", ("from-the-future", odd.entry.row_id))
    with caplog.at_level(logging.WARNING, logger="luma_mcp"):
        for _ in range(2):
            listed, _ = await own.recent()
            assert [(e.task_id, e.prompt, e.state) for e in listed] == [
                (None, "odd", SubmitState.LOST),  # no task id and no known state: a video may exist
                ("t2", None, SubmitState.ACCEPTED),  # still listed, with what can be read
                ("t1", "a fox", SubmitState.ACCEPTED),
            ]
    assert sum("unreadable data" in r.getMessage() for r in caplog.records) == 2  # once per row


def cursor_of(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    ("arguments", "advice"),
    [
        ({"cursor": cursor_of("[1, 1e999]")}, "call list_tasks without a cursor"),
        ({"cursor": cursor_of(f"[1, {10**30}]")}, "call list_tasks without a cursor"),
        ({"cursor": cursor_of(f"[1e999, {10**30}]")}, "call list_tasks without a cursor"),
        ({"since": "0001-01-01T00:00:00"}, "like 2026-01-01T00:00:00Z"),
    ],
)
async def test_list_tasks_arguments_it_cannot_use_say_what_to_do(
    mcp_client: Client, arguments: dict[str, str], advice: str
) -> None:
    answer = await mcp_client.call_tool("list_tasks", arguments)
    assert answer.is_error and advice in text_of(answer), text_of(answer)
    assert not (await mcp_client.call_tool("list_tasks", {})).is_error  # the server is fine


async def test_a_ledger_error_on_the_service_path_is_a_ledger_error(
    tmp_path: Path, sim_server: SimulatorServer, luma: LumaClient
) -> None:
    (tmp_path / "dir.sqlite3").mkdir()
    ledger = SQLiteLedger(tmp_path / "dir.sqlite3")
    service = service_for(make_settings(sim_server.url), ledger, luma)
    with pytest.raises(LedgerError, match="LUMA_LEDGER_PATH"):
        await service.list(status=None, since=None, until=None, limit=5, cursor=None, refresh=False)
    with pytest.raises((LedgerError, ServiceError)):
        await service.submit(GenerateRequest(prompt="x"), idempotency_key=None, new_take=False, report=no_report)


async def test_list_tasks_survives_a_row_with_bad_json(mcp_client: Client, private_folders: Path) -> None:
    made = await mcp_client.call_tool("generate_video", {"prompt": "a fox", "wait_seconds": 0})
    task_id = TaskResult.model_validate(made.structured_content).task_id
    with sqlite3.connect(private_folders / "ledger.sqlite3") as db:
        db.execute("UPDATE tasks SET params = '{cut', result = 'not json'")
    for _ in range(2):
        listed = await mcp_client.call_tool("list_tasks", {})
        assert not listed.is_error, text_of(listed)
        assert [row["task_id"] for row in listed.structured_content["tasks"]] == [task_id]


class BreakingLedger(SQLiteLedger):
    """A real SQLite ledger whose store starts failing when told: every transaction then meets
    the error SQLite gives for a failing disk ("disk I/O error"), through the ledger's own
    error handling. (A real I/O failure cannot be made on demand without privileges.)"""

    broken = False

    async def _transaction(self, work: Any, *, write: bool) -> Any:
        if self.broken:
            raise sqlite3.OperationalError("disk I/O error")
        return await super()._transaction(work, write=write)


async def test_a_store_that_fails_after_the_submit_still_lets_get_task_answer(
    sim_server: SimulatorServer, luma: LumaClient, tmp_path: Path
) -> None:
    ledger = BreakingLedger(tmp_path / "breaking.sqlite3")
    service = service_for(make_settings(sim_server.url), ledger, luma)
    request = GenerateRequest(prompt="x")
    submitted = await service.submit(request, idempotency_key=None, new_take=False, report=no_report)
    ledger.broken = True
    results = await service.fetch([submitted.task_id])  # from the API: it knows the task
    assert results[submitted.task_id].task_id == submitted.task_id
    ledger.close()


async def test_an_identical_retry_of_a_refused_submit_is_told_at_once_even_if_its_row_stays(
    sim_server: SimulatorServer, luma: LumaClient, tmp_path: Path
) -> None:
    """The API refused the submit (429) and the ledger could not delete its reservation: the
    identical retry hears the refusal now, not after waiting out the row's cut-off."""
    ledger = BreakingLedger(tmp_path / "breaking.sqlite3")
    service = service_for(make_settings(sim_server.url), ledger, luma)
    sim_server.simulator.inject("429", "/luma/videos")
    original_forget = ledger._forget

    async def forget_on_a_failing_store(tenant: str, row_id: int, reason: str) -> None:
        ledger.broken = True
        try:
            await original_forget(tenant, row_id, reason)
        finally:
            ledger.broken = False

    ledger._forget = forget_on_a_failing_store  # type: ignore[method-assign]
    with pytest.raises(LumaError):
        await service.submit(GenerateRequest(prompt="x"), idempotency_key=None, new_take=False, report=no_report)
    started = time.monotonic()
    with pytest.raises(ServiceError, match="refused"):
        await service.submit(GenerateRequest(prompt="x"), idempotency_key=None, new_take=False, report=no_report)
    assert time.monotonic() - started < 3
    assert sim_server.simulator.count("/luma/videos") == 1  # nothing was sent again
    ledger.close()


async def test_a_row_with_an_unreadable_time_does_not_break_list_tasks(
    mcp_client: Client, private_folders: Path
) -> None:
    for prompt in ("first", "second", "third"):
        await mcp_client.call_tool("generate_video", {"prompt": prompt, "wait_seconds": 0})
    with sqlite3.connect(private_folders / "ledger.sqlite3") as db:
        db.execute("UPDATE tasks SET created_at = 'yesterday' WHERE params LIKE '%first%'")
        db.execute("UPDATE tasks SET created_at = 1e300 WHERE params LIKE '%second%'")
    for _ in range(2):
        listed = await mcp_client.call_tool("list_tasks", {})
        assert not listed.is_error, text_of(listed)
        assert len(listed.structured_content["tasks"]) == 3
