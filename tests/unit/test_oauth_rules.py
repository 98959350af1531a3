"""OAuth's pure rules: which redirect URIs, which loopback ports, what the server key seals,
which settings the sign-in needs, which public URL it can be served at."""

from __future__ import annotations

import base64
import os

import pytest
from mcp.shared.auth import InvalidRedirectUriError
from pydantic import AnyUrl, ValidationError

from luma_mcp.config import Settings
from luma_mcp.http_app import ConfigurationError, create_http_app
from luma_mcp.oauth.provider import RegisteredClient, redirect_origin, redirect_problem
from luma_mcp.oauth.sealing import Sealer

from ..helpers.oauth import OAUTH_KEY


def new_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


@pytest.mark.parametrize(
    ("uri", "allowed"),
    [
        ("https://claude.ai/api/mcp/auth_callback", True),
        ("http://127.0.0.1:33418/callback", True),
        ("http://[::1]:8080/cb", True),
        ("http://localhost/cb", True),
        ("cursor://anysphere.cursor-retrieval/oauth/callback", True),
        ("http://example.com/cb", False),
        ("http://127.0.0.1.example.com/cb", False),
        ("javascript:alert(1)", False),
        ("data:text/html,hi", False),
        ("file:///etc/passwd", False),
        ("https://app.example/cb#fragment", False),
        ("https://claude.ai@attacker.example/cb", False),
    ],
)
def test_which_redirect_uris_a_client_may_register(uri: str, allowed: bool) -> None:
    assert (redirect_problem(AnyUrl(uri)) is None) is allowed


def test_a_loopback_redirect_may_come_back_on_any_port_and_nothing_else_may_change() -> None:
    client = RegisteredClient(
        client_id="c", redirect_uris=[AnyUrl("http://127.0.0.1:1111/cb?x=1"), AnyUrl("https://a.example/cb")]
    )
    assert str(client.validate_redirect_uri(AnyUrl("http://127.0.0.1:2222/cb?x=1"))) == "http://127.0.0.1:2222/cb?x=1"
    for other in (
        "http://127.0.0.1:2222/other?x=1",  # path
        "http://127.0.0.1:2222/cb?x=2",  # query
        "http://localhost:1111/cb?x=1",  # host
        "https://a.example:8443/cb",  # not loopback: exact only
        "https://a.example/cb/",
    ):
        with pytest.raises(InvalidRedirectUriError, match="not registered"):
            client.validate_redirect_uri(AnyUrl(other))


def test_the_page_shows_where_a_redirect_goes_without_a_user_part() -> None:
    assert redirect_origin("https://claude.ai/api/mcp/auth_callback") == "https://claude.ai"
    assert redirect_origin("http://[::1]:8080/cb") == "http://[::1]:8080"
    assert redirect_origin("https://claude.ai@attacker.example/cb") == "https://attacker.example"
    assert redirect_origin("cursor://anysphere.cursor-retrieval/oauth") == "cursor:"


def test_sealed_values_open_only_with_a_key_that_sealed_them_and_never_once_altered() -> None:
    old, new = new_key(), new_key()
    sealed = Sealer([old]).seal("acedata-token-xyz")
    assert "acedata-token-xyz" not in sealed
    assert Sealer([new, old]).unseal(sealed) == "acedata-token-xyz"  # rotation: the old key still opens
    assert Sealer([new]).unseal(sealed) is None  # a lost key: nothing, not an error
    tampered = sealed[:-6] + ("A" if sealed[-6] != "A" else "B") + sealed[-5:]
    assert Sealer([old]).unseal(tampered) is None
    assert Sealer([old]).unseal("not even base64 ✓") is None
    assert Sealer([old]).unseal(sealed, max_age=60) == "acedata-token-xyz"


def test_the_sign_in_needs_a_mode_and_a_well_formed_server_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LUMA_MCP_OAUTH", "true")
    with pytest.raises(ValidationError, match="needs LUMA_MCP_AUTH=passthrough"):
        Settings(_env_file=None)
    monkeypatch.setenv("LUMA_MCP_AUTH", "passthrough")
    with pytest.raises(ValidationError, match=r"needs LUMA_MCP_OAUTH_KEY.*base64\.urlsafe_b64encode"):
        Settings(_env_file=None)
    monkeypatch.setenv("LUMA_MCP_OAUTH_KEY", f"{OAUTH_KEY},too-short")
    with pytest.raises(ValidationError, match="key number 2 is not a key"):
        Settings(_env_file=None)
    monkeypatch.setenv("LUMA_MCP_OAUTH_KEY", f"{OAUTH_KEY}, {new_key()}")
    assert len(Settings(_env_file=None).oauth_keys()) == 2


@pytest.mark.parametrize(
    ("public_url", "problem"),
    [
        ("http://videos.example.com", "https://"),
        ("https://example.com/luma", "no path"),
    ],
)
def test_the_sign_in_is_served_only_at_an_https_origin(
    monkeypatch: pytest.MonkeyPatch, public_url: str, problem: str
) -> None:
    monkeypatch.setenv("LUMA_MCP_OAUTH", "true")
    monkeypatch.setenv("LUMA_MCP_AUTH", "passthrough")
    monkeypatch.setenv("LUMA_MCP_OAUTH_KEY", OAUTH_KEY)
    monkeypatch.setenv("LUMA_MCP_PUBLIC_URL", public_url)
    with pytest.raises(ConfigurationError, match=problem):
        create_http_app(Settings(_env_file=None), host="0.0.0.0")  # noqa: S104
