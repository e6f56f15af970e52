"""The token bucket's arithmetic, in one place for both rate limiters: the in-memory one of a single gateway and the
shared one whose buckets are rows of the gateway's store."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TokenBucket:
    tokens: float
    stamp: float

    def spend(self, now: float, per_minute: int) -> float | None:
        """Refill for the time since ``stamp``, then take one request: None when allowed, else the seconds until a
        token is back. Never refills backwards (the clocks of several hosts differ a little)."""
        rate = per_minute / 60.0
        now = max(now, self.stamp)
        self.tokens = min(float(per_minute), self.tokens + (now - self.stamp) * rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return None
        return (1.0 - self.tokens) / rate
