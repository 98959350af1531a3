"""The HTTP server's own limits, computed: log lines strangers can cause are rate limited, and
the connection budget fits the open-file limit (tests/e2e/test_slow_clients.py runs them)."""

from __future__ import annotations

import logging

from luma_mcp.hosting.limits import (
    HEALTH_CONNECTIONS,
    RESERVED_FILES,
    TURNS_BEFORE_COUNTED,
    ConnectionBudget,
    connection_budget,
)
from luma_mcp.hosting.log_limits import RateLimitFilter, is_own_bounded_logger


def record(name: str, msg: str, *args: object, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_log_lines_strangers_can_cause_are_rate_limited_and_counted() -> None:
    now = [0.0]
    limiter = RateLimitFilter(exempt=is_own_bounded_logger, clock=lambda: now[0])
    accept_error = "socket.accept() out of system resource\nsocket: <asyncio.TransportSocket fd=6>"
    passed = [limiter.filter(record("asyncio", accept_error)) for _ in range(2000)]
    assert passed.count(True) == limiter.per_message and all(passed[: limiter.per_message])
    now[0] += limiter.period
    next_line = record("asyncio", accept_error)
    assert limiter.filter(next_line)
    assert next_line.getMessage().endswith(f"({2000 - limiter.per_message} earlier lines from asyncio suppressed)")
    # Messages a stranger varies (a Host header, say) are bounded per logger too.
    varied = [limiter.filter(record("mcp.server.transport_security", f"Invalid Host header: h{i}")) for i in range(500)]
    assert varied.count(True) == limiter.per_logger
    # Another message of a flooded logger still gets its own few lines.
    assert limiter.filter(record("asyncio", "Task exception was never retrieved"))
    # The server's own lines (task ids in warnings) are never dropped, except the connection guard's.
    own = [limiter.filter(record("luma_mcp.core.service", "Task %s was accepted", "t-1")) for _ in range(100)]
    assert all(own)
    guard = [limiter.filter(record("luma_mcp.hosting.limits", "connections are full")) for _ in range(100)]
    assert guard.count(True) == limiter.per_message


def test_the_connection_budget_fits_the_open_file_limit() -> None:
    assert connection_budget(1000, None) == ConnectionBudget(1000, 2048)
    assert connection_budget(1000, 1 << 19) == ConnectionBudget(1000, 2048)  # systemd's usual hard limit
    small = connection_budget(1000, 1024)
    # The cap, the spare ones for health probes, three event-loop turns of accepts, and the
    # server's own files fit in 1024.
    taken = small.max_connections + HEALTH_CONNECTIONS + TURNS_BEFORE_COUNTED * small.backlog + RESERVED_FILES
    assert taken <= 1024
    assert small.max_connections >= 500
