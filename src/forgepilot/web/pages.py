"""What each dashboard page shows, as plain data: the page renders it, and its JSON endpoint returns it as is."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from forgepilot.evals import open_store
from forgepilot.evals.compare import compare_results
from forgepilot.gateway.state import GatewayState
from forgepilot.monitor import window_drift
from forgepilot.registry import Registry, open_registry

DAY = 86_400.0


@contextmanager
def _registry(st: GatewayState) -> Iterator[Registry]:
    """The registry the deployment router already holds open (serving), else one opened for this read."""
    if st.router.registry is not None:
        yield st.router.registry
        return
    registry = open_registry(st.settings.state_dir, st.settings.database_url)
    try:
        yield registry
    finally:
        registry.close()


def _rate(hits: int, n: int) -> float | None:
    return hits / n if n else None


def overview(st: GatewayState, *, now: float | None = None) -> dict[str, Any]:
    """Requests, latency by mode, acceptance and retention over the last week, the serving mode, breakers."""
    now = time.time() if now is None else now
    store = st.monitoring.store
    week = now - 7 * DAY
    requests = store.requests_series(week, now)
    acceptance = store.acceptance_series(week, now)
    retention = store.retention_series(week, now, threshold=st.monitoring.settings.retention_threshold)
    latency = store.latency(now - DAY, now, ["mode"])
    by_group = store.acceptance(now - DAY, now, ["model", "language", "mode", "template_version"])
    mode = st.monitoring.mode.status()
    breakers = st.assistant.models.breakers()
    # The tiles are exact over the last 24 hours (the charts' hourly buckets would blur the window's edge); the
    # acceptance groups cover every event of that window, so their sums are the tiles'.
    served, failed = store.served_counts(now - DAY, now)
    shown = sum(a.shown for a in by_group)
    accepted = sum(a.accepted + a.partially_accepted for a in by_group)
    checks = store.retention(now - DAY, now, by=(), threshold=st.monitoring.settings.retention_threshold)
    return {
        "now": now,
        "tiles": {
            "requests_24h": served,
            "errors_24h": failed,
            "acceptance_24h": _rate(accepted, shown),
            "retention_24h": _rate(sum(c.retained for c in checks), sum(c.checked for c in checks)),
            "degraded": mode.degraded,
            "mode_reason": mode.reason,
            "open_breakers": sorted(m for m, b in breakers.items() if b.state != "closed"),
        },
        "latency_by_mode": [
            {
                "mode": r.group.get("mode"),
                "requests": r.requests,
                "p50_ms": r.p50_ms,
                "p95_ms": r.p95_ms,
                "p99_ms": r.p99_ms,
            }
            for r in latency
        ],  # fmt: skip
        "series": {
            "requests": [[p.at, p.n] for p in requests],
            "errors": [[p.at, p.hits] for p in requests],
            "acceptance_rate": [[p.at, p.rate] for p in acceptance],
            "retention_rate": [[p.at, p.rate] for p in retention],
        },
        "acceptance_by_group": [
            {**a.group, "shown": a.shown, "accepted": a.accepted + a.partially_accepted, "rate": a.acceptance_rate}
            for a in by_group
        ],  # fmt: skip
        "breakers": {m: {"state": b.state, "last_error": b.last_error} for m, b in breakers.items()},
    }


def deployments(st: GatewayState) -> dict[str, Any]:
    """The split, the running (or last) rollout and its decisions with their evidence."""
    split = st.router.split()
    with _registry(st) as registry:
        rollout = registry.active_rollout() or registry.latest_rollout()
        decisions = registry.rollout_decisions(rollout.id) if rollout else []
        history = registry.history("champion")[:10]
    return {
        "split": st.deployments_record(),
        "rollout": None
        if rollout is None
        else {
            "id": rollout.id,
            "state": rollout.state,
            "reason": rollout.reason,
            "step": rollout.step,
            "steps": rollout.spec.get("steps", []),
            "share": rollout.share,
            "canary": rollout.canary,
            "champion": rollout.champion,
            "spec": rollout.spec.get("name"),
        },
        "decisions": [
            {
                "at": d.at,
                "action": d.action,
                "step": d.step,
                "share": d.share,
                "reason": d.reason,
                "guards": d.evidence.get("guards", []),
                "look": d.evidence.get("look"),
            }
            for d in decisions
        ],  # fmt: skip
        "champion_history": history,
        "canary_share": split.share,
    }


def releases(st: GatewayState) -> dict[str, Any]:
    """Gate decisions and evaluation runs, newest first."""
    with _registry(st) as registry:
        decisions = registry.entities("decision", limit=50)
    evals = open_store(st.settings.state_dir, st.settings.database_url)
    try:
        runs = evals.runs(limit=50)
    finally:
        evals.close()
    return {
        "decisions": [
            {
                "id": e.id,
                "name": e.name,
                "decision": e.data.get("decision"),
                "created_at": e.created_at,
                "reasons": e.data.get("reasons", []),
            }
            for e in decisions
        ],  # fmt: skip
        "runs": [
            {
                "id": r.id,
                "suite": r.suite,
                "kind": r.suite_kind,
                "model": r.model,
                "label": r.label,
                "status": r.status,
                "cases": f"{r.cases_done}/{r.cases_total}",
                "created_at": r.created_at,
                "summary": r.summary or {},
            }
            for r in runs
        ],  # fmt: skip
    }


def decision(st: GatewayState, decision_id: str) -> dict[str, Any]:
    """One gate decision with every check's status, reasons and evidence (the dossier's content)."""
    with _registry(st) as registry:
        entity = registry.get("decision", decision_id)
    return {"id": entity.id, "name": entity.name, "created_at": entity.created_at, **entity.data}


def comparison(st: GatewayState, run_a: str, run_b: str) -> dict[str, Any]:
    """Two runs of one suite compared case by case: differences with bootstrap intervals, McNemar's test."""
    evals = open_store(st.settings.state_dir, st.settings.database_url)
    try:
        a, b = evals.run(run_a), evals.run(run_b)
        result = compare_results(a.suite_kind, evals.results(a.id), evals.results(b.id), iterations=2000)
    finally:
        evals.close()
    return {"a": {"id": a.id, "model": a.model, "suite": a.suite}, "b": {"id": b.id, "model": b.model}, **result}


