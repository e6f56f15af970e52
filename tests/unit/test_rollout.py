"""Deployments that serve and canary rollouts: a simulated population of users drives a worse canary to rollback
and a better one to promotion through the real gateway, the registry and the monitor's store."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from forgepilot.assist import Assistant
from forgepilot.backends.base import ChatRequest, Completion, CompletionRequest
from forgepilot.backends.fake import FakeBackend
from forgepilot.config import load_settings
from forgepilot.deploy import (
    DeploymentRouter,
    RolloutController,
    RolloutSpecError,
    load_rollout_spec,
    look_boundary,
    spent,
    user_bucket,
)
from forgepilot.errors import BackendUnavailable, ModelNotAvailable
from forgepilot.gateway import GatewayStore, create_app
from forgepilot.monitor import Monitoring
from forgepilot.registry import Registry, open_registry

SPEC = """schema_version: 1
name: test-canary
steps: [0.2, 0.5, 1.0]
min_events: 20
max_events: 200
alpha: 0.1
guards:
  - {metric: error_rate, margin: 0.05}
  - {metric: acceptance_rate, margin: 0.1}
"""


class Flaky(FakeBackend):
    """A model that fails a share of its requests (a seeded coin)."""

    def __init__(self, name: str, failure_rate: float, seed: int = 0) -> None:
        super().__init__(name, replies=lambda prompt: "42\n")
        self.failure_rate = failure_rate
        self.rng = random.Random(seed)

    async def complete(self, request: CompletionRequest) -> Completion:
        if self.rng.random() < self.failure_rate:
            raise BackendUnavailable(f"{self.name}: connection reset")
        return await super().complete(request)

    async def chat(self, request: ChatRequest) -> Completion:
        return await super().chat(request)


@dataclass
class World:
    client: httpx.AsyncClient
    registry: Registry
    controller: RolloutController
    router: DeploymentRouter
    monitoring: Monitoring
    assistant: Assistant
    store: GatewayStore

    async def close(self) -> None:
        await self.client.aclose()
        await self.assistant.aclose()
        for thing in (self.store, self.monitoring, self.registry):
            thing.close()


def world(state: Path, backends: list[FakeBackend], champion: str, canary: str | None) -> World:
    settings = load_settings(state_dir=state, default_model=champion, gateway={"rate_limit_per_minute": 0})
    assistant = Assistant.open(settings, preset={b.name: b for b in backends}, index=False)
    monitoring = Monitoring.open(state, settings.monitor)
    registry = open_registry(state)
    registry.set_deployment("champion", {"model": champion, "sources": []}, None)
    if canary is not None:
        registry.set_deployment("canary", {"model": canary, "sources": [], "candidate": "c-1"}, None)
    controller = RolloutController(registry, monitoring.store, monitoring.audit)
    known = frozenset(assistant.models.names())
    router = DeploymentRouter(
        registry,
        default_model=champion,
        known=known.__contains__,
        poll_s=0.0,
        on_broken_canary=controller.fail_canary,
    )
    store = GatewayStore(state / "gateway.db")
    app = create_app(
        assistant, store=store, auth_required=False, monitoring=monitoring, router=router, controller=controller
    )
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")
    return World(client, registry, controller, router, monitoring, assistant, store)


def start(w: World, tmp_path: Path, text: str = SPEC) -> None:
    path = tmp_path / "rollout.yaml"
    path.write_text(text, encoding="utf-8")
    w.controller.start(load_rollout_spec(path), default_model="fake:champion", actor="test")


BODY = {"text": "answer = ", "path": "a.py", "cursor": {"offset": 9}, "cache": False}


async def drive(w: World, accept: dict[str, float], *, requests: int, seed: int = 1) -> Counter[str]:
    """A population of 300 users: each request is one user's; users accept what they are shown at the rate of the
    deployment that answered. The controller judges every 25 requests, as a gateway's timer would."""
    rng = random.Random(seed)
    served: Counter[str] = Counter()
    for i in range(requests):
        user = f"user-{rng.randrange(300)}"
        r = await w.client.post("/v1/assist/complete", json=BODY, headers={"X-ForgePilot-User": user})
        if r.status_code == 200:
            answer = r.json()
            served[answer["deployment"]] += 1
            events: list[dict[str, Any]] = [{"type": "shown", "completion_id": answer["id"]}]
            if rng.random() < accept[answer["deployment"]]:
                events.append({"type": "accepted", "completion_id": answer["id"]})
            await w.client.post("/v1/events", json={"events": events})
        else:
            served["error"] += 1
        if i % 25 == 24:
            rollout = w.controller.tick()
            if rollout is not None and rollout.state != "running":
                break
    return served


