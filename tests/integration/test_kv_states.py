"""Saved KV states and background warming in the in-process llama.cpp runtime (real Gemma 3 270M model)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from forgepilot.backends import ChatMessage, ChatRequest, CompletionRequest, LlamaCppBackend, Segment
from forgepilot.backends.kvstates import PromptStates, common_prefix

FILE = "import os\nimport sys\n\n\n" + "".join(f"def step_{i}(x):\n    return x * {i} + {i}\n\n\n" for i in range(40))


async def forget(backend: LlamaCppBackend) -> None:
    """Evaluate an unrelated prompt without saving it: the live cache no longer holds anything useful."""
    await backend.complete(CompletionRequest(prompt="Unrelated warm-up text.", max_tokens=1, priority="batch"))


def fim(text: str, cut: int) -> CompletionRequest:
    segments = (Segment(text[:cut]),)  # gemma has no FIM markers: the prefix alone, left to right
    return CompletionRequest(prompt=text[:cut], segments=segments, max_tokens=2)


async def test_a_warmed_window_is_reused_by_a_request_anywhere_in_it(gemma: LlamaCppBackend) -> None:
    gemma.host.states.clear()
    await forget(gemma)
    warm = CompletionRequest(prompt=FILE, segments=(Segment(FILE),), max_tokens=1)
    await gemma.warm(warm)
    assert gemma.reusable_tokens(warm) == (len(gemma.prompt_tokens(warm)),) * 2
    await forget(gemma)  # something else used the model meanwhile
    for line in (30, 90, 150):
        cut = sum(len(x) + 1 for x in FILE.split("\n")[:line])
        done = await gemma.complete(fim(FILE, cut))
        # All but the cursor's last token or two came from the warm state.
        assert done.usage.cached_prompt_tokens >= done.usage.prompt_tokens - 3, (line, done.usage)
        await forget(gemma)
    assert gemma.host.states.restores >= 3


async def test_an_editor_request_is_kept_across_other_work(gemma: LlamaCppBackend) -> None:
    gemma.host.states.clear()
    cut = len(FILE) // 2
    first = await gemma.complete(fim(FILE, cut))
    await gemma.chat(ChatRequest((ChatMessage("user", "Say hello."),), max_tokens=4))  # a chat task in between
    again = await gemma.complete(fim(FILE, cut + 1))  # the next keystroke
    assert again.usage.cached_prompt_tokens >= first.usage.prompt_tokens - 3


async def test_warming_yields_to_an_editor_request(gemma: LlamaCppBackend) -> None:
    gemma.host.states.clear()
    await forget(gemma)
    warm = CompletionRequest(prompt=FILE, segments=(Segment(FILE),), max_tokens=1)
    order: list[str] = []

    async def warming() -> None:
        await gemma.warm(warm)
        order.append("warm")

    async def editor() -> None:
        await asyncio.sleep(0.2)  # the warm is evaluating its first chunks by now
        await gemma.complete(CompletionRequest(prompt="def add(a, b):\n", max_tokens=4))
        order.append("completion")

    await asyncio.gather(warming(), editor())
    assert order == ["completion", "warm"]
    # The warm went on after the interruption and holds the whole prompt.
    assert gemma.reusable_tokens(warm) == (len(gemma.prompt_tokens(warm)),) * 2


async def test_a_paused_sampled_chat_keeps_its_own_sampler(gemma: LlamaCppBackend) -> None:
    chat = ChatRequest(
        (ChatMessage("user", "Write a long story about a lighthouse keeper."),), max_tokens=80, temperature=0.9, seed=5
    )
    await forget(gemma)
    alone = await gemma.chat(chat)
    await forget(gemma)

    async def completion() -> None:
        await asyncio.sleep(0.3)
        await gemma.complete(CompletionRequest(prompt="def add(a, b):\n", max_tokens=6))  # greedy, its own sampler

    before = gemma.host.preemptions
    paused, _ = await asyncio.gather(gemma.chat(chat), completion())
    assert gemma.host.preemptions > before
    assert paused.text == alone.text


def test_states_are_bounded_and_superseded(monkeypatch: pytest.MonkeyPatch) -> None:
    states = PromptStates(capacity_bytes=10_000)
    assert common_prefix(np.array([1, 2, 3]), np.array([1, 2, 4, 5])) == 2
    assert common_prefix(np.array([], dtype=np.int32), np.array([1])) == 0

    class FakeLlm:  # what PromptStates reads of a llama_cpp.Llama
        def __init__(self, tokens: list[int]) -> None:
            self.input_ids = np.array(tokens + [0] * 8, dtype=np.int32)
            self.n_tokens = len(tokens)

    import forgepilot.backends.kvstates as kv

    monkeypatch.setattr(kv, "snapshot", lambda llm: b"x" * 1000)  # the cells' bytes: a stand-in of known size
    states.save(FakeLlm([1, 2, 3]), "warm")
    states.save(FakeLlm([1, 2, 3, 4, 5]), "warm")  # the first one is a prefix of it: replaced
    assert len(states) == 1
    found, length = states.best([1, 2, 3, 4, 9])
    assert found is not None and length == 4
    states.save(FakeLlm([1, 2]), "request")  # already held by the longer state: nothing new kept
    assert len(states) == 1
    for i in range(10):
        states.save(FakeLlm([100 + i, 7, 7]), "request")
    assert sum(1 for s in states._states if s.kind == "request") <= kv.MAX_REQUEST_STATES
    assert states.nbytes <= 10_000
    assert any(s.kind == "warm" for s in states._states)  # the warm state outlived the stream of requests
