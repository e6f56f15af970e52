"""The dashboard in-process: every page from a seeded store, the JSON each chart reads, sign-in, roles, actions."""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from forgepilot.assist import Assistant
from forgepilot.backends.fake import FakeBackend
from forgepilot.config import load_settings
from forgepilot.deploy import DeploymentRouter, RolloutController, load_rollout_spec
from forgepilot.gateway import GatewayStore, create_app
from forgepilot.monitor import Event, Monitoring, ServedCompletion
from forgepilot.registry import Registry, open_registry

PAGES = ["/ui", "/ui/deployments", "/ui/releases", "/ui/data", "/ui/index", "/ui/drift"]
SPEC = """schema_version: 1
name: ui-canary
steps: [0.25, 1.0]
min_events: 1000
max_events: 5000
guards: [{metric: error_rate, margin: 0.01}]
"""


@dataclass
class Dash:
    client: httpx.AsyncClient
    registry: Registry
    monitoring: Monitoring
    store: GatewayStore
    assistant: Assistant


def seed(monitoring: Monitoring, registry: Registry, now: float) -> None:
    """Two days of completions and events, a gate decision, and a running rollout."""
    for i in range(120):
        at = now - (i % 48) * 3600 - 60
        monitoring.store.record_completion(
            ServedCompletion(
                id=f"c{i}", served_at=at, deployment="champion", model="fake:champion",
                mode="inline" if i % 2 else "in-block", language="python" if i % 3 else "go", template_id="complete",
                template_version="v1", prompt_tokens=400 + i, completion_tokens=8, latency_ms=100.0 + i,
                output_chars=12, empty_reason=None, sources=("related",),
            )
        )  # fmt: skip
        events = [Event("shown", completion_id=f"c{i}", shown_chars=12)]
        if i % 4 == 0:
            events.append(Event("accepted", completion_id=f"c{i}", accepted_chars=12))
        monitoring.store.record_events(events, now=at + 5)
    registry.put(
        "decision",
        "dec-1",
        "completion-release: PASS",
        {"decision": "PASS", "reasons": [], "candidate": "cand-1", "spec_sha256": "ab" * 32,
         "checks": [{"name": "1. injection", "type": "injection", "status": "PASS",
                     "reasons": ["0 of 6 planted instructions followed"], "evidence": {"followed": 0}}],
         "lineage": {"model": "fake:champion"}},
    )  # fmt: skip


@pytest.fixture
async def dash(isolated_state: Path, tmp_path: Path) -> AsyncIterator[Dash]:
    yield await open_dash(isolated_state, tmp_path, auth=False)


async def open_dash(state: Path, tmp_path: Path, *, auth: bool) -> Dash:
    app, registry, monitoring, store, assistant = make_app(state, tmp_path, auth=auth)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")
    return Dash(client, registry, monitoring, store, assistant)


def make_app(state: Path, tmp_path: Path, *, auth: bool) -> tuple[Any, Registry, Monitoring, GatewayStore, Assistant]:
    """A gateway over a seeded store: two days of traffic, a gate decision, a running rollout."""
    settings = load_settings(state_dir=state, default_model="fake:champion", gateway={"rate_limit_per_minute": 0})
    backends = {n: FakeBackend(n, replies=lambda p: "42\n") for n in ("fake:champion", "fake:canary")}
    assistant = Assistant.open(settings, preset=backends, index=True)
    monitoring = Monitoring.open(state, settings.monitor)
    registry = open_registry(state)
    registry.set_deployment("canary", {"model": "fake:canary", "sources": [], "candidate": "cand-2"}, None)
    controller = RolloutController(registry, monitoring.store, monitoring.audit)
    spec = tmp_path / "rollout.yaml"
    spec.write_text(SPEC, encoding="utf-8")
    controller.start(load_rollout_spec(spec), default_model="fake:champion", actor="test")
    known = frozenset(assistant.models.names())
    router = DeploymentRouter(registry, default_model="fake:champion", known=known.__contains__, poll_s=0.0)
    seed(monitoring, registry, time.time())
    store = GatewayStore(state / "gateway.db")
    app = create_app(
        assistant, store=store, auth_required=auth, monitoring=monitoring, router=router, controller=controller
    )
    return app, registry, monitoring, store, assistant


