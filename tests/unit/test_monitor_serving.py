"""The monitor in the serving path: the gateway's events and completions, degraded mode end to end, the audit of
failed authentications, and the `monitor` / `audit` commands reading what serving wrote."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from forgepilot.assist import Assistant
from forgepilot.backends.fake import FakeBackend
from forgepilot.cli import main
from forgepilot.config import load_settings
from forgepilot.gateway import GatewayStore, create_app
from forgepilot.monitor import AuditLog, Monitoring, audit_db

BODY = {"text": "def add(a, b):\n    ", "path": "m.py", "cursor": {"offset": 19}}


async def open_gateway(
    state: Path, *, auth: bool = False, **monitor: Any
) -> tuple[httpx.AsyncClient, Assistant, GatewayStore, Monitoring]:
    main_model = FakeBackend("fake:big", replies=lambda prompt: "return a + b\n")
    fast = FakeBackend("fake:fast", replies=lambda prompt: "return a+b\n")
    settings = load_settings(state_dir=state, default_model="fake:big", assist={"fast": "fake:big"}, monitor=monitor)
    assistant = Assistant.open(settings, preset={"fake:big": main_model, "fake:fast": fast}, index=False)
    store = GatewayStore(state / "gateway.db")
    monitoring = Monitoring.open(state, settings.monitor, fast_model="fake:fast")
    app = create_app(assistant, store=store, auth_required=auth, monitoring=monitoring)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway")
    return client, assistant, store, monitoring


@pytest.fixture
async def slow_gateway(isolated_state: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Monitoring]]:
    # Every completion misses an SLO of one microsecond: the budget burns from the first requests.
    client, assistant, store, monitoring = await open_gateway(
        isolated_state,
        slo_latency_s=1e-6,
        burn_long_s=60,
        burn_short_s=10,
        min_requests=3,
        degrade_burn=5,
        min_degraded_s=3600,
        degraded_prompt_tokens=64,
    )
    yield client, monitoring
    await client.aclose()
    await assistant.aclose()
    store.close()
    monitoring.close()


async def test_burning_the_budget_degrades_serving_visibly(
    slow_gateway: tuple[httpx.AsyncClient, Monitoring], isolated_state: Path
) -> None:
    client, monitoring = slow_gateway
    first = (await client.post("/v1/assist/complete", json=BODY)).json()
    assert first["degraded"] is False and first["model"] == "fake:big" and first["deployment"] == "champion"
    for _ in range(3):
        await client.post("/v1/assist/complete", json=BODY)
    health = (await client.get("/healthz")).json()
    assert health["status"] == "degraded" and health["mode"]["degraded"] is True
    assert "burn" in health["mode"]["reason"] and health["mode"]["burn_rate"]["short"] >= 5

    answer = (await client.post("/v1/assist/complete", json=BODY)).json()
    assert answer["degraded"] is True and answer["model"] == "fake:fast"  # moved to the fast tier

    paused = await client.post("/v1/assist/explain", json={"code": "x = 1"})
    assert paused.status_code == 503 and paused.json()["error"]["code"] == "degraded"
    assert int(paused.headers["Retry-After"]) > 0
    chat = await client.post(
        "/v1/chat/completions", json={"model": "fake:big", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert chat.status_code == 503

    metrics = (await client.get("/metrics")).text
    assert "forgepilot_degraded 1.0" in metrics and 'forgepilot_slo_burn_rate{window="short"}' in metrics

    changes = monitoring.store.mode_changes()
    assert [c.mode for c in changes] == ["degraded"]
    entry = monitoring.audit.last("degraded")
    assert entry is not None and entry.actor == "slo-burn-rate" and monitoring.audit.verify().ok


async def test_prompt_budget_shrinks_in_degraded_mode(
    slow_gateway: tuple[httpx.AsyncClient, Monitoring],
) -> None:
    client, monitoring = slow_gateway
    long_file = "".join(f"value_{i} = compute_{i}(value_{i - 1})\n" for i in range(1, 400)) + "def add(a, b):\n    "
    body = {"text": long_file, "path": "m.py", "cursor": {"offset": len(long_file)}}
    normal = (await client.post("/v1/assist/complete", json=body)).json()
    for _ in range(3):
        await client.post("/v1/assist/complete", json=BODY)
    degraded = (await client.post("/v1/assist/complete", json=body)).json()
    assert degraded["degraded"] is True
    assert degraded["usage"]["prompt_tokens"] <= 64 < normal["usage"]["prompt_tokens"]


async def test_served_completions_feed_events_and_retention(isolated_state: Path) -> None:
    client, assistant, store, monitoring = await open_gateway(isolated_state)
    try:
        cid = (await client.post("/v1/assist/complete", json=BODY)).json()["id"]
        now = time.time()
        r = await client.post(
            "/v1/events",
            json={
                "events": [
                    {"type": "shown", "completion_id": cid, "shown_chars": 12},
                    {"type": "accepted", "completion_id": cid, "accepted_chars": 12, "client_time": now - 7200},
                    {"type": "retained", "completion_id": cid, "after_s": 30, "retained_share": 0.9},
                    {"type": "accepted", "completion_id": "cmpl-from-another-server"},
                ]
            },
        )
        assert r.json() == {"object": "list", "recorded": 4, "unknown_completions": 1, "clock_skewed": 1}
        bad = await client.post("/v1/events", json={"events": [{"type": "retained", "completion_id": cid}]})
        assert bad.status_code == 422 and "after_s" in bad.json()["error"]["message"]
        rows = {(a.group["model"], a.group["language"]): a for a in monitoring.store.acceptance(0, now + 10)}
        assert rows[("fake:big", "python")].acceptance_rate == 1.0
        (retention,) = monitoring.store.retention(0, now + 10, ["model"])
        assert retention.group == {"model": "fake:big"} and retention.retention_rate == 1.0
        (latency,) = monitoring.store.latency(0, now + 10)
        assert latency.requests == 1 and latency.group == {"deployment": "champion", "model": "fake:big"}
    finally:
        await client.aclose()
        await assistant.aclose()
        store.close()
        monitoring.close()


async def test_failed_authentications_are_audited_once_a_minute_per_client(isolated_state: Path) -> None:
    client, assistant, store, monitoring = await open_gateway(isolated_state, auth=True)
    try:
        for _ in range(5):
            r = await client.post("/v1/assist/complete", json=BODY, headers={"Authorization": "Bearer fp-wrong"})
            assert r.status_code == 401
        await client.get("/v1/models")
        entries = monitoring.audit.entries(action="auth_failed")
        assert len(entries) == 1 and entries[0].reason == "invalid_api_key"
    finally:
        await client.aclose()
        await assistant.aclose()
        store.close()
        monitoring.close()


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


async def test_monitor_and_audit_commands_read_what_serving_wrote(
    isolated_state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    client, assistant, store, monitoring = await open_gateway(isolated_state)
    try:
        for _ in range(3):
            cid = (await client.post("/v1/assist/complete", json=BODY)).json()["id"]
            await client.post("/v1/events", json={"events": [{"type": "shown", "completion_id": cid}]})
        await client.post("/v1/events", json={"events": [{"type": "accepted", "completion_id": cid}]})
    finally:
        await client.aclose()
        await assistant.aclose()
        store.close()
        monitoring.close()
    code, out, err = run(capsys, "monitor", "--json", "--window", "1h")
    assert code == 0, err
    data = json.loads(out)
    (row,) = data["acceptance"]
    assert row["model"] == "fake:big" and row["shown"] == 3 and row["acceptance_rate"] == pytest.approx(1 / 3)
    assert data["degraded"] is False and {f["name"] for f in data["drift"]["features"]} >= {"language", "acceptance"}
    code, out, _ = run(capsys, "monitor", "--by", "model")
    assert code == 0 and "Acceptance" in out and "fake:big" in out and "33.3%" in out
    code, _, err = run(capsys, "monitor", "--window", "soon")
    assert code == 2 and "not a duration" in err

    code, out, err = run(capsys, "keys", "create", "ci")
    assert code == 0
    code, out, err = run(capsys, "audit", "--verify")
    assert code == 0 and "key_created key:ci" in out and "hash chain intact" in err
    conn = sqlite3.connect(audit_db(isolated_state))
    conn.execute("DROP TRIGGER audit_no_update")
    conn.execute("UPDATE audit SET actor = 'someone-else'")
    conn.commit()
    conn.close()
    code, _, err = run(capsys, "audit", "--verify")
    assert code == 8 and "entry 1 was changed" in err


def test_monitor_without_anything_recorded_says_what_to_do(
    isolated_state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "monitor")
    assert code == 2 and "forgepilot serve" in err
    log = AuditLog(audit_db(isolated_state))
    assert log.verify().ok and log.entries() == []
    log.close()
