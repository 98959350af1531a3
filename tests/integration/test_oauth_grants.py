"""The sign-in's records on both backends: single use under concurrency, bounds, a lost key."""

from __future__ import annotations

import asyncio
import re

import anyio
import pytest
from mcp.server.auth.provider import AuthorizationParams, AuthorizeError, RegistrationError, TokenError
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken
from pydantic import AnyUrl

from luma_mcp.core.ledger import Ledger
from luma_mcp.oauth.grants import MAX_GRANTS_PER_SUBJECT, GrantStore
from luma_mcp.oauth.provider import LumaAuthServer
from luma_mcp.oauth.sealing import Sealer

from ..helpers.common import open_store, raw_sql
from ..helpers.oauth import OAUTH_KEY

pytestmark = pytest.mark.anyio
RESOURCE = "http://127.0.0.1:9/mcp"
NEW_KEY = "J1t1b3nF6w7sXoQ1yq7m0s0C7u0b2d9kQeN2b6yM3Ck="
API_TOKEN = "acedata-token-in-a-grant-1"
ORPHAN_TOKENS = (
    "SELECT count(*) FROM oauth_tokens t WHERE NOT EXISTS (SELECT 1 FROM oauth_grants g WHERE g.grant_id = t.grant_id)"
)


def auth_server(ledger: Ledger, key: str = OAUTH_KEY, *, max_clients: int = 100) -> LumaAuthServer:
    grants = GrantStore(ledger, access_seconds=3600, grant_seconds=86_400, max_clients=max_clients)
    return LumaAuthServer(
        grants=grants, sealer=Sealer(key.split(",")), issuer="http://127.0.0.1:9", resource=RESOURCE, mode="passthrough"
    )


async def registered(server: LumaAuthServer, client_id: str = "client-1") -> OAuthClientInformationFull:
    info = OAuthClientInformationFull(client_id=client_id, redirect_uris=[AnyUrl("http://127.0.0.1:1/cb")])
    await server.register_client(info)
    client = await server.get_client(client_id)
    assert client is not None
    return client


async def signed_in(server: LumaAuthServer, subject: str = "subject-1", client_id: str = "client-1") -> str:
    """A code, as the sign-in page makes one after the API accepted the token."""
    return await server.grants.start_grant(
        client_id=client_id,
        tenant=subject,
        subject=subject,
        sealed_token=server.sealer.seal(API_TOKEN),
        scopes=["videos"],
        resource=RESOURCE,
        code_details={"redirect_uri": "http://127.0.0.1:1/cb", "explicit": True, "challenge": "c"},
    )


async def exchanged(server: LumaAuthServer) -> tuple[OAuthClientInformationFull, OAuthToken]:
    """A registered client, signed in and its code exchanged: its client and tokens."""
    client = await registered(server)
    code = await server.load_authorization_code(client, await signed_in(server))
    assert code is not None
    return client, await server.exchange_authorization_code(client, code)


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
    client, tokens = await exchanged(before)
    after = auth_server(ledger, key=NEW_KEY)  # the key was replaced
    assert await after.load_access_token(tokens.access_token) is None
    assert await after.load_refresh_token(client, tokens.refresh_token or "") is None  # no refresh either
    # Left to expire, not revoked: a replica still holding the old key (mid-rotation) serves it.
    assert await before.load_access_token(tokens.access_token) is not None
    rotated = auth_server(ledger, key=f"{NEW_KEY},{OAUTH_KEY}")  # the new key first, the old one kept
    assert await rotated.load_access_token(tokens.access_token) is not None


async def test_a_client_secret_is_kept_sealed_and_survives_key_rotation(ledger: Ledger, store: str) -> None:
    server = auth_server(ledger)
    info = OAuthClientInformationFull(
        client_id="confidential",
        client_secret="the-sdks-random-secret-123",
        token_endpoint_auth_method="client_secret_post",
        redirect_uris=[AnyUrl("http://127.0.0.1:1/cb")],
    )
    await server.register_client(info)
    assert "the-sdks-random-secret-123" not in str(raw_sql(store, "SELECT * FROM oauth_clients"))
    for keys in (OAUTH_KEY, f"{NEW_KEY},{OAUTH_KEY}"):
        client = await auth_server(ledger, key=keys).get_client("confidential")
        assert client is not None and client.client_secret == "the-sdks-random-secret-123"
    lost = await auth_server(ledger, key=NEW_KEY).get_client("confidential")
    assert lost is not None and lost.client_secret is None  # the SDK refuses it: the app registers again


