"""When a request to the API is tried again, and how long to wait before it.

Reads are retried on transient failures (`LumaError.transient`: connection trouble, 429,
5xx) with exponential backoff and jitter, honouring `Retry-After`, bounded in attempts and
in total time. Submits start a paid generation, so they are retried only when the request
provably never reached the server.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, TypeVar

import httpx

from luma_mcp.api.errors import LumaConnectionError, LumaError, LumaRateLimitError

if TYPE_CHECKING:
    from tenacity import RetryCallState

    from luma_mcp.config import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How many times, and for how long, a request is tried again (reads on transient failures,
    submits only when nothing was sent). `attempts` counts retries, not the first try."""

    attempts: int = 4
    backoff: float = 1.0
    total_seconds: float = 20.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(settings.max_retries, settings.retry_backoff_seconds, settings.retry_max_seconds)


async def with_retries(
    policy: RetryPolicy, call: Callable[[], Awaitable[T]], retryable: Callable[[BaseException], bool]
) -> T:
    # Imported on the first request, not at start-up (tenacity costs ~5 ms of every cold start).
    from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, stop_before_delay

    retrying = AsyncRetrying(
        retry=retry_if_exception(retryable),
        stop=stop_after_attempt(policy.attempts + 1) | stop_before_delay(policy.total_seconds),
        wait=_wait_for(policy.backoff),
        before_sleep=_log_retry,
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            return await call()
    raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover


def transient(exc: BaseException) -> bool:
    """A read may be tried again."""
    return isinstance(exc, LumaError) and exc.transient


def never_reached_server(exc: BaseException) -> bool:
    """A submit may be tried again: nothing left, so nothing can have been paid."""
    return isinstance(exc, LumaConnectionError) and not exc.request_sent


def retry_after(headers: httpx.Headers) -> float | None:
    """Seconds the server asked us to wait (`Retry-After` as seconds or as a date)."""
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _wait_for(backoff: float) -> Callable[[RetryCallState], float]:
    from tenacity import wait_exponential_jitter

    exponential = wait_exponential_jitter(multiplier=backoff, max=backoff * 16, jitter=backoff)

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, LumaRateLimitError) and exc.retry_after is not None:
            return exc.retry_after
        return float(exponential(state))

    return wait


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    delay = state.next_action.sleep if state.next_action else 0.0
    log.warning("Luma API attempt %d failed (%s); retrying in %.1f s", state.attempt_number, exc, delay)
