"""The rules of client ID metadata documents that need no network: which client_ids are
documents' URLs, which URLs are fetched, which documents make a client, how long one is kept."""

from __future__ import annotations

import json
from contextlib import AsyncExitStack
from typing import Any

import pytest
from mcp.client.auth.utils import is_valid_client_metadata_url
from pydantic import AnyUrl

from luma_mcp.oauth.client_document_rules import (
    MAX_URL_LENGTH,
    UnusableDocument,
    check_document_url,
    client_from_document,
    document_lifetime,
)
from luma_mcp.oauth.client_documents import ClientDocuments
from luma_mcp.oauth.fetch_slots import FetchSlots, NoFetchSlot, requester

URL = "https://app.example.com/oauth/client.json"


def document(**changes: Any) -> bytes:
    body: dict[str, Any] = {
        "client_id": URL,
        "client_name": "Example App",
        "redirect_uris": ["http://127.0.0.1/callback", "https://app.example.com/callback"],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    }
    for name, value in changes.items():
        if value is ...:
            body.pop(name, None)
        else:
            body[name] = value
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    "client_id",
    [
        URL,
        "https://app.example.com/c",
        "https://app.example.com/",
        "https://app.example.com",
        "http://app.example.com/client.json",
        "ftp://app.example.com/client.json",
        "https:///client.json",
        "app.example.com/client.json",
        "3f2a9c1e-registered-client-id",
        "",
        "https://[::1/x",
    ],
)
def test_a_document_id_is_what_the_sdk_client_would_send_as_one(client_id: str) -> None:
    assert ClientDocuments.is_document_id(client_id) is is_valid_client_metadata_url(client_id)


def test_document_ids_are_https_urls_with_a_path() -> None:
    assert ClientDocuments.is_document_id(URL)
    assert not ClientDocuments.is_document_id("https://app.example.com/")
    assert not ClientDocuments.is_document_id("http://app.example.com/client.json")
    assert not ClientDocuments.is_document_id("a1b2c3d4")  # a dynamically registered client's


@pytest.mark.parametrize(
    "client_id", [URL, "https://app.example.com:8443/client.json", "https://app.example.com/c?v=2"]
)
def test_a_url_the_draft_allows_is_fetched_as_given(client_id: str) -> None:
    assert str(check_document_url(client_id)) == client_id


@pytest.mark.parametrize(
    ("client_id", "says"),
    [
        ("http://app.example.com/client.json", "not https with a path"),
        ("https://app.example.com/", "not https with a path"),
        ("https:///client.json", "no plain host"),
        ("https://user:pw@app.example.com/client.json", "user or password"),
        ("https://app.example.com/client.json#me", "fragment"),
        ("https://app.example.com/a/../client.json", '"." or ".."'),
        ("https://app.example.com/./client.json", '"." or ".."'),
        ("https://app.example.com/a/%2e%2E/client.json", '"." or ".."'),
        ("https://app.example.com/client .json", "space or control"),
        ("https://app.example.com/client\x00.json", "space or control"),
        ("https://app.example.com/\u200bclient.json", "space or control"),
        ("https://app.example.com:99999/client.json", "does not parse"),
        ("https://app.example.com/" + "a" * MAX_URL_LENGTH, "longer than"),
    ],
)
def test_a_url_the_draft_forbids_is_never_fetched(client_id: str, says: str) -> None:
    with pytest.raises(UnusableDocument, match="the URL") as refused:
        check_document_url(client_id)
    assert says in str(refused.value)


def test_a_valid_document_makes_a_public_client_named_by_its_url() -> None:
    client = client_from_document(
        URL,
        document(scope="videos", logo_uri="https://app.example.com/logo.png", software_version="1.2"),
    )
    assert client.client_id == URL
    assert client.token_endpoint_auth_method == "none" and client.client_secret is None
    assert client.redirect_uris == [AnyUrl("http://127.0.0.1/callback"), AnyUrl("https://app.example.com/callback")]
    assert client.client_name == "Example App" and client.scope == "videos"
    assert str(client.logo_uri) == "https://app.example.com/logo.png" and client.software_version == "1.2"
    assert client.grant_types == ["authorization_code", "refresh_token"] and client.response_types == ["code"]


