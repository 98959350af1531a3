"""Who a call is for: the caller is decided once, from the request, and carries only what its
tenant may use (its token, its reads, its folder; and its ledger rows, whose every statement is
tested in tests/integration/test_ledger_tenants.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser

from luma_mcp.api.errors import ServiceError
from luma_mcp.api.models import GenerateRequest, TaskStatus
from luma_mcp.core.caller import OPERATOR, Identity, current_caller, tenant_of
from luma_mcp.core.results import TaskResult
from luma_mcp.core.service import VideoService
from luma_mcp.core.state import open_state
from luma_mcp.simulator.app import SimulatorServer

from ..helpers.common import FAST_SCHEDULE, make_settings
from ..helpers.service import no_report

pytestmark = pytest.mark.anyio
TOKEN_A, TOKEN_B = "sk-tenant-a-0001", "sk-tenant-b-0002"
EVERYTHING: dict[str, Any] = {
    "status": None,
    "since": None,
    "until": None,
    "limit": 20,
    "cursor": None,
    "refresh": False,
}


@contextmanager
def bearer(token: str, *, own: bool = True) -> Iterator[None]:
    """What the HTTP layer leaves behind for a request whose bearer it accepted: the caller's own
    API token (`own`), or an access key (the server's token pays)."""
    identity = (
        Identity.spending(token, bearer=token, client_id="t", scopes=[])
        if own
        else Identity(token=token, client_id="access-key", scopes=[])
    )
    reset = auth_context_var.set(AuthenticatedUser(identity))
    try:
        yield
    finally:
        auth_context_var.reset(reset)


async def test_each_bearer_is_its_own_tenant_with_its_own_reads_and_folder(
    sim_server: SimulatorServer, tmp_path: Path
) -> None:
    settings = make_settings(sim_server.url, token=None, LUMA_MCP_AUTH="passthrough", LUMA_DOWNLOAD_DIR=str(tmp_path))
    async with open_state(settings, FAST_SCHEDULE, remote=True) as state:
        with bearer(TOKEN_A):
            a = current_caller(state)
        with bearer(TOKEN_B):
            b = current_caller(state)
        assert (a.tenant, b.tenant) == (tenant_of(TOKEN_A), tenant_of(TOKEN_B))
        assert TOKEN_A not in a.tenant  # a one-way hash: the token itself is never kept
        assert a.download_dir != b.download_dir
        assert a.download_dir.parent == b.download_dir.parent == tmp_path
        assert a.remote and b.remote
        # The same task id read by A never answers B's question.
        seen = TaskResult(task_id="t-1", status=TaskStatus.PROCESSING)
        a.reads.remember({"t-1": seen})
        assert a.reads.fresh(["t-1"]) == {"t-1": seen}
        assert b.reads.fresh(["t-1"]) == {}
        # Each caller's client spends its own token: a task A made belongs to A's account.
        accepted = await a.luma.submit(GenerateRequest(prompt="A lighthouse at dusk"))
        assert await a.luma.get_task(accepted.task_id) is not None
        assert await b.luma.get_task(accepted.task_id) is None


async def test_a_passthrough_call_without_a_bearer_gets_no_caller(sim_server: SimulatorServer) -> None:
    settings = make_settings(sim_server.url, token=None, LUMA_MCP_AUTH="passthrough")
    async with open_state(settings, FAST_SCHEDULE) as state:
        with pytest.raises(ServiceError, match="API token as the bearer token"):
            current_caller(state)


async def test_the_servers_own_token_is_the_operators_tenant(sim_server: SimulatorServer, tmp_path: Path) -> None:
    settings = make_settings(sim_server.url, LUMA_DOWNLOAD_DIR=str(tmp_path))
    async with open_state(settings, FAST_SCHEDULE) as state:
        with bearer(TOKEN_A, own=False):  # an access key is not a tenant: the server's token pays
            caller = current_caller(state)
        assert caller.tenant == OPERATOR and caller.luma is state.luma and caller.download_dir == tmp_path


async def test_no_token_at_all_says_which_setting_to_set(sim_server: SimulatorServer) -> None:
    async with open_state(make_settings(sim_server.url, token=None), FAST_SCHEDULE) as state:
        with pytest.raises(ServiceError, match="Set ACEDATACLOUD_API_TOKEN"):
            current_caller(state)


async def test_what_one_tenant_made_is_invisible_to_another(sim_server: SimulatorServer, tmp_path: Path) -> None:
    ledger = str(tmp_path / "ledger.sqlite3")
    settings = make_settings(sim_server.url, token=None, LUMA_MCP_AUTH="passthrough", LUMA_LEDGER_PATH=ledger)
    async with open_state(settings, FAST_SCHEDULE) as state:
        with bearer(TOKEN_A):
            a = VideoService(state, current_caller(state))
        with bearer(TOKEN_B):
            b = VideoService(state, current_caller(state))
        made = await a.submit(
            GenerateRequest(prompt="A kite over dunes"), idempotency_key="k1", new_take=False, report=no_report
        )
        assert [row.task_id for row in (await a.list(**EVERYTHING))[0]] == [made.task_id]
        assert (await b.list(**EVERYTHING))[0] == []
        assert await b.fetch([made.task_id]) == {}
        # The same key and the same request are B's own first submit, not A's task.
        again = await b.submit(
            GenerateRequest(prompt="A kite over dunes"), idempotency_key="k1", new_take=False, report=no_report
        )
        assert again.task_id != made.task_id and again.note is None
