"""Whose budget a client address spends and which network it is judged with (`token_checks`):
one parsing of the address for both."""

from __future__ import annotations

import pytest

from luma_mcp.core.token_checks import client_key, network_key


def test_an_ipv6_host_spends_one_budget_for_its_whole_64() -> None:
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:203.0.113.9") == "203.0.113.9" and client_key("203.0.113.9") == "203.0.113.9"
    assert client_key("unix-socket") == "unix-socket"


def test_refused_tokens_are_remembered_by_site_a_24_or_an_ipv6_48() -> None:
    assert network_key("203.0.113.9") == network_key("203.0.113.200") == "203.0.113.0/24"
    assert network_key("203.0.114.9") != network_key("203.0.113.9")
    assert network_key("2001:db8:1:2::1") == network_key("2001:db8:1:ffff::9") == "2001:db8:1::/48"
    assert network_key("2001:db8:2::1") != network_key("2001:db8:1::1")


@pytest.mark.parametrize(
    ("address", "client", "network"),
    [
        ("::ffff:203.0.113.9", "203.0.113.9", "203.0.113.0/24"),  # IPv4 mapped into IPv6 is IPv4
        ("203.0.113.9", "203.0.113.9", "203.0.113.0/24"),
        ("", "", ""),  # no client address (the ASGI server gave none)
        ("unix-socket", "unix-socket", "unix-socket"),  # not an IP address: itself
    ],
)
def test_both_read_an_address_the_same_way(address: str, client: str, network: str) -> None:
    assert (client_key(address), network_key(address)) == (client, network)
