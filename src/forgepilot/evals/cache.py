"""A backend wrapper that caches generations in the evaluation store, at the model boundary.

Everything above the model (context, prompt rendering, post-processing) runs for real on every evaluation; only the
model call is looked up, by a hash of the model's identity and the exact request it would receive. Each call is
also noted in a per-task list (``calls``) with its original timings, tokens and cost, so the runner reports the
latency a cached sample had when it was generated.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, fields
from typing import Any, cast

from forgepilot.backends.base import (
    Backend,
    ChatRequest,
    Completion,
    CompletionChunk,
    CompletionRequest,
    Cost,
    FinishReason,
    Stopwatch,
    Timings,
    Usage,
)
from forgepilot.evals.store import CachedGeneration, EvalStore


@dataclass
class CallRecord:
    cached: bool
    usage: Usage
    first_token_s: float | None
    total_s: float
    cost_usd: float | None


#: The model calls made by the current asyncio task since the runner last reset it.
calls: contextvars.ContextVar[list[CallRecord] | None] = contextvars.ContextVar("forgepilot_eval_calls", default=None)


def _request_fields(request: CompletionRequest | ChatRequest) -> dict[str, Any]:
    # Not ``asdict``: it would deep-copy the cancel token (a lock). Neither it nor the queue priority is any part of
    # what the model sees or answers.
    data = {f.name: getattr(request, f.name) for f in fields(request) if f.name not in ("cancel", "priority")}
    if isinstance(request, ChatRequest):
        data["messages"] = [[m.role, m.content] for m in request.messages]
    return data


class CachingBackend(Backend):
    """``inner`` with its ``complete`` and ``chat`` answered from the store when the same request was made."""

    def __init__(self, inner: Backend, store: EvalStore, identity: str, *, replay: bool = True) -> None:
        super().__init__(inner.name)
        self.inner = inner
        self.store = store
        self.identity = identity
        #: False: every call goes to the model (and is stored): latencies are then all measured now.
        self.replay = replay
        # The serving path reads these to render and budget prompts exactly as for the real backend.
        self.supports_fim = inner.supports_fim
        self.can_stream = inner.can_stream
        self.can_chat = inner.can_chat
        self.can_tokenize = inner.can_tokenize
        self.max_context = inner.max_context
        self.template = getattr(inner, "template", None)
        self.prices = getattr(inner, "prices", None)
        self.hits = 0
        self.misses = 0

    def token_counter(self) -> Callable[[str], int]:
        return self.inner.token_counter()

    async def tokenize(self, text: str) -> list[int]:
        return await self.inner.tokenize(text)

    def key(self, kind: str, request: CompletionRequest | ChatRequest) -> str:
        payload = json.dumps([self.identity, kind, _request_fields(request)], sort_keys=True, default=str)
        return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()

    async def complete(self, request: CompletionRequest) -> Completion:
        return await self._cached("complete", request, self.inner.complete)

    async def stream(self, request: CompletionRequest) -> AsyncIterator[CompletionChunk]:
        """The serving path streams block completions and stops the model itself when the block ends: such a
        stopped stream is stored as it ended (same request, same stop, same text) and replayed as one chunk."""
        key = self.key("complete", request)
        hit = self.store.generation(key) if self.replay else None
        if hit is not None:
            self.hits += 1
            usage = Usage(**hit.usage)
            _note(
                CallRecord(True, usage, hit.timings.get("first_token_s"), hit.timings.get("total_s", 0.0), hit.cost_usd)
            )
            yield CompletionChunk(hit.text)
            yield CompletionChunk("", finish_reason=cast(FinishReason, hit.finish_reason), usage=usage)
            return
        self.misses += 1
        watch = Stopwatch()
        parts: list[str] = []
        finish: FinishReason = "stop"
        usage = Usage()
        async for chunk in self.inner.stream(request):
            if chunk.text:
                watch.mark_token()
                parts.append(chunk.text)
            if chunk.finish_reason is not None:
                finish = chunk.finish_reason
            if chunk.usage is not None:
                usage = chunk.usage
            yield chunk
        timings = watch.timings()
        prices = getattr(self.inner, "prices", None)
        cost_usd = prices.cost(self.name, usage).usd if prices is not None else None
        self.store.put_generation(
            key,
            self.name,
            CachedGeneration(
                "".join(parts),
                finish,
                asdict(usage),
                {"first_token_s": timings.first_token_s, "total_s": timings.total_s},
                cost_usd,
            ),
        )
        _note(CallRecord(False, usage, timings.first_token_s, timings.total_s, cost_usd))

    async def chat(self, request: ChatRequest) -> Completion:
        return await self._cached("chat", request, self.inner.chat)

    async def _cached(self, kind: str, request: Any, call: Callable[[Any], Awaitable[Completion]]) -> Completion:
        key = self.key(kind, request)
        hit = self.store.generation(key) if self.replay else None
        if hit is not None:
            self.hits += 1
            usage = Usage(**hit.usage)
            timings = Timings(first_token_s=hit.timings.get("first_token_s"), total_s=hit.timings.get("total_s", 0.0))
            cost = Cost(hit.cost_usd, "cached") if hit.cost_usd is not None else None
            finish = cast(FinishReason, hit.finish_reason)
            result = Completion(hit.text, finish, self.name, usage, cost, timings)
            _note(CallRecord(True, usage, timings.first_token_s, timings.total_s, hit.cost_usd))
            return result
        self.misses += 1
        result = await call(request)
        cost_usd = result.cost.usd if result.cost is not None else None
        if result.finish_reason != "cancelled":
            self.store.put_generation(
                key,
                self.name,
                CachedGeneration(
                    result.text,
                    result.finish_reason,
                    asdict(result.usage),
                    {"first_token_s": result.timings.first_token_s, "total_s": result.timings.total_s},
                    cost_usd,
                ),
            )
        _note(CallRecord(False, result.usage, result.timings.first_token_s, result.timings.total_s, cost_usd))
        return result

    async def aclose(self) -> None:
        await self.inner.aclose()


def _note(record: CallRecord) -> None:
    noted = calls.get()
    if noted is not None:
        noted.append(record)
