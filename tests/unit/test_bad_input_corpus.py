"""Every endpoint against a corpus of bad input (malformed, oversized, wrong types, traversal, huge max_tokens,
binary): each gets a 4xx with the OpenAI error envelope, never a 500, and the gateway keeps serving."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from forgepilot.backends.fake import FakeBackend
from tests.unit.test_gateway import error_of, make_client

POSTS = [
    "/v1/completions",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/assist/complete",
    "/v1/assist/explain",
    "/v1/assist/tests",
    "/v1/assist/review",
    "/v1/assist/commit",
    "/v1/assist/refactor",
    "/v1/assist/document",
    "/v1/assist/ask",
    "/v1/assist/actions/any",
    "/v1/events",
]

RAW_BODIES: dict[str, bytes] = {
    "malformed": b'{"model": "fake:test", "prompt": ',
    "not an object": b"[1, 2, 3]",
    "binary": os.urandom(512).replace(b"{", b"\x00"),
    "broken utf-8": b'{"text": "\xff\xfe\xfd", "prompt": "\xc3\x28"}',
    "empty": b"",
    "oversized": b'{"prompt": "' + b"a" * 70_000 + b'"}',
}

WRONG_TYPES: list[dict[str, Any]] = [
    {"model": 5, "prompt": ["a", "b"], "max_tokens": "many"},
    {"messages": "hello", "model": None},
    {"text": 42, "cursor": {"line": -1, "character": "x"}},
    {"code": {"nested": True}, "max_tokens": -3},
    {"events": [{"type": "clicked"}] * 2},
    {"events": [{"type": "shown"}] * 1001},
    {"input": [1, 2, 3]},
]

HUGE: dict[str, dict[str, Any]] = {
    "/v1/completions": {"model": "fake:test", "prompt": "a", "max_tokens": 10**12},
    "/v1/chat/completions": {
        "model": "fake:test",
        "messages": [{"role": "user", "content": "a"}],
        "max_tokens": 10**12,
    },
    "/v1/assist/complete": {"text": "a", "cursor": {"offset": 1}, "max_tokens": 10**12},
    "/v1/assist/explain": {"code": "a", "max_tokens": 10**12},
}


@pytest.fixture
async def client(isolated_state: Path) -> AsyncIterator[httpx.AsyncClient]:
    backend = FakeBackend("fake:test", replies=lambda prompt: "ok\n", max_context=2048)
    client, assistant, store = make_client(isolated_state, backend, index=True, max_request_bytes=65_536)
    yield client
    await client.aclose()
    await assistant.aclose()
    store.close()


def rejected(response: httpx.Response) -> dict[str, object]:
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    return error_of(response)


@pytest.mark.parametrize("path", POSTS)
async def test_raw_bad_bodies(client: httpx.AsyncClient, path: str) -> None:
    for name, body in RAW_BODIES.items():
        r = await client.post(path, content=body, headers={"content-type": "application/json"})
        err = rejected(r)
        if name == "oversized":
            assert r.status_code == 413 and err["code"] == "request_too_large"
    assert (await client.get("/healthz")).status_code == 200


@pytest.mark.parametrize("path", POSTS)
async def test_wrong_types(client: httpx.AsyncClient, path: str) -> None:
    for body in WRONG_TYPES:
        rejected(await client.post(path, json=body))


@pytest.mark.parametrize("path", list(HUGE))
async def test_huge_max_tokens(client: httpx.AsyncClient, path: str) -> None:
    err = rejected(await client.post(path, json=HUGE[path]))
    assert err["param"] in ("max_tokens", "max_completion_tokens") or "max_tokens" in str(err["message"])


async def test_traversal_names_nothing_outside(client: httpx.AsyncClient, tmp_path: Path) -> None:
    for name in ("..%2F..%2Fetc%2Fpasswd", "..", "%2e%2e", "actions", "a b"):
        r = await client.post(f"/v1/assist/actions/{name}", json={"code": "x"})
        assert r.status_code in (400, 404, 405, 422), (name, r.status_code)
    r = await client.post("/v1/assist/actions/x", json={"code": "x", "repository": "/etc"})
    assert r.status_code == 404 and error_of(r)["code"] == "repository_not_found"
    r = await client.get("/v1/assist/actions", params={"repository": "../../"})
    assert r.status_code == 404
    # A path outside every repository is just a name: nothing is read from it, and the completion still works.
    r = await client.post(
        "/v1/assist/complete", json={"text": "x = ", "path": "../../../../etc/passwd", "cursor": {"offset": 4}}
    )
    assert r.status_code == 200 and all(s["path"] != "/etc/passwd" for s in r.json()["why"]["sources"])


async def test_unknown_routes_and_methods(client: httpx.AsyncClient) -> None:
    assert rejected(await client.get("/v1/nothing"))["code"] == "not_found"
    assert rejected(await client.get("/v1/completions"))["code"] == "method_not_allowed"
    assert rejected(await client.post("/v1/assist/telepathy", json={"code": "x"}))["code"] == "not_found"
