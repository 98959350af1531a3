"""Who may open what at /mcp: bearer admission and session caps. HTTP-only (stdio never imports it).

What this module guarantees, for the app `http_app.create_http_app` builds:
- Only printable-ASCII bearers of at most 512 characters are ever looked at; anything else is
  a 401 at the edge, before it can reach a header sent upstream.
- Passthrough: a bearer reaches the MCP layer (a session, a tool call, a ledger row) only after
  one unbilled read (`LumaClient.check_token`) showed that Ace Data Cloud accepts it. Verdicts
  are cached by the token's SHA-256 (never the token), bounded in time and in count; accepted
  and refused tokens are kept apart, so a flood of junk cannot evict a real user's verdict.
- Unknown tokens are checked at a bounded rate, per client address and overall (token
  buckets); beyond it the answer is 429 with `Retry-After` (not 401: the token may be fine).
  Networks (/24, IPv6 /48) that sent a refused token lately share a small budget of their
  own, so a flood of junk from many addresses cannot spend the checks a new real user needs;
  and an accepted token stays trusted while it is in use, so a flood never cuts off a user
  who is already in (each of their calls still goes upstream with the token).
  Concurrent requests with the same unknown token share one upstream read. When the API
  cannot say (unreachable, 5xx), the answer is 503 with `Retry-After` and nothing is cached.
- Sessions: at most `max_sessions` open in all and `max_sessions_per_tenant` per principal
  (the verified token's subject); a request that would exceed either gets 429 (tenant) or
  503 (server) with `Retry-After`. A session not used beyond its handshake expires after the
  short `unused_seconds`, any other after the normal idle timeout.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import ipaddress
import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from mcp.server.auth.middleware.bearer_auth import AuthorizationContext
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER, StreamableHTTPServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

MAX_TOKEN_LENGTH = 512
REFUSED_CACHE_SECONDS = 60.0  # a refused token may be fixed (balance topped up): ask again soon
MAX_TRACKED_ADDRESSES = 10_000
BURST_SECONDS = 4.0  # a bucket holds this many seconds' worth of checks
SUSPECT_CHECKS_PER_SECOND = 1.0  # all networks that sent a refused token lately, together
SUSPECT_SECONDS = 600.0  # how long a network stays one that sent a refused token

_K = TypeVar("_K")
_V = TypeVar("_V")


def acceptable_bearer(token: str) -> bool:
    """Printable ASCII only (no spaces, no control or non-ASCII characters), 1 to 512 characters.

    API tokens and access keys are like that; anything else could not even be sent on as a header.
    """
    return 0 < len(token) <= MAX_TOKEN_LENGTH and all("!" <= c <= "~" for c in token)


def token_digest(token: str) -> bytes:
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


class CheckBudget:
    """How many unknown tokens may be checked upstream: per client address and overall."""

    def __init__(self, per_second: float, per_address_per_second: float) -> None:
        self._overall = TokenBucket(per_second, max(1.0, per_second * BURST_SECONDS))
        rate = min(per_second, SUSPECT_CHECKS_PER_SECOND)
        self._suspect = TokenBucket(rate, max(1.0, rate * BURST_SECONDS))
        self._suspects: TtlCache[str, bool] = TtlCache(MAX_TRACKED_ADDRESSES, SUSPECT_SECONDS)
        self._per_address_rate = per_address_per_second
        self._addresses: OrderedDict[str, TokenBucket] = OrderedDict()

    def suspect(self, network: str) -> None:
        """`network` sent a refused token: its checks now come from the suspects' budget."""
        self._suspects.put(network, True, time.monotonic())

    def take(self, address: str, network: str) -> float:
        """Spend one check for `address` (in `network`) and return 0, or return the seconds to
        wait (nothing spent)."""
        now = time.monotonic()
        bucket = self._addresses.get(address)
        if bucket is None:
            rate = self._per_address_rate
            bucket = self._addresses[address] = TokenBucket(rate, max(1.0, rate * BURST_SECONDS))
            # Forgetting the least recent address only refills its bucket; the overall one still binds.
            while len(self._addresses) > MAX_TRACKED_ADDRESSES:
                self._addresses.popitem(last=False)
        self._addresses.move_to_end(address)
        shared = self._suspect if self._suspects.get(network, now) else self._overall
        bucket.refill(now)
        shared.refill(now)
        wait = max(bucket.wait(), shared.wait())
        if wait == 0:
            bucket.tokens -= 1
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