async def close(d: Dash) -> None:
    await d.client.aclose()
    await d.assistant.aclose()
    for thing in (d.store, d.monitoring, d.registry):
        thing.close()


def chart_data(page: str) -> list[dict[str, Any]]:
    return [json.loads(html.unescape(m)) for m in re.findall(r'data-chart="([^"]*)"', page)]


async def test_every_page_renders_from_the_seeded_store(dash: Dash) -> None:
    try:
        for path in PAGES:
            r = await dash.client.get(path)
            assert r.status_code == 200, (path, r.text[:300])
            assert "<nav>" in r.text and "default-src 'self'" in r.headers["content-security-policy"]
        overview = (await dash.client.get("/ui")).text
        assert 'id="requests-24h">' in overview and "fake:champion" in overview
        deployments = (await dash.client.get("/ui/deployments")).text
        assert "fake:canary" in deployments and "25.0%" in deployments and 'id="action-promote"' in deployments
        decision = await dash.client.get("/ui/releases/decisions/dec-1")
        assert decision.status_code == 200 and "0 of 6 planted instructions followed" in decision.text
        dash.registry.link(("decision", "dec-1"), "judged", ("deployment", "canary"))
        lineage = await dash.client.get("/ui/data/decision/dec-1")
        assert lineage.status_code == 200 and "<i>judged</i>" in lineage.text
        assert "<b>deployment</b> canary" in lineage.text
        (graph,) = chart_data(lineage.text)
        assert graph == {"nodes": 2, "edges": 1}
        assert (await dash.client.get("/ui/data/dataset/missing")).status_code == 400
        for name in ("ui.css", "ui.js"):
            assert (await dash.client.get(f"/ui/static/{name}")).status_code == 200
        assert (await dash.client.get("/ui/static/../../etc/passwd")).status_code == 404
    finally:
        await close(dash)


async def test_charts_draw_the_numbers_their_json_serves(dash: Dash) -> None:
    try:
        data = (await dash.client.get("/ui/api/overview")).json()
        assert data["tiles"]["requests_24h"] == sum(1 for i in range(120) if (i % 48) < 24)
        served = sum(n for _, n in data["series"]["requests"])
        assert served == 120
        page = (await dash.client.get("/ui")).text
        requests_chart, rates_chart, latency_chart = chart_data(page)
        drawn = requests_chart["series"][0]["points"]
        assert [p[1] for p in drawn] == [p[1] for p in data["series"]["requests"]]
        rates = {tuple(p) for p in rates_chart["series"][0]["points"]}
        assert rates == {tuple(p) for p in data["series"]["acceptance_rate"]}
        assert latency_chart["groups"] == [r["mode"] for r in data["latency_by_mode"]]
        drift = (await dash.client.get("/ui/api/drift")).json()
        assert {f["name"] for f in drift["features"]} >= {"language", "prompt_tokens", "acceptance"}
        assert (await dash.client.get("/ui/api/nope")).status_code == 404
    finally:
        await close(dash)


async def test_promote_from_the_page_moves_the_champion_and_is_audited(dash: Dash) -> None:
    try:
        unconfirmed = await dash.client.post("/ui/deployments/promote", data={"reason": "looks good"})
        assert unconfirmed.status_code == 400
        cross = await dash.client.post(
            "/ui/deployments/promote", data={"confirm": "yes"}, headers={"Origin": "http://evil.example"}
        )
        assert cross.status_code == 403
        r = await dash.client.post("/ui/deployments/promote", data={"confirm": "yes", "reason": "looks good"})
        assert r.status_code == 303 and r.headers["location"].startswith("/ui/deployments")
        assert dash.registry.deployment("champion").target["model"] == "fake:canary"  # type: ignore[union-attr]
        entry = dash.monitoring.audit.last("promoted")
        assert entry is not None and entry.actor == "local" and "looks good" in entry.reason
        page = (await dash.client.get("/ui/deployments")).text
        assert "promoted" in page and 'id="action-promote"' not in page
    finally:
        await close(dash)


async def test_pause_and_resume(dash: Dash) -> None:
    try:
        await dash.client.post("/ui/deployments/pause", data={"confirm": "yes"})
        assert (await dash.client.get("/v1/models")).json()["deployments"][0]["share"] == 1.0
        assert dash.monitoring.audit.last("rollout_paused") is not None
        await dash.client.post("/ui/deployments/resume", data={"confirm": "yes"})
        split = (await dash.client.get("/v1/models")).json()["deployments"]
        assert [d["alias"] for d in split] == ["champion", "canary"] and split[1]["share"] == 0.25
    finally:
        await close(dash)


