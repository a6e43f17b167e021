"""Per-client rate limiting for uploads: a token bucket per visitor cookie and per client IP, in bounded memory.

Why two keys: the ``hh_vid`` cookie separates people behind one NAT (a campus, an office), so it carries the normal
per-person budget; but a script can drop cookies, so the client IP also has a bucket, ``ip_factor`` times larger, that
caps what any one address can do. Buckets live in an LRU of at most ``max_clients`` entries: an evicted client simply
starts again with a full bucket, which is the safe direction to err in (memory stays bounded under a botnet).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

MIN_RETRY_AFTER_S = 1  # Retry-After is whole seconds; never tell a client "0"


@dataclass
class TokenBucket:
    """``tokens`` refill at ``rate_per_s`` up to ``capacity``; one upload costs one token."""

    capacity: float
    rate_per_s: float
    tokens: float
    updated_at: float

    def take(self, now: float) -> float:
        """Take a token: 0.0 if granted, otherwise the seconds until one will be available."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated_at) * self.rate_per_s)
        self.updated_at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate_per_s


@dataclass(frozen=True)
class RateDecision:
    """The outcome of one check: allowed, or refused with a whole-second Retry-After."""

    allowed: bool
    retry_after_s: int = 0


class RateLimiter:
    """Token buckets keyed by client; ``burst`` 0 disables limiting entirely."""

    def __init__(
        self,
        *,
        burst: int,
        per_minute: float,
        max_clients: int,
        ip_factor: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = burst
        self.rate_per_s = per_minute / 60.0
        self.max_clients = max_clients
        self.ip_factor = max(1, ip_factor)
        self._clock = clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.burst > 0 and self.rate_per_s > 0

    def __len__(self) -> int:
        return len(self._buckets)

    def check(self, *, visitor_id: str | None, ip: str | None) -> RateDecision:
        """Charge one upload to the visitor's bucket (if it has a cookie) and to its IP's bucket.

        Both must have a token; when one refuses, the other is not charged, so a refused request costs nothing.
        """
        if not self.enabled:
            return RateDecision(True)
        now = self._clock()
        wanted = []
        if visitor_id:
            wanted.append(self._bucket(f"v:{visitor_id}", 1, now))
        wanted.append(self._bucket(f"ip:{ip or 'unknown'}", self.ip_factor, now))
        waits = [self._peek_wait(bucket, now) for bucket in wanted]
        longest = max(waits)
        if longest > 0:
            return RateDecision(False, max(MIN_RETRY_AFTER_S, math.ceil(longest)))
        for bucket in wanted:
            bucket.take(now)
        return RateDecision(True)

    def _peek_wait(self, bucket: TokenBucket, now: float) -> float:
        tokens = min(bucket.capacity, bucket.tokens + (now - bucket.updated_at) * bucket.rate_per_s)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / bucket.rate_per_s

    def _bucket(self, key: str, factor: int, now: float) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            capacity = float(self.burst * factor)
            bucket = TokenBucket(capacity, self.rate_per_s * factor, capacity, now)
            self._buckets[key] = bucket
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)  # least recently seen first
        else:
            self._buckets.move_to_end(key)
        return bucket