@dataclass
class _Held:
    tenant: tuple[str, str | None, str | None] | None
    transport: StreamableHTTPServerTransport
    requests: int = 0


@dataclass
class _Refusal:
    status: int = 0
    message: str = ""


# Set by the middleware for each request that may open a session; filled in by the admission
# hook (which runs in the same task, under the SDK's session-creation lock).
_REFUSAL: contextvars.ContextVar[_Refusal | None] = contextvars.ContextVar("luma_mcp_session_refusal", default=None)
# Requests beyond the opening one before a session counts as used: the `initialized`
# notification is part of the handshake, anything after it is real use.
_HANDSHAKE_REQUESTS = 1


class SessionCaps:
    """Per-tenant and overall caps on open sessions, and the short idle timeout of unused ones.

    The SDK builds its StreamableHTTPSessionManager inside `streamable_http_app()` and offers
    no factory or admission callback, so this wraps two methods of that one instance,
    `_admit_session` (decides under the SDK's creation lock: no race between concurrent
    opens) and `_discard_session` (every way a session ends goes through it). mcp is pinned
    below 2.4; tests/e2e/test_admission.py fails if either hook stops being called.
    """

    def __init__(self, *, max_sessions: int, per_tenant: int, unused_seconds: float) -> None:
        self.max_sessions, self.per_tenant, self.unused_seconds = max_sessions, per_tenant, unused_seconds
        self._held: dict[str, _Held] = {}
        self._per_tenant: dict[tuple[str, str | None, str | None], int] = {}
        self._idle_seconds: float | None = None

    def attach(self, manager: StreamableHTTPSessionManager) -> None:
        admit, discard = manager._admit_session, manager._discard_session
        self._idle_seconds = manager.session_idle_timeout

        def admit_session(requestor: AuthorizationContext | None) -> StreamableHTTPServerTransport | None:
            tenant = (requestor["client_id"], requestor["issuer"], requestor["subject"]) if requestor else None
            refusal = self._refusal(tenant)
            if refusal is not None:
                holder = _REFUSAL.get()
                if holder is not None:
                    holder.status, holder.message = refusal
                return None
            transport = admit(requestor)
            if transport is not None and transport.mcp_session_id is not None:
                self._held[transport.mcp_session_id] = _Held(tenant, transport)
                if tenant is not None:
                    self._per_tenant[tenant] = self._per_tenant.get(tenant, 0) + 1
                if self._idle_seconds is not None:
                    # Until it is used, a session idles out after the short timeout. The
                    # transport reads this attribute each time a request ends.
                    transport._idle_timeout = min(self.unused_seconds, self._idle_seconds)
            return transport

        async def discard_session(session_id: str, transport: StreamableHTTPServerTransport) -> None:
            self._forget(session_id)
            await discard(session_id, transport)

        manager._admit_session = admit_session  # type: ignore[method-assign]
        manager._discard_session = discard_session  # type: ignore[method-assign]

    def _refusal(self, tenant: tuple[str, str | None, str | None] | None) -> tuple[int, str] | None:
        if tenant is not None and self._per_tenant.get(tenant, 0) >= self.per_tenant:
            log.info("Refusing a new session: this tenant already has %d open", self.per_tenant)
            return 429, (
                f"You have {self.per_tenant} sessions open, the most allowed: close one (DELETE /mcp with its "
                "Mcp-Session-Id) or reuse it, or try again after Retry-After."
            )
        if len(self._held) >= self.max_sessions:
            log.info("Refusing a new session: %d sessions are open, the most allowed", self.max_sessions)
            return 503, "The server has as many sessions open as it allows: try again after Retry-After."
        return None

    def _forget(self, session_id: str) -> None:
        held = self._held.pop(session_id, None)
        if held is not None and held.tenant is not None:
            left = self._per_tenant.get(held.tenant, 1) - 1
            if left > 0:
                self._per_tenant[held.tenant] = left
            else:
                self._per_tenant.pop(held.tenant, None)

    def served(self, session_id: str) -> None:
        """A request on an existing session was answered successfully by its owner."""
        held = self._held.get(session_id)
        if held is None:
            return
        held.requests += 1
        if held.requests > _HANDSHAKE_REQUESTS and self._idle_seconds is not None:
            held.transport._idle_timeout = self._idle_seconds  # used: the normal idle timeout from now on

    @property
    def retry_after(self) -> float:
        return self.unused_seconds  # by then abandoned sessions have made room


