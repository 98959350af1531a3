"""The same refresh token sent to two server processes (or one, twice) at the same moment, on
SQLite shared by two processes and on PostgreSQL: one rotation wins, the other request gets
invalid_grant, and the winner's sign-in carries on."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from ..helpers.common import raw_sql
from ..helpers.http import KEY, HttpServer
from ..helpers.oauth import RawConnector, mcp_status
from ..helpers.oauth_ledger import Deployment, check_ledger


@pytest.fixture
def replicas(deployment: Deployment) -> Iterator[tuple[HttpServer, HttpServer]]:
    pair = (deployment.start(deployment.public_port), deployment.start())
    try:
        yield pair[0].wait_ready(), pair[1].wait_ready()
    finally:
        for server in pair:
            server.stop()


def test_the_same_refresh_token_sent_to_two_replicas_at_once_rotates_once(
    deployment: Deployment, replicas: tuple[HttpServer, HttpServer]
) -> None:
    """Each round the same refresh token reaches two replicas (then one replica twice) at the
    same moment: one 200, one invalid_grant; the winner's tokens work and refresh again."""
    first, second = replicas
    with httpx.Client(base_url=first.url, timeout=30) as http:
        raw = RawConnector(http)
        assert raw.register().status_code == 201
        tokens = raw.tokens(KEY)
    losses: Counter[str] = Counter()
    clients = [httpx.Client(base_url=url, timeout=30) for url in (first.url, second.url, first.url)]
    barrier = threading.Barrier(2)
    data = {"grant_type": "refresh_token", "client_id": raw.client_id}

    def send(http: httpx.Client, refresh_token: str) -> httpx.Response:
        http.get("/health")  # the connection is open before the barrier
        barrier.wait(timeout=30)
        return http.post("/token", data={**data, "refresh_token": refresh_token})

    try:
        with ThreadPoolExecutor(2) as pool:
            for round_ in range(30):
                pair = (clients[0], clients[1]) if round_ < 20 else (clients[0], clients[2])
                answers = list(pool.map(send, pair, [tokens["refresh_token"]] * 2))
                codes = sorted(answer.status_code for answer in answers)
                assert codes == [200, 400], (round_, [a.text for a in answers])
                winner, loser = sorted(answers, key=lambda answer: answer.status_code)
                assert loser.json()["error"] == "invalid_grant"
                losses[loser.json()["error_description"]] += 1
                tokens = winner.json()
                assert mcp_status(second.url if round_ % 2 else first.url, tokens["access_token"]).status_code == 200
    finally:
        for http in clients:
            http.close()
    with httpx.Client(base_url=second.url, timeout=30) as http:
        again = RawConnector(http, client_id=raw.client_id).refresh(tokens["refresh_token"])
    assert again.status_code == 200 and mcp_status(first.url, again.json()["access_token"]).status_code == 200
    check_ledger(deployment.store)
    assert raw_sql(deployment.store, "SELECT count(*) FROM oauth_grants") == [(1,)]
    print(f"losers: {dict(losses)}")  # at the conditional update, or finding it just spent


# --- SIGKILL mid-write ---------------------------------------------------------------------