async def test_a_worse_canary_is_rolled_back(isolated_state: Path, tmp_path: Path) -> None:
    champion = FakeBackend("fake:champion", replies=lambda prompt: "42\n")
    canary = Flaky("fake:canary", failure_rate=0.3)
    w = world(isolated_state, [champion, canary], "fake:champion", "fake:canary")
    try:
        start(w, tmp_path)
        served = await drive(w, {"champion": 0.3, "canary": 0.1}, requests=3000)
        rollout = w.registry.latest_rollout()
        assert rollout is not None and rollout.state == "rolled_back", (rollout, served)
        assert "error_rate" in rollout.reason or "acceptance_rate" in rollout.reason
        assert rollout.share == 0.0 and served["canary"] > 0
        decisions = w.registry.rollout_decisions(rollout.id)
        assert decisions[-1].action == "rolled_back" and decisions[-1].evidence["guards"]
        # Everyone is on the champion now, and the audit log says why.
        after = [
            (await w.client.post("/v1/assist/complete", json=BODY, headers={"X-ForgePilot-User": f"u{i}"})).json()
            for i in range(20)
        ]
        assert {a["deployment"] for a in after} == {"champion"}
        entry = w.monitoring.audit.last("rolled_back")
        assert entry is not None and entry.details["rollout"] == rollout.id and w.monitoring.audit.verify().ok
        assert w.registry.deployment("champion").target["model"] == "fake:champion"  # type: ignore[union-attr]
    finally:
        await w.close()


async def test_a_better_canary_is_promoted_step_by_step(isolated_state: Path, tmp_path: Path) -> None:
    champion = FakeBackend("fake:champion", replies=lambda prompt: "42\n")
    canary = FakeBackend("fake:canary", replies=lambda prompt: "42\n")
    w = world(isolated_state, [champion, canary], "fake:champion", "fake:canary")
    try:
        start(w, tmp_path)
        served = await drive(w, {"champion": 0.3, "canary": 0.5}, requests=4000)
        rollout = w.registry.latest_rollout()
        assert rollout is not None and rollout.state == "promoted", (rollout, served)
        actions = [d.action for d in w.registry.rollout_decisions(rollout.id) if d.action != "waiting"]
        assert actions == ["started", "next_step", "promoted"]
        assert w.registry.deployment("champion").target["model"] == "fake:canary"  # type: ignore[union-attr]
        models = (await w.client.get("/v1/models")).json()["deployments"]
        assert models == [
            {"alias": "champion", "model": "fake:canary", "sources": [], "candidate": "c-1", "share": 1.0}
        ]
        assert w.monitoring.audit.last("promoted") is not None
    finally:
        await w.close()


