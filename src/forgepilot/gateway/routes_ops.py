"""Telemetry events, Prometheus metrics, health (with the serving mode, deployments and breakers) and the API docs."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import Response

from forgepilot import __version__
from forgepilot.gateway.schemas import EventsBody
from forgepilot.gateway.state import GatewayState, gateway_state
from forgepilot.monitor import Event

router = APIRouter()
State = Annotated[GatewayState, Depends(gateway_state)]
Authorization = Annotated[str | None, Header()]
_BREAKER_GAUGE = {"closed": 0.0, "half_open": 0.5, "open": 1.0}


@router.post("/v1/events")
async def events(body: EventsBody, request: Request, st: State, authorization: Authorization = None) -> dict[str, Any]:
    key = st.caller(request, authorization)
    received = [Event(**e.model_dump()) for e in body.events]
    # Acknowledged only once committed: a 200 means the events are on disk.
    recorded = await asyncio.to_thread(st.monitoring.store.record_events, received, user=key)
    for event in received:
        st.metrics.events.labels(event.type).inc()
    st.metrics.events_unknown.inc(recorded.unknown_completions)
    st.metrics.events_skewed.inc(recorded.skewed)
    return {
        "object": "list",
        "recorded": recorded.recorded,
        "unknown_completions": recorded.unknown_completions,
        "clock_skewed": recorded.skewed,
    }


@router.get("/metrics")
async def prometheus(request: Request, st: State, authorization: Authorization = None) -> Response:
    st.require_access("metrics", request, authorization)
    status = st.monitoring.mode.status()
    st.metrics.degraded.set(int(status.degraded))
    for window, burn in status.burn.items():
        st.metrics.burn_rate.labels(window).set(burn)
    for model, breaker in st.assistant.models.breakers().items():
        st.metrics.breaker.labels(model).set(_BREAKER_GAUGE[breaker.state])
    return Response(st.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


@router.get("/healthz")
async def healthz(request: Request, st: State, authorization: Authorization = None) -> dict[str, Any]:
    settings = st.settings
    if st.auth_required and "health" not in settings.gateway.public and not st.guard.valid(authorization):
        return {"status": "ok"}  # liveness for probes without a key; the details need one
    assistant = st.assistant
    repos = assistant.workspace.store.repositories() if assistant.workspace else []
    status = st.monitoring.mode.status()
    return {
        "status": "degraded" if status.degraded else "ok",
        "mode": {
            "degraded": status.degraded,
            "since": status.since,
            "reason": status.reason,
            "burn_rate": status.burn,
            "requests": status.requests,
        },
        "deployments": st.deployments_record(),
        "breakers": {
            model: {"state": b.state, "failures_in_a_row": b.consecutive_failures, "last_error": b.last_error}
            for model, b in assistant.models.breakers().items()
        },
        "fallbacks": settings.assist.fallbacks,
        "version": __version__,
        "default_model": settings.default_model,
        "tiers": {t: assistant.models.tier_model(t) for t in ("large", "fast", "embed")},
        "repositories": [r.name for r in repos],
        "auth": st.auth_required,
    }


@router.get("/openapi.json", include_in_schema=False)
async def openapi(request: Request, st: State, authorization: Authorization = None) -> dict[str, Any]:
    st.require_access("docs", request, authorization)
    schema: dict[str, Any] = request.app.openapi()
    return schema


@router.get("/docs", include_in_schema=False)
async def docs(request: Request, st: State, authorization: Authorization = None) -> Response:
    st.require_access("docs", request, authorization)
    return get_swagger_ui_html(openapi_url="/openapi.json", title="ForgePilot gateway")
