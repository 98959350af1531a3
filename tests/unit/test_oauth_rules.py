"""OAuth's pure rules: which redirect URIs, what a client's metadata may hold, how the page
shows a stranger's words, which loopback ports, what the server key seals, which settings
the sign-in needs, which public URL it can be served at."""

from __future__ import annotations

import base64
import os

import pytest
from mcp.shared.auth import InvalidRedirectUriError, OAuthClientInformationFull
from pydantic import AnyUrl, ValidationError

from luma_mcp.config import Settings
from luma_mcp.hosting.app import create_http_app
from luma_mcp.hosting.errors import ConfigurationError
from luma_mcp.oauth.client_rules import (
    MAX_CLIENT_RECORD_BYTES,
    MAX_ITEMS,
    MAX_NAME_CHARS,
    client_problem,
    record_bytes,
    redirect_problem,
)
from luma_mcp.oauth.pages import shown
from luma_mcp.oauth.provider import RegisteredClient, redirect_origin
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
        ("com.example.app:/callback", True),  # RFC 8252 §7.1: reverse-domain
        ("com.example.app://oauth/callback", True),
        ("http://example.com/cb", False),
        # An app's scheme without a period may start any program that claims it on the person's machine.
        ("ms-msdt:-id PCWDiagnostic", False),
        ("search-ms:query=invoice&crumb=location:\\\\attacker.example\\share", False),
        ("ms-officecmd:{}", False),
        ("vscode://vscode.github-authentication/did-authenticate", False),  # not listed by the operator
        ("cursor://anysphere.cursor-mcp/oauth/callback", False),  # nor this, unless listed (the default lists it)
        ("http://127.0.0.1.example.com/cb", False),
        ("javascript:alert(1)", False),
        ("data:text/html,hi", False),
        ("file:///etc/passwd", False),
        ("vbscript:msgbox", False),
        ("https://app.example/cb#fragment", False),
        ("https://claude.ai@attacker.example/cb", False),
    ],
)
def test_which_redirect_uris_a_client_may_register(uri: str, allowed: bool) -> None:
    assert (redirect_problem(AnyUrl(uri)) is None) is allowed


def test_an_operator_may_allow_an_apps_scheme_but_never_a_dangerous_one() -> None:
    listed = frozenset({"cursor", "javascript", "data"})
    assert redirect_problem(AnyUrl("cursor://anysphere.cursor-mcp/oauth/callback"), listed) is None
    for uri in ("javascript:alert(1)", "data:text/html,hi", "ms-msdt:x"):
        problem = redirect_problem(AnyUrl(uri), listed)
        assert problem is not None and "reverse-domain" in problem, uri


def a_client(**metadata: object) -> OAuthClientInformationFull:
    return OAuthClientInformationFull.model_validate(
        {"client_id": "a1b2", "redirect_uris": ["https://claude.ai/api/mcp/auth_callback"], **metadata}
    )


def test_a_real_connectors_registration_is_well_within_the_bounds() -> None:
    client = a_client(
        client_name="Claude",
        client_uri="https://claude.ai",
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
        token_endpoint_auth_method="none",
        scope="videos",
    )
    assert client_problem(client) is None and record_bytes(client) < 400


@pytest.mark.parametrize(
    ("metadata", "field"),
    [
        ({"client_name": "N" * (MAX_NAME_CHARS + 1)}, "client_name is 101 characters long"),
        ({"software_id": "s" * 513}, "software_id is 513 characters long"),
        ({"contacts": ["a@example.com"] * (MAX_ITEMS + 1)}, "contacts has 11 entries"),
        ({"contacts": ["ok@example.com", "c" * 600]}, "contacts[1] is 600 characters long"),
        ({"redirect_uris": [f"https://app.example/{n}" for n in range(MAX_ITEMS + 1)]}, "redirect_uris has 11"),
        ({"grant_types": ["authorization_code", *(f"g{n}" for n in range(MAX_ITEMS))]}, "grant_types has 11"),
        ({"jwks": {"keys": [{"n": "x" * 600}]}}, "jwks.keys[0].n is 600 characters long"),
        # Each field within its bound, the whole too large to keep.
        ({"contacts": ["c" * 500] * MAX_ITEMS}, f"at most {MAX_CLIENT_RECORD_BYTES} are kept"),
    ],
)
def test_every_field_of_a_client_and_its_whole_record_are_bounded(metadata: dict[str, object], field: str) -> None:
    problem = client_problem(a_client(**metadata))
    assert problem is not None and problem[0] == "invalid_client_metadata" and field in problem[1], problem


@pytest.mark.parametrize(
    "control", ["\x00", "\x1b", "\x7f", "\x85", "\u202a", "\u202e", "\u2066", "\u2069", "\u200e", "\u200f", "\u061c"]
)
def test_no_shown_field_may_hide_or_reorder_text(control: str) -> None:
    for field, value in (("client_name", f"Claude{control}lanigiro"), ("software_version", f"1{control}")):
        problem = client_problem(a_client(**{field: value}))
        assert problem is not None and problem[0] == "invalid_client_metadata", (field, problem)
        assert problem[1].startswith(f"{field} has the invisible control character U+{ord(control):04X}")
    assert client_problem(a_client(client_name="Zoë's 视频 app 🎬")) is None  # any script or emoji is fine


def test_the_page_shows_a_strangers_text_without_controls_and_bounded() -> None:
    assert shown("Pay\u202eLAVIAP\u202c \x1b[2Jme\x00", 80) == "PayLAVIAP [2Jme"
    assert shown("x" * 100, 80) == "x" * 79 + "…" and len(shown("x" * 100, 80)) == 80
    assert shown("short", 80) == "short"


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


@pytest.mark.parametrize("schemes", ["https", "cursor:", "cur sor"])
def test_the_operators_app_schemes_are_scheme_names(monkeypatch: pytest.MonkeyPatch, schemes: str) -> None:
    monkeypatch.setenv("LUMA_MCP_OAUTH", "true")
    monkeypatch.setenv("LUMA_MCP_AUTH", "passthrough")
    monkeypatch.setenv("LUMA_MCP_OAUTH_KEY", OAUTH_KEY)
    monkeypatch.setenv("LUMA_MCP_OAUTH_APP_SCHEMES", schemes)
    with pytest.raises(ValidationError, match="LUMA_MCP_OAUTH_APP_SCHEMES has"):
        Settings(_env_file=None)
    monkeypatch.setenv("LUMA_MCP_OAUTH_APP_SCHEMES", "Cursor, windsurf")
    assert Settings(_env_file=None).oauth_app_scheme_set() == {"cursor", "windsurf"}


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
