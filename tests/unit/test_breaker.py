"""Circuit breakers: a dead backend's requests go to its fallback, visibly, and come back once it recovers."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from forgepilot.assist import Assistant
from forgepilot.backends.breaker import CircuitBreaker
from forgepilot.backends.fake import FakeBackend
from forgepilot.config import load_settings
from forgepilot.errors import BackendUnavailable, ConfigError
from forgepilot.gateway import GatewayStore, create_app
from forgepilot.monitor import Monitoring


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_failures_in_a_row_then_half_opens_for_one_trial() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=3, slow_s=2.0, open_s=10.0, clock=clock)
    breaker.record(False, 0.1, "refused")
    breaker.record(True, 0.1)  # a success resets the count: failures must come in a row
    for _ in range(2):
        assert breaker.allow()
        breaker.record(False, 0.1, "refused")
    assert breaker.status().state == "closed"
    assert breaker.allow()
    breaker.record(True, 5.0)  # answered, but slower than slow_s: counts as a failure
    assert breaker.status().state == "open" and not breaker.allow()
    assert breaker.status().last_error == "answered in 5.0 s (slow above 2 s)"
    clock.now += 10
    assert breaker.allow() and not breaker.allow()  # one trial at a time
    breaker.record(False, 0.1, "still refused")
    assert breaker.status().state == "open" and breaker.status().trips == 2  # opened again
    clock.now += 10
    assert breaker.allow()
    breaker.record(True, 0.5)
    assert breaker.status().state == "closed" and breaker.allow()


async def test_a_dead_backend_hands_completions_to_its_fallback(isolated_state: Path) -> None:
    dead = FakeBackend("fake:main", fail_with=BackendUnavailable("model server at 10.0.0.9:8000 refused"))
    fallback = FakeBackend("fake:small", replies=lambda prompt: "return a + b\n")
    settings = load_settings(
        state_dir=isolated_state,
        default_model="fake:main",
        assist={"fallbacks": {"fake:main": "fake:small"}, "breaker_failures": 2, "breaker_open_s": 3600},
    )
    assistant = Assistant.open(settings, preset={"fake:main": dead, "fake:small": fallback}, index=False)
    monitoring = Monitoring.open(isolated_state, settings.monitor)
    store = GatewayStore(isolated_state / "gateway.db")
    app = create_app(assistant, store=store, auth_required=False, monitoring=monitoring)
    body = {"text": "def add(a, b):\n    ", "path": "m.py", "cursor": {"offset": 19}}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
        for _ in range(2):
            r = await client.post("/v1/assist/complete", json=body)
            assert r.status_code == 503 and "refused" in r.json()["error"]["message"]
        health = (await client.get("/healthz")).json()
        assert health["breakers"]["fake:main"]["state"] == "open"
        r = await client.post("/v1/assist/complete", json=body)
        assert r.status_code == 200 and r.json()["model"] == "fake:small" and r.json()["text"] == "return a + b"
        explain = await client.post("/v1/assist/explain", json={"code": "x = 1"})
        assert explain.status_code == 200 and explain.json()["model"] == "fake:small"
        metrics = (await client.get("/metrics")).text
        assert 'forgepilot_breaker_state{model="fake:main"} 1.0' in metrics
    await assistant.aclose()
    store.close()
    monitoring.close()


def test_a_fallback_naming_an_unknown_model_is_a_config_error(isolated_state: Path) -> None:
    settings = load_settings(state_dir=isolated_state, assist={"fallbacks": {"fake:main": "fake:nope"}})
    with pytest.raises(ConfigError, match="unknown model 'fake:nope'"):
        Assistant.open(settings, preset={"fake:main": FakeBackend("fake:main")}, index=False)
