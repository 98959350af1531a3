"""VideoService as the tools build it, for tests that drive it without MCP."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from luma_mcp.api.client import LumaClient
from luma_mcp.config import Settings
from luma_mcp.core.caller import OPERATOR, Caller, tenant_of
from luma_mcp.core.ledger import Ledger
from luma_mcp.core.service import VideoService
from luma_mcp.core.state import AppState
from luma_mcp.core.waiting import RecentReads

from .common import FAST_SCHEDULE


def service_for(settings: Settings, ledger: Ledger, luma: LumaClient, token: str | None = None) -> VideoService:
    state = AppState(
        settings=settings,
        luma=luma,
        ledger=ledger,
        schedule=FAST_SCHEDULE,
        reads=RecentReads(FAST_SCHEDULE.min_interval),
    )
    if token is None:
        return VideoService(state, Caller.of(state, OPERATOR, luma))
    return VideoService(state, Caller.of(state, tenant_of(token), luma.with_token(SecretStr(token))))


async def no_report(*_: Any) -> None:
    pass
