"""OAuth's writes against real server processes killed with SIGKILL in the middle of them, on
SQLite and on PostgreSQL; the person signs in with an access key (keys mode), as plain HTTP
requests. (Two processes refreshing at once: test_oauth_refresh_race.py.)"""

from __future__ import annotations

import contextlib
import random
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from functools import partial
from urllib.parse import parse_qs, urlsplit

import httpx

from luma_mcp.oauth.grants import token_hash

from ..helpers.common import raw_sql
from ..helpers.http import KEY, HttpServer
from ..helpers.oauth import RawConnector, hidden_fields, mcp_status
from ..helpers.oauth_ledger import Deployment, check_ledger, spent

Killer = Callable[[HttpServer, threading.Thread], None]  # starts the request's thread, kills the server


def unanswered(
    send: Callable[[], httpx.Response], server: HttpServer, delay: float, kill: Killer | None
) -> httpx.Response | None:
    """`send` in a thread, the server killed with SIGKILL `delay` seconds after (or by `kill`);
    its answer if it came."""
    answers: list[httpx.Response | None] = [None]

    def run() -> None:
        started = time.monotonic()
        with contextlib.suppress(httpx.TransportError):
            answer = send()
            answer.extensions["seconds"] = time.monotonic() - started
            answers[0] = answer

    thread = threading.Thread(target=run)
    if kill is not None:
        try:
            kill(server, thread)
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {answers[0] and answers[0].text}") from None
    else:
        thread.start()
        time.sleep(delay)
        server.proc.kill()
    server.proc.wait(timeout=30)
    thread.join(timeout=30)
    return answers[0]


OPERATIONS = ("register", "sign-in", "exchange", "refresh")


class App:
    """A connector's requests to whichever server process is up, and what it knows between them."""

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self.public = f"http://127.0.0.1:{deployment.public_port}"
        self.client_id = ""
        self.tokens: dict[str, str] = {}
        self.verifier = ""  # of the latest sign-in's PKCE
        self.http = httpx.Client(timeout=30)

    def at(self, server: HttpServer) -> RawConnector:
        self.http.base_url = httpx.URL(server.url)
        return RawConnector(self.http, client_id=self.client_id)

    def sign_in_form(self, server: HttpServer) -> dict[str, str]:
        """The sign-in page's form, filled in (its request and CSRF value; the cookie is kept)."""
        raw = self.at(server)
        answer = raw.authorize(resource=f"{self.public}/mcp")
        assert answer.status_code == 302, answer.text
        page = self.http.get(httpx.URL(answer.headers["location"]).copy_with(port=server.port))
        self.verifier = raw.verifier
        return {**hidden_fields(page.text), "secret": KEY, "action": "allow"}

    def code(self, server: HttpServer) -> str:
        answer = self.http.post("/signin", data=self.sign_in_form(server))
        assert answer.status_code == 303, answer.text
        return code_of(answer)

    def exchange(self, server: HttpServer, code: str) -> httpx.Response:
        return RawConnector(self.at(server).http, client_id=self.client_id, verifier=self.verifier).token(code)

    def signs_in(self, server: HttpServer) -> None:
        answer = self.exchange(server, self.code(server))
        assert answer.status_code == 200, answer.text
        self.tokens = answer.json()
        assert self.works(server)

    def works(self, server: HttpServer, access_token: str | None = None) -> bool:
        status = mcp_status(server.url, access_token or self.tokens["access_token"]).status_code
        assert status in (200, 401), status
        return status == 200


def code_of(answer: httpx.Response) -> str:
    return parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]


def held_at_last_statement(store: str, client_id: str) -> Killer:
    """A kill point made observable (PostgreSQL): another session holds the client's row, so an
    exchange waits at its last statement, every token already written; killed there."""
    import psycopg

    def kill(server: HttpServer, answered: threading.Thread) -> None:
        deadline = time.monotonic() + 20
        waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE ?"
        while raw_sql(store, waiting, ("UPDATE oauth_clients%",)) == [(0,)]:
            assert answered.is_alive(), "the request was answered without waiting at its last statement"
            assert time.monotonic() < deadline, "the exchange never reached its last statement"
            time.sleep(0.01)
        server.proc.kill()

    def holding(server: HttpServer, answered: threading.Thread) -> None:
        with psycopg.connect(store) as holder:
            holder.execute("SELECT 1 FROM oauth_clients WHERE client_id = %s FOR UPDATE", (client_id,))
            answered.start()
            kill(server, answered)
            server.proc.wait(timeout=30)
            holder.rollback()

    return holding


def at_commit(store: str, written: str, params: tuple[str, ...], before: int) -> Killer:
    """A kill point made observable: as soon as the ledger shows the write committed (`written`
    counts more than `before`), most often before the answer has left."""

    def kill(server: HttpServer, answered: threading.Thread) -> None:
        with watching(store) as count:
            answered.start()
            deadline = time.monotonic() + 20
            while count(written, params) <= before and answered.is_alive():
                assert time.monotonic() < deadline, "the write never showed in the ledger"
            server.proc.kill()

    return kill


@contextlib.contextmanager
def watching(store: str) -> Iterator[Callable[[str, tuple[str, ...]], int]]:
    """A count over one open connection to the store (`?` placeholders), polled fast."""
    if store.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(store, autocommit=True) as pg:
            yield lambda sql, params: int(pg.execute(sql.replace("?", "%s"), params).fetchone()[0])  # type: ignore[index]
        return
    db = sqlite3.connect(store, isolation_level=None)
    try:
        yield lambda sql, params: int(db.execute(sql, params).fetchone()[0])
    finally:
        db.close()


