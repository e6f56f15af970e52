"""The stores behind one interface on both engines: every test here runs on SQLite and on a real PostgreSQL server
(``where`` gives each backend's location). Two store objects on one location stand for two processes (two
gateways, or a gateway and the CLI): each has its own connections, as separate processes would."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from forgepilot.db import translate
from forgepilot.errors import DatabaseUnavailable, UserError
from forgepilot.evals.store import CachedGeneration, EvalStore
from forgepilot.gateway import GatewayStore, SharedRateLimiter
from forgepilot.gateway.errors import HTTPError
from forgepilot.monitor import AuditLog
from forgepilot.registry import Registry

Where = Callable[[str], Path | str]


def test_placeholders_become_numbered_outside_literals_names_and_comments() -> None:
    sql = "SELECT '?', \"a?\", 'it''s ?' -- why?\nFROM t WHERE a = ? AND b LIKE ? || '%'"
    assert translate(sql) == "SELECT '?', \"a?\", 'it''s ?' -- why?\nFROM t WHERE a = $1 AND b LIKE $2 || '%'"


# -- keys and rate limits ----------------------------------------------------------------------------------
def test_keys_are_shared_hashed_and_unique(where: Where) -> None:
    a, b = GatewayStore(where("gateway.db")), GatewayStore(where("gateway.db"))
    key = a.create_key("ci", rate_per_minute=5, role="admin")
    found = b.verify(key)
    assert found is not None and found.name == "ci" and found.role == "admin" and found.rate_per_minute == 5
    with pytest.raises(UserError, match="exists"):
        b.create_key("ci")
    b.revoke("ci")
    assert a.verify(key) is None and not a.has_keys()
    with pytest.raises(UserError, match="no active API key"):
        a.revoke("ci")
    a.close()
    b.close()


def test_a_rate_limit_holds_across_gateways(where: Where) -> None:
    a, b = GatewayStore(where("gateway.db")), GatewayStore(where("gateway.db"))
    now = [1000.0]
    limiters = [SharedRateLimiter(s, 6, clock=lambda: now[0]) for s in (a, b)]
    allowed = 0
    for i in range(10):  # alternate between the two gateways: one bucket of 6
        try:
            limiters[i % 2].check("key:ci")
            allowed += 1
        except HTTPError as exc:
            assert exc.status == 429 and exc.headers["Retry-After"] == "10"
    assert allowed == 6
    now[0] += 10.0  # 6 a minute: one token every 10 s
    limiters[1].check("key:ci")
    with pytest.raises(HTTPError):
        limiters[0].check("key:ci")
    limiters[0].check("key:other")  # another caller has a bucket of its own
    now[0] += 3600.0
    assert a.drop_idle_buckets(now[0] - 120) == 2
    a.close()
    b.close()


def test_concurrent_spends_never_exceed_the_bucket(where: Where) -> None:
    stores = [GatewayStore(where("gateway.db")) for _ in range(4)]
    allowed: list[int] = []

    def spend(store: GatewayStore) -> None:
        for _ in range(10):
            if store.take_token("ip:1.2.3.4", 15, time.time()) is None:
                allowed.append(1)

    threads = [threading.Thread(target=spend, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 15 <= len(allowed) <= 16  # 15 at once, plus at most one refilled in the test's own seconds
    for s in stores:
        s.close()


# -- registry -------------------------------------------------------------------------------------------------
def test_registry_entities_lineage_and_deployments(where: Where) -> None:
    reg = Registry(where("registry.db"))
    model = reg.put("model", "abc123def", "qwen", {"size": "0.5B"})
    data = reg.put("dataset", "d1", "requests@2.32.3", {"rows": 3})
    reg.link(model, "trained_on", data)
    reg.link(model, "trained_on", data)  # twice is once
    assert reg.get("model", "abc1").name == "qwen"  # a unique id prefix is enough
    assert reg.get("model", "qwen").id == "abc123def"
    assert [e.type for e in reg.entities()] == ["dataset", "model"]
    assert [e.id for e in reg.entities("model")] == ["abc123def"]
    assert len(reg.edges_from("model", "abc123def")) == 1
    assert reg.lineage("model", "abc123def")["links"][0]["name"] == "requests@2.32.3"
    before = reg.serving_version()
    reg.set_deployment("champion", {"model": "qwen"}, None)
    reg.set_deployment("champion", {"model": "tuned"}, None)
    other = Registry(where("registry.db"))
    assert other.deployment("champion").target == {"model": "tuned"}  # type: ignore[union-attr]
    assert [h["target"]["model"] for h in other.history("champion")] == ["tuned", "qwen"]
    assert other.serving_version() > before
    assert other.counts() == {"dataset": 1, "deployment": 1, "model": 1}
    reg.close()
    other.close()


def test_one_rollout_decision_wins_when_two_processes_decide_at_once(where: Where) -> None:
    regs = [Registry(where("registry.db")) for _ in range(4)]
    rollout = regs[0].start_rollout({"steps": [0.1, 0.5, 1.0]}, "sha", "spec.yaml", {"model": "a"}, {"model": "b"})
    with pytest.raises(UserError, match="still running"):
        regs[1].start_rollout({"steps": [0.1]}, "sha", "spec.yaml", {"model": "a"}, {"model": "c"})
    results: list[object] = []

    def decide(reg: Registry) -> None:
        results.append(
            reg.move_rollout(
                rollout.id,
                action="promoted",
                step=0,
                share=0.0,
                state="promoted",
                reason="ok",
                evidence={},
                promote=True,
            )  # fmt: skip
        )

    threads = [threading.Thread(target=decide, args=(r,)) for r in regs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r is not None for r in results) == 1
    assert [d.action for d in regs[0].rollout_decisions(rollout.id)] == ["started", "promoted"]
    assert regs[2].deployment("champion").target == {"model": "b"}  # type: ignore[union-attr]
    for r in regs:
        r.close()


# -- evaluation runs --------------------------------------------------------------------------------------------
def test_eval_runs_results_and_generation_cache(where: Where) -> None:
    store = EvalStore(where("evals.db"))
    suite = {"name": "humaneval", "kind": "exec", "sha256": "s", "cases": 2}
    run_id = store.create_run(identity="i", suite=suite, model="m", config={"k": 1})
    store.add_result(run_id, "c1", 0, "ok", 1.0, {"samples": 1})
    store.add_result(run_id, "c1", 0, "ok", 0.5, {"samples": 2})  # a retried case replaces its result
    assert store.unfinished("i") is not None and store.done_cases(run_id) == {"c1"}
    store.add_result(run_id, "c2", 1, "error", None, {})
    store.set_status(run_id, "complete", {"pass@1": 0.25})
    run = store.run(run_id[:12])
    assert run.status == "complete" and run.summary == {"pass@1": 0.25} and run.cases_done == 2
    assert [r["score"] for r in store.results(run_id)] == [0.5, None]
    assert [r.id for r in store.runs(suite="humaneval")] == [run_id] and store.runs(suite="other") == []
    assert [r.id for r in store.runs()] == [run_id]
    assert store.unfinished("i") is None
    store.put_generation("k", "m", CachedGeneration("a", "stop", {"n": 1}, {"total_s": 1.0}, None))
    store.put_generation("k", "m", CachedGeneration("b", "stop", {"n": 2}, {"total_s": 2.0}, 0.01))
    cached = store.generation("k")
    assert cached is not None and cached.text == "b" and cached.cost_usd == 0.01
    store.close()


# -- the audit log across processes -----------------------------------------------------------------------------
def test_the_audit_chain_stays_whole_when_processes_append_at_once(where: Where) -> None:
    logs = [AuditLog(where("audit.db")) for _ in range(4)]

    def append(log: AuditLog, n: int) -> None:
        for i in range(5):
            log.append("settings_changed", actor=f"p{n}", reason=str(i))

    threads = [threading.Thread(target=append, args=(log, n)) for n, log in enumerate(logs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    verdict = logs[0].verify()
    assert verdict.ok and verdict.entries == 20
    for log in logs:
        log.close()


# -- PostgreSQL down -----------------------------------------------------------------------------------------------
@pytest.mark.postgres
def test_an_unreachable_server_is_a_clear_error() -> None:
    from tests.helpers.postgres import free_port

    url = f"postgresql://forgepilot:secret@127.0.0.1:{free_port()}/nothing"
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable, match="cannot connect to PostgreSQL") as caught:
        Registry(url)
    assert "secret" not in caught.value.one_line() and time.monotonic() - started < 30


@pytest.mark.postgres
def test_doctor_names_the_shared_database_without_its_password(postgres_admin_url: str) -> None:
    from forgepilot.cli.doctor import _database_check

    check = _database_check(postgres_admin_url.replace("forgepilot@", "forgepilot:pw@"))
    assert check.status == "ok" and check.detail.startswith("PostgreSQL ") and "pw" not in check.detail
    assert _database_check(None).detail.startswith("SQLite")
