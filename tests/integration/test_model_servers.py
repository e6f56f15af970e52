"""One model on two real `python -m llama_cpp.server` processes, declared with ``base_urls``: requests spread by
requests in flight, and when one server is killed mid-run every request still gets its answer from the other."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from forgepilot.backends import CompletionRequest, EndpointPool, open_backend
from forgepilot.config import load_settings

from .conftest import LlamaServer


@pytest.fixture
def two_servers(gemma_path: Path, tmp_path: Path) -> Iterator[tuple[LlamaServer, LlamaServer]]:
    first = LlamaServer(gemma_path, "gemma", tmp_path, n_ctx=512)
    try:
        second = LlamaServer(gemma_path, "gemma", tmp_path, n_ctx=512)
    except BaseException:
        first.stop()
        raise
    yield first, second
    first.stop()
    second.stop()


async def test_requests_spread_and_move_off_a_killed_server(two_servers: tuple[LlamaServer, LlamaServer]) -> None:
    first, second = two_servers
    settings = load_settings(
        models={
            "llama-cpp-python:gemma": {
                "family": "gemma3",
                "model": "gemma",
                "base_urls": [first.base_url, second.base_url],
            }
        },
        http={"health_interval_s": 0.5, "timeout_s": 60},
    )
    pool = open_backend("llama-cpp-python:gemma", settings)
    assert isinstance(pool, EndpointPool)
    request = CompletionRequest(prompt="def add(a, b):\n    return", max_tokens=4, temperature=0.0)
    try:
        answers = await asyncio.gather(*(pool.complete(request) for _ in range(6)))
        assert all(a.text for a in answers)
        served = {s.url: s.served for s in pool.status()}
        assert served[first.base_url] >= 2 and served[second.base_url] >= 2  # both used: least outstanding

        # Killed while requests are in flight on it: they move to the other server, and every one is answered.
        longer = CompletionRequest(prompt="def add(a, b):\n    return", max_tokens=48, temperature=0.0)
        batch = [asyncio.ensure_future(pool.complete(longer)) for _ in range(6)]
        while not any(s.in_flight for s in pool.status() if s.url == first.base_url):
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        first.process.kill()
        answers = list(await asyncio.gather(*batch))
        first.process.wait()
        answers += await asyncio.gather(*(pool.complete(request) for _ in range(6)))
        assert all(a.text for a in answers)
        status = {s.url: s for s in pool.status()}
        assert not status[first.base_url].healthy and status[first.base_url].failed >= 1
        assert status[second.base_url].served >= served[second.base_url] + 9

        second.process.kill()
        second.process.wait()
        with pytest.raises(Exception, match="every server of llama-cpp-python:gemma is unavailable"):
            await pool.complete(request)
    finally:
        await pool.aclose()
