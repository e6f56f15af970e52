"""Watching the assistant run: the event store, acceptance and retention, drift, degraded mode and the audit log."""

from forgepilot.monitor.audit import AuditAction, AuditEntry, AuditLog, AuditVerdict, current_actor, record_settings
from forgepilot.monitor.degrade import CompletionOverrides, DegradedMode, DegradedStatus
from forgepilot.monitor.drift import DomainProfile, DriftReport, FeatureDrift, compare, psi
from forgepilot.monitor.retention import Accepted, RetentionTracker, retained_share
from forgepilot.monitor.service import Monitoring, audit_db, monitor_db, served_completion
from forgepilot.monitor.store import DeploymentCounts, MonitorStore, WindowSample
from forgepilot.monitor.summary import MonitorSummary, summarize, window_drift
from forgepilot.monitor.types import (
    EVENT_TYPES,
    GROUP_KEYS,
    AcceptanceRow,
    Event,
    EventType,
    LatencyRow,
    ModeChange,
    RecordResult,
    RetentionRow,
    SeriesPoint,
    ServedCompletion,
)

__all__ = [
    "EVENT_TYPES",
    "GROUP_KEYS",
    "AcceptanceRow",
    "Accepted",
    "AuditAction",
    "AuditEntry",
    "AuditLog",
    "AuditVerdict",
    "CompletionOverrides",
    "DegradedMode",
    "DegradedStatus",
    "DeploymentCounts",
    "DomainProfile",
    "DriftReport",
    "Event",
    "EventType",
    "FeatureDrift",
    "LatencyRow",
    "ModeChange",
    "MonitorStore",
    "Monitoring",
    "MonitorSummary",
    "RecordResult",
    "RetentionRow",
    "RetentionTracker",
    "SeriesPoint",
    "ServedCompletion",
    "WindowSample",
    "audit_db",
    "compare",
    "current_actor",
    "monitor_db",
    "psi",
    "record_settings",
    "retained_share",
    "served_completion",
    "summarize",
    "window_drift",
]
