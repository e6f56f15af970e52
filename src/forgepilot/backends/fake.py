"""A deterministic in-process backend for tests of everything above the model layer.

It behaves like a real backend where callers can observe it (token-by-token streaming, ``max_tokens``, stop
strings, cancellation, usage, FIM rendering through the declared family) but its text comes from a script or a
function, so tests can assert exact outputs. It also records every request it received.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import time
import zlib
from collections.abc import AsyncIterator, Callable, Sequence

from forgepilot.backends.base import (
    Backend,
    ChatRequest,
    Completion,
    CompletionChunk,
    CompletionRequest,
    FinishReason,
    Stopwatch,
    Usage,
    collect,
    prompt_text,
)
from forgepilot.backends.fim import fim_template
from forgepilot.backends.pricing import builtin_price_table

_TOKEN = re.compile(r"\s+|\w+|[^\w\s]")

Responder = Callable[[str], str]


def _count_fake_tokens(text: str) -> int:
    return len(_TOKEN.findall(text))


def fake_tokens(text: str) -> list[str]:
    """Split text the way the fake tokenizer does: runs of word characters, whitespace, or one symbol each."""
    return _TOKEN.findall(text)


class FakeBackend(Backend):
    supports_fim = True
    can_stream = True
    can_chat = True
    can_embed = True
    can_tokenize = True

    def __init__(
        self,
        name: str = "fake:scripted",
        *,
        replies: Sequence[str] | Responder | None = None,
        family: str = "qwen2.5-coder",
        delay_s: float = 0.0,
        fail_with: Exception | None = None,
        max_context: int = 4096,
        embedding_dim: int = 16,
        warmable: bool = False,
    ) -> None:
        super().__init__(name)
        #: ``warmable``: a prompt cache like llama.cpp's, in fake tokens: what was completed or warmed is reused by
        #: prompts starting with it (``reusable_tokens``), and ``warm`` records what it was asked to evaluate.
        self.can_warm = warmable
        self.warmed: list[str] = []
        self._cached: list[list[str]] = []
        self.template = fim_template(family)
        self.supports_fim = self.template.supports_fim
        self.max_context = max_context
        self._replies = replies
        self._reply_index = 0
        self.delay_s = delay_s
        self.fail_with = fail_with
        self.embedding_dim = embedding_dim
        self.prices = builtin_price_table()
        #: The rendered prompts this backend was asked to complete, in order.
        self.prompts: list[str] = []

    def _reply(self, prompt: str) -> str:
        if callable(self._replies):
            return self._replies(prompt)
        if self._replies:
            reply = self._replies[self._reply_index % len(self._replies)]
            self._reply_index += 1
            return reply
        return "pass\n"

    def _render(self, request: CompletionRequest) -> str:
        if request.segments is not None:
            return prompt_text(request.segments)
        if request.suffix is None:  # as llama.cpp: no suffix, no FIM
            return request.prompt
        return self.template.render(request.prompt, request.suffix)

    async def _generate(
        self,
        prompt: str,
        max_tokens: int,
        stop: Sequence[str],
        cancel_flag: Callable[[], bool],
        deadline_s: float | None = None,
    ) -> AsyncIterator[CompletionChunk]:
        if self.fail_with is not None:
            raise self.fail_with
        self.prompts.append(prompt)
        if self.can_warm:
            self._remember(prompt)
        text = self._reply(prompt)
        cut = min((text.find(s) for s in stop if s and s in text), default=-1)
        stopped_early = cut >= 0
        if stopped_early:
            text = text[:cut]
        pieces = fake_tokens(text)
        finish: FinishReason = "stop"
        if len(pieces) > max_tokens:
            pieces, finish = pieces[:max_tokens], "length"
        emitted = 0
        # As the real backends do: past the request's wall-clock budget generation stops ("length").
        deadline = None if deadline_s is None else time.monotonic() + deadline_s
        for piece in pieces:
            if cancel_flag():
                finish = "cancelled"
                break
            if deadline is not None and time.monotonic() > deadline:
                finish = "length"
                break
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            emitted += 1
            yield CompletionChunk(text=piece)
        usage = Usage(prompt_tokens=len(fake_tokens(prompt)), completion_tokens=emitted)
        yield CompletionChunk(text="", finish_reason=finish, usage=usage)

    def stream(self, request: CompletionRequest) -> AsyncIterator[CompletionChunk]:
        stop = (*request.stop, *self.template.stop)
        return self._generate(
            self._render(request),
            request.max_tokens,
            stop,
            lambda: request.cancel is not None and request.cancel.cancelled,
            request.deadline_s,
        )

    async def complete(self, request: CompletionRequest) -> Completion:
        return await collect(self.stream(request), self.name, Stopwatch(), self.prices)

    def _remember(self, prompt: str) -> None:
        self._cached = [*self._cached[-7:], fake_tokens(prompt)]

    async def warm(self, request: CompletionRequest) -> None:
        if not self.can_warm:
            await super().warm(request)
        prompt = self._render(request)
        self.warmed.append(prompt)
        self._remember(prompt)

    def reusable_tokens(self, request: CompletionRequest) -> tuple[int, int] | None:
        if not self.can_warm:
            return None
        tokens = fake_tokens(self._render(request))
        best = 0
        for cached in self._cached:
            n = 0
            while n < min(len(cached), len(tokens)) and cached[n] == tokens[n]:
                n += 1
            best = max(best, n)
        return best, len(tokens)

    def _chat_prompt(self, request: ChatRequest) -> str:
        return "".join(f"<{m.role}>{m.content}</{m.role}>" for m in request.messages) + "<assistant>"

    def stream_chat(self, request: ChatRequest) -> AsyncIterator[CompletionChunk]:
        return self._generate(
            self._chat_prompt(request),
            request.max_tokens,
            request.stop,
            lambda: request.cancel is not None and request.cancel.cancelled,
            request.deadline_s,
        )

    async def chat(self, request: ChatRequest) -> Completion:
        return await collect(self.stream_chat(request), self.name, Stopwatch(), self.prices)

    def token_counter(self) -> Callable[[str], int]:
        return _count_fake_tokens

    async def tokenize(self, text: str) -> list[int]:
        return [zlib.crc32(piece.encode("utf-8")) & 0x7FFFFFFF for piece in fake_tokens(text)]

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        # Hashed bag of words, L2-normalised: deterministic, and similar texts get similar vectors.
        vectors = []
        for text in texts:
            vec = [0.0] * self.embedding_dim
            for word in re.findall(r"\w+", text.lower()):
                h = hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest()
                vec[h[0] % self.embedding_dim] += 1.0 if h[1] % 2 else -1.0
            norm = math.sqrt(sum(v * v for v in vec)) or 1.0
            vectors.append([v / norm for v in vec])
        return vectors
