"""Log lines that strangers can cause, rate-limited: a flood leaves a few lines and a count
of what was suppressed, not a full disk (a refused connection, a rejected request, a failed
accept each log one). Imported only by the HTTP transport.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

GUARD_LOGGER = "luma_mcp.hosting.limits"  # the connection guard: a line per slow client


class RateLimitFilter(logging.Filter):
    """At most `per_message` lines of one message and `per_logger` lines of one logger per period.

    For log handlers: a line a stranger can cause (a refused request, a failed accept) must
    not be written once per attempt. The next line let through from a logger says how many
    were suppressed. Records of loggers that `exempt` names pass untouched.
    """

    def __init__(
        self,
        *,
        per_message: int = 5,
        per_logger: int = 50,
        period: float = 10.0,
        exempt: Callable[[str], bool] = lambda name: False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.per_message = per_message
        self.per_logger = per_logger
        self.period = period
        self.exempt = exempt
        self._clock = clock
        self._windows: dict[tuple[Any, ...], list[float]] = {}  # key -> [window start, lines in it]
        self._suppressed: dict[str, int] = {}  # logger -> lines dropped since its last line

    def filter(self, record: logging.LogRecord) -> bool:
        if self.exempt(record.name):
            return True
        now = self._clock()
        message = (record.name, record.levelno, str(record.msg)[:200])
        if not (self._take(message, self.per_message, now) and self._take((record.name,), self.per_logger, now)):
            self._suppressed[record.name] = self._suppressed.get(record.name, 0) + 1
            return False
        dropped = self._suppressed.pop(record.name, 0)
        if dropped:  # (no "%" added: the record's own arguments still format it)
            record.msg = f"{record.msg} ({dropped} earlier lines from {record.name} suppressed)"
        return True

    def _take(self, key: tuple[Any, ...], allowed: int, now: float) -> bool:
        window = self._windows.get(key)
        if window is None or now - window[0] >= self.period:
            if len(self._windows) >= 4096:  # made-up messages must not grow this without bound
                self._windows.clear()
            window = self._windows[key] = [now, 0]
        window[1] += 1
        return window[1] <= allowed


def is_own_bounded_logger(name: str) -> bool:
    """luma_mcp's own lines (a task id in a warning, say) are each needed, and few: never dropped.

    The connection guard's are the exception: they come once per slow client.
    """
    return (name == "luma_mcp" or name.startswith("luma_mcp.")) and name != GUARD_LOGGER


def rate_limit_logs(handlers: list[logging.Handler]) -> None:
    limiter = RateLimitFilter(exempt=is_own_bounded_logger)
    for handler in handlers:
        handler.addFilter(limiter)