def test_sigkill_during_oauth_writes_leaves_a_working_token_or_a_clean_sign_in_again(
    deployment: Deployment,
) -> None:
    """Registration, sign-in, code exchange and refresh, each killed with SIGKILL a random moment
    after it was sent, and the moment its write shows committed (and on PostgreSQL, exchange and
    refresh also while held at their last statement); the next process on the ledger serves,
    and the app either has what it asked for or, told invalid_grant, signs in again. Nothing
    half-written, nothing a stranger can use."""
    store, rng = deployment.store, random.Random()
    app = App(deployment)
    current = deployment.start().wait_ready()
    registered = app.at(current).register()
    assert registered.status_code == 201, registered.text
    app.client_id = registered.json()["client_id"]
    seen: Counter[str] = Counter()
    took = dict.fromkeys(OPERATIONS, 0.02)  # how long each kind of request took when last answered
    kills = [(operation, way) for way in ("soon", "at commit") for operation in OPERATIONS]
    if "LUMA_LEDGER_URL" in deployment.env:
        kills += [("exchange", "held"), ("refresh", "held")]
    try:
        app.signs_in(current)
        for operation, way in kills:
            spare = deployment.start()  # up by the time the kill is done, on the same ledger
            # "soon": within the time such a request takes, so that most kills land while it is handled.
            delay = rng.uniform(0, 1.2 * took[operation])
            try:
                outcome = killed_during(app, operation, way, current, spare, delay, took)
            finally:
                current.stop()  # killed already, unless the step failed first
                current = spare
            seen[f"{operation} killed {way}: {outcome}"] += 1
            check_ledger(store)
            assert not app.works(current, "luma_at_" + "x" * 43)  # a made-up token admits nobody
    finally:
        app.http.close()
        current.stop()
    print(f"kills: {sum(seen.values())}: {dict(sorted(seen.items()))}")


def killed_during(
    app: App,
    operation: str,
    way: str,
    server: HttpServer,
    spare: HttpServer,
    delay: float,
    took: dict[str, float],
) -> str:
    """`operation` sent to `server`, killed mid-way; the app carries on at `spare`. Its outcome:
    answered, written but unanswered, or not written."""
    raw, old, code = app.at(server), dict(app.tokens), ""
    send: Callable[[], httpx.Response] = partial(raw.refresh, old["refresh_token"])
    if operation == "register":
        send = partial(raw.register)
    elif operation == "sign-in":
        send = partial(app.http.post, "/signin", data=app.sign_in_form(server))
    elif operation == "exchange":
        code = app.code(server)
        send = partial(app.exchange, server, code)
    kill = killer(app, operation, way, code or old["refresh_token"])
    answer = unanswered(send, server, delay, kill)
    if way == "at commit":
        answer = None  # if it left before the kill, it is lost with the process: the app never saw it
    if answer is not None:
        took[operation] = answer.extensions["seconds"]
    spare.wait_ready()
    if operation == "register":
        again = answer if answer is not None else app.at(spare).register()  # unanswered: the app registers again
        assert again.status_code == 201, again.text
        fresh = App(app.deployment)
        fresh.client_id = again.json()["client_id"]
        assert fresh.at(spare).authorize(resource=f"{app.public}/mcp").status_code == 302
        fresh.http.close()
        return "answered" if answer is not None else "unanswered"
    if operation == "sign-in":
        if answer is not None:
            assert answer.status_code == 303, answer.text
            assert app.exchange(spare, code_of(answer)).status_code == 200
            return "answered"
        app.signs_in(spare)  # the person is asked again
        return "unanswered"
    if answer is not None:
        assert answer.status_code == 200, answer.text
        app.tokens = answer.json()
        assert app.works(spare)
        assert operation == "exchange" or not app.works(spare, old["access_token"])
        return "answered"
    presented = code if operation == "exchange" else old["refresh_token"]
    written = spent(app.deployment.store, presented)
    assert written is not None
    assert written is {"held": False, "at commit": True}.get(way, written)  # held mid-transaction: rolled back
    retried = app.exchange(spare, code) if operation == "exchange" else app.at(spare).refresh(old["refresh_token"])
    if written:  # the tokens it wrote never reached anyone: refused, and the person signs in again
        assert retried.status_code == 400 and retried.json()["error"] == "invalid_grant", retried.text
        assert operation == "exchange" or not app.works(spare, old["access_token"])
        app.signs_in(spare)
        return "written, unanswered"
    assert retried.status_code == 200, retried.text
    app.tokens = retried.json()
    assert app.works(spare)
    return "not written"


def killer(app: App, operation: str, way: str, token: str) -> Killer | None:
    """How `operation` is killed: None, after the delay; else at a point the ledger shows."""
    store = app.deployment.store
    if way == "held":
        return held_at_last_statement(store, app.client_id)
    if way == "soon":
        return None
    if operation in ("exchange", "refresh"):
        spent_token = "SELECT count(*) FROM oauth_tokens WHERE token_hash = ? AND used_at IS NOT NULL"
        return at_commit(store, spent_token, (token_hash(token),), 0)
    table = "oauth_clients" if operation == "register" else "oauth_grants"
    rows = f"SELECT count(*) FROM {table}"  # noqa: S608 (one of two names)
    return at_commit(store, rows, (), raw_sql(store, rows)[0][0])