def data_and_models(st: GatewayState) -> dict[str, Any]:
    """Datasets, models and candidates in the registry, with their counts."""
    with _registry(st) as registry:
        counts = registry.counts()
        rows = {t: registry.entities(t, limit=50) for t in ("dataset", "model", "candidate", "prompt")}
    return {
        "counts": counts,
        **{t: [{"id": e.id, "name": e.name, "created_at": e.created_at} for e in es] for t, es in rows.items()},
    }


def lineage(st: GatewayState, type_: str, id_: str) -> dict[str, Any]:
    """An entity as recorded (a dataset's card, a model's identity, a decision's checks) and its lineage tree."""
    with _registry(st) as registry:
        return {"entity": registry.get(type_, id_).record(), "tree": registry.lineage(type_, id_)}


def index(st: GatewayState) -> dict[str, Any]:
    """Each indexed repository: files by state, skip reasons, chunks, vectors, symbols, problem files."""
    if st.assistant.workspace is None:
        return {"repositories": [], "files_indexed": 0}
    status = st.assistant.workspace.store.status()
    return {
        "files_indexed": sum(s.files.get("indexed", 0) for s in status),
        "repositories": [
            {
                "name": s.repository.name,
                "root": s.repository.root,
                "commit": s.repository.head_commit,
                "indexed_at": s.repository.indexed_at,
                "files": s.files,
                "skipped_by_reason": s.skipped_by_reason,
                "chunks": s.chunks,
                "embedded_chunks": s.embedded_chunks,
                "symbols": s.symbols,
                "problems": [vars(p) for p in s.problems[:200]],
                "problem_count": len(s.problems),
            }
            for s in status
        ],  # fmt: skip
    }


def drift(st: GatewayState, *, now: float | None = None) -> dict[str, Any]:
    """The last day against the week before it, feature by feature, with the thresholds."""
    settings = st.monitoring.settings
    until = time.time() if now is None else now
    since = until - DAY
    report = window_drift(st.monitoring.store, settings, since, until, reference_s=7 * DAY)
    return {
        "since": since,
        "until": until,
        "reference_n": report.reference_n,
        "current_n": report.current_n,
        "thresholds": {
            "psi_warn": settings.psi_warn,
            "psi_alert": settings.psi_alert,
            "p_value": settings.drift_p_value,
            "min_samples": settings.drift_min_samples,
        },  # fmt: skip
        "features": [
            {
                "name": f.name,
                "status": f.status,
                "psi": f.psi,
                "p_value": f.p_value,
                "test": f.test,
                "reference": f.reference,
                "current": f.current,
            }
            for f in report.features
        ],  # fmt: skip
        "alerts": report.alerts,
        "warnings": report.warnings,
    }


def live(st: GatewayState) -> dict[str, Any]:
    """What the pages refresh while open (server-sent events): the last hour at a glance."""
    now = time.time()
    store = st.monitoring.store
    hour = store.requests_series(now - 3600, now)
    mode = st.monitoring.mode.status()
    repos = st.assistant.workspace.store.repositories() if st.assistant.workspace else []
    return {
        "requests_1h": sum(p.n for p in hour),
        "errors_1h": sum(p.hits for p in hour),
        "degraded": mode.degraded,
        "mode": "degraded" if mode.degraded else "normal",
        "canary_share": st.router.split().share,
        "repositories": len(repos),
        "files_indexed": st.assistant.workspace.store.indexed_files() if st.assistant.workspace else 0,
        "at": now,
    }
