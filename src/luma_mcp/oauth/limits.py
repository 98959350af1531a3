"""How often one address (or one client) may try: sign-in attempts and registrations.

Token buckets per key, in this process (each replica counts its own), the least recently
seen keys forgotten beyond `MAX_TRACKED` (forgetting only refills a bucket).
"""

from __future__ import annotations

import time
from collections import OrderedDict

from luma_mcp.token_checks import MAX_TRACKED_ADDRESSES, TokenBucket


class KeyedBuckets:
    """`per_minute` events a minute for each key, bursts up to `burst`."""

    def __init__(self, per_minute: float, burst: float) -> None:
        self.rate, self.burst = per_minute / 60, burst
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def wait(self, key: str) -> float:
        """Seconds before `key` may try again (0: now)."""
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