async def test_refreshing_keeps_one_spent_refresh_token_per_sign_in(ledger: Ledger, store: str) -> None:
    server = auth_server(ledger)
    client, tokens = await exchanged(server)
    for _ in range(20):
        refresh = await server.load_refresh_token(client, tokens.refresh_token or "")
        assert refresh is not None
        tokens = await server.exchange_refresh_token(client, refresh, refresh.scopes)
    kinds = raw_sql(store, "SELECT kind, used_at IS NOT NULL FROM oauth_tokens")
    assert sorted((kind, bool(spent)) for kind, spent in kinds) == [
        ("access", False),
        ("code", True),
        ("refresh", False),
        ("refresh", True),
    ]


async def test_what_strangers_can_make_it_hold_is_bounded(ledger: Ledger, store: str) -> None:
    server = auth_server(ledger, max_clients=3)
    for n in range(3):
        await registered(server, f"client-{n}")
    await signed_in(server, client_id="client-0")
    await registered(server, "client-3")  # full: the oldest one nobody signed in with (client-1) made room
    assert await server.get_client("client-1") is None and await server.get_client("client-0") is not None
    for client_id in ("client-2", "client-3"):
        await signed_in(server, client_id=client_id)
    with pytest.raises(RegistrationError, match="as many applications as it keeps"):
        await registered(server, "client-4")  # every one has been signed in with: nothing to evict
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


async def test_a_client_record_is_bounded_when_registered_and_when_looked_up(ledger: Ledger, store: str) -> None:
    server = auth_server(ledger)
    huge = OAuthClientInformationFull(
        client_id="huge", client_name="N" * 5000, redirect_uris=[AnyUrl("http://127.0.0.1:1/cb")]
    )
    with pytest.raises(RegistrationError, match="client_name is 5000 characters long") as refused:
        await server.register_client(huge)
    assert refused.value.error == "invalid_client_metadata"
    await registered(server, "old")
    assert raw_sql(store, "SELECT client_id FROM oauth_clients") == [("old",)]  # nothing of the refused one
    # A client stored under older rules (or written by an older replica) is not served either.
    info = OAuthClientInformationFull(
        client_id="old", client_name="Claude\u202eevil", redirect_uris=[AnyUrl("http://127.0.0.1:1/cb")]
    ).model_dump_json(exclude_none=True)
    raw_sql(store, "UPDATE oauth_clients SET info = ? WHERE client_id = ?", (info, "old"))
    assert await server.get_client("old") is None


async def refreshed(server: LumaAuthServer, client: OAuthClientInformationFull, refresh_token: str) -> OAuthToken:
    refresh = await server.load_refresh_token(client, refresh_token)
    if refresh is None:  # as the SDK's /token answers it
        raise TokenError("invalid_grant", "refresh token does not exist")
    return await server.exchange_refresh_token(client, refresh, refresh.scopes)


async def test_a_refresh_token_sent_twice_at_once_rotates_once_and_the_winner_keeps_its_sign_in(
    ledger: Ledger, store: str
) -> None:
    """Two replicas (or a retried request) refreshing with one token: one wins; the other,
    arriving just after the winner spent it, is refused without ending the winner's sign-in.
    Both orders of arrival: together at the conditional update, and one after the other."""
    server = auth_server(ledger)
    client, tokens = await exchanged(server)
    for _ in range(5):
        outcomes = await asyncio.gather(
            *(refreshed(server, client, tokens.refresh_token or "") for _ in range(2)), return_exceptions=True
        )
        won = [outcome for outcome in outcomes if isinstance(outcome, OAuthToken)]
        lost = [outcome for outcome in outcomes if isinstance(outcome, TokenError)]
        assert len(won) == 1 and len(lost) == 1 and lost[0].error == "invalid_grant", outcomes
        late = await asyncio.gather(refreshed(server, client, tokens.refresh_token or ""), return_exceptions=True)
        assert isinstance(late[0], TokenError) and late[0].error == "invalid_grant"  # a moment later: refused too
        tokens = won[0]
        assert await server.load_access_token(tokens.access_token) is not None  # the winner's sign-in lives on
    tokens = await refreshed(server, client, tokens.refresh_token or "")
    assert await server.load_access_token(tokens.access_token) is not None
    assert raw_sql(store, "SELECT count(*) FROM oauth_grants") == [(1,)]


