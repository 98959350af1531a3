"""The sign-in's records on both backends: single use under concurrency, bounds, a lost key."""

from __future__ import annotations

import asyncio
import re

import pytest
from mcp.server.auth.provider import AuthorizationParams, AuthorizeError, RegistrationError
from mcp.shared.auth import OAuthClientInformationFull
from pydantic import AnyUrl

from luma_mcp.ledger import Ledger
from luma_mcp.oauth.grants import MAX_GRANTS_PER_SUBJECT, GrantStore
from luma_mcp.oauth.provider import LumaAuthServer
from luma_mcp.oauth.sealing import Sealer

from ..helpers.common import raw_sql
from ..helpers.oauth import OAUTH_KEY

pytestmark = pytest.mark.anyio
RESOURCE = "http://127.0.0.1:9/mcp"
API_TOKEN = "acedata-token-in-a-grant-1"


def auth_server(ledger: Ledger, key: str = OAUTH_KEY, *, max_clients: int = 100) -> LumaAuthServer:
    grants = GrantStore(ledger, access_seconds=3600, grant_seconds=86_400, max_clients=max_clients)
    return LumaAuthServer(
        grants=grants, sealer=Sealer([key]), issuer="http://127.0.0.1:9", resource=RESOURCE, mode="passthrough"
    )


async def registered(server: LumaAuthServer, client_id: str = "client-1") -> OAuthClientInformationFull:
    info = OAuthClientInformationFull(client_id=client_id, redirect_uris=[AnyUrl("http://127.0.0.1:1/cb")])
    await server.register_client(info)
    client = await server.get_client(client_id)
    assert client is not None
    return client


async def signed_in(server: LumaAuthServer, subject: str = "subject-1") -> str:
    """A code, as the sign-in page makes one after the API accepted the token."""
    return await server.grants.start_grant(
        client_id="client-1",
        tenant=subject,
        subject=subject,
        sealed_token=server.sealer.seal(API_TOKEN),
        scopes=["videos"],
        resource=RESOURCE,
        code_details={"redirect_uri": "http://127.0.0.1:1/cb", "explicit": True, "challenge": "c"},
    )


async def test_a_code_is_exchanged_once_even_by_two_requests_at_the_same_moment(ledger: Ledger, store: str) -> None:
    server = auth_server(ledger)
    client = await registered(server)
    code = await server.load_authorization_code(client, await signed_in(server))
    assert code is not None
    outcomes = await asyncio.gather(
        *(server.exchange_authorization_code(client, code) for _ in range(4)), return_exceptions=True
    )
    issued = [outcome for outcome in outcomes if not isinstance(outcome, BaseException)]
    assert len(issued) == 1 and all("already been used" in str(o) for o in outcomes if isinstance(o, BaseException))
    identity = await server.load_access_token(issued[0].access_token)
    assert identity is not None and identity.upstream is not None
    assert identity.upstream.get_secret_value() == API_TOKEN and identity.resource == RESOURCE
    # Stored as hashes and sealed: no code, token or API token in clear anywhere in the store.
    rows = [
        *raw_sql(store, "SELECT * FROM oauth_tokens"),
        *raw_sql(store, "SELECT * FROM oauth_grants"),
        *raw_sql(store, "SELECT * FROM oauth_clients"),
    ]
    secrets = (code.code, issued[0].access_token, issued[0].refresh_token or "", API_TOKEN)
    assert not any(secret in str(value) for row in rows for value in row for secret in secrets)


async def test_a_lost_server_key_means_signing_in_again(ledger: Ledger, store: str) -> None:
    before = auth_server(ledger)
    client = await registered(before)
    code = await before.load_authorization_code(client, await signed_in(before))
    assert code is not None
    tokens = await before.exchange_authorization_code(client, code)
    after = auth_server(ledger, key="J1t1b3nF6w7sXoQ1yq7m0s0C7u0b2d9kQeN2b6yM3Ck=")  # the key was replaced
    assert await after.load_access_token(tokens.access_token) is None
    assert raw_sql(store, "SELECT count(*) FROM oauth_grants") == [(0,)]  # the sealed token is gone with it


async def test_what_strangers_can_make_it_hold_is_bounded(ledger: Ledger, store: str) -> None:
    server = auth_server(ledger, max_clients=3)
    for n in range(3):
        await registered(server, f"client-{n}")
    with pytest.raises(RegistrationError, match="as many applications as it keeps"):
        await registered(server, "client-3")
    for _ in range(MAX_GRANTS_PER_SUBJECT + 5):
        await signed_in(server)
    await signed_in(server, subject="someone-else")
    assert raw_sql(store, "SELECT count(*) FROM oauth_grants") == [(MAX_GRANTS_PER_SUBJECT + 1,)]
    assert raw_sql(store, "SELECT count(*) FROM oauth_tokens") == [(MAX_GRANTS_PER_SUBJECT + 1,)]
    # An expired grant goes, with its code and sealed token, at the next sign-in or pruning round.
    raw_sql(store, "UPDATE oauth_grants SET expires_at = 0 WHERE subject = ?", ("someone-else",))
    await signed_in(server)
    assert raw_sql(store, "SELECT count(*) FROM oauth_grants WHERE subject = ?", ("someone-else",)) == [(0,)]
    raw_sql(store, "UPDATE oauth_grants SET expires_at = 0")
    await server.grants.prune()
    assert raw_sql(store, "SELECT count(*) FROM oauth_grants") == [(0,)]
    assert raw_sql(store, "SELECT count(*) FROM oauth_tokens") == [(0,)]


async def test_a_resource_other_than_this_server_is_refused_at_authorize(ledger: Ledger) -> None:
    server = auth_server(ledger)
    client = await registered(server)
    params = AuthorizationParams(
        state="s",
        scopes=None,
        code_challenge="c",
        redirect_uri=AnyUrl("http://127.0.0.1:1/cb"),
        redirect_uri_provided_explicitly=True,
        resource="http://127.0.0.1:9/other",
    )
    with pytest.raises(AuthorizeError, match=re.escape("issues tokens for http://127.0.0.1:9/mcp only")):
        await server.authorize(client, params)
    signin = await server.authorize(client, params.model_copy(update={"resource": "HTTP://127.0.0.1:9/mcp/"}))
    assert signin.startswith("http://127.0.0.1:9/signin?request=")
