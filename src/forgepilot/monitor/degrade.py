"""Degraded mode, driven by the completion SLO's error-budget burn rate over two windows.

The SLO: ``slo_target`` of completions answer without error within ``slo_latency_s``. The burn rate of a window is
its share of bad completions over the budget (``1 - slo_target``): 1 spends the budget exactly, 14.4 spends a
30-day budget's 2 % in an hour. As the SRE workbook's multiwindow alerts do, degraded mode starts only when a long
window (real trouble, not a blip) and a short one (still happening now) both burn at ``degrade_burn`` or more. It
ends with hysteresis: the short window must burn below ``recover_burn`` (well under the trigger) and the mode
must have lasted ``min_degraded_s``, so that a recovering server does not flap in and out.

Degraded mode shrinks the completion prompt, moves completions to the fast tier and pauses chat tasks.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from forgepilot.config import MonitorSettings
from forgepilot.monitor.types import ModeChange


class _Window:
    """Good/bad counts over the last ``span_s`` seconds, in buckets (memory bounded whatever the traffic)."""

    BUCKETS = 60

    def __init__(self, span_s: float) -> None:
        self.span_s = span_s
        self.bucket_s = span_s / self.BUCKETS
        self._buckets: deque[list[float]] = deque()  # [start, total, bad]

    def add(self, now: float, bad: bool) -> None:
        start = now - now % self.bucket_s
        if not self._buckets or self._buckets[-1][0] != start:
            self._buckets.append([start, 0, 0])
        self._buckets[-1][1] += 1
        self._buckets[-1][2] += int(bad)
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self._buckets and self._buckets[0][0] + self.bucket_s <= now - self.span_s:
            self._buckets.popleft()

    def counts(self, now: float) -> tuple[int, int]:
        self._trim(now)
        return int(sum(b[1] for b in self._buckets)), int(sum(b[2] for b in self._buckets))


@dataclass(frozen=True)
class DegradedStatus:
    degraded: bool
    since: float | None
    reason: str
    #: Burn rate per window ("long", "short") and the requests each window holds.
    burn: dict[str, float] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class CompletionOverrides:
    """What degraded mode changes in a completion request (None: leave it)."""

    model: str | None = None
    prompt_tokens: int | None = None


class DegradedMode:
    def __init__(
        self,
        settings: MonitorSettings,
        *,
        fast_model: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        on_change: Callable[[ModeChange], None] | None = None,
    ) -> None:
        self.settings = settings
        self.fast_model = settings.degraded_model or fast_model
        self._clock = clock
        self._wall = wall_clock
        self._on_change = on_change
        self._long = _Window(settings.burn_long_s)
        self._short = _Window(settings.burn_short_s)
        self._lock = threading.Lock()
        self._degraded_at: float | None = None
        self._since_wall: float | None = None
        self._reason = "the completion SLO is met"

    @property
    def degraded(self) -> bool:
        return self.status().degraded

    def observe(self, latency_s: float, ok: bool = True) -> None:
        """Count one completion: bad when it failed or took longer than the SLO's latency."""
        bad = (not ok) or latency_s > self.settings.slo_latency_s
        now = self._clock()
        with self._lock:
            self._long.add(now, bad)
            self._short.add(now, bad)
        self.status()

    def _burn(self, window: _Window, now: float) -> tuple[float, int]:
        total, bad = window.counts(now)
        budget = 1.0 - self.settings.slo_target
        return ((bad / total) / budget if total else 0.0), total

    def status(self) -> DegradedStatus:
        """The current mode, after judging the windows (a change is reported to ``on_change``)."""
        s = self.settings
        change: ModeChange | None = None
        with self._lock:
            now = self._clock()
            long_burn, long_n = self._burn(self._long, now)
            short_burn, short_n = self._burn(self._short, now)
            burn = {"long": round(long_burn, 3), "short": round(short_burn, 3)}
            if self._degraded_at is None:
                if short_n >= s.min_requests and min(long_burn, short_burn) >= s.degrade_burn:
                    self._degraded_at, self._since_wall = now, self._wall()
                    self._reason = (
                        f"completions burn the error budget {short_burn:.1f}x in the last {s.burn_short_s:g} s and "
                        f"{long_burn:.1f}x in the last {s.burn_long_s:g} s (SLO {s.slo_target:.2%} within "
                        f"{s.slo_latency_s:g} s; degraded at {s.degrade_burn:g}x)"
                    )
                    change = ModeChange(self._since_wall, "degraded", self._reason, burn)
            elif now - self._degraded_at >= s.min_degraded_s and short_burn < s.recover_burn:
                self._degraded_at = self._since_wall = None
                self._reason = (
                    f"the last {s.burn_short_s:g} s burn {short_burn:.1f}x, under {s.recover_burn:g}x: back to normal"
                )
                change = ModeChange(self._wall(), "normal", self._reason, burn)
            status = DegradedStatus(
                self._degraded_at is not None, self._since_wall, self._reason, burn, {"long": long_n, "short": short_n}
            )
        if change is not None and self._on_change is not None:
            self._on_change(change)
        return status

    def completion_overrides(self) -> CompletionOverrides:
        if not self.degraded:
            return CompletionOverrides()
        return CompletionOverrides(self.fast_model, self.settings.degraded_prompt_tokens)

    def chat_paused(self) -> bool:
        return self.settings.pause_chat and self.degraded
