"""An OAuth-signing-in MCP client, as a web connector would be one: the SDK's own
`OAuthClientProvider` (discovery, registration, PKCE, refresh), with the person's browser step
played by plain HTTP requests against the real sign-in page (`SignInByForm`), or by Chromium
(tests/e2e/test_oauth_browser.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import httpx
import httpx2
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from pydantic import AnyUrl

from .stdio import server_env

OAUTH_KEY = "q6nZf2b3mCQ0o8o0l8n9u0Zk3m0mA1s2d3f4g5h6j7k="  # a Fernet key (32 bytes, url-safe base64)
REDIRECT_URI = "http://127.0.0.1:40123/callback"


def oauth_env(url: str, **extra: str) -> dict[str, str]:
    """What a server at `url` needs to sign people in (its mode comes in `extra`)."""
    return {"LUMA_MCP_OAUTH": "true", "LUMA_MCP_OAUTH_KEY": OAUTH_KEY, "LUMA_MCP_PUBLIC_URL": url, **extra}


@dataclass
class MemoryStorage:
    """The SDK's `TokenStorage`, in memory: what a connector keeps between calls."""

    tokens: OAuthToken | None = None
    client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


@dataclass
class SignInByForm:
    """The person's browser step, as plain HTTP: open the authorization URL, fill the sign-in
    form with `secret`, follow the redirect back to the client and read the code from it."""

    secret: str
    pages: list[str] = field(default_factory=list)  # every page the person saw
    result: AuthorizationCodeResult | None = None

    async def redirect(self, authorization_url: str) -> None:
        async with httpx.AsyncClient(timeout=30) as browser:
            page = await browser.get(authorization_url, follow_redirects=True)
            self.pages.append(page.text)
            page.raise_for_status()
            fields = hidden_fields(page.text)
            answer = await browser.post(
                str(page.url.copy_with(query=None)), data={**fields, "secret": self.secret, "action": "allow"}
            )
            if answer.status_code != 303:
                self.pages.append(answer.text)
                raise AssertionError(f"sign-in refused ({answer.status_code}): {answer.text[:500]}")
            query = parse_qs(urlsplit(answer.headers["location"]).query)
            self.result = AuthorizationCodeResult(
                code=query["code"][0], state=query.get("state", [None])[0], iss=query.get("iss", [None])[0]
            )

    async def callback(self) -> AuthorizationCodeResult:
        assert self.result is not None
        return self.result


def hidden_fields(page: str) -> dict[str, str]:
    return dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', page))


def oauth_provider(
    url: str, sign_in: SignInByForm, storage: MemoryStorage | None = None, client_metadata_url: str | None = None
) -> OAuthClientProvider:
    return OAuthClientProvider(
        server_url=f"{url}/mcp",
        client_metadata=OAuthClientMetadata(
            client_name="Test Connector", redirect_uris=[AnyUrl(REDIRECT_URI)], token_endpoint_auth_method="none"
        ),
        storage=storage or MemoryStorage(),
        redirect_handler=sign_in.redirect,
        callback_handler=sign_in.callback,
        client_metadata_url=client_metadata_url,
    )


def oauth_client(url: str, provider: OAuthClientProvider) -> Client:
    return Client(streamable_http_client(f"{url}/mcp", http_client=httpx2.AsyncClient(auth=provider, timeout=60)))


__all__ = ["OAUTH_KEY", "MemoryStorage", "SignInByForm", "oauth_client", "oauth_env", "oauth_provider", "server_env"]
