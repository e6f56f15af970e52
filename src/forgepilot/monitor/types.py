"""What the monitor stores and reports: events from clients, completions served, and the rates read from them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

EventType = Literal["shown", "accepted", "rejected", "partially_accepted", "retained"]
EVENT_TYPES: tuple[EventType, ...] = ("shown", "accepted", "rejected", "partially_accepted", "retained")
#: What an event can be grouped by, in the order reports show them.
GROUP_KEYS = ("deployment", "model", "language", "mode", "template_version")


@dataclass(frozen=True)
class Event:
    """One client report about a completion. ``retained`` events say how much of an accepted completion is still
    in the document ``after_s`` seconds after the accept (``retained_share`` 0..1; None when it could not be
    checked, with ``reason`` saying why)."""

    type: EventType
    completion_id: str | None = None
    deployment: str | None = None
    user: str | None = None
    model: str | None = None
    mode: str | None = None
    language: str | None = None
    template_id: str | None = None
    template_version: str | None = None
    shown_chars: int | None = None
    accepted_chars: int | None = None
    latency_ms: float | None = None
    after_s: float | None = None
    retained_share: float | None = None
    reason: str | None = None
    #: The client's clock when the event happened (unix seconds); the server's receipt time is what counts.
    client_time: float | None = None


@dataclass(frozen=True)
class ServedCompletion:
    """A completion the gateway or the LSP server answered: what drift and latency are computed from."""

    id: str
    served_at: float
    deployment: str
    model: str
    mode: str
    language: str | None
    template_id: str | None
    template_version: str | None
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    output_chars: int
    empty_reason: str | None
    #: Context sources the prompt held (related, imports, similar, retrieved, ...).
    sources: tuple[str, ...] = ()
    user: str | None = None
    cached: bool = False
    degraded: bool = False
    #: Set when the backend failed and nothing was served (the row still counts against the deployment).
    error: str | None = None


@dataclass(frozen=True)
class RecordResult:
    recorded: int
    #: Events naming a completion id this server never served (kept, grouped under "unknown").
    unknown_completions: int
    #: Events whose client clock was further than the allowed skew from the server's.
    skewed: int


@dataclass(frozen=True)
class AcceptanceRow:
    group: dict[str, str | None]
    shown: int
    accepted: int
    partially_accepted: int
    rejected: int
    shown_chars: int
    accepted_chars: int

    @property
    def acceptance_rate(self) -> float | None:
        """Accepted (fully or partly) per suggestion shown."""
        return (self.accepted + self.partially_accepted) / self.shown if self.shown else None

    @property
    def char_acceptance_rate(self) -> float | None:
        return self.accepted_chars / self.shown_chars if self.shown_chars else None


@dataclass(frozen=True)
class RetentionRow:
    group: dict[str, str | None]
    after_s: float
    checked: int
    retained: int
    #: Checks that could not be made (the document was closed and is not on disk, ...).
    unknown: int
    mean_share: float | None

    @property
    def retention_rate(self) -> float | None:
        return self.retained / self.checked if self.checked else None


@dataclass(frozen=True)
class LatencyRow:
    group: dict[str, str | None]
    requests: int
    p50_ms: float
    p95_ms: float
    empty: int
    degraded: int
    p99_ms: float = 0.0


@dataclass(frozen=True)
class ModeChange:
    at: float
    mode: Literal["normal", "degraded"]
    reason: str
    burn: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class SeriesPoint:
    """One bucket of a time series (``at``: the bucket's start, unix seconds)."""

    at: float
    n: int
    hits: int

    @property
    def rate(self) -> float | None:
        return self.hits / self.n if self.n else None
