"""The monitor: event store, retention, drift, degraded mode and the audit log, each on real SQLite and scipy."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from forgepilot.config import MonitorSettings
from forgepilot.monitor import (
    Accepted,
    AuditLog,
    DegradedMode,
    DomainProfile,
    Event,
    ModeChange,
    MonitorStore,
    RetentionTracker,
    ServedCompletion,
    WindowSample,
    compare,
    psi,
    record_settings,
    retained_share,
)


def served(cid: str, **kw: object) -> ServedCompletion:
    fields: dict[str, object] = {
        "id": cid,
        "served_at": time.time(),
        "deployment": "default",
        "model": "fake:a",
        "mode": "inline",
        "language": "python",
        "template_id": "complete",
        "template_version": "3",
        "prompt_tokens": 400,
        "completion_tokens": 10,
        "latency_ms": 900.0,
        "output_chars": 20,
        "empty_reason": None,
        "sources": ("related",),
    }
    fields.update(kw)
    return ServedCompletion(**fields)  # type: ignore[arg-type]


@pytest.fixture
def store(where: Callable[[str], Path | str]) -> MonitorStore:
    s = MonitorStore(where("monitor.db"), max_clock_skew_s=60)
    yield s  # type: ignore[misc]
    s.close()


# -- the event store ---------------------------------------------------------------------------------------
def test_events_are_enriched_from_the_completion_they_name_and_unknown_ones_are_kept(store: MonitorStore) -> None:
    store.record_completion(served("c1", model="fake:a", language="python"))
    store.record_completion(served("c2", model="fake:b", language="go", mode="in_block"))
    now = time.time()
    result = store.record_events(
        [
            Event("shown", completion_id="c1", shown_chars=20),
            Event("accepted", completion_id="c1", accepted_chars=20, client_time=now),
            Event("shown", completion_id="c2", shown_chars=30),
            Event("rejected", completion_id="c2"),
            Event("shown", completion_id="never-served", client_time=now - 3600),  # and an hour off
        ],
        user="alice",
        now=now,
    )
    assert (result.recorded, result.unknown_completions, result.skewed) == (5, 1, 1)
    rows = {(a.group["model"], a.group["language"]): a for a in store.acceptance(now - 10, now + 10)}
    assert rows[("fake:a", "python")].acceptance_rate == 1.0
    assert rows[("fake:a", "python")].char_acceptance_rate == 1.0
    assert rows[("fake:b", "go")].acceptance_rate == 0.0 and rows[("fake:b", "go")].rejected == 1
    assert rows[(None, None)].shown == 1  # the unknown completion, grouped apart
    skew = store.conn.execute("SELECT skew_s FROM events WHERE completion_id = 'never-served'").fetchone()[0]
    assert skew == pytest.approx(3600)
    # The window is the server's receipt time: the skewed client clock does not move the event out of it.
    assert sum(a.shown for a in store.acceptance(now - 1, now + 1, by=())) == 3


def test_acceptance_groups_by_what_is_asked_and_rejects_other_columns(store: MonitorStore) -> None:
    from forgepilot.errors import UserError

    for i, version in enumerate(["1", "1", "2", "2"]):
        store.record_completion(served(f"c{i}", template_version=version))
    now = time.time()
    store.record_events([Event("shown", completion_id=f"c{i}") for i in range(4)], now=now)
    store.record_events([Event("accepted", completion_id="c0")], now=now)
    by_version = {
        a.group["template_version"]: a.acceptance_rate for a in store.acceptance(0, now + 1, ["template_version"])
    }
    assert by_version == {"1": 0.5, "2": 0.0}
    with pytest.raises(UserError, match="cannot group by"):
        store.acceptance(0, now + 1, ["model; DROP TABLE events"])


def test_retention_rates_per_checkpoint(store: MonitorStore) -> None:
    store.record_completion(served("c1"))
    now = time.time()
    store.record_events(
        [
            Event("retained", completion_id="c1", after_s=30, retained_share=1.0),
            Event("retained", completion_id="c1", after_s=120, retained_share=0.3),
            Event("retained", completion_id="c1", after_s=600, reason="document_closed"),
        ],
        now=now,
    )
    rows = {r.after_s: r for r in store.retention(0, now + 1, ["model"], threshold=0.5)}
    assert rows[30].retention_rate == 1.0 and rows[120].retention_rate == 0.0
    assert rows[600].checked == 0 and rows[600].unknown == 1 and rows[600].retention_rate is None


def test_latency_percentiles_and_completions_written_in_the_background(tmp_path: Path) -> None:
    store = MonitorStore(tmp_path / "m.db")
    for i in range(100):
        store.record_completion(served(f"c{i}", latency_ms=float(i + 1), empty_reason="empty" if i < 5 else None))
    deadline = time.monotonic() + 10
    other = sqlite3.connect(tmp_path / "m.db")
    while other.execute("SELECT count(*) FROM completions").fetchone()[0] < 100 and time.monotonic() < deadline:
        time.sleep(0.05)  # the writer thread commits within about a second, without an explicit flush
    assert other.execute("SELECT count(*) FROM completions").fetchone()[0] == 100
    other.close()
    (row,) = store.latency(0, time.time() + 1)
    assert row.requests == 100 and row.p50_ms == pytest.approx(50.5) and row.p95_ms == pytest.approx(95.05)
    assert row.empty == 5
    store.close()


def test_legacy_gateway_events_move_over_once(tmp_path: Path) -> None:
    legacy = sqlite3.connect(tmp_path / "gateway.db")
    legacy.execute(
        "CREATE TABLE events (id INTEGER PRIMARY KEY, received_at REAL, type TEXT, completion_id TEXT, api_key TEXT,"
        " model TEXT, mode TEXT, language TEXT, template_id TEXT, template_version TEXT, shown_chars INTEGER,"
        " accepted_chars INTEGER, latency_ms REAL, payload TEXT)"
    )
    legacy.execute(
        "INSERT INTO events(received_at, type, model, shown_chars, payload) VALUES (1.0, 'shown', 'm', 3, '{}')"
    )
    legacy.commit()
    legacy.close()
    store = MonitorStore(tmp_path / "monitor.db")
    assert store.import_legacy_events(tmp_path / "gateway.db") == 1
    assert store.import_legacy_events(tmp_path / "gateway.db") == 0  # never twice
    assert store.event_counts() == {"shown": 1}
    (row,) = store.acceptance(0, 7200, ["model", "mode"])  # moved into the hourly counts too
    assert row.group == {"model": "m", "mode": None} and row.shown == 1
    store.close()


def test_hourly_counts_and_edge_hours_add_up_to_the_events(store: MonitorStore) -> None:
    rng = random.Random(5)
    base = 1_700_000_000.0
    for i in range(20):
        store.record_completion(served(f"c{i}", model=f"m{i % 3}", language=rng.choice(["python", "go", None])))
    sent: list[tuple[float, Event]] = []
    for _ in range(60):  # batches received at random times over ten hours
        at = base + rng.random() * 36_000
        batch = [
            Event(
                rng.choice(["shown", "accepted", "partially_accepted", "rejected"]),
                completion_id=f"c{rng.randrange(25)}",  # some unknown
                shown_chars=rng.randrange(100),
                accepted_chars=rng.randrange(50),
            )
            for _ in range(rng.randrange(1, 6))
        ]
        store.record_events(batch, now=at)
        sent += [(at, e) for e in batch]
    models = {f"c{i}": f"m{i % 3}" for i in range(20)}
    for _ in range(30):
        since = base + rng.random() * 30_000
        until = since + rng.random() * 20_000
        got = {a.group["model"]: a for a in store.acceptance(since, until, ["model"])}
        inside = [e for at, e in sent if since <= at < until]
        expected_models = {models.get(e.completion_id or "") for e in inside}
        assert set(got) == expected_models
        for model in expected_models:
            mine = [e for e in inside if models.get(e.completion_id or "") == model]
            row = got[model]
            assert row.shown == sum(e.type == "shown" for e in mine)
            assert row.rejected == sum(e.type == "rejected" for e in mine)
            assert row.shown_chars == sum(e.shown_chars or 0 for e in mine if e.type == "shown")
            assert row.accepted_chars == sum(
                e.accepted_chars or 0 for e in mine if e.type in ("accepted", "partially_accepted")
            )


def test_query_plans_use_the_indexes(tmp_path: Path) -> None:
    store = MonitorStore(tmp_path / "monitor.db")
    plans = store.query_plans()
    store.close()
    assert any("event_hours" in line for line in plans["acceptance"])
    assert any("COVERING INDEX events_window" in line for line in plans["acceptance_edges"])
    assert any("events_retention" in line for line in plans["retention"])
    assert any("completions_time" in line for line in plans["latency"])


# -- retention ---------------------------------------------------------------------------------------------
def test_retained_share_exact_edited_and_gone() -> None:
    accepted = "    total = sum(item.price for item in items)\n"
    doc = "def f(items):\n" + accepted + "    return total\n"
    assert retained_share(accepted, doc, offset=14) == 1.0
    edited = doc.replace("item.price", "item.cost")
    assert 0.7 < retained_share(accepted, edited, offset=14) < 1.0
    moved = "# a long comment added above\n" * 20 + doc  # lines added above: still found in the window
    assert retained_share(accepted, moved, offset=14) == 1.0
    rewritten = "def f(items):\n    return len(items)\n"
    assert retained_share(accepted, rewritten, offset=14) < 0.6


async def test_tracker_checks_at_each_checkpoint_and_reports_closed_documents() -> None:
    documents = {"file:///a.py": "x = compute()\n"}
    events: list[Event] = []

    async def emit(event: Event) -> None:
        events.append(event)

    tracker = RetentionTracker(documents.get, emit, checkpoints_s=(0.05, 0.15, 0.3))
    tracker.track(Accepted("c1", "file:///a.py", "compute()", 4, time.monotonic(), model="fake:a"))
    await asyncio.sleep(0.1)
    documents["file:///a.py"] = "x = other_thing()\n"  # the user rewrote it
    await asyncio.sleep(0.1)
    del documents["file:///a.py"]  # and closed it (not on disk either)
    await asyncio.sleep(0.25)
    assert [e.after_s for e in events] == [0.05, 0.15, 0.3]
    assert events[0].retained_share == 1.0 and events[0].model == "fake:a"
    assert events[1].retained_share is not None and events[1].retained_share < 0.7
    assert events[2].retained_share is None and events[2].reason == "document_closed"
    assert len(tracker) == 0
    await tracker.aclose()


# -- drift -------------------------------------------------------------------------------------------------
def sample(rng: random.Random, n: int, languages: list[str], tokens: float, accepted: float) -> WindowSample:
    langs = [rng.choice(languages) for _ in range(n)]
    shown = n
    return WindowSample(
        languages=langs,
        prompt_tokens=[int(rng.gauss(tokens, tokens / 5)) for _ in range(n)],
        output_chars=[int(rng.gauss(40, 8)) for _ in range(n)],
        sources=[("related", "similar") if rng.random() < 0.5 else () for _ in range(n)],
        empty_reasons=["answered"] * n,
        shown=shown,
        accepted=int(shown * accepted),
    )


def test_same_traffic_does_not_drift_and_a_shift_alerts() -> None:
    settings = MonitorSettings()
    rng = random.Random(7)
    reference = sample(rng, 600, ["python", "go"], 800, 0.3)
    same = compare(reference, sample(rng, 400, ["python", "go"], 800, 0.3), settings)
    assert same.alerts == [], same.features
    shifted = compare(reference, sample(rng, 400, ["typescript", "python"], 1600, 0.1), settings)
    alerted = {line.split(":")[0] for line in shifted.alerts}
    assert {"language", "prompt_tokens", "acceptance"} <= alerted
    assert "output_chars" not in alerted and "context_sources" not in alerted


def test_small_windows_are_too_few_not_alerts() -> None:
    rng = random.Random(1)
    report = compare(sample(rng, 10, ["python"], 800, 0.3), sample(rng, 10, ["rust"], 3000, 0.0), MonitorSettings())
    assert {f.status for f in report.features} == {"too_few"} and report.alerts == []


def test_psi_matches_its_definition() -> None:
    assert psi([50, 50], [50, 50]) == pytest.approx(0.0)
    # sum((q - p) ln(q / p)) for p = (0.5, 0.5), q = (0.9, 0.1)
    assert psi([50, 50], [90, 10]) == pytest.approx(0.4 * 0.5877866649 + (-0.4) * -1.6094379124, rel=1e-6)


def test_domain_profile_flags_what_the_gate_and_the_monitor_both_flag() -> None:
    domain = DomainProfile.from_card({"counts": {"language": {"python": 10}}, "tokens": {"max": 500}})
    assert domain.reasons("python", 400) == []
    assert domain.reasons("go", 400) == ["language go absent from training data"]
    assert "prompt tokens" in domain.reasons("python", 1200, length_factor=2.0)[0]
    rng = random.Random(3)
    report = compare(
        sample(rng, 100, ["python"], 400, 0.3), sample(rng, 100, ["go"], 400, 0.3), MonitorSettings(), domain=domain
    )
    ood = next(f for f in report.features if f.name == "out_of_domain")
    assert ood.status == "alert" and ood.current["rate"] == 1.0 and ood.reference["rate"] == 0.0


# -- degraded mode -----------------------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_degrades_when_both_windows_burn_and_recovers_with_hysteresis() -> None:
    settings = MonitorSettings(
        slo_latency_s=1.0,
        slo_target=0.9,
        burn_long_s=600,
        burn_short_s=60,
        degrade_burn=5.0,
        recover_burn=1.0,
        min_degraded_s=120,
        min_requests=10,
        degraded_prompt_tokens=256,
    )
    clock = Clock()
    changes: list[ModeChange] = []
    mode = DegradedMode(settings, fast_model="fake:fast", clock=clock, on_change=changes.append)
    for _ in range(100):  # a healthy morning
        clock.now += 3
        mode.observe(0.4)
    assert not mode.degraded and mode.completion_overrides().model is None
    for _ in range(9):  # a burst too short to count yet (min_requests)
        clock.now += 0.1
        mode.observe(5.0)
    assert not mode.degraded
    for _ in range(120):  # the backend slows down for good
        clock.now += 1
        mode.observe(5.0, ok=True)
    status = mode.status()
    assert status.degraded and status.burn["short"] >= 5 and status.burn["long"] >= 5
    assert mode.completion_overrides().model == "fake:fast" and mode.completion_overrides().prompt_tokens == 256
    assert mode.chat_paused()
    for _ in range(30):  # degraded mode helps at once, but the mode holds for min_degraded_s
        clock.now += 1
        mode.observe(0.3)
    assert mode.degraded
    clock.now += 120
    for _ in range(20):
        clock.now += 1
        mode.observe(0.3)
    assert not mode.degraded
    assert [c.mode for c in changes] == ["degraded", "normal"]
    assert "burn" in changes[0].reason


def test_errors_burn_the_budget_like_slow_answers() -> None:
    settings = MonitorSettings(burn_long_s=60, burn_short_s=10, degrade_burn=2.0, min_requests=5, slo_target=0.9)
    clock = Clock()
    mode = DegradedMode(settings, clock=clock)
    for _ in range(10):
        clock.now += 0.5
        mode.observe(0.1, ok=False)
    assert mode.degraded and mode.completion_overrides().model is None  # no fast tier configured: same model


# -- the audit log -----------------------------------------------------------------------------------------
def test_audit_chain_verifies_and_refuses_updates(where: Callable[[str], Path | str]) -> None:
    log = AuditLog(where("audit.db"))
    log.append("key_created", actor="alice", target="key:ci")
    log.append("promoted", actor="bob", target="champion", reason="decision PASS", details={"model": "m"})
    log.append("degraded", actor="slo-burn-rate", reason="burn 20x")
    verdict = log.verify()
    assert verdict.ok and verdict.entries == 3
    assert [e.action for e in log.entries()] == ["degraded", "promoted", "key_created"]
    with pytest.raises(log.errors, match="append-only"):
        with log.transaction() as conn:
            conn.execute("UPDATE audit SET actor = 'mallory' WHERE seq = 2")
    with pytest.raises(log.errors, match="append-only"):
        with log.transaction() as conn:
            conn.execute("DELETE FROM audit WHERE seq = 1")
    assert log.verify().ok
    log.close()


def _tamper(where: Path | str, *statements: str) -> None:
    """Edit the log behind its back, as someone with the database's own access could."""
    if isinstance(where, str):
        import psycopg

        with psycopg.connect(where, autocommit=True) as pg:
            pg.execute("SET search_path TO fp_audit")
            pg.execute("ALTER TABLE audit DISABLE TRIGGER USER")
            for sql in statements:
                pg.execute(sql)  # type: ignore[arg-type]
        return
    conn = sqlite3.connect(where)
    conn.execute("DROP TRIGGER audit_no_update")
    conn.execute("DROP TRIGGER audit_no_delete")
    for sql in statements:
        conn.execute(sql)
    conn.commit()
    conn.close()


