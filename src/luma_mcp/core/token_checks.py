"""Checking passthrough bearers with the API: cached verdicts, bounded rates, one read per token.

HTTP-only (stdio never imports it); `admission.AdmissionMiddleware` asks `TokenChecker` for
the verdict on each passthrough bearer. What this module guarantees:
- A token's verdict comes from one unbilled read (the `Probe`) and is cached by the token's
  SHA-256 (never the token), bounded in time and in count; accepted and refused tokens are
  kept apart, so a flood of junk cannot evict a real user's verdict. An accepted token stays
  trusted while it is in use (each of its calls still goes upstream with the token).
- Unknown tokens are checked at a bounded rate, per client (`client_key`: the address, or an
  IPv6 /64) and overall (token buckets); beyond it the verdict is `Unsure(429)` with the
  seconds to wait. Networks (`network_key`: /24, IPv6 /48) that sent a refused token lately
  share a small budget of their own, so junk from many addresses cannot spend the checks a
  new real user needs.
- Concurrent checks of the same unknown token share one read. When the API cannot say
  (unreachable, 5xx), the verdict is `Unsure(503)` and nothing is cached.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

log = logging.getLogger(__name__)

REFUSED_CACHE_SECONDS = 60.0  # a refused token may be fixed (balance topped up): ask again soon
MAX_TRACKED_ADDRESSES = 10_000
BURST_SECONDS = 4.0  # a bucket holds this many seconds' worth of checks
SUSPECT_CHECKS_PER_SECOND = 1.0  # all networks that sent a refused token lately, together
SUSPECT_SECONDS = 600.0  # how long a network stays one that sent a refused token

_K = TypeVar("_K")
_V = TypeVar("_V")


def token_digest(token: str) -> bytes:
    """What a bearer is kept and compared as (verdicts here, access keys in `http_app`): never the token."""
    return hashlib.sha256(token.encode()).digest()


class TtlCache(Generic[_K, _V]):
    """A dict bounded in size (least recently stored dropped first) whose entries expire."""

    def __init__(self, max_size: int, ttl: float) -> None:
        self.max_size, self.ttl = max_size, ttl
        self._items: OrderedDict[_K, tuple[float, _V]] = OrderedDict()

    def get(self, key: _K, now: float) -> _V | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item[0] <= now:
            del self._items[key]
            return None
        return item[1]

    def put(self, key: _K, value: _V, now: float) -> None:
        self._items[key] = (now + self.ttl, value)
        self._items.move_to_end(key)
        while len(self._items) > self.max_size:
            self._items.popitem(last=False)


@dataclass
class TokenBucket:
    """`rate` events a second on average, bursts up to `capacity`."""

    rate: float
    capacity: float
    tokens: float = field(init=False)
    updated: float = field(init=False)

    def __post_init__(self) -> None:
        self.tokens, self.updated = self.capacity, time.monotonic()

    def refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + max(0.0, now - self.updated) * self.rate)
        self.updated = now

    def wait(self) -> float:
        """Seconds until one event is allowed (0: now). Call `refill` first."""
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate


class KeyedBuckets:
    """A `TokenBucket` per key (an address, a client), `per_minute` events a minute each,
    bursts up to `burst`; beyond `MAX_TRACKED_ADDRESSES` keys the least recently used is
    forgotten, which only refills its bucket. Used here and by the sign-in (`oauth`)."""

    def __init__(self, per_minute: float, burst: float) -> None:
        self.rate, self.burst = per_minute / 60, burst
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def wait(self, key: str) -> float:
        """Seconds before `key` may act again (0: now)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return 0.0
        bucket.refill(time.monotonic())
        return bucket.wait()

    def spend(self, key: str) -> None:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst)
            while len(self._buckets) > MAX_TRACKED_ADDRESSES:
                self._buckets.popitem(last=False)
        self._buckets.move_to_end(key)
        bucket.refill(time.monotonic())
        bucket.tokens -= 1


class CheckBudget:
    """How many unknown tokens may be checked upstream: per client address and overall."""

    def __init__(self, per_second: float, per_address_per_second: float) -> None:
        self._overall = TokenBucket(per_second, max(1.0, per_second * BURST_SECONDS))
        rate = min(per_second, SUSPECT_CHECKS_PER_SECOND)
        self._suspect = TokenBucket(rate, max(1.0, rate * BURST_SECONDS))
        self._suspects: TtlCache[str, bool] = TtlCache(MAX_TRACKED_ADDRESSES, SUSPECT_SECONDS)
        self._addresses = KeyedBuckets(per_address_per_second * 60, max(1.0, per_address_per_second * BURST_SECONDS))

    def suspect(self, network: str) -> None:
        """`network` sent a refused token: its checks now come from the suspects' budget."""
        self._suspects.put(network, True, time.monotonic())

    def take(self, address: str, network: str) -> float:
        """Spend one check for `address` (in `network`) and return 0, or return the seconds to
        wait (nothing spent)."""
        now = time.monotonic()
        shared = self._suspect if self._suspects.get(network, now) else self._overall
        shared.refill(now)
        wait = max(self._addresses.wait(address), shared.wait())
        if wait == 0:
            self._addresses.spend(address)
            shared.tokens -= 1
        return wait


