"""What one server process shares between calls: settings, the pooled API client, the ledger.

Opened by the MCP lifespan (`open_state`) and read by each call through the request context;
per-caller pieces (their token, their rows, their folder) are cut from it in `caller`.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from luma_mcp.api.client import LumaClient
from luma_mcp.config import Settings
from luma_mcp.core.ledger import Ledger, open_ledger
from luma_mcp.core.waiting import PollSchedule, RecentReads

if TYPE_CHECKING:
    from luma_mcp.core.callback_urls import CallbackIssuer  # HTTP only


@dataclass
class AppState:
    """Shared by every call of one connection (stdio) or of the whole process (HTTP)."""

    settings: Settings
    luma: LumaClient  # the server's own token (or none), and the pooled HTTP client
    ledger: Ledger
    schedule: PollSchedule
    reads: RecentReads
    stopping: threading.Event | None = None  # set when the server shuts down: waits end early
    remote: bool = False  # served over HTTP: callers are on other machines
    callbacks: CallbackIssuer | None = None  # HTTP with a public URL: submits ask the provider to call back


@asynccontextmanager
async def open_state(
    settings: Settings,
    schedule: PollSchedule,
    *,
    stopping: threading.Event | None = None,
    remote: bool = False,
    ledger: Ledger | None = None,
    callbacks: CallbackIssuer | None = None,
) -> AsyncIterator[AppState]:
    """The process's state for as long as the server runs; connections close after, and the
    ledger too unless it was given (then its owner closes it)."""
    owned = ledger is None
    ledger = ledger or open_ledger(settings)
    try:
        async with LumaClient.from_settings(settings) as luma:
            yield AppState(
                settings=settings,
                luma=luma,
                ledger=ledger,
                schedule=schedule,
                reads=RecentReads(schedule.min_interval),
                stopping=stopping,
                remote=remote,
                callbacks=callbacks,
            )
    finally:
        if owned:
            ledger.close()