@pytest.mark.parametrize(
    ("statements", "seq", "problem"),
    [
        (["UPDATE audit SET reason = 'decision FAIL' WHERE seq = 2"], 2, "changed after it was written"),
        (["DELETE FROM audit WHERE seq = 2"], 2, "entry 2 is missing"),
        (["DELETE FROM audit WHERE seq = 4"], 4, "cut off the end"),
    ],
)
def test_tampering_is_found_and_located(
    where: Callable[[str], Path | str], statements: list[str], seq: int, problem: str
) -> None:
    path = where("audit.db")
    log = AuditLog(path)
    for i in range(4):
        log.append("promoted", actor="bob", target="champion", reason=f"decision PASS {i}")
    log.close()
    _tamper(path, *statements)
    log = AuditLog(path)
    verdict = log.verify()
    log.close()
    assert not verdict.ok and verdict.seq == seq and problem in (verdict.problem or "")


def test_settings_changes_are_audited_only_when_they_change(where: Callable[[str], Path | str]) -> None:
    log = AuditLog(where("audit.db"))
    first = record_settings(log, {"gateway": {"port": 8765}, "monitor": {"slo_target": 0.99}}, actor="ops")
    assert first is not None and first.reason == "first start"
    assert record_settings(log, {"gateway": {"port": 8765}, "monitor": {"slo_target": 0.99}}, actor="ops") is None
    changed = record_settings(log, {"gateway": {"port": 9000}, "monitor": {"slo_target": 0.99}}, actor="ops")
    assert changed is not None and changed.details["changed"] == {"gateway.port": [8765, 9000]}
    assert log.verify().ok
    log.close()