@dataclass(frozen=True)
class Verdict:
    """What Ace Data Cloud said of a token: `None` refusal means it accepted it."""

    refusal: str | None = None


@dataclass(frozen=True)
class Unsure:
    """No verdict now; the client should try again after `retry_after` seconds."""

    status: Literal[429, 503]
    retry_after: float
    message: str


class ProviderUnavailable(Exception):
    """The API could not say whether it accepts the token (unreachable, 5xx, rate limited)."""


# Asks the API about one token: a Verdict, or ProviderUnavailable.
Probe = Callable[[str], Awaitable[Verdict]]


class TokenChecker:
    """Cached, rate-bounded, de-duplicated checks of passthrough tokens with the API."""

    def __init__(
        self, probe: Probe, *, per_second: float, per_address_per_second: float, cache_seconds: float, cache_size: int
    ) -> None:
        self._probe = probe
        self._budget = CheckBudget(per_second, per_address_per_second)
        self._accepted: TtlCache[bytes, Verdict] = TtlCache(cache_size, cache_seconds)
        self._refused: TtlCache[bytes, Verdict] = TtlCache(cache_size, min(cache_seconds, REFUSED_CACHE_SECONDS))
        self._pending: dict[bytes, asyncio.Task[Verdict | Unsure]] = {}

    def accepted(self, token: str) -> bool:
        """Whether the API accepted this token recently (what the token verifier asks)."""
        return self._in_use(token_digest(token)) is not None

    def _in_use(self, digest: bytes) -> Verdict | None:
        """An accepted verdict, kept for another cache period from now: a token in use stays
        trusted (the API still sees it on every call this server makes for it)."""
        now = time.monotonic()
        verdict = self._accepted.get(digest, now)
        if verdict is not None:
            self._accepted.put(digest, verdict, now)
        return verdict

    async def check(self, token: str, address: str) -> Verdict | Unsure:
        """The verdict on `token`, sent from the client `address`."""
        digest = token_digest(token)
        known = self._in_use(digest) or self._refused.get(digest, time.monotonic())
        if known is None:
            pending = self._pending.get(digest)
            if pending is None:
                wait = self._budget.take(client_key(address), network_key(address))
                if wait:
                    return Unsure(429, wait, "Too many new tokens to check right now: try again after Retry-After.")
                # Its own task, so a caller that hangs up does not cancel the read others wait on.
                pending = self._pending[digest] = asyncio.get_running_loop().create_task(self._ask(digest, token))
                pending.add_done_callback(lambda _: self._pending.pop(digest, None))
            outcome = await asyncio.shield(pending)
            if isinstance(outcome, Unsure):
                return outcome
            known = outcome
        if known.refusal is not None:
            self._budget.suspect(network_key(address))
        return known

    async def _ask(self, digest: bytes, token: str) -> Verdict | Unsure:
        try:
            verdict = await self._probe(token)
        except ProviderUnavailable as exc:
            log.warning("Could not check a bearer token with the API: %s", exc)
            return Unsure(503, 5, "The token cannot be checked right now (the API did not answer): try again soon.")
        except Exception as exc:  # a bug here must not become a 500 or a cached verdict
            log.error("Checking a bearer token failed unexpectedly (%s)", type(exc).__name__)
            return Unsure(503, 5, "The token cannot be checked right now: try again soon.")
        now = time.monotonic()
        (self._accepted if verdict.refusal is None else self._refused).put(digest, verdict, now)
        return verdict


def _client_ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """A client address as an IP address (an IPv4 one mapped into IPv6 unwrapped), or None
    when it is not one (e.g. a unix socket's name)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def network_key(address: str) -> str:
    """The network a client address belongs to, for telling apart where refused tokens came
    from: its /24, or for IPv6 its /48 (what one site is usually given)."""
    ip = _client_ip(address)
    if ip is None:
        return address
    prefix = 48 if isinstance(ip, ipaddress.IPv6Address) else 24
    return str(ipaddress.ip_network((ip, prefix), strict=False))


def client_key(address: str) -> str:
    """Whose budget a client address spends: the address, or for IPv6 its /64 (one host's
    share: a single machine can use any address of its /64)."""
    ip = _client_ip(address)
    if ip is None:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)
