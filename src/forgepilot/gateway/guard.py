"""Who may call the gateway and how often: API keys (hashed in the gateway's store) and a token bucket per key or
client: in memory for one gateway, in the shared database when several gateways serve one team (PostgreSQL), so
that a limit holds across all of them.

Keys are required when the gateway is bound beyond loopback (``[gateway] auth = "auto"``), or always with ``on``.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from forgepilot.gateway.bucket import TokenBucket
from forgepilot.gateway.errors import HTTPError
from forgepilot.gateway.store import ApiKey, GatewayStore


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class RateLimiter:
    """A token bucket per caller: ``per_minute`` requests per minute, bursts up to the same number.

    Buckets are kept in order of last use. A bucket untouched for a minute has refilled, so it is no different
    from a new one and is dropped; past ``max_callers`` the least recently used go too. Memory stays bounded
    however many client addresses or keys show up.
    """

    REFILL_S = 60.0

    def __init__(
        self, per_minute: int, *, max_callers: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.per_minute = per_minute
        self.max_callers = max_callers
        self._clock = clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._buckets)

    def _evict(self, now: float) -> None:
        while self._buckets:
            oldest = next(iter(self._buckets.values()))
            if now - oldest.stamp < self.REFILL_S and len(self._buckets) <= self.max_callers:
                return
            self._buckets.popitem(last=False)

    def check(self, caller: str, per_minute: int | None = None) -> None:
        limit = per_minute if per_minute is not None else self.per_minute
        if limit <= 0:
            return
        now = self._clock()
        with self._lock:
            self._evict(now)
            bucket = self._buckets.get(caller)
            if bucket is None:
                bucket = self._buckets[caller] = TokenBucket(float(limit), now)
            self._buckets.move_to_end(caller)
            wait = bucket.spend(now, limit)
        if wait is not None:
            raise rate_limited(limit, wait)


def rate_limited(limit: int, wait_s: float) -> HTTPError:
    return HTTPError(
        429,
        f"rate limit of {limit} requests per minute reached",
        type="rate_limit_error",
        code="rate_limit_exceeded",
        headers={"Retry-After": str(max(1, round(wait_s + 0.5)))},
    )


class SharedRateLimiter:
    """The same token buckets kept in the gateway store's database, one row per caller: every gateway on that
    database spends from the same bucket. Buckets idle for two minutes are swept now and then."""

    SWEEP_EVERY_S = 60.0

    def __init__(self, store: GatewayStore, per_minute: int, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.per_minute = per_minute
        self._clock = clock
        self._swept = clock()

    def check(self, caller: str, per_minute: int | None = None) -> None:
        limit = per_minute if per_minute is not None else self.per_minute
        if limit <= 0:
            return
        now = self._clock()
        if now - self._swept > self.SWEEP_EVERY_S:
            self._swept = now
            self.store.drop_idle_buckets(now - 2 * RateLimiter.REFILL_S)
        wait = self.store.take_token(caller, limit, now)
        if wait is not None:
            raise rate_limited(limit, wait)


class Guard:
    def __init__(
        self,
        store: GatewayStore,
        *,
        required: bool,
        limiter: RateLimiter | SharedRateLimiter,
        on_failure: Callable[[str, str], None] | None = None,
    ) -> None:
        self.store = store
        self.required = required
        self.limiter = limiter
        #: Told (client, error code) of every failed authentication: the audit log records them.
        self.on_failure = on_failure

    def key(self, authorization: str | None) -> ApiKey | None:
        """The active key ``authorization`` (``Bearer KEY``) carries, or None (no rate limit is spent)."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return self.store.verify(token.strip())

    def valid(self, authorization: str | None) -> bool:
        """True when ``authorization`` carries an active key (no rate limit is spent)."""
        return self.key(authorization) is not None

    def check(self, authorization: str | None, client: str) -> str | None:
        """The caller's key name (None without auth); raises 401 or 429."""
        key_name: str | None = None
        rate: int | None = None
        if self.required:
            scheme, _, token = (authorization or "").partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                self._failed(client, "missing_api_key")
                raise HTTPError(
                    401,
                    "missing API key: send 'Authorization: Bearer KEY' (create one with `forgepilot keys create`)",
                    type="authentication_error",
                    code="missing_api_key",
                )
            key = self.store.verify(token.strip())
            if key is None:
                self._failed(client, "invalid_api_key")
                raise HTTPError(401, "invalid or revoked API key", type="authentication_error", code="invalid_api_key")
            key_name, rate = key.name, key.rate_per_minute
        self.limiter.check(f"key:{key_name}" if key_name else f"ip:{client}", rate)
        return key_name

    def _failed(self, client: str, code: str) -> None:
        if self.on_failure is not None:
            self.on_failure(client, code)