def network_key(address: str) -> str:
    """The network a client address belongs to, for telling apart where refused tokens came
    from: its /24, or for IPv6 its /48 (what one site is usually given)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    prefix = 48 if isinstance(ip, ipaddress.IPv6Address) else 24
    return str(ipaddress.ip_network((ip, prefix), strict=False))


def client_key(address: str) -> str:
    """Whose budget a client address spends: the address, or for IPv6 its /64 (one host's
    share: a single machine can use any address of its /64)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _bearer(scope: Scope) -> str | None:
    authorization = _header(scope, b"authorization")
    if authorization is None or authorization[:7].lower() != "bearer ":
        return None
    return authorization[7:]


async def _send_json(
    send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def _retry_after(seconds: float) -> list[tuple[bytes, bytes]]:
    return [(b"retry-after", str(max(1, math.ceil(seconds))).encode())]


def _jsonrpc_error(message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": None, "error": {"code": -32000, "message": message}}


class AdmissionMiddleware:
    """Wraps the whole app; acts on requests to the MCP endpoint only (`/health` passes untouched)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        path: str,
        checker: TokenChecker | None,
        caps: SessionCaps,
        resource_metadata_url: str | None,
    ) -> None:
        self.app, self.path, self.checker, self.caps = app, path, checker, caps
        self.resource_metadata_url = resource_metadata_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].rstrip("/") != self.path or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        token = _bearer(scope)
        if token is not None and not acceptable_bearer(token):
            await self._refuse(send, "The bearer token must be printable ASCII (no spaces), at most 512 characters.")
            return
        if token is not None and self.checker is not None:
            client = scope.get("client")
            outcome = await self.checker.check(token, client[0] if client else "")
            if isinstance(outcome, Unsure):
                retry = _retry_after(outcome.retry_after)
                await _send_json(send, outcome.status, _jsonrpc_error(outcome.message), retry)
                return
            if outcome.refusal is not None:
                await self._refuse(send, outcome.refusal)
                return
        await self._sessions(scope, receive, send)

    async def _sessions(self, scope: Scope, receive: Receive, send: Send) -> None:
        session_id = _header(scope, MCP_SESSION_ID_HEADER.encode())
        version = _header(scope, MCP_PROTOCOL_VERSION_HEADER.encode())
        if session_id is not None:

            async def watch(message: Message) -> None:
                # Counted as the answer starts, while the request is still in flight: the
                # transport restarts its idle countdown when the request ends, with the timeout then set.
                if message["type"] == "http.response.start" and 200 <= message["status"] < 300:
                    self.caps.served(session_id)
                await send(message)

            await self.app(scope, receive, watch)
            return
        if version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS:
            await self.app(scope, receive, send)  # sessionless protocol era: no session to cap
            return
        # May open a session: the admission hook fills `refusal` if a cap says no, and the
        # SDK's own answer (a bare 503) is replaced by one with the right status and Retry-After.
        refusal = _Refusal()
        reset = _REFUSAL.set(refusal)
        started = False

        async def unless_refused(message: Message) -> None:
            nonlocal started
            if refusal.status:
                return
            started = True
            await send(message)

        try:
            await self.app(scope, receive, unless_refused)
        finally:
            _REFUSAL.reset(reset)
        if refusal.status and not started:
            await _send_json(send, refusal.status, _jsonrpc_error(refusal.message), _retry_after(self.caps.retry_after))

    async def _refuse(self, send: Send, description: str) -> None:
        challenge = f'Bearer error="invalid_token", error_description="{description}"'
        if self.resource_metadata_url:
            challenge += f', resource_metadata="{self.resource_metadata_url}"'
        await _send_json(
            send,
            401,
            {"error": "invalid_token", "error_description": description},
            [(b"www-authenticate", challenge.encode())],
        )
