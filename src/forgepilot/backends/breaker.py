"""A circuit breaker per model backend: stop sending requests to a backend that is dead or too slow.

Closed (normal) -> ``failures`` failed or slow calls in a row -> open: calls go to the fallback model for
``open_s`` seconds -> half-open: one trial call goes to the backend; it closes the breaker when it succeeds in time
and opens it again when it does not. Counting failures in a row (not a rate) makes a dead backend open the breaker
after a few requests however quiet the traffic, while one slow answer among good ones does not.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

BreakerState = Literal["closed", "open", "half_open"]


@dataclass(frozen=True)
class BreakerStatus:
    state: BreakerState
    consecutive_failures: int
    opened_at: float | None
    last_error: str | None
    trips: int


class CircuitBreaker:
    def __init__(
        self,
        *,
        failures: int = 3,
        slow_s: float = 30.0,
        open_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failures = failures
        self.slow_s = slow_s
        self.open_s = open_s
        self._clock = clock
        self._lock = threading.Lock()
        self._state: BreakerState = "closed"
        self._in_a_row = 0
        self._opened_at: float | None = None
        self._trial_out = False
        self._last_error: str | None = None
        self._trips = 0

    def allow(self) -> bool:
        """May a call go to the backend now? (In half-open, only one trial at a time.)"""
        with self._lock:
            if self._state == "open":
                assert self._opened_at is not None
                if self._clock() - self._opened_at < self.open_s:
                    return False
                self._state, self._trial_out = "half_open", False
            if self._state == "half_open":
                if self._trial_out:
                    return False
                self._trial_out = True
            return True

    def record(self, ok: bool, seconds: float, error: str | None = None) -> None:
        """The outcome of a call that ``allow`` let through: a failure, or a success slower than ``slow_s``,
        counts against the backend."""
        good = ok and seconds <= self.slow_s
        with self._lock:
            self._trial_out = False
            if good:
                self._state, self._in_a_row, self._opened_at = "closed", 0, None
                return
            self._in_a_row += 1
            self._last_error = error or f"answered in {seconds:.1f} s (slow above {self.slow_s:g} s)"
            if self._state == "half_open" or self._in_a_row >= self.failures:
                if self._state != "open":
                    self._trips += 1
                self._state, self._opened_at = "open", self._clock()

    def status(self) -> BreakerStatus:
        with self._lock:
            state = self._state
            if state == "open" and self._opened_at is not None and self._clock() - self._opened_at >= self.open_s:
                state = "half_open"
            return BreakerStatus(state, self._in_a_row, self._opened_at, self._last_error, self._trips)
