"""VideoService as the tools build it, for tests that drive it without MCP."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from luma_mcp.client import LumaClient
from luma_mcp.config import Settings
from luma_mcp.ledger import Ledger
from luma_mcp.service import VideoService, tenant_of
from luma_mcp.waiting import RecentReads

from .common import FAST_SCHEDULE


def service_for(settings: Settings, ledger: Ledger, luma: LumaClient, token: str | None = None) -> VideoService:
    return VideoService(
        settings=settings,
        luma=luma.with_token(SecretStr(token)) if token else luma,
        ledger=ledger,
        schedule=FAST_SCHEDULE,
        reads=RecentReads(FAST_SCHEDULE.min_interval),
        tenant=tenant_of(token) if token else "",
    )


async def no_report(*_: Any) -> None:
    pass