async def test_a_canary_that_cannot_load_is_rolled_back_not_an_outage(isolated_state: Path, tmp_path: Path) -> None:
    champion = FakeBackend("fake:champion", replies=lambda prompt: "42\n")
    broken = FakeBackend("fake:canary", fail_with=ModelNotAvailable("fake:canary: parts not installed"))
    w = world(isolated_state, [champion, broken], "fake:champion", "fake:canary")
    try:
        start(w, tmp_path, SPEC.replace("steps: [0.2, 0.5, 1.0]", "steps: [0.5, 1.0]"))
        answers = [
            await w.client.post("/v1/assist/complete", json=BODY, headers={"X-ForgePilot-User": f"u{i}"})
            for i in range(30)
        ]
        assert {a.status_code for a in answers} == {200}
        assert {a.json()["deployment"] for a in answers} == {"champion"}
        rollout = w.registry.latest_rollout()
        assert rollout is not None and rollout.state == "rolled_back" and "failed to load" in rollout.reason
    finally:
        await w.close()


async def test_an_alias_pointing_at_a_missing_model_serves_the_default(isolated_state: Path, tmp_path: Path) -> None:
    champion = FakeBackend("fake:champion", replies=lambda prompt: "42\n")
    w = world(isolated_state, [champion], "fake:champion", None)
    try:
        w.registry.set_deployment("champion", {"model": "llamacpp:deleted-model"}, None)
        health = (await w.client.get("/healthz")).json()
        (deployment,) = health["deployments"]
        assert deployment["model"] == "fake:champion" and "llamacpp:deleted-model" in deployment["note"]
        r = await w.client.post("/v1/assist/complete", json=BODY)
        assert r.status_code == 200 and r.json()["model"] == "fake:champion"
        # A rollout whose canary this server does not have: rolled back at once.
        w.registry.set_deployment("canary", {"model": "fake:not-here"}, None)
        start(w, tmp_path)
        assert (await w.client.post("/v1/assist/complete", json=BODY)).status_code == 200
        rollout = w.registry.latest_rollout()
        assert rollout is not None and rollout.state == "rolled_back" and "not available" in rollout.reason
    finally:
        await w.close()


def test_users_stick_to_their_side_and_the_split_follows_the_share() -> None:
    users = [f"user-{i}" for i in range(4000)]
    share = 0.25
    canary = {u for u in users if user_bucket(u, "r1") < share}
    assert 0.22 < len(canary) / len(users) < 0.28
    assert all(user_bucket(u, "r1") == user_bucket(u, "r1") for u in users[:100])
    # A rising share keeps every canary user on the canary; a changed user id is a new user (another draw).
    assert canary <= {u for u in users if user_bucket(u, "r1") < 0.5}
    moved = sum((user_bucket(u, "r1") < share) != (user_bucket(u + "-renamed", "r1") < share) for u in users)
    assert 0 < moved < len(users) / 2


def test_alpha_spending_is_strict_early_and_sums_to_alpha() -> None:
    assert spent(0.05, 1.0) == pytest.approx(0.05)
    assert spent(0.05, 0.1) < 1e-6 < spent(0.05, 0.5)
    boundaries = [look_boundary(0.05, k) for k in range(1, 11)]
    assert boundaries == sorted(boundaries, reverse=True) and boundaries[-1] > 1.645


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        (SPEC.replace("steps: [0.2, 0.5, 1.0]", "steps: [0.5, 0.2, 1.0]"), 3, "steps must rise"),
        (SPEC.replace("steps: [0.2, 0.5, 1.0]", "steps: [0.2, 0.5]"), 3, "the last step must be 1.0"),
        (SPEC.replace("{metric: error_rate, margin: 0.05}", "{metric: error_rate}"), 8, "margin"),
        (SPEC.replace("error_rate", "p_value_hacking"), 8, "metric"),
        (SPEC + "  - {metric: slow_rate, margin: 0.1}\n", 7, "latency_ms"),
        ("steps: [", 1, ""),
    ],
)
def test_a_malformed_rollout_spec_names_file_and_line(tmp_path: Path, text: str, line: int, problem: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RolloutSpecError) as caught:
        load_rollout_spec(path)
    message = str(caught.value)
    assert f"bad.yaml:{line}" in message or (line == 1 and "bad.yaml" in message), message
    assert problem in message
