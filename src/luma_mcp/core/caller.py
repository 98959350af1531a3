"""Who a call is for: decided once, at the edge, and carried by everything done for them.

Tenant isolation is enforced here. A `Caller` holds what one tenant may use: the API client
bound to their token (or the server's own), the ledger view scoped to their tenant (every
statement carries it, see `ledger.tenant`), their slice of recent reads, and their
download folder. Code below the tools takes a `Caller`, never a tenant string, so it has no
way to reach another tenant's rows, reads or files.

A tenant is a one-way hash of the caller's Ace Data Cloud token ("bring your own token"
over HTTP, sent as the bearer or kept sealed by an OAuth sign-in), or `OPERATOR` for
everything done with the server's own token (stdio, access keys). Over HTTP the edge's token
verifiers say which, as an `Identity`; `current_caller` is the one place that reads it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from pydantic import SecretStr

from luma_mcp.api.client import LumaClient
from luma_mcp.api.errors import ServiceError
from luma_mcp.config import TOKEN_ENV
from luma_mcp.core.ledger import TenantLedger
from luma_mcp.core.state import AppState
from luma_mcp.core.waiting import TenantReads

OPERATOR = ""  # the tenant of everything done with the server's own token


def tenant_of(token: str) -> str:
    """A caller's tenant: a one-way hash of their API token (the token itself is never stored)."""
    return hashlib.sha256(token.encode()).hexdigest()


class Identity(AccessToken):
    """A bearer the HTTP edge has checked: whose tenant it acts for, and with which API token
    (`upstream`: the caller's own; None: the server's)."""

    tenant: str = OPERATOR
    upstream: SecretStr | None = None

    @classmethod
    def spending(cls, upstream: str, *, bearer: str, client_id: str, **fields: Any) -> Identity:
        """A caller who spends their own API token `upstream`, presented as `bearer` (the token
        itself, or an OAuth token standing for it). The subject, their tenant, binds each
        session to them."""
        tenant = tenant_of(upstream)
        return cls(
            token=bearer, client_id=client_id, subject=tenant, tenant=tenant, upstream=SecretStr(upstream), **fields
        )


@dataclass(frozen=True)
class Caller:
    tenant: str
    luma: LumaClient  # spends this caller's token
    ledger: TenantLedger  # this tenant's rows only: every statement carries the tenant
    reads: TenantReads
    download_dir: Path  # this tenant's own folder on a shared server
    remote: bool  # on another machine (served over HTTP): a file saved here does not reach them

    @classmethod
    def of(cls, state: AppState, tenant: str, luma: LumaClient) -> Caller:
        settings = state.settings
        return cls(
            tenant=tenant,
            luma=luma,
            ledger=state.ledger.for_tenant(tenant),
            reads=state.reads.for_tenant(tenant),
            # Each tenant of a shared server saves into its own folder.
            download_dir=settings.download_dir / tenant[:16] if tenant else settings.download_dir,
            remote=state.remote,
        )


def current_caller(state: AppState) -> Caller:
    """The caller of the request being handled: the HTTP layer has already checked their bearer."""
    access = get_access_token()
    if isinstance(access, Identity) and access.upstream is not None:
        # Bring your own token: spend the caller's own, in their own tenant.
        return Caller.of(state, access.tenant, state.luma.with_token(access.upstream))
    if state.settings.auth_mode == "passthrough":  # the HTTP layer refuses anything else before here
        raise ServiceError("This server needs your Ace Data Cloud API token as the bearer token.")
    if not state.luma.has_token:
        raise ServiceError(
            f"No Ace Data Cloud API token is configured. Set {TOKEN_ENV} in this MCP server's environment "
            "(get one at https://platform.acedata.cloud), then restart the server."
        )
    return Caller.of(state, OPERATOR, state.luma)
