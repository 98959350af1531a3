"""What most tests share: the canary token, fast retry and poll settings, API examples,
settings for a server pointed at the simulator, a ledger opened on a store, a result's text."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from mcp.types import CallToolResult, TextContent

from luma_mcp.api.models import TaskStatus
from luma_mcp.api.retries import RetryPolicy
from luma_mcp.config import Settings
from luma_mcp.core.ledger import Ledger, PostgresLedger, SQLiteLedger
from luma_mcp.core.results import TaskResult
from luma_mcp.core.waiting import PollSchedule

EXAMPLES = Path(__file__).parent.parent / "fixtures" / "luma-api-examples"
# A canary: tests search every message, log record and result for it.
CANARY_TOKEN = "sk-canary-7f3c9b1e5d2a4c68"
# Fast but real: tests wait tenths of seconds, never minutes.
FAST_RETRY = RetryPolicy(attempts=3, backoff=0.02, total_seconds=5.0)
# Polls and heartbeats in tenths of seconds: the same loop, on a fast clock.
FAST_SCHEDULE = PollSchedule(first=0.1, maximum=0.2, heartbeat=0.15, min_interval=0.05)


def example(name: str) -> Any:
    return json.loads((EXAMPLES / name).read_text())


def open_store(store: str, **options: Any) -> Ledger:
    if store.startswith("postgresql://"):
        return PostgresLedger(store, **options)
    return SQLiteLedger(Path(store), **options)


def raw_sql(store: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run SQL (`?` placeholders) on a store behind the ledger's back, as another program (or an
    old version) would."""
    if store.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(store, autocommit=True) as db:
            cursor = db.execute(sql.replace("?", "%s"), params)
            return cursor.fetchall() if cursor.description else []
    with sqlite3.connect(store) as db:
        return db.execute(sql, params).fetchall()


def make_settings(url: str, token: str | None = CANARY_TOKEN, **env: Any) -> Settings:
    values: dict[str, Any] = {
        "ACEDATACLOUD_API_BASE_URL": url,
        "ACEDATACLOUD_API_TOKEN": token,
        "LUMA_MAX_RETRIES": 2,
        "LUMA_RETRY_BACKOFF_SECONDS": 0.02,
    }
    return Settings(_env_file=None, **values, **env)


def pending(task_id: str) -> TaskResult:
    """A task the API has just accepted."""
    return TaskResult(task_id=task_id, status=TaskStatus.PENDING)


def text_of(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


DEFAULT_EXPIRY = 105  # seconds after which a `sending` row reads as lost, with default settings (README)
