"""Server processes on one OAuth ledger (SQLite or PostgreSQL) behind one public URL, and
what must hold of that ledger whatever happened to them (tests/e2e/test_oauth_durability.py,
test_oauth_refresh_race.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from luma_mcp.oauth.grants import token_hash
from luma_mcp.simulator.app import SimulatorServer

from .common import raw_sql
from .http import KEY, TOKEN_A, HttpServer, free_port, http_env
from .oauth import oauth_env
from .postgres import fresh_database

# Every grant either waits for its code's exchange, or has its one live refresh token (and at
# most one access token); no token outlives its grant.
HALF_WRITTEN = """
SELECT g.grant_id FROM oauth_grants g WHERE NOT (
  (SELECT count(*) FROM oauth_tokens t WHERE t.grant_id = g.grant_id AND t.kind = 'refresh' AND t.used_at IS NULL) = 1
  AND (SELECT count(*) FROM oauth_tokens t WHERE t.grant_id = g.grant_id AND t.kind = 'access') <= 1
  OR (SELECT count(*) FROM oauth_tokens t WHERE t.grant_id = g.grant_id AND t.kind = 'code' AND t.used_at IS NULL) = 1
  AND (SELECT count(*) FROM oauth_tokens t WHERE t.grant_id = g.grant_id AND t.kind != 'code') = 0)
"""
ORPHANS = (
    "SELECT count(*) FROM oauth_tokens t WHERE NOT EXISTS (SELECT 1 FROM oauth_grants g WHERE g.grant_id = t.grant_id)"
)


@dataclass
class Deployment:
    """Server processes on one ledger, behind one public URL (as a load balancer would put them)."""

    env: dict[str, str]
    store: str  # for raw_sql
    public_port: int

    def start(self, port: int | None = None) -> HttpServer:
        return HttpServer(self.env, port=port or free_port())


@pytest.fixture(params=["sqlite", "postgres"])
def deployment(request: pytest.FixtureRequest, sim_server: SimulatorServer, private_folders: Path) -> Deployment:
    port = free_port()
    env = http_env(
        sim_server, ACEDATACLOUD_API_TOKEN=TOKEN_A, LUMA_MCP_API_KEYS=KEY, **oauth_env(f"http://127.0.0.1:{port}")
    )
    if request.param == "postgres":
        store = fresh_database(request.getfixturevalue("postgres_server"))
        env["LUMA_LEDGER_URL"] = store
    else:
        store = str(private_folders / "ledger.sqlite3")
    return Deployment(env, store, port)


def spent(store: str, token: str) -> bool | None:
    """Whether the ledger has `token` spent; None: it has no such token."""
    rows = raw_sql(store, "SELECT used_at FROM oauth_tokens WHERE token_hash = ?", (token_hash(token),))
    return None if not rows else rows[0][0] is not None


def check_ledger(store: str) -> None:
    assert raw_sql(store, ORPHANS) == [(0,)]
    assert raw_sql(store, HALF_WRITTEN) == []
