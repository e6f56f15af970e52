"""One read of the monitor: acceptance, retention, latency, drift and the serving mode, for a time window."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from forgepilot.config import MonitorSettings
from forgepilot.monitor.drift import DomainProfile, DriftReport, compare
from forgepilot.monitor.store import MonitorStore
from forgepilot.monitor.types import AcceptanceRow, LatencyRow, ModeChange, RetentionRow


@dataclass(frozen=True)
class MonitorSummary:
    since: float
    until: float
    reference_since: float
    acceptance: list[AcceptanceRow]
    retention: list[RetentionRow]
    latency: list[LatencyRow]
    drift: DriftReport
    #: The newest serving-mode change first (empty: never degraded).
    mode_changes: list[ModeChange]
    event_counts: dict[str, int]

    @property
    def degraded(self) -> bool:
        return bool(self.mode_changes) and self.mode_changes[0].mode == "degraded"


def window_drift(
    store: MonitorStore,
    settings: MonitorSettings,
    since: float,
    until: float,
    *,
    reference_s: float,
    domain: DomainProfile | None = None,
) -> DriftReport:
    """Drift of ``[since, until)`` against the ``reference_s`` seconds before it."""
    return compare(store.window(since - reference_s, since), store.window(since, until), settings, domain=domain)


def summarize(
    store: MonitorStore,
    settings: MonitorSettings,
    *,
    window_s: float = 86_400.0,
    reference_s: float = 7 * 86_400.0,
    by: Sequence[str] = ("deployment", "model", "language", "mode", "template_version"),
    domain: DomainProfile | None = None,
    now: float | None = None,
) -> MonitorSummary:
    """The last ``window_s`` seconds, and its drift against the ``reference_s`` seconds before it."""
    until = time.time() if now is None else now
    since = until - window_s
    reference_since = since - reference_s
    return MonitorSummary(
        since=since,
        until=until,
        reference_since=reference_since,
        acceptance=store.acceptance(since, until, by),
        retention=store.retention(since, until, by, threshold=settings.retention_threshold),
        latency=store.latency(since, until, [k for k in by if k in ("deployment", "model", "language", "mode")]),
        drift=window_drift(store, settings, since, until, reference_s=reference_s, domain=domain),
        mode_changes=store.mode_changes(),
        event_counts=store.event_counts(),
    )
