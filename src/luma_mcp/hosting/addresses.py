"""Where the HTTP server listens and is reached: loopback or not, the public URL as every piece
compares it, and what the sign-in's issuer must look like."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from pydantic import AnyHttpUrl, ConfigDict, TypeAdapter, ValidationError

from luma_mcp.hosting.errors import ConfigurationError


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def canonical_url(url: str) -> str:
    """The public URL as every piece compares it (issuer, resource): host lower-cased, default
    port dropped, no trailing slash, as pydantic reads it."""
    try:
        parsed = TypeAdapter(AnyHttpUrl, config=ConfigDict(url_preserve_empty_path=True)).validate_python(url)
    except ValidationError:
        raise ConfigurationError(
            f"LUMA_MCP_PUBLIC_URL ({url}) is not an http(s) URL: give the address people reach this server at, "
            "like https://mcp.example.com."
        ) from None
    return str(parsed).rstrip("/")


def check_issuer(public_url: str) -> None:
    """The sign-in's issuer: https (plain http on loopback only, for trying it out), no path."""
    parts = urlsplit(public_url)
    if parts.scheme != "https" and not (parts.scheme == "http" and is_loopback(parts.hostname or "")):
        raise ConfigurationError(
            f"LUMA_MCP_OAUTH needs LUMA_MCP_PUBLIC_URL to be the https:// address people reach this server at "
            f"(it is {public_url}); plain http only works on this machine's loopback."
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigurationError(
            f"LUMA_MCP_OAUTH needs LUMA_MCP_PUBLIC_URL to be an origin with no path (it is {public_url}): serve "
            "luma-mcp at the root of its own host name."
        )
