"""PostgreSQL: wake this process's waits when any replica records a task finished.

HTTP with a PostgreSQL ledger only (started by the HTTP app's lifespan, imported lazily;
stdio never loads it). `record` on PostgreSQL runs `pg_notify(FINISHED_CHANNEL, task_id)`
in the transaction that writes the finished result; this loop LISTENs on one connection of
its own (autocommit, outside the pool, so it never holds a pooled connection nor waits for
one) and hands each task id to `Finishes.wake`, which wakes waiters here only (re-notifying
would echo between replicas). What it guarantees:
- A lost connection (a restarted database, a terminated backend, a network cut seen by the
  periodic liveness check) is opened again with a bounded, growing backoff; it never ends
  the server, and its log lines name the host and database, never the password.
- Notifications sent while it was not listening are gone, so each time it starts listening
  it wakes every waiter here once: each then reads the ledger (finished rows cost no upstream
  read). Between the loss and that wake a waiter falls back on its own polls.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Protocol

import anyio
import psycopg
from psycopg import sql

from luma_mcp.checks.redact import redact_conninfo
from luma_mcp.core.ledger.postgres import FINISHED_CHANNEL

log = logging.getLogger(__name__)

APPLICATION_NAME = "luma-mcp listen"  # how it shows in pg_stat_activity
CONNECT_TIMEOUT_SECONDS = 10
# Without traffic a half-open connection (a cut network) would wait forever: ask the server
# something this often, and give up on the connection if it does not answer in time.
LIVENESS_SECONDS = 30.0
LIVENESS_TIMEOUT_SECONDS = 10.0
BACKOFF_FIRST_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30.0


class Wakes(Protocol):
    def wake(self, task_ids: Collection[str]) -> None: ...

    def wake_all(self) -> None: ...


async def listen_for_finishes(url: str, finishes: Wakes, *, channel: str = FINISHED_CHANNEL) -> None:
    """Run until cancelled: LISTEN on `channel` and wake the waits of the task ids it names."""
    where = redact_conninfo(url)
    delay = BACKOFF_FIRST_SECONDS
    listened_before = False
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(
                url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS, application_name=APPLICATION_NAME
            ) as connection:
                await connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                if listened_before:
                    log.info("Listening for finished tasks on %s again", where)
                # What finished while nobody here listened (before a reconnect, or before the
                # first LISTEN, for waits that began meanwhile) was announced to nobody.
                finishes.wake_all()
                listened_before = True
                delay = BACKOFF_FIRST_SECONDS
                await _relay(connection, finishes)
        except (psycopg.Error, OSError, TimeoutError) as exc:
            log.warning(
                "The connection listening for finished tasks on %s failed (%s); trying again in %.1f s. "
                "Meanwhile waiting calls here find finished tasks on their next poll.",
                where,
                type(exc).__name__,
                delay,
            )
        await anyio.sleep(delay)
        delay = min(delay * 2, BACKOFF_MAX_SECONDS)


async def _relay(connection: psycopg.AsyncConnection[object], finishes: Wakes) -> None:
    while True:
        async for notice in connection.notifies(timeout=LIVENESS_SECONDS):
            finishes.wake([notice.payload])
        with anyio.fail_after(LIVENESS_TIMEOUT_SECONDS):
            await connection.execute("SELECT 1")
