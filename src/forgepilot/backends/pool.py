"""One model served by several OpenAI-compatible servers (vLLM, TGI, llama.cpp servers): each request goes to the
healthy server with the fewest requests in flight, and moves to another when its server is gone.

Health is known two ways. Passively: a server that refuses a connection, drops it or answers 502/503/504 is marked
down at once, and the request is retried on the next server (a request that reached no model is safe to resend;
a stream moves only before its first token). Actively: every ``health_interval_s`` a background probe asks each
server for its model list; a server that answers again is back in rotation, one that stops answering is taken out
before a user request finds out. With every server down the pool still tries them, longest-down first, so a
recovered server is used without waiting for the next probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from forgepilot.backends.base import (
    Backend,
    ChatRequest,
    Completion,
    CompletionChunk,
    CompletionRequest,
)
from forgepilot.backends.openai_http import OpenAICompatibleBackend
from forgepilot.errors import BackendError, BackendHTTPError, BackendUnavailable

_log = logging.getLogger("forgepilot.backends")
T = TypeVar("T")
#: Answers that say the server, not the request, is the problem: another server may well answer.
_SERVER_GONE_STATUS = frozenset({502, 503, 504})


@dataclass
class Endpoint:
    backend: OpenAICompatibleBackend
    healthy: bool = True
    in_flight: int = 0
    down_since: float = 0.0
    served: int = 0
    failed: int = 0

    @property
    def url(self) -> str:
        return self.backend.base_url


@dataclass(frozen=True)
class EndpointStatus:
    url: str
    healthy: bool
    in_flight: int
    served: int
    failed: int


def _server_gone(exc: BackendError) -> bool:
    if isinstance(exc, BackendUnavailable):
        return True
    return isinstance(exc, BackendHTTPError) and exc.status in _SERVER_GONE_STATUS


class EndpointPool(Backend):
    """``backends`` (one per server, all the same model) behind one name: least outstanding requests, failover,
    health probes."""

    remote = True

    def __init__(
        self,
        name: str,
        backends: Sequence[OpenAICompatibleBackend],
        *,
        health_interval_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not backends:
            raise ValueError("an endpoint pool needs at least one server")
        super().__init__(name)
        self.endpoints = [Endpoint(b) for b in backends]
        first = backends[0]
        self.supports_fim = first.supports_fim
        self.can_stream = first.can_stream
        self.can_chat = first.can_chat
        self.can_embed = first.can_embed
        self.can_tokenize = first.can_tokenize
        self.max_context = first.max_context
        self.health_interval_s = health_interval_s
        self._clock = clock
        self._turn = itertools.count()
        self._prober: asyncio.Task[None] | None = None

    # -- choosing ------------------------------------------------------------------------------------------------
    def status(self) -> list[EndpointStatus]:
        return [EndpointStatus(e.url, e.healthy, e.in_flight, e.served, e.failed) for e in self.endpoints]

    def _order(self) -> list[Endpoint]:
        """Servers to try, best first: healthy ones by requests in flight (ties taken in turn), then the down
        ones, longest down first."""
        turn = next(self._turn)
        n = len(self.endpoints)
        rotated = [self.endpoints[(turn + i) % n] for i in range(n)]
        healthy = sorted((e for e in rotated if e.healthy), key=lambda e: e.in_flight)  # stable: keeps the turn
        down = sorted((e for e in rotated if not e.healthy), key=lambda e: e.down_since)
        return healthy + down

    def _mark_down(self, endpoint: Endpoint, exc: BackendError) -> None:
        if endpoint.healthy:
            _log.warning("%s: %s is down (%s); moving its requests", self.name, endpoint.url, exc.one_line())
            endpoint.healthy = False
            endpoint.down_since = self._clock()
        endpoint.failed += 1

    def _mark_up(self, endpoint: Endpoint) -> None:
        if not endpoint.healthy:
            _log.warning("%s: %s is back", self.name, endpoint.url)
        endpoint.healthy = True

    def _all_down(self, last: BackendError | None) -> BackendUnavailable:
        assert last is not None
        return BackendUnavailable(
            f"every server of {self.name} is unavailable ({len(self.endpoints)} tried; last: {last.one_line()})",
            hint="start the model servers, or check their base_urls",
            backend=self.name,
            retryable=True,
        )

    async def _call(self, call: Callable[[OpenAICompatibleBackend], Awaitable[T]]) -> T:
        self._start_probing()
        last: BackendError | None = None
        for endpoint in self._order():
            endpoint.in_flight += 1
            try:
                result = await call(endpoint.backend)
            except BackendError as exc:
                if not _server_gone(exc):
                    raise
                self._mark_down(endpoint, exc)
                last = exc
                continue
            finally:
                endpoint.in_flight -= 1
            self._mark_up(endpoint)
            endpoint.served += 1
            return result
        raise self._all_down(last)

    async def _stream(
        self, start: Callable[[OpenAICompatibleBackend], AsyncIterator[CompletionChunk]]
    ) -> AsyncIterator[CompletionChunk]:
        """A stream from the best server; before its first chunk a failed server hands over to the next."""
        self._start_probing()
        last: BackendError | None = None
        for endpoint in self._order():
            endpoint.in_flight += 1
            try:
                chunks = start(endpoint.backend)
                try:
                    first = await anext(chunks)
                except StopAsyncIteration:
                    self._mark_up(endpoint)
                    endpoint.served += 1
                    return
                except BackendError as exc:
                    if not _server_gone(exc):
                        raise
                    self._mark_down(endpoint, exc)
                    last = exc
                    continue
                self._mark_up(endpoint)
                yield first
                async for chunk in chunks:
                    yield chunk
                endpoint.served += 1
                return
            finally:
                endpoint.in_flight -= 1
        raise self._all_down(last)

    # -- health probes -------------------------------------------------------------------------------------------
    def _start_probing(self) -> None:
        if self._prober is None or self._prober.done():
            self._prober = asyncio.get_running_loop().create_task(self._probe_forever(), name=f"probe {self.name}")

    async def _probe_forever(self) -> None:
        while True:
            await asyncio.sleep(self.health_interval_s)
            await self.probe()

    async def probe(self) -> None:
        """Ask every server for its model list now; mark each up or down by its answer."""
        results = await asyncio.gather(*(self._probe_one(e) for e in self.endpoints))
        for endpoint, problem in zip(self.endpoints, results, strict=True):
            if problem is None:
                self._mark_up(endpoint)
            elif endpoint.healthy:
                self._mark_down(endpoint, BackendUnavailable(problem, backend=self.name))

    @staticmethod
    async def _probe_one(endpoint: Endpoint) -> str | None:
        backend = endpoint.backend
        try:
            response = await backend.client.get(
                backend.base_url + "/models", headers=backend._headers(), timeout=backend.settings.connect_timeout_s
            )
        except Exception as exc:  # any failure to answer is "down"; the probe itself must never die
            return f"health probe failed: {type(exc).__name__}"
        return None if response.status_code < 500 else f"health probe answered {response.status_code}"

    # -- the Backend interface -----------------------------------------------------------------------------------
    async def complete(self, request: CompletionRequest) -> Completion:
        return await self._call(lambda b: b.complete(request))

    def stream(self, request: CompletionRequest) -> AsyncIterator[CompletionChunk]:
        return self._stream(lambda b: b.stream(request))

    async def chat(self, request: ChatRequest) -> Completion:
        return await self._call(lambda b: b.chat(request))

    def stream_chat(self, request: ChatRequest) -> AsyncIterator[CompletionChunk]:
        return self._stream(lambda b: b.stream_chat(request))

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return await self._call(lambda b: b.embed(texts))

    async def tokenize(self, text: str) -> list[int]:
        return await self._call(lambda b: b.tokenize(text))

    async def aclose(self) -> None:
        if self._prober is not None:
            self._prober.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._prober
        for endpoint in self.endpoints:
            await endpoint.backend.aclose()