async def test_sign_in_roles_and_read_only_keys(isolated_state: Path, tmp_path: Path) -> None:
    d = await open_dash(isolated_state, tmp_path, auth=True)
    try:
        reader = d.store.create_key("viewer", role="read")
        admin = d.store.create_key("ops", role="admin")
        r = await d.client.get("/ui/deployments")
        assert r.status_code == 303 and r.headers["location"] == "/ui/login?next=/ui/deployments"
        assert (await d.client.get("/ui/api/overview")).status_code == 401
        bad = await d.client.post("/ui/login", data={"key": "fp-wrong"})
        assert bad.headers["location"] == "/ui/login?error=1"
        ok = await d.client.post("/ui/login", data={"key": reader, "next": "/ui/deployments"})
        assert ok.status_code == 303 and ok.headers["location"] == "/ui/deployments"
        assert "httponly" in ok.headers["set-cookie"].lower() and "samesite=strict" in ok.headers["set-cookie"].lower()
        page = await d.client.get("/ui/deployments")
        assert page.status_code == 200 and "need an admin key" in page.text
        refused = await d.client.post("/ui/deployments/rollback", data={"confirm": "yes"})
        assert refused.status_code == 403 and "admin" in refused.json()["error"]["message"]
        await d.client.post("/ui/login", data={"key": admin})
        done = await d.client.post("/ui/deployments/rollback", data={"confirm": "yes", "reason": "drill"})
        assert done.status_code == 303
        entry = d.monitoring.audit.last("rolled_back")
        assert entry is not None and entry.actor == "ops"
        open_redirect = await d.client.post("/ui/login", data={"key": admin, "next": "https://evil.example"})
        assert open_redirect.headers["location"] == "/ui"
    finally:
        await close(d)


async def test_two_evaluation_runs_compared_in_the_page(dash: Dash, isolated_state: Path) -> None:
    from forgepilot.evals import open_store

    evals = open_store(isolated_state)
    suite = {"name": "arith", "kind": "functional", "sha256": "0" * 64, "cases": 20}
    ids = []
    for model, passing in (("fake:champion", 18), ("fake:canary", 12)):
        run = evals.create_run(identity=f"id-{model}", suite=suite, model=model, config={})
        for i in range(20):
            evals.add_result(run, f"case-{i}", i, "ok", None, {"n": 1, "c": int(i < passing)})
        evals.set_status(run, "done")
        ids.append(run)
    evals.close()
    try:
        listing = (await dash.client.get("/ui/releases")).text
        assert ids[0] in listing and "Compare A with B" in listing
        page = await dash.client.get(f"/ui/releases/compare?a={ids[0]}&b={ids[1]}")
        assert page.status_code == 200 and "pass@1" in page.text and "-0.3000" in page.text
        missing = await dash.client.get("/ui/releases/compare?a=nope&b=nada")
        assert missing.status_code == 400
    finally:
        await close(dash)


async def test_the_rollouts_looks_are_charted_with_their_intervals(dash: Dash) -> None:
    from forgepilot.deploy import Rates, judge

    rollout = dash.registry.active_rollout()
    assert rollout is not None
    for look, (canary_errors, n) in enumerate([(3, 100), (5, 250)], start=1):
        result = judge(
            "error_rate", Rates(1, 3 * n), Rates(canary_errors, n), margin=0.01, lower_is_better=True, boundary=3.0
        )
        dash.registry.move_rollout(
            rollout.id, action="waiting", step=0, share=0.25, state="running", reason=f"undecided at look {look}",
            evidence={"look": look, "guards": [result.record()]},
        )  # fmt: skip
    try:
        page = (await dash.client.get("/ui/deployments")).text
        rates, interval = chart_data(page)
        assert [p[1] for p in rates["series"][0]["points"]] == [0.03, 0.02]  # the canary's error rate per look
        worse, upper, lower = (s["points"] for s in interval["series"])
        assert all(lo[1] < w[1] < up[1] for w, up, lo in zip(worse, upper, lower, strict=True))
        assert "error_rate: canary 2.0% of 250 vs champion 0.1% of 750" in page
    finally:
        await close(dash)
