"""The gateway in-process (httpx ASGI transport) over the FakeBackend: protocol, errors, auth, events, metrics."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from forgepilot.assist import Assistant
from forgepilot.backends.fake import FakeBackend
from forgepilot.config import load_settings
from forgepilot.errors import BackendUnavailable
from forgepilot.gateway import GatewayStore, create_app
from forgepilot.index import Indexer
from forgepilot.monitor import Monitoring

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "repos"
_OPENED: list[Monitoring] = []


@pytest.fixture(autouse=True)
def _close_monitoring() -> Iterator[None]:
    yield
    while _OPENED:
        _OPENED.pop().close()


def make_client(
    state: Path, backend: FakeBackend, *, auth: bool = False, index: bool = False, **gateway: object
) -> tuple[httpx.AsyncClient, Assistant, GatewayStore]:
    settings = load_settings(state_dir=state, default_model=backend.name, gateway=gateway)
    assistant = Assistant.open(settings, preset={backend.name: backend}, index=True)
    if index:
        assert assistant.workspace is not None
        Indexer(assistant.workspace, embeddings=False).index(FIXTURES / "python")
    store = GatewayStore(state / "gateway.db")
    monitoring = Monitoring.open(state, settings.monitor)
    _OPENED.append(monitoring)
    app = create_app(assistant, store=store, auth_required=auth, monitoring=monitoring)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway")
    return client, assistant, store


@pytest.fixture
async def gw(isolated_state: Path) -> AsyncIterator[tuple[httpx.AsyncClient, FakeBackend, GatewayStore]]:
    backend = FakeBackend("fake:test", replies=lambda prompt: "a + b\n")
    client, assistant, store = make_client(isolated_state, backend)
    yield client, backend, store
    await client.aclose()
    await assistant.aclose()
    store.close()


def error_of(response: httpx.Response) -> dict[str, object]:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]  # type: ignore[no-any-return]


async def test_models_lists_preset_embedded_and_embedder(
    gw: tuple[httpx.AsyncClient, FakeBackend, GatewayStore],
) -> None:
    client, _, _ = gw
    ids = [m["id"] for m in (await client.get("/v1/models")).json()["data"]]
    assert ids[0] == "fake:test" and "llamacpp:qwen2.5-coder-0.5b" in ids and "local:all-minilm-l6-v2" in ids


async def test_completion_with_suffix_goes_through_fim(gw: tuple[httpx.AsyncClient, FakeBackend, GatewayStore]) -> None:
    client, backend, _ = gw
    r = await client.post(
        "/v1/completions",
        json={"model": "fake:test", "prompt": "def add(a, b):\n    return ", "suffix": "\n", "max_tokens": 8},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "text_completion" and body["choices"][0]["text"] == "a + b\n"
    assert body["usage"]["completion_tokens"] == 6
    assert backend.prompts[-1] == "<|fim_prefix|>def add(a, b):\n    return <|fim_suffix|>\n<|fim_middle|>"


async def test_completion_stream_is_sse_and_ends_with_done(
    gw: tuple[httpx.AsyncClient, FakeBackend, GatewayStore],
) -> None:
    client, _, _ = gw
    r = await client.post(
        "/v1/completions",
        json={"model": "fake:test", "prompt": "x = ", "stream": True, "stream_options": {"include_usage": True}},
    )
    assert r.headers["content-type"].startswith("text/event-stream")
    frames = [line.removeprefix("data: ") for line in r.text.split("\n\n") if line]
    assert frames[-1] == "[DONE]"
    chunks = [json.loads(f) for f in frames[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks) == "a + b\n"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["usage"]["completion_tokens"] == 6


async def test_chat_and_chat_stream(gw: tuple[httpx.AsyncClient, FakeBackend, GatewayStore]) -> None:
    client, _, _ = gw
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
    ]
    r = await client.post("/v1/chat/completions", json={"model": "fake:test", "messages": messages})
    assert r.json()["choices"][0]["message"] == {"role": "assistant", "content": "a + b\n"}
    r = await client.post("/v1/chat/completions", json={"model": "fake:test", "messages": messages, "stream": True})
    chunks = [json.loads(f.removeprefix("data: ")) for f in r.text.split("\n\n") if f and "[DONE]" not in f]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "a + b\n"


async def test_embeddings(gw: tuple[httpx.AsyncClient, FakeBackend, GatewayStore]) -> None:
    client, _, _ = gw
    r = await client.post("/v1/embeddings", json={"model": "fake:test", "input": ["def f", "class C"]})
    data = r.json()["data"]
    assert [d["index"] for d in data] == [0, 1] and len(data[0]["embedding"]) == 16


@pytest.mark.parametrize(
    ("content", "status", "code"),
    [
        (b"{not json", 400, "invalid_json"),
        (b"[1, 2]", 400, "invalid_json"),
        (b'{"model": "fake:test", "prompt": "\xff\xfe broken"}', 400, "invalid_json"),
        (b'{"model": "fake:test"}', 422, "invalid_value"),
        (b'{"model": "nope:nothing", "prompt": "x"}', 404, "model_not_found"),
        (b'{"model": "fake:test", "prompt": "x", "n": 3}', 400, "unsupported_value"),
    ],
)
async def test_bad_requests_get_the_error_envelope(
    gw: tuple[httpx.AsyncClient, FakeBackend, GatewayStore], content: bytes, status: int, code: str
) -> None:
    client, _, _ = gw
    r = await client.post("/v1/completions", content=content, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert error_of(r)["code"] == code


async def test_unknown_model_lists_the_known_ones(gw: tuple[httpx.AsyncClient, FakeBackend, GatewayStore]) -> None:
    client, _, _ = gw
    r = await client.post("/v1/chat/completions", json={"model": "x:y", "messages": [{"role": "user", "content": "q"}]})
    err = error_of(r)
    assert r.status_code == 404 and err["param"] == "model" and "fake:test" in str(err["message"])


async def test_too_large_is_413(isolated_state: Path) -> None:
    client, assistant, store = make_client(isolated_state, FakeBackend("fake:test"), max_request_bytes=1000)
    r = await client.post("/v1/completions", json={"model": "fake:test", "prompt": "x" * 5000})
    assert r.status_code == 413 and error_of(r)["code"] == "request_too_large"
    await client.aclose()
    await assistant.aclose()


async def test_dead_backend_is_503_with_retry_after(isolated_state: Path) -> None:
    backend = FakeBackend("fake:test", fail_with=BackendUnavailable("connection refused", retryable=True))
    client, assistant, store = make_client(isolated_state, backend)
    for stream in (False, True):
        r = await client.post("/v1/completions", json={"model": "fake:test", "prompt": "x", "stream": stream})
        assert r.status_code == 503 and r.headers["retry-after"] == "5", r.text
        assert "connection refused" in str(error_of(r)["message"])
    await client.aclose()
    await assistant.aclose()


async def test_assist_complete_returns_text_and_why(isolated_state: Path) -> None:
    backend = FakeBackend("fake:test", replies=["tax.tax_cents(subtotal, region)\n"])
    client, assistant, store = make_client(isolated_state, backend, index=True)
    path = FIXTURES / "python" / "src" / "shop" / "payments" / "checkout.py"
    text = path.read_text()
    line = text.splitlines().index("    return subtotal + tax.tax_cents(subtotal, region)")
    doc = text.replace("    return subtotal + tax.tax_cents(subtotal, region)", "    return subtotal + ")
    r = await client.post(
        "/v1/assist/complete",
        json={"text": doc, "path": str(path), "cursor": {"line": line, "character": 22}},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["text"] == "tax.tax_cents(subtotal, region)" and body["mode"] == "inline"
    why = body["why"]
    assert why["format"] == "repo-level" and why["template_id"] == "complete" and len(why["template_version"]) == 16
    sources = {(s["source"], s["path"]) for s in why["sources"]}
    # Cart (the parameter's type, imported) is a related definition; the imported tax module is shown by its API.
    assert ("related", "src/shop/models.py") in sources and ("imports", "src/shop/payments/tax.py") in sources
    assert {"context", "render", "first_token", "total"} <= set(why["timings_ms"])
    # The same request again is served from the cache.
    r2 = await client.post(
        "/v1/assist/complete", json={"text": doc, "path": str(path), "cursor": {"line": line, "character": 22}}
    )
    assert r2.json()["why"]["cached"] is True and len(backend.prompts) == 1
    await client.aclose()
    await assistant.aclose()


async def test_prepare_warms_an_opened_file_in_the_background(isolated_state: Path) -> None:
    backend = FakeBackend("fake:test", replies=["x\n"], warmable=True)
    client, assistant, store = make_client(isolated_state, backend, index=True)
    path = FIXTURES / "python" / "src" / "shop" / "payments" / "checkout.py"
    body = {"text": path.read_text(), "path": str(path), "cursor": {"line": 0, "character": 0}}
    r = await client.post("/v1/assist/prepare", json=body)
    assert r.status_code == 202, r.text
    assert r.json()["warming"] is True and r.json()["deployment"] == "champion"
    for _ in range(200):  # the warm runs after the answer
        if backend.warmed:
            break
        await asyncio.sleep(0.01)
    # What was warmed starts like every completion prompt of this file: the repository's context, then the file.
    assert backend.warmed and backend.warmed[0].startswith("<|repo_name|>")
    assert "<|file_sep|>src/shop/payments/checkout.py" in backend.warmed[0] and not backend.prompts
    # A malformed request is refused like a completion.
    bad = await client.post("/v1/assist/prepare", json={**body, "cursor": {"line": 999, "character": 0}})
    assert bad.status_code == 422
    await client.aclose()
    await assistant.aclose()
    store.close()


@pytest.mark.parametrize(
    ("cursor", "param"),
    [
        ({"line": 9, "character": 0}, "cursor.line"),
        ({"line": 0, "character": 99}, "cursor.character"),
        ({"offset": 1000}, "cursor.offset"),
    ],
)
async def test_cursor_outside_the_document_is_422_naming_the_field(
    gw: tuple[httpx.AsyncClient, FakeBackend, GatewayStore], cursor: dict[str, int], param: str
) -> None:
    client, _, _ = gw
    r = await client.post("/v1/assist/complete", json={"text": "x = 1\n", "path": "a.py", "cursor": cursor})
    assert r.status_code == 422 and error_of(r)["param"] == param


async def test_broken_encoding_in_a_document_is_handled(
    gw: tuple[httpx.AsyncClient, FakeBackend, GatewayStore],
) -> None:
    client, backend, _ = gw
    body = json.dumps({"text": "s = '\udc80'\nx = ", "path": "a.py", "cursor": {"offset": 13}})
    r = await client.post("/v1/assist/complete", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    assert "\ufffd" in backend.prompts[-1]


async def test_empty_completion_says_why(isolated_state: Path) -> None:
    client, assistant, store = make_client(isolated_state, FakeBackend("fake:test", replies=["   \n"]))
    r = await client.post("/v1/assist/complete", json={"text": "x = ", "path": "a.py", "cursor": {"offset": 4}})
    assert r.json()["text"] == "" and r.json()["reason"] == "empty_generation"
    await client.aclose()
    await assistant.aclose()


async def test_tasks_record_template_and_validate_fields(
    gw: tuple[httpx.AsyncClient, FakeBackend, GatewayStore],
) -> None:
    client, backend, _ = gw
    r = await client.post("/v1/assist/commit", json={"diff": "--- a/x.py\n+++ b/x.py\n@@\n-a\n+b\n"})
    assert r.status_code == 200 and r.json()["template_id"] == "commit" and r.json()["text"] == "a + b\n"
    r = await client.post("/v1/assist/review", json={"code": "x"})
    assert r.status_code == 422 and error_of(r)["param"] == "diff"
    r = await client.post("/v1/assist/dance", json={"code": "x"})
    assert r.status_code == 404


async def test_tests_task_detects_pytest(isolated_state: Path, tmp_path: Path) -> None:
    repo = tmp_path / "proj"
    (repo / "tests").mkdir(parents=True)
    (repo / "pyproject.toml").write_text("[tool.pytest.ini_options]\naddopts = '-q'\n")
    (repo / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    (repo / "tests" / "test_calc.py").write_text(
        "from calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n"
    )
    backend = FakeBackend("fake:test", replies=["```python\ndef test_add():\n    assert add(2, 2) == 4\n```\n"])
    client, assistant, store = make_client(isolated_state, backend)
    assert assistant.workspace is not None
    Indexer(assistant.workspace, embeddings=False).index(repo)
    r = await client.post(
        "/v1/assist/tests", json={"code": "def add(a, b):\n    return a + b\n", "path": str(repo / "calc.py")}
    )
    body = r.json()
    assert body["framework"] == {"name": "pytest", "evidence": "pyproject.toml", "test_path": "tests/test_calc.py"}
    assert body["code"] == "def test_add():\n    assert add(2, 2) == 4\n"
    assert (
        "Write pytest tests" in backend.prompts[-1]
        and "def test_add():\n    assert add(1, 2) == 3" in backend.prompts[-1]
    )
    await client.aclose()
    await assistant.aclose()


async def test_ask_cites_sources_and_checks_citations(isolated_state: Path) -> None:
    answer = "Tax is computed in `src/shop/payments/tax.py:6` and also `src/nowhere.py:3`."
    client, assistant, store = make_client(isolated_state, FakeBackend("fake:test", replies=[answer]), index=True)
    r = await client.post("/v1/assist/ask", json={"question": "how is tax_cents computed?"})
    body = r.json()
    assert r.status_code == 200, r.text
    assert any(s["path"] == "src/shop/payments/tax.py" for s in body["sources"])
    assert body["citations"] == [
        {"path": "src/shop/payments/tax.py", "line": 6, "valid": True, "via": "path:line"},
        {"path": "src/nowhere.py", "line": 3, "valid": False, "via": "path:line"},
    ]
    await client.aclose()
    await assistant.aclose()


async def test_user_defined_action_from_the_repository(isolated_state: Path, tmp_path: Path) -> None:
    repo = tmp_path / "proj"
    (repo / ".forgepilot" / "actions").mkdir(parents=True)
    (repo / "app.py").write_text("print('hi')\n")
    (repo / ".forgepilot" / "actions" / "to-sql.j2").write_text(
        "{#\ndescription: rewrite as SQL\ntier: fast\n#}\nRewrite as {{ dialect }} SQL:\n{{ code }}\n"
    )
    backend = FakeBackend("fake:test", replies=["SELECT 1;"])
    client, assistant, store = make_client(isolated_state, backend)
    assert assistant.workspace is not None
    Indexer(assistant.workspace, embeddings=False).index(repo)
    listed = (await client.get("/v1/assist/actions")).json()["data"]
    assert listed[0]["name"] == "to-sql" and listed[0]["variables"] == ["code", "dialect"]
    r = await client.post(
        "/v1/assist/actions/to-sql", json={"code": "df[df.x > 1]", "variables": {"dialect": "Postgres"}}
    )
    assert r.status_code == 200 and r.json()["template_id"] == "actions/to-sql"
    assert backend.prompts[-1].count("Rewrite as Postgres SQL:\ndf[df.x > 1]") == 1
    r = await client.post("/v1/assist/actions/to-sql", json={"code": "x"})
    assert r.status_code == 400 and "dialect" in str(error_of(r)["message"])
    r = await client.post("/v1/assist/actions/missing", json={"code": "x"})
    assert r.status_code == 404
    await client.aclose()
    await assistant.aclose()


async def test_events_are_durable_before_the_ack(gw: tuple[httpx.AsyncClient, FakeBackend, GatewayStore]) -> None:
    client, _, store = gw
    done = await client.post("/v1/assist/complete", json={"text": "x = ", "path": "a.py", "cursor": {"offset": 4}})
    cid = done.json()["id"]
    r = await client.post(
        "/v1/events",
        json={
            "events": [
                {"type": "shown", "completion_id": cid},
                {"type": "accepted", "completion_id": cid, "accepted_chars": 5},
            ]
        },
    )
    assert r.json() == {"object": "list", "recorded": 2, "unknown_completions": 0, "clock_skewed": 0}
    # A second connection (another process could do the same) sees the committed rows.
    other = sqlite3.connect(store.path.with_name("monitor.db"))
    rows = other.execute("SELECT type, model, template_id, accepted_chars FROM events ORDER BY id").fetchall()
    other.close()
    assert rows == [("shown", "fake:test", "complete", None), ("accepted", "fake:test", "complete", 5)]
    r = await client.post("/v1/events", json={"events": [{"type": "clicked"}]})
    assert r.status_code == 422


async def test_metrics_expose_stages_tokens_and_errors(gw: tuple[httpx.AsyncClient, FakeBackend, GatewayStore]) -> None:
    client, _, _ = gw
    await client.post("/v1/assist/complete", json={"text": "x = ", "path": "a.py", "cursor": {"offset": 4}})
    await client.post("/v1/completions", json={"model": "nope", "prompt": "x"})
    text = (await client.get("/metrics")).text
    assert 'forgepilot_stage_seconds_count{stage="context"} 1.0' in text
    assert 'forgepilot_stage_seconds_count{stage="first_token"} 1.0' in text
    assert 'forgepilot_tokens_total{kind="completion",model="fake:test"}' in text
    assert 'forgepilot_errors_total{type="model_not_found"} 1.0' in text
    assert 'forgepilot_requests_total{route="/v1/assist/complete",status="200"} 1.0' in text
    health = (await client.get("/healthz")).json()
    assert health["status"] == "ok" and health["tiers"]["fast"] == "fake:test"


async def test_api_keys_and_rate_limits(isolated_state: Path) -> None:
    client, assistant, store = make_client(isolated_state, FakeBackend("fake:test"), auth=True)
    key = store.create_key("ci", rate_per_minute=2)
    assert key not in store.path.read_bytes().decode("latin-1")  # only the hash is stored
    r = await client.get("/v1/models")
    assert r.status_code == 401 and error_of(r)["code"] == "missing_api_key"
    r = await client.get("/v1/models", headers={"Authorization": "Bearer fp-wrong"})
    assert r.status_code == 401 and error_of(r)["code"] == "invalid_api_key"
    ok = {"Authorization": f"Bearer {key}"}
    assert (await client.get("/v1/models", headers=ok)).status_code == 200
    assert (await client.get("/v1/models", headers=ok)).status_code == 200
    limited = await client.get("/v1/models", headers=ok)
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    store.revoke("ci")
    assert (await client.get("/v1/models", headers=ok)).status_code == 401
    await client.aclose()
    await assistant.aclose()
