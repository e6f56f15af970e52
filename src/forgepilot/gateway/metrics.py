"""Prometheus metrics of one gateway: requests, per-stage latency histograms, tokens, errors, cache, events."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest

# Completion stages run from sub-millisecond (cache, post-processing) to tens of seconds (a CPU model).
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "forgepilot_requests", "HTTP requests by route and status", ["route", "status"], registry=r
        )
        self.request_seconds = Histogram(
            "forgepilot_request_seconds", "HTTP request latency by route", ["route"], buckets=_BUCKETS, registry=r
        )
        self.stage_seconds = Histogram(
            "forgepilot_stage_seconds",
            "Completion latency per stage (context, render, first_token, model, postprocess, total)",
            ["stage"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.tokens = Counter("forgepilot_tokens", "Tokens by model and kind", ["model", "kind"], registry=r)
        self.errors = Counter("forgepilot_errors", "Errors by type", ["type"], registry=r)
        self.inflight = Gauge("forgepilot_inflight_requests", "Requests being served", registry=r)
        self.cancelled = Counter("forgepilot_cancelled", "Requests cancelled by the client mid-flight", registry=r)
        self.cache = Counter("forgepilot_completion_cache", "Completion cache lookups", ["result"], registry=r)
        self.events = Counter("forgepilot_events", "Telemetry events recorded, by type", ["type"], registry=r)
        self.events_unknown = Counter(
            "forgepilot_events_unknown_completion", "Events naming a completion this server never served", registry=r
        )
        self.events_skewed = Counter(
            "forgepilot_events_clock_skewed", "Events whose client clock is off by more than allowed", registry=r
        )
        self.guard_actions = Counter(
            "forgepilot_guard_actions",
            "Guard actions on completions: masked, instructions, withheld, redacted",
            ["action"],
            registry=r,
        )
        self.breaker = Gauge(
            "forgepilot_breaker_state",
            "Circuit breaker per model: 0 closed, 0.5 half-open, 1 open",
            ["model"],
            registry=r,
        )
        self.degraded = Gauge("forgepilot_degraded", "1 while the assistant serves in degraded mode", registry=r)
        self.burn_rate = Gauge(
            "forgepilot_slo_burn_rate", "Completion SLO error-budget burn rate by window", ["window"], registry=r
        )
        ProcessCollector(registry=r)  # resident memory, CPU seconds, open file descriptors
        self.tasks = Gauge("forgepilot_asyncio_tasks", "asyncio tasks alive in the server loop", registry=r)
        self.tasks.set_function(_task_count)
        self.empty = Counter(
            "forgepilot_empty_completions", "Completions returned empty, by reason", ["reason"], registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _task_count() -> float:
    try:
        return float(len(asyncio.all_tasks()))
    except RuntimeError:  # scraped outside the event loop
        return 0.0
