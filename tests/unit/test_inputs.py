"""Inputs from callers and operators: every way of writing a private address is refused with
a message that says what to pass, a URL that does not parse is a clear error, not a crash,
and a configuration that cannot work stops the start with one clean line per problem."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, TextContent

from luma_mcp.checks.urls import UnsafeUrl, check_caller_url, is_public_address, literal_address
from luma_mcp.cli import main
from luma_mcp.config import Settings
from luma_mcp.simulator.app import Simulator

from ..helpers.common import CANARY_TOKEN, text_of

pytestmark = pytest.mark.anyio

PRIVATE_URLS = [
    "http://2130706433/a.png",  # 127.0.0.1 as one decimal number
    "http://0x7f000001/a.png",  # ... in hex
    "http://0177.0.0.1/a.png",  # ... with an octal first part
    "http://127.1/a.png",  # ... in short form
    "http://0x7f.1/a.png",
    "http://0/a.png",  # 0.0.0.0
    "http://localhost./a.png",  # a trailing dot is the same name
    "http://LOCALHOST/a.png",
    "http://%6c%6fcalhost/a.png",  # percent-encoded
    "http://%31%32%37.0.0.2/a.png",
    "http://\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff12/a.png",  # full-width digits and dots
    "http://\u24dbocalhost/a.png",  # a circled letter that folds to "l"
    "http://127.0.0.2./a.png",  # (127.0.0.1 itself is the simulated API's host, allowed)
    "http://169.254.169.254/latest/meta-data/",  # cloud metadata
    "http://100.100.100.200/a.png",  # shared address space (another cloud's metadata)
    "http://10.1.2.3/a.png",
    "http://[::1]/a.png",
    "http://[::ffff:127.0.0.1]/a.png",  # IPv4-mapped IPv6
    "http://[::ffff:7f00:1]/a.png",
    "http://[::127.0.0.1]/a.png",  # IPv4-compatible IPv6
    "http://[2002:7f00:1::]/a.png",  # 6to4 of 127.0.0.1
    "http://[64:ff9b::a9fe:a9fe]/a.png",  # NAT64 of 169.254.169.254
    "http://[fe80::1%25eth0]/a.png",  # link-local with a zone id
    "http://[fd00:ec2::254]/a.png",  # unique local (another cloud's metadata)
    "http://224.0.0.1/a.png",  # multicast
    "http://intranet/a.png",  # a single label only resolves on the local network
    "http://printer.local/a.png",
    "http://metadata.google.internal/a.png",
    "http://user:pw@127.0.0.2/a.png",
]


@pytest.mark.parametrize("url", PRIVATE_URLS)
async def test_private_addresses_are_refused_in_every_spelling(mcp_client: Client, sim: Simulator, url: str) -> None:
    result = await mcp_client.call_tool("generate_video", {"prompt": "a fox", "start_image_url": url})
    text = text_of(result)
    assert result.is_error and "start_image_url points at" in text and "cannot reach" in text, text
    assert sim.submits() == []


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://[::1/x", "does not parse (Invalid IPv6 URL)"),
        ("http://example.com:99999/a.png", "does not parse"),
        ("http://example.com/a\x00.png", "control character ('\\x00') at position 20"),
        ("http://example.com/a\x7f.png", "control character"),
        ("http://exa\u200bmple.com/a.png", "control character"),  # zero width space: parsers disagree on it
        ("http://example.com/a b.png", "a space is %20"),
        ("http://127.0.0.1\\@example.com/a.png", "backslash"),  # browsers read the host as 127.0.0.1
        ("ftp://example.com/a.png", "must be a full public http(s) URL"),
        ("https:///a.png", "must be a full public http(s) URL"),
    ],
)
async def test_malformed_urls_get_a_clear_error(mcp_client: Client, sim: Simulator, url: str, says: str) -> None:
    for args in ({"prompt": "a fox", "end_image_url": url}, {"prompt": "a fox", "callback_url": url}):
        result = await mcp_client.call_tool("generate_video", args)
        text = text_of(result)
        assert result.is_error and says in text and "failed inside luma-mcp" not in text, text
        assert "https://example.com/image.png" in text  # what to pass instead
    result = await mcp_client.call_tool("extend_video", {"video_url": url})
    assert result.is_error and says in text_of(result) and "video_url" in text_of(result)
    assert sim.submits() == []
    assert not (await mcp_client.call_tool("list_tasks", {})).is_error  # the server is still healthy


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/a.png",
        "https://EXAMPLE.com./a.png?sig=a%20b#x",
        "https://b\u00fccher.example/a.png",  # an international name
        "http://8.8.8.8/a.png",
        "http://134744072/a.png",  # 8.8.8.8, decimal: odd but public
        "https://[2606:4700:4700::1111]/a.png",
        "https://[::ffff:8.8.8.8]/a.png",
        "https://example.com/path\\with?backslash=\\in-query",
    ],
)
def test_public_urls_pass(url: str) -> None:
    check_caller_url("start_image_url", url)


def test_the_api_host_is_allowed_even_on_loopback() -> None:
    check_caller_url("video_url", "http://127.0.0.1:8123/media/v.mp4", allowed_origins={("127.0.0.1", 8123)})
    with pytest.raises(UnsafeUrl, match="cannot reach"):
        check_caller_url("video_url", "http://127.0.0.2:8123/media/v.mp4", allowed_origins={("127.0.0.1", 8123)})
    with pytest.raises(UnsafeUrl, match="cannot reach"):  # the API's host, but another service on it
        check_caller_url("video_url", "http://127.0.0.1:1/x.png", allowed_origins={("127.0.0.1", 8123)})


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1%00.example.com/a.png",  # a decoded host that stops at the NUL is loopback
        "http://example.com%2f@127.0.0.1/a.png",
        "http://[v1.fe80::a+en1]/a.png",  # brackets that hold no IPv6 address
    ],
)
def test_hosts_that_hide_something_are_refused(url: str) -> None:
    with pytest.raises(UnsafeUrl):
        check_caller_url("start_image_url", url)


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("10.0x10.1", "10.16.0.1"),
        ("127.0.0.1.", "127.0.0.1"),
        ("::1", "::1"),
        ("fe80::1%25eth0", "fe80::1"),
        ("example.com", None),
        ("08.0.0.1", None),  # not octal: a name (that will not resolve)
        ("4294967296", None),  # too large for IPv4
    ],
)
def test_literal_addresses_read_like_an_http_stack(host: str, address: str | None) -> None:
    found = literal_address(host)
    assert (str(found) if found else None) == address


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("::ffff:8.8.8.8", True),
        ("127.0.0.1", False),
        ("100.64.0.1", False),
        ("169.254.169.254", False),
        ("239.1.1.1", False),
        ("0.0.0.0", False),  # noqa: S104 (an address under test, not a bind)
        ("::", False),
        ("2002:a00:1::", False),  # 6to4 of 10.0.0.1
        ("64:ff9b::7f00:1", False),
        ("64:ff9b::808:808", True),
        ("fd00:ec2::254", False),  # a cloud metadata service
        ("2001:0:4136:e378:8000:63bf:80ff:fefe", False),  # Teredo whose client end is 127.0.1.1
    ],
)
def test_the_address_rule(address: str, public: bool) -> None:
    assert is_public_address(ipaddress.ip_address(address)) is public


# --- free text: no control or bidi characters ----------------------------------------------

REFUSED_CHARACTERS = [
    ("\x00", "U+0000 NULL"),
    ("\x1b", "U+001B ESCAPE"),  # a terminal escape, e.g. in a log being read
    ("\x0b", "U+000B"),  # a vertical tab
    ("\x7f", "U+007F DELETE"),
    ("\x85", "U+0085"),  # a C1 control (NEXT LINE)
    ("\u202e", "U+202E RIGHT-TO-LEFT OVERRIDE"),
    ("\u202a", "U+202A LEFT-TO-RIGHT EMBEDDING"),
    ("\u2066", "U+2066 LEFT-TO-RIGHT ISOLATE"),
    ("\u2069", "U+2069 POP DIRECTIONAL ISOLATE"),
    ("\u200f", "U+200F RIGHT-TO-LEFT MARK"),
    ("\u061c", "U+061C ARABIC LETTER MARK"),
]


@pytest.mark.parametrize(("char", "shown"), REFUSED_CHARACTERS)
async def test_a_prompt_with_a_control_character_is_refused_and_says_which(
    mcp_client: Client, sim: Simulator, char: str, shown: str
) -> None:
    prompt = f"A fox {char}jumps"
    expected = f"prompt contains a control character ({shown}) at position 6: remove it and try again."
    for tool, args in (("generate_video", {"prompt": prompt}), ("extend_video", {"video_id": "v1", "prompt": prompt})):
        result = await mcp_client.call_tool(tool, args)
        assert result.is_error and text_of(result).endswith(f": {expected}"), (tool, text_of(result))
    assert sim.submits() == []
    listed = await mcp_client.call_tool("list_tasks", {})
    assert (listed.structured_content or {})["tasks"] == []  # no row either


async def test_text_that_reorders_nothing_is_sent_as_written(mcp_client: Client, sim: Simulator) -> None:
    prompts = [
        "Line one\n\tindented line two",
        "Pasted on Windows\r\nwith CRLF line ends",
        "A family \U0001f469\u200d\U0001f469\u200d\U0001f467 waving",  # zero-width joiners make one emoji
        "\u05d7\u05ea\u05d5\u05dc \u05e2\u05dc \u05d2\u05d2, \u0642\u0637\u0629",  # Hebrew and Arabic letters
        "Cr\u00e8me br\u00fbl\u00e9e, soft\u00adhyphen",
    ]
    for prompt in prompts:
        result = await mcp_client.call_tool("generate_video", {"prompt": prompt, "wait_seconds": 0})
        assert not result.is_error, text_of(result)
    assert [body["prompt"] for body in sim.submits()] == prompts


async def test_the_guidance_prompts_refuse_control_characters_too(mcp_client: Client) -> None:
    """Their text becomes a generate_video prompt: the same rule, as an error the client shows."""
    expected = "contains a control character (U+202E RIGHT-TO-LEFT OVERRIDE) at position 4: remove it and try again."
    for prompt, args, name in (
        ("video_prompt", {"idea": "fox \u202ejumps"}, "idea"),
        ("video_prompt", {"idea": "fox", "style": "film\u202enoir"}, "style"),
        ("storyboard", {"story": "sea \u202estorm"}, "story"),
    ):
        with pytest.raises(MCPError) as refused:
            await mcp_client.get_prompt(prompt, args)
        assert refused.value.error.code == INVALID_PARAMS and refused.value.error.message == f"{name} {expected}"
    ok = (await mcp_client.get_prompt("video_prompt", {"idea": "fox\njumps"})).messages[0].content
    assert isinstance(ok, TextContent) and "Idea: fox\njumps" in ok.text


# --- configuration: clean refusals at start -----------------------------------------------


def start(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str], **env: str) -> str:
    """Run `luma-mcp --transport http` as far as its configuration check; what it told the operator."""
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with socket.socket() as taken, pytest.raises(SystemExit) as exited:
        # A port already in use: a configuration that wrongly passes fails to bind, never serves.
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        main(["--transport", "http", "--port", str(taken.getsockname()[1])])
    out, err = capsys.readouterr()
    assert exited.value.code == 2 and out == ""
    assert err.startswith("luma-mcp: invalid configuration:\n") and "Traceback" not in err
    return err


def test_a_missing_or_unreadable_keys_file_is_a_clean_configuration_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-such-keys"
    err = start(monkeypatch, tmp_path, capsys, LUMA_MCP_API_KEYS_FILE=str(missing))
    assert f"LUMA_MCP_API_KEYS_FILE ({missing}) cannot be read: No such file or directory" in err
    err = start(monkeypatch, tmp_path, capsys, LUMA_MCP_API_KEYS_FILE=str(tmp_path))  # a directory
    assert "cannot be read: Is a directory" in err
    (tmp_path / "utf16").write_text("key-one\n", encoding="utf-16")
    err = start(monkeypatch, tmp_path, capsys, LUMA_MCP_API_KEYS_FILE=str(tmp_path / "utf16"))
    assert "is not UTF-8 text" in err


def test_an_unusable_ledger_url_stops_the_start_without_quoting_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = start(monkeypatch, tmp_path, capsys, LUMA_LEDGER_URL="mysql://root:pw-canary-91@db.example/luma")
    assert "must be a postgresql:// URL" in err and "pw-canary" not in err
    # A password holding "/" unencoded: the driver would read its start as host and port.
    err = start(monkeypatch, tmp_path, capsys, LUMA_LEDGER_URL="postgresql://luma:Xy7/Qz9+canary@db.example/luma")
    assert "port is not a number" in err and "Xy7" not in err and "canary" not in err


def test_a_keys_file_without_keys_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text("# keys go here\n\n", encoding="utf-8")
    err = start(monkeypatch, tmp_path, capsys, LUMA_MCP_API_KEYS_FILE=str(keys_file))
    assert "LUMA_MCP_API_KEYS_FILE is set but holds no access key" in err


def test_a_byte_order_mark_does_not_disable_the_first_key(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_bytes("\ufeffkey-one\r\n# a comment\nkey-two\n".encode())
    settings = Settings(_env_file=None, LUMA_MCP_API_KEYS_FILE=keys_file)
    assert settings.auth_mode == "keys" and settings.access_keys() == ["key-one", "key-two"]


def test_a_key_no_client_could_send_is_refused_by_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text("good-key\n\nkey with-space-sk-canary\n", encoding="utf-8")
    err = start(monkeypatch, tmp_path, capsys, LUMA_MCP_API_KEYS_FILE=str(keys_file))
    assert "LUMA_MCP_API_KEYS_FILE line 3 has a space" in err and "canary" not in err


def test_passthrough_with_access_keys_is_refused_not_ignored(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = start(monkeypatch, tmp_path, capsys, LUMA_MCP_AUTH="passthrough", LUMA_MCP_API_KEYS="key-sk-canary")
    assert "LUMA_MCP_AUTH=passthrough" in err and "would ignore the access keys" in err
    assert "LUMA_MCP_AUTH=keys" in err and "canary" not in err


def test_configuration_errors_never_echo_the_values(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = start(
        monkeypatch,
        tmp_path,
        capsys,
        LUMA_WAIT_SECONDS="90",
        ACEDATACLOUD_API_TOKEN=CANARY_TOKEN,
        LUMA_LEDGER_URL="postgresql://luma:pw-sk-canary@db.example/luma?password=pw-sk-canary",
        LUMA_MCP_API_KEYS="key-sk-canary",
    )
    assert "LUMA_WAIT_SECONDS (90) is above LUMA_MAX_WAIT_SECONDS (50)" in err
    assert CANARY_TOKEN not in err and "canary" not in err
