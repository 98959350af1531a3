"""The one bearer rule (`luma_mcp.checks.bearer`) and its three users: the API client, the access-keys
check at start, and the HTTP edge. Each refuses exactly what the rule refuses, in its own words."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr, ValidationError
from starlette.types import Message, Receive, Scope, Send

from luma_mcp.api.client import LumaClient
from luma_mcp.api.errors import LumaAuthError, LumaError
from luma_mcp.checks.bearer import MAX_BEARER_LENGTH, acceptable_bearer
from luma_mcp.config import Settings
from luma_mcp.hosting.admission import AdmissionMiddleware
from luma_mcp.hosting.session_caps import SessionCaps
from luma_mcp.simulator.app import SimulatorServer

from ..helpers.common import FAST_RETRY

pytestmark = pytest.mark.anyio

REFUSED = {
    "a space": "sk-good token",
    "a tab": "sk-good\ttoken",
    "non-ASCII": "sk-gööd-token",
    "a control character": "sk-good\x01token",
    "one character too many": "k" * (MAX_BEARER_LENGTH + 1),
}
ACCEPTED = {"plain": "sk-Good_token.123", "punctuation": "!#$%&'*+-./:;<=>?@[]^_`{|}~", "the longest": "k" * 512}


@pytest.mark.parametrize("token", REFUSED.values(), ids=REFUSED.keys())
def test_the_rule_refuses(token: str) -> None:
    assert not acceptable_bearer(token)


@pytest.mark.parametrize("token", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_the_rule_accepts(token: str) -> None:
    assert acceptable_bearer(token)


def test_the_rule_refuses_nothing_at_all() -> None:
    assert not acceptable_bearer("")


async def client_refuses(token: str, sim_server: SimulatorServer) -> bool:
    """The API client: such a token is never sent (the simulator sees no request)."""
    failure: LumaError | None = None
    async with LumaClient(token=SecretStr(token), base_url=sim_server.url, timeout=5, retry=FAST_RETRY) as luma:
        try:
            await luma.get_task("00000000-0000-0000-0000-000000000000")
        except LumaError as exc:  # the simulator refuses tokens it does not know: sent, then refused
            failure = exc
    if sim_server.simulator.requests:
        return False
    assert isinstance(failure, LumaAuthError)
    assert "cannot be sent as a bearer token, so nothing was sent" in str(failure) and token not in str(failure)
    return True


async def keys_check_refuses(token: str, sim_server: SimulatorServer) -> bool:
    """The access-keys check: such a key stops the start, named by where it is, never shown."""
    try:
        Settings(_env_file=None, LUMA_MCP_API_KEYS=f"other-key,{token}")
    except ValidationError as exc:
        message = " ".join(error["msg"] for error in exc.errors())  # what the CLI shows the operator
        assert "The access key at LUMA_MCP_API_KEYS has a space, control or non-ASCII character" in message
        assert token not in message
        return True
    return False


async def edge_refuses(token: str, sim_server: SimulatorServer) -> bool:
    """The HTTP edge: such a bearer is answered 401 before anything behind it runs."""
    reached: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        reached.append(scope)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    caps = SessionCaps(max_sessions=10, per_tenant=2, unused_seconds=10)
    edge = AdmissionMiddleware(app, path="/mcp", checker=None, caps=caps, resource_metadata_url=None)
    # As a client would send it: UTF-8 on the wire (the server reads header bytes as latin-1).
    headers = [(b"authorization", b"Bearer " + token.encode())]
    scope: dict[str, Any] = {"type": "http", "path": "/mcp", "method": "GET", "headers": headers}
    await edge(scope, receive, send)
    status = sent[0]["status"]
    if status == 401:
        challenge = dict(sent[0]["headers"])[b"www-authenticate"].decode()
        assert f"printable ASCII (no spaces), at most {MAX_BEARER_LENGTH} characters" in challenge
        assert reached == []
        return True
    assert (status, len(reached)) == (200, 1)
    return False


USERS = {"client": client_refuses, "keys check": keys_check_refuses, "edge": edge_refuses}


@pytest.mark.parametrize("user", USERS.values(), ids=USERS.keys())
@pytest.mark.parametrize("token", REFUSED.values(), ids=REFUSED.keys())
async def test_every_user_refuses_what_the_rule_refuses(user: Any, token: str, sim_server: SimulatorServer) -> None:
    assert await user(token, sim_server)


@pytest.mark.parametrize("user", USERS.values(), ids=USERS.keys())
@pytest.mark.parametrize("token", ACCEPTED.values(), ids=ACCEPTED.keys())
async def test_every_user_lets_through_what_the_rule_accepts(
    user: Any, token: str, sim_server: SimulatorServer
) -> None:
    assert not await user(token, sim_server)
