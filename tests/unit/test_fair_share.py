"""The rules that keep one tenant from locking the others out, computed (tests/e2e/test_fair_share.py runs them)."""

from __future__ import annotations

import anyio
from mcp.server.auth.middleware.bearer_auth import AuthorizationContext
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

from luma_mcp.hosting.admission import RETRY_AFTER_CAP, retry_after_header
from luma_mcp.hosting.inflight import InFlight, InFlightLimits, Refusal, in_flight_limits
from luma_mcp.hosting.session_caps import SESSION_REFUSAL, SessionCaps, SessionRefusal, fair_share, principal_of

ALICE = ("https://issuer.example", "alice")
BOB = (None, "bob")


def test_requests_in_flight_leave_a_tenth_of_the_connections_free() -> None:
    assert in_flight_limits(1000, None, 8) == InFlightLimits(total=900, per_tenant=100, per_session=8)
    # Nine tenants at their caps still leave room for a tenth, and for health probes.
    limits = in_flight_limits(1000, None, 8)
    assert 9 * limits.per_tenant <= limits.total < 1000
    assert in_flight_limits(16, None, 8) == InFlightLimits(total=14, per_tenant=2, per_session=2)
    # Asked for more than the server lets all tenants hold, a tenant gets what all may.
    assert in_flight_limits(16, 50, 8) == InFlightLimits(total=14, per_tenant=14, per_session=8)


def test_in_flight_is_capped_per_session_per_tenant_and_in_all() -> None:
    now = [100.0]
    counts = InFlight(InFlightLimits(total=5, per_tenant=3, per_session=2), longest=60, clock=lambda: now[0])
    first = counts.enter(ALICE, "s1", bounded=True)
    now[0] += 10
    second = counts.enter(ALICE, "s1", bounded=True)
    assert isinstance(first, int) and isinstance(second, int)
    refused = counts.enter(ALICE, "s1", bounded=True)
    # The session's earliest request must end 60 s after it began, 10 s ago.
    assert isinstance(refused, Refusal) and (refused.status, refused.retry_after) == (429, 50.0)
    assert "This session has 2" in refused.message
    assert isinstance(counts.enter(ALICE, None, bounded=True), int)  # sessionless: the tenant's third
    tenant_refused = counts.enter(ALICE, "s2", bounded=True)
    assert isinstance(tenant_refused, Refusal) and tenant_refused.status == 429
    assert "You have 3" in tenant_refused.message
    assert isinstance(counts.enter(BOB, "b1", bounded=True), int)  # another tenant is not held back
    assert isinstance(counts.enter(BOB, None, bounded=False), int)  # an event stream: counted, no end expected
    server_refused = counts.enter((None, "carol"), None, bounded=True)
    assert isinstance(server_refused, Refusal) and server_refused.status == 503
    assert server_refused.retry_after == 50.0  # Alice's first, the earliest of all
    counts.leave(first, ALICE, "s1")
    assert counts.held(ALICE, "s1") == 1 and counts.held(ALICE) == 2
    assert isinstance(counts.enter((None, "carol"), None, bounded=True), int)


def test_open_streams_give_no_moment_and_made_up_sessions_leave_nothing() -> None:
    counts = InFlight(InFlightLimits(total=10, per_tenant=1, per_session=1), longest=80, clock=lambda: 0.0)
    stream = counts.enter(ALICE, "s1", bounded=False)
    assert isinstance(stream, int)
    refused = counts.enter(ALICE, "s1", bounded=True)
    assert isinstance(refused, Refusal) and refused.retry_after == 80  # nothing bounded: the longest a call takes
    counts.leave(stream, ALICE, "s1")
    for n in range(100):
        made_up = counts.enter(ALICE, f"made-up-{n}", bounded=True)
        assert isinstance(made_up, int)
        counts.leave(made_up, ALICE, f"made-up-{n}")
    assert counts._sessions == {} and counts._tenants == {} and counts._all.held == 0


def test_unauthenticated_loopback_is_one_user_held_back_only_by_the_total() -> None:
    counts = InFlight(InFlightLimits(total=4, per_tenant=1, per_session=4), longest=60)
    assert all(isinstance(counts.enter(None, None, bounded=True), int) for _ in range(4))
    assert isinstance(counts.enter(None, None, bounded=True), Refusal)


def test_the_tenant_is_the_principal_sessions_use() -> None:
    assert principal_of({"client_id": "app-1", "issuer": "https://i", "subject": "alice"}) == ("https://i", "alice")
    # Registering more OAuth applications does not make more tenants.
    assert principal_of({"client_id": "app-2", "issuer": "https://i", "subject": "alice"}) == ("https://i", "alice")
    assert principal_of({"client_id": "access-key", "issuer": None, "subject": None}) == (None, "access-key")
    assert principal_of(None) is None


def test_fair_share_and_retry_after() -> None:
    assert fair_share(1000, 10) == 100 and fair_share(3, 2) == 1.5 and fair_share(4, 0) == 4
    assert retry_after_header(0.2) == [(b"retry-after", b"1")]
    assert retry_after_header(17.1) == [(b"retry-after", b"18")]
    assert retry_after_header(1790) == [(b"retry-after", str(RETRY_AFTER_CAP).encode())]


def requestor(subject: str) -> AuthorizationContext:
    return {"client_id": "c", "issuer": None, "subject": subject}


def test_a_full_table_makes_room_for_a_tenant_within_its_share() -> None:
    async def main() -> None:
        manager = StreamableHTTPSessionManager(app=Server("t"), max_sessions=4, session_idle_timeout=1800)
        caps = SessionCaps(max_sessions=4, per_tenant=100, unused_seconds=60)
        caps.attach(manager)
        now = anyio.current_time()

        def opened(subject: str, idle_for: float | None) -> str:
            """A session of `subject`: idle (it expires in `idle_for` s) or, with None, busy."""
            transport = manager._admit_session(requestor(subject))
            assert transport is not None and transport.mcp_session_id is not None
            if idle_for is not None:
                transport.idle_scope = anyio.CancelScope(deadline=now + idle_for)
            return transport.mcp_session_id

        alice = [opened("alice", 30), opened("alice", 10), opened("alice", None), opened("alice", 20)]
        refusal = SessionRefusal()
        SESSION_REFUSAL.set(refusal)
        bob = opened("bob", None)  # B holds none: Alice's idle session soonest to expire is closed
        assert alice[1] not in manager._server_instances and set(alice) - {alice[1]} <= set(manager._server_instances)
        opened("bob", None)  # 1 + 1 is within 4 / 2
        assert alice[3] not in manager._server_instances  # the next soonest of the tenant holding the most
        assert manager._admit_session(requestor("bob")) is None  # 2 + 1 is beyond the share
        assert refusal.status == 429 and "your share" in refusal.message
        assert 9 < refusal.retry_after <= 30  # Alice's idle one, the earliest to expire
        # Carol's share is 4 / 3: she may have one; Bob holds the most, but both his are busy: Alice's idle one goes.
        assert manager._admit_session(requestor("carol")) is not None
        assert alice[0] not in manager._server_instances and alice[2] in manager._server_instances
        # Now only Bob's busy sessions are beyond anyone's share: nothing can be closed for Dave.
        refusal.status = 0
        assert manager._admit_session(requestor("dave")) is None
        assert refusal.status == 503 and bob in manager._server_instances

    anyio.run(main)
