"""Which addresses count as public, and which caller-supplied URLs may be handed on.

Guarantees:
- `is_public_address` is the one address rule: true only for an address anyone on the
  internet can reach (not loopback, private, link-local, shared/CGNAT, metadata,
  multicast, reserved or unspecified; metadata services such as 169.254.169.254 and
  fd00:ec2::254 are link-local or unique-local), judging IPv6 forms that carry an IPv4
  address (mapped, compatible, 6to4, NAT64, both ends of Teredo) by that IPv4 address.
  Caller URLs here and every address a download connects to (`guarded_http`) use it.
- `literal_address` reads a URL's host the way HTTP stacks do before any DNS: IPv6 in
  brackets (a zone id ignored), IPv4 in every form `inet_aton` accepts (decimal
  `2130706433`, hex `0x7f000001`, octal `0177.0.0.1`, short `127.1`), after percent- and
  Unicode-normalising the host and dropping trailing dots.
- `is_web_url` is the rule for URLs the provider hands back (a result's video and thumbnail):
  only an http(s) URL with a host and no control, format or space character is passed on,
  so a `javascript:` or `data:` URL reaches no tool result, ledger row or view.
- `check_caller_url` refuses, with a message that says what to pass instead, any URL that
  does not parse, is not http(s), contains control, format or space characters (which
  parsers disagree on), or whose host is a non-public address or a local-only name. The
  provider fetches these URLs itself, so names are not resolved here: the check is about
  what the URL says, and stops the obvious ways of pointing the provider inward.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import unicodedata
from collections.abc import Collection
from urllib.parse import unquote, urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

EXAMPLE_URL = "https://example.com/image.png"
# Names that only ever mean a machine on the caller's own network.
LOCAL_NAMES = ("localhost",)
LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".lan", ".home.arpa", ".localdomain")
# Dots that IDNA treats as label separators, as browsers do.
_IDNA_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class UnsafeUrl(ValueError):
    """A caller-supplied URL that is not passed on; the message says what to pass instead."""


def is_public_address(address: Address | str) -> bool:
    """True only for an address reachable from the public internet. A string is read as
    getaddrinfo gives it (an IPv6 zone id, `%eth0`, names an interface and is ignored)."""
    if isinstance(address, str):
        address = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address):
        if address.teredo is not None:  # a tunnel: both ends it names must be public
            return all(is_public_address(end) for end in address.teredo)
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return is_public_address(embedded)
    return address.is_global and not (address.is_multicast or address.is_reserved or address.is_unspecified)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _IPV4_COMPATIBLE or any(address in network for network in _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def normalize_host(host: str) -> str:
    """The host as a resolver sees it: percent-decoded, Unicode-folded, lower case, no trailing dot."""
    text = unicodedata.normalize("NFKC", unquote(host)).translate(_IDNA_DOTS).casefold()
    return text.rstrip(".")


def literal_address(host: str) -> Address | None:
    """The address `host` names without DNS (any form an HTTP stack accepts), or None for a name."""
    host = host.strip("[]")
    if ":" in host:  # IPv6; a zone id (`%25eth0` in a URL) names an interface, not an address
        try:
            return ipaddress.IPv6Address(unquote(host).split("%", 1)[0])
        except ValueError:
            return None
    name = normalize_host(host)
    if not name or not re.fullmatch(r"[0-9a-fx.]+", name):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(name))  # decimal, hex, octal and short forms
    except (OSError, ValueError):
        return None


def is_local_name(name: str) -> bool:
    """A host name that can only mean a machine on the caller's own network."""
    return name in LOCAL_NAMES or name.endswith(LOCAL_SUFFIXES) or "." not in name


def origin(url: str) -> tuple[str, int | None]:
    """A URL's (normalised host, port), the port its scheme's default when none is given: the
    one origin rule, for `allowed_origins` here and the API's own host in `guarded_http`.
    Raises ValueError if it does not parse."""
    parts = urlsplit(url)
    return normalize_host(parts.hostname or ""), parts.port or _DEFAULT_PORTS.get(parts.scheme)


def _hidden(char: str) -> bool:
    """A space, control, format (bidi, zero-width) or surrogate character: parsers disagree on them."""
    return char.isspace() or unicodedata.category(char) in ("Cc", "Cf", "Cs")


def is_web_url(url: str) -> bool:
    """Whether a URL from the provider may be shown and linked: http(s), with a host, nothing hidden."""
    if any(map(_hidden, url)):  # e.g. "java\tscript:" or " javascript:", which browsers still run
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def check_caller_url(name: str, url: str, *, allowed_origins: Collection[tuple[str, int | None]] = ()) -> None:
    """Raise `UnsafeUrl` unless `url` is a public http(s) URL the provider can fetch.

    `name` is the argument's name (for the message); a URL whose `origin` is in
    `allowed_origins` (the API's own host and port) is accepted whatever its address.
    """
    text = url.strip()
    refused = f"{name} must be a full public http(s) URL, like {EXAMPLE_URL}"
    for position, char in enumerate(text):
        if _hidden(char):
            raise UnsafeUrl(
                f"{refused}; this one has a space or control character ({char!r}) at position {position}. "
                "Percent-encode it (a space is %20) or pass the URL exactly as a browser shows it."
            )
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 (reading it validates it)
    except ValueError as exc:  # e.g. "http://[::1/x": an unclosed IPv6 bracket, a bad port
        raise UnsafeUrl(f"{refused}; this one does not parse ({exc}).") from None
    if "\\" in parts.netloc:  # browsers end the host at a backslash, Python's parser does not
        raise UnsafeUrl(f"{refused}; this one has a backslash in its host part: use forward slashes.")
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host:
        raise UnsafeUrl(f"{refused}.")
    normal = normalize_host(host) if ":" not in host else host
    if origin(text) in allowed_origins:
        return
    hidden = (_hidden(c) or c in "%@/\\" for c in normal)
    if ":" not in host and any(hidden):  # (an IPv6 host's % is its zone id, read below)
        # e.g. "127.0.0.1%00.example.com": a fetcher that decodes the host may stop at the NUL
        raise UnsafeUrl(f"{refused}; this one has an encoded control or reserved character in its host.")
    address = literal_address(host)
    if address is None and "[" in parts.netloc:  # brackets hold an IPv6 address, nothing else
        raise UnsafeUrl(f"{refused}; [{host}] is not an IPv6 address.")
    if address is not None:
        refuse = not is_public_address(address)
        shown = host if str(address) == host else f"{host} ({address})"
    else:
        refuse = is_local_name(normal)
        shown = host
    if refuse:
        raise UnsafeUrl(
            f"{name} points at {shown}, which the video provider cannot reach. Upload the file somewhere "
            "public (https) and pass that URL."
        )