async def test_a_refresh_token_presented_again_later_ends_the_sign_in(ledger: Ledger, store: str) -> None:
    """Outside the moment a concurrent refresh takes, a spent refresh token means someone else
    has it (RFC 9700 §4.14.2): the whole sign-in ends, its fresh tokens with it."""
    server = auth_server(ledger)
    client, tokens = await exchanged(server)
    rotated = await refreshed(server, client, tokens.refresh_token or "")
    raw_sql(store, "UPDATE oauth_tokens SET used_at = used_at - 3600 WHERE used_at IS NOT NULL")  # an hour on
    with pytest.raises(TokenError, match="does not exist"):
        await refreshed(server, client, tokens.refresh_token or "")
    assert await server.load_access_token(rotated.access_token) is None
    with pytest.raises(TokenError):
        await refreshed(server, client, rotated.refresh_token or "")
    assert raw_sql(store, "SELECT count(*) FROM oauth_grants") == [(0,)]
    assert raw_sql(store, "SELECT count(*) FROM oauth_tokens") == [(0,)]


async def test_a_code_presented_again_at_once_still_ends_the_sign_in(ledger: Ledger) -> None:
    """A code travels in a browser's URL: a second exchange, however soon, is someone else's."""
    server = auth_server(ledger)
    client = await registered(server)
    code = await server.load_authorization_code(client, await signed_in(server))
    assert code is not None
    tokens = await server.exchange_authorization_code(client, code)
    assert await server.load_authorization_code(client, code.code) is None
    assert await server.load_access_token(tokens.access_token) is None


async def waiting_on_a_lock(store: str, statement: str, count: int = 1) -> None:
    """Until `count` sessions of the store wait on a row lock at a statement starting so."""
    query = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE ?"
    with anyio.fail_after(20):
        while raw_sql(store, query, (f"{statement}%",))[0][0] < count:  # noqa: ASYNC110 (another process's state)
            await anyio.sleep(0.02)


async def test_a_revoke_racing_a_refresh_on_another_replica_leaves_no_token_without_its_grant(
    postgres_url: str,
) -> None:
    """The refresh is held at its last statement (another session locks the client's row), the
    revoke starts meanwhile; when both have run, nothing of the grant is left, nor usable."""
    import psycopg

    store = postgres_url
    replica_a, replica_b = open_store(store), open_store(store)
    try:
        server_a, server_b = auth_server(replica_a), auth_server(replica_b)
        client, tokens = await exchanged(server_a)
        refresh = await server_a.load_refresh_token(client, tokens.refresh_token or "")
        assert refresh is not None
        with psycopg.connect(store) as holder:
            holder.execute("SELECT 1 FROM oauth_clients WHERE client_id = 'client-1' FOR UPDATE")
            async with anyio.create_task_group() as tasks:
                rotated: list[OAuthToken] = []

                async def rotate() -> None:
                    rotated.append(await server_a.exchange_refresh_token(client, refresh, refresh.scopes))

                tasks.start_soon(rotate)
                await waiting_on_a_lock(store, "UPDATE oauth_clients")
                tasks.start_soon(server_b.grants.revoke, refresh.grant_id)
                await waiting_on_a_lock(store, "DELETE FROM oauth_", 1)
                holder.rollback()
        assert len(rotated) == 1 and await server_b.load_access_token(rotated[0].access_token) is None
        assert raw_sql(store, ORPHAN_TOKENS) == [(0,)]
        assert raw_sql(store, "SELECT count(*) FROM oauth_grants") == [(0,)]
    finally:
        replica_a.close()
        replica_b.close()