def test_a_minimal_document_gets_the_defaults() -> None:
    client = client_from_document(
        URL, json.dumps({"client_id": URL, "redirect_uris": ["http://localhost/cb"]}).encode()
    )
    assert client.token_endpoint_auth_method == "none"
    assert client.grant_types == ["authorization_code", "refresh_token"] and client.client_name is None


def test_only_known_members_are_taken_and_unknown_grants_dropped() -> None:
    client = client_from_document(
        URL,
        document(
            issuer="https://evil.example",
            jwks={"keys": []},
            client_id_issued_at=1,
            grant_types=["authorization_code", "client_credentials", "urn:ietf:params:oauth:grant-type:jwt-bearer"],
        ),
    )
    assert client.issuer is None and client.jwks is None and client.client_id_issued_at is None
    assert client.grant_types == ["authorization_code"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"<html>not json</html>", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[" * 100_000, "not JSON"),
        (json.dumps([URL]).encode(), "not a JSON object"),
        (document(client_id=URL + "/"), "client_id is not exactly its URL"),
        (document(client_id=URL.upper()), "client_id is not exactly its URL"),
        (document(client_id=...), "client_id is not exactly its URL"),
        (document(client_secret="s3cret"), "client secret"),
        (document(client_secret_expires_at=0), "client secret"),
        (document(token_endpoint_auth_method="client_secret_basic"), "token_endpoint_auth_method"),
        (document(token_endpoint_auth_method="private_key_jwt"), "token_endpoint_auth_method"),
        (document(token_endpoint_auth_method=None), "token_endpoint_auth_method"),
        (document(redirect_uris=...), "no redirect_uris"),
        (document(redirect_uris=[]), "no redirect_uris"),
        (document(redirect_uris="https://app.example.com/callback"), "no redirect_uris"),
        (document(redirect_uris=["not a url"]), "redirect_uris.0 is not valid"),
        (document(response_types=["token"]), 'lack "code"'),
        (document(grant_types=["refresh_token"]), 'lack "authorization_code"'),
        (document(grant_types="authorization_code"), 'lack "authorization_code"'),
        (document(logo_uri="javascript:alert(1)"), "logo_uri is not valid"),
        (document(client_name=["a", "b"]), "client_name is not valid"),
    ],
)
def test_a_document_that_cannot_be_trusted_makes_no_client(body: bytes, says: str) -> None:
    with pytest.raises(UnusableDocument) as refused:
        client_from_document(URL, body)
    assert says in str(refused.value)
    assert "s3cret" not in str(refused.value)


@pytest.mark.parametrize(
    ("cache_control", "seconds"),
    [
        (None, 300),
        ("public", 300),
        ("max-age=3600", 300),
        ("public, max-age=120", 120),
        ('max-age="60"', 60),
        ("max-age=5", 30),
        ("max-age=0", 30),
        ("no-store", 30),
        ("max-age=600, no-cache", 30),
        ("max-age=nonsense", 300),
    ],
)
def test_a_document_is_kept_for_its_max_age_within_the_bounds(cache_control: str | None, seconds: float) -> None:
    assert document_lifetime(cache_control, cache_seconds=300, retry_seconds=30) == seconds


# --- fetch slots ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_full_host_or_address_takes_no_shared_slot_and_holds_nothing_after() -> None:
    slots = FetchSlots(total=3, per_host=2, per_requester=2, wait=0.05)
    async with AsyncExitStack() as held:
        requester.set("198.51.100.1")
        for _ in range(2):
            await held.enter_async_context(slots.slot("slow.example", shared_wait=1))
        with pytest.raises(NoFetchSlot, match="2 fetches for the requesting address"):
            await held.enter_async_context(slots.slot("fast.example", shared_wait=1))
        requester.set("198.51.100.2")
        with pytest.raises(NoFetchSlot, match="2 fetches from this document's host"):
            await held.enter_async_context(slots.slot("slow.example", shared_wait=1))
        await held.enter_async_context(slots.slot("fast.example", shared_wait=1))  # the last shared slot
        requester.set(None)
        with pytest.raises(NoFetchSlot, match=r"all 3 fetch slots stayed taken for 0\.05 s"):
            await held.enter_async_context(slots.slot("other.example", shared_wait=0.05))
    assert slots._hosts._by_key == {} and slots._requesters._by_key == {}  # nothing kept per key once done
    async with slots.slot("slow.example", shared_wait=0), slots.slot("slow.example", shared_wait=0):
        pass  # every slot is free again
