"""The in-process llama.cpp backend on the real Gemma 3 270M test model: plumbing, not quality."""

from __future__ import annotations

import asyncio

import pytest

from forgepilot.backends import CancelToken, ChatMessage, ChatRequest, CompletionRequest, LlamaCppBackend
from forgepilot.errors import UserError

PROMPT = "The quick brown fox jumps over the lazy dog. " * 3


async def forget_prefix(backend: LlamaCppBackend) -> None:
    """Run an unrelated prompt so the next one is evaluated from scratch.

    With the whole prompt cached, llama.cpp re-evaluates only its last token, which is not bit-identical to a
    batched evaluation; comparing greedy outputs therefore needs both runs to start from the same cache state.
    """
    await backend.complete(CompletionRequest(prompt="Unrelated warm-up text.", max_tokens=1))


async def test_complete_and_stream_agree(gemma: LlamaCppBackend) -> None:
    request = CompletionRequest(prompt="def fibonacci(n):\n", max_tokens=24)
    await forget_prefix(gemma)
    whole = await gemma.complete(request)
    await forget_prefix(gemma)
    chunks = [c async for c in gemma.stream(request)]
    assert whole.text and "".join(c.text for c in chunks) == whole.text
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens
    assert whole.usage.prompt_tokens == len(gemma.prompt_tokens(request))
    assert 1 <= whole.usage.completion_tokens <= 24
    assert whole.timings.first_token_s is not None and whole.timings.total_s >= whole.timings.first_token_s
    assert whole.cost is not None and whole.cost.usd == 0.0


async def test_max_tokens_is_exact(gemma: LlamaCppBackend) -> None:
    result = await gemma.complete(CompletionRequest(prompt=PROMPT, max_tokens=5, temperature=0.0))
    assert result.finish_reason == "length"
    assert result.usage.completion_tokens == 5


async def test_cancellation_mid_stream(gemma: LlamaCppBackend) -> None:
    token = CancelToken()
    chunks = []
    async for chunk in gemma.stream(CompletionRequest(prompt=PROMPT, max_tokens=300, cancel=token)):
        chunks.append(chunk)
        if sum(1 for c in chunks if c.text) == 3:
            token.cancel()
    final = chunks[-1]
    assert final.finish_reason == "cancelled"
    assert final.usage is not None and final.usage.completion_tokens < 20


async def test_abandoned_stream_stops_generating(gemma: LlamaCppBackend) -> None:
    request = CompletionRequest(prompt=PROMPT, max_tokens=400)
    stream = gemma.stream(request)
    async for chunk in stream:
        if chunk.text:
            break
    await stream.aclose()  # what a client disconnect does
    prompt_len = len(gemma.prompt_tokens(request))
    # The worker stopped within a few tokens instead of generating the remaining ~400.
    assert gemma.host.llm.n_tokens < prompt_len + 20
    again = await gemma.complete(CompletionRequest(prompt="Hello", max_tokens=3))
    assert again.usage.completion_tokens == 3


async def test_concurrent_requests_do_not_interleave(gemma: LlamaCppBackend) -> None:
    prompts = ["def add(a, b):\n", "The capital of France is", "for i in range(10):\n", "# A list of fruits:\n"]
    # Batch requests keep no saved cache: each one is evaluated the same way twice (a restored state re-evaluates
    # only the last token, which is not bit-identical to a batched evaluation).
    requests = [CompletionRequest(prompt=p, max_tokens=16, priority="batch") for p in prompts]
    alone = [(await gemma.complete(r)).text for r in requests]
    together = await asyncio.gather(*(gemma.complete(r) for r in requests))
    assert [r.text for r in together] == alone


async def test_prompt_prefix_reuses_the_kv_cache(gemma: LlamaCppBackend) -> None:
    base = "import os\nimport sys\n\n\ndef main(argv):\n    " + "x = 1\n    " * 20
    first = await gemma.complete(CompletionRequest(prompt=base, max_tokens=2))
    assert first.usage.cached_prompt_tokens < first.usage.prompt_tokens
    extended = await gemma.complete(CompletionRequest(prompt=base + "y = 2\n    ", max_tokens=2))
    assert extended.usage.cached_prompt_tokens >= first.usage.prompt_tokens - 2
    other = await gemma.complete(CompletionRequest(prompt="Completely different text.", max_tokens=2))
    assert other.usage.cached_prompt_tokens <= 1  # at most the BOS token


async def test_chat_uses_the_family_format(gemma: LlamaCppBackend) -> None:
    request = ChatRequest((ChatMessage("user", "Name a colour."),), max_tokens=8)
    await forget_prefix(gemma)
    result = await gemma.chat(request)
    tokens, stop = gemma.host.chat_prompt([{"role": "user", "content": "Name a colour."}], "gemma3")
    assert result.usage.prompt_tokens == len(tokens)
    assert "<end_of_turn>" in stop
    assert result.text.strip()
    await forget_prefix(gemma)
    streamed = "".join([c.text async for c in gemma.stream_chat(request)])
    assert streamed == result.text


async def test_tokenize_and_count(gemma: LlamaCppBackend) -> None:
    text = "def hello_world():\n    print('hi')\n"
    ids = await gemma.tokenize(text)
    assert ids and await gemma.count_tokens(text) == len(ids)
    assert gemma.host.llm.detokenize(ids).decode() == text


async def test_prompt_over_the_context_is_a_clear_error(gemma: LlamaCppBackend) -> None:
    with pytest.raises(UserError, match="context holds 1024"):
        await gemma.complete(CompletionRequest(prompt="word " * 2000, max_tokens=4))
    # The backend still serves the next request.
    assert (await gemma.complete(CompletionRequest(prompt="Hi", max_tokens=2))).usage.completion_tokens == 2
