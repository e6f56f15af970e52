"""The serving path's trust boundaries: answers are never another request's, one request cannot hold the model or the
event loop, memory stays bounded, operational endpoints are closed under auth."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from forgepilot.assist import Assistant, CompletionInput
from forgepilot.backends.fake import FakeBackend
from forgepilot.backends.worker import PriorityWorker
from forgepilot.config import load_settings
from forgepilot.context import Document, OpenFile
from forgepilot.context.similar import SimilarWindows
from forgepilot.gateway import GatewayStore, create_app
from forgepilot.gateway.guard import RateLimiter
from forgepilot.monitor import Monitoring
from tests.unit.test_gateway import error_of, make_client

HELPER = "def shipping_cost(weight, zone):\n    rate = RATES[zone]\n    return weight * rate + HANDLING\n"


def echo_snippets(prompt: str) -> str:
    """An answer that depends on what the model was shown: which recent file made it into the prompt."""
    for name in ("shipping_cost", "tariff_for"):
        if name in prompt:
            return f"{name}(w, z)\n"
    return "unknown()\n"


# -- 4. the cache key covers everything that shapes the answer -----------------------------------------------------
async def test_the_completion_cache_never_answers_with_another_requests_answer(isolated_state: Path) -> None:
    backend = FakeBackend("fake:echo", replies=echo_snippets)
    assistant = Assistant(load_settings(), workspace=None, preset={backend.name: backend})
    text = "def total(weight, zone):\n    cost = "
    doc = Document.at("orders.py", text, offset=len(text), language="python")
    recent = [OpenFile("shipping.py", HELPER + "\n# weight zone rate cost total\n")]

    def ask(**kw: Any) -> CompletionInput:
        return CompletionInput(document=doc, model=backend.name, mode="inline", **kw)

    with_context = await assistant.completions.complete(ask(recent=recent))
    assert with_context.text == "shipping_cost(w, z)" and with_context.snippets
    # Same document, context switched off: not the cached answer (nor its sources) of the request before.
    without = await assistant.completions.complete(ask(recent=recent, context=False))
    assert (without.text, without.cached, without.snippets) == ("unknown()", False, [])
    # Other recent files: another prompt, another answer.
    tariff = HELPER.replace("shipping_cost", "tariff_for")
    other = await assistant.completions.complete(ask(recent=[OpenFile("tariffs.py", tariff + "# weight zone cost\n")]))
    assert other.text == "tariff_for(w, z)" and not other.cached
    # The very same request again is answered from the cache, with this request's own sources and timings.
    again = await assistant.completions.complete(ask(recent=recent))
    assert again.cached and again.text == with_context.text and again.snippets == with_context.snippets
    await assistant.aclose()


# -- 6. one request cannot hold the model ---------------------------------------------------------------------------
async def test_max_tokens_above_the_context_window_is_a_clear_400(isolated_state: Path) -> None:
    backend = FakeBackend("fake:test", replies=["x"], max_context=2048)
    client, assistant, store = make_client(isolated_state, backend)
    try:
        r = await client.post(
            "/v1/completions", json={"model": "fake:test", "prompt": "a", "max_tokens": 1_000_000_000}
        )
        err = error_of(r)
        assert r.status_code == 400 and err["param"] == "max_tokens" and err["code"] == "max_tokens_too_large"
        assert "2048" in str(err["message"])
        messages = [{"role": "user", "content": "hi"}]
        r = await client.post(
            "/v1/chat/completions", json={"model": "fake:test", "messages": messages, "max_completion_tokens": 10**9}
        )
        assert r.status_code == 400 and error_of(r)["param"] == "max_completion_tokens"
        r = await client.post("/v1/assist/explain", json={"code": "x = 1", "max_tokens": 4096})
        assert r.status_code == 400 and error_of(r)["code"] == "max_tokens_too_large"
        ok = await client.post("/v1/completions", json={"model": "fake:test", "prompt": "a", "max_tokens": 2048})
        assert ok.status_code == 200
    finally:
        await client.aclose()
        await assistant.aclose()
        store.close()


async def test_a_request_stops_at_its_wall_clock_budget(isolated_state: Path) -> None:
    slow = FakeBackend("fake:slow", replies=[" ".join(["word"] * 200)], delay_s=0.02)
    client, assistant, store = make_client(isolated_state, slow, request_budget_s=0.3)
    try:
        started = time.monotonic()
        r = await client.post("/v1/completions", json={"model": "fake:slow", "prompt": "a", "max_tokens": 1000})
        took = time.monotonic() - started
        assert r.status_code == 200 and r.json()["choices"][0]["finish_reason"] == "length"
        assert took < 4.0  # 400 tokens at 20 ms each would take 8 s
    finally:
        await client.aclose()
        await assistant.aclose()
        store.close()


def test_the_model_queue_serves_the_most_urgent_first_not_fifo() -> None:
    worker = PriorityWorker("test-queue")
    gate = threading.Event()
    order: list[str] = []
    try:
        worker.submit(gate.wait, rank=2)  # holds the thread while the queue fills
        futures = [worker.submit(lambda n=n: order.append(n), rank) for n, rank in (("eval", 2), ("chat", 1))]
        futures.append(worker.submit(lambda: order.append("completion"), 0))
        gate.set()
        for f in futures:
            f.result(timeout=5)
        assert order == ["completion", "chat", "eval"]
        # A running job can hand the thread to a more urgent one (what a generation does between tokens).
        assert worker.pop_more_urgent(1) is None
        blocker = threading.Event()
        worker.submit(blocker.wait, rank=1)
        urgent = worker.submit(lambda: "urgent", rank=0)
        job = None
        for _ in range(100):
            job = worker.pop_more_urgent(1)
            if job is not None:
                break
            time.sleep(0.01)
        assert job is not None
        job.run()
        assert urgent.result(timeout=1) == "urgent"
        blocker.set()
    finally:
        gate.set()
        worker.shutdown()


# -- 7. the event loop keeps answering while a context build is held ------------------------------------------------
class _Server:
    def __init__(self, app: Any) -> None:
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        for _ in range(500):
            if self.server.started:
                break
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def held_build(isolated_state: Path) -> Iterator[tuple[str, threading.Event, threading.Event]]:
    backend = FakeBackend("fake:test", replies=lambda prompt: "return a + b\n")
    settings = load_settings(state_dir=isolated_state, default_model=backend.name)
    assistant = Assistant.open(settings, preset={backend.name: backend}, index=False)
    entered, release = threading.Event(), threading.Event()
    build = assistant.builder.build

    def held(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        release.wait(timeout=30)
        return build(*args, **kwargs)

    assistant.builder.build = held  # type: ignore[method-assign]
    store = GatewayStore(isolated_state / "gateway.db")
    monitoring = Monitoring.open(isolated_state, settings.monitor)
    with _Server(create_app(assistant, store=store, auth_required=False, monitoring=monitoring)) as url:
        yield url, entered, release
        release.set()
    store.close()
    monitoring.close()
    asyncio.run(assistant.aclose())


def test_health_and_other_streams_answer_while_a_context_build_is_held(
    held_build: tuple[str, threading.Event, threading.Event],
) -> None:
    url, entered, release = held_build
    body = {"text": "def add(a, b):\n    ", "cursor": {"offset": 19}, "path": "m.py"}
    results: list[httpx.Response] = []
    held = threading.Thread(
        target=lambda: results.append(httpx.post(f"{url}/v1/assist/complete", json=body, timeout=30))
    )
    held.start()
    assert entered.wait(timeout=10)  # the completion is inside its context build, which does not return
    with httpx.Client(base_url=url, timeout=5) as client:
        assert client.get("/healthz").json()["status"] == "ok"
        streamed = client.post(
            "/v1/completions", json={"model": "fake:test", "prompt": "x", "max_tokens": 8, "stream": True}
        )
        assert streamed.status_code == 200 and streamed.text.rstrip().endswith("data: [DONE]")
    release.set()
    held.join(timeout=30)
    assert results and results[0].status_code == 200 and results[0].json()["text"] == "return a + b"


# -- 9. bounded growth ----------------------------------------------------------------------------------------------
def test_similar_windows_intern_a_bounded_number_of_identifiers() -> None:
    windows = SimilarWindows(window=10, max_tokens=1000)
    for i in range(50):
        text = "\n".join(f"name_{i}_{j} = value_{i}_{j}" for j in range(100))  # 200 new identifiers per file
        windows.best("name value", [OpenFile(f"f{i}.py", text)])
        assert windows.interned <= 1000 + 200
    # Still right after the reset: the best window of a file is found.
    found = windows.best("alpha beta", [OpenFile("g.py", "alpha = beta\n" + "z = 0\n" * 30)])
    assert found and found[0].start_line == 1


def test_the_rate_limiter_forgets_idle_callers_and_caps_the_rest() -> None:
    now = [0.0]
    limiter = RateLimiter(60, max_callers=500, clock=lambda: now[0])
    for i in range(2000):
        limiter.check(f"ip:10.0.{i // 256}.{i % 256}")
    assert len(limiter) <= 501
    now[0] += 61.0  # a minute later every bucket has refilled: none is worth keeping
    limiter.check("ip:10.9.9.9")
    assert len(limiter) == 1


# -- 10. exposure under auth ----------------------------------------------------------------------------------------
async def test_operational_endpoints_are_closed_under_auth_unless_made_public(isolated_state: Path) -> None:
    backend = FakeBackend("fake:test", replies=["x"])
    client, assistant, store = make_client(isolated_state, backend, auth=True, index=True)
    key = store.create_key("ops")
    try:
        for path in ("/metrics", "/docs", "/openapi.json"):
            assert (await client.get(path)).status_code == 401, path
        anonymous = (await client.get("/healthz")).json()
        assert anonymous == {"status": "ok"}  # liveness only: no repository names, models or versions
        headers = {"Authorization": f"Bearer {key}"}
        full = (await client.get("/healthz", headers=headers)).json()
        assert full["repositories"] == ["python"] and full["default_model"] == "fake:test"
        for path in ("/metrics", "/docs", "/openapi.json"):
            assert (await client.get(path, headers=headers)).status_code == 200, path
    finally:
        await client.aclose()
        await assistant.aclose()
        store.close()
    client, assistant, store = make_client(isolated_state, backend, auth=True, public=["metrics", "docs", "health"])
    try:
        for path in ("/metrics", "/docs", "/openapi.json"):
            assert (await client.get(path)).status_code == 200, path
        assert "default_model" in (await client.get("/healthz")).json()
    finally:
        await client.aclose()
        await assistant.aclose()
        store.close()
