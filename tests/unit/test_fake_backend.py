from __future__ import annotations

import pytest

from forgepilot.backends import CancelToken, ChatMessage, ChatRequest, Completion, CompletionRequest, FakeBackend
from forgepilot.backends.base import Backend
from forgepilot.errors import BackendUnavailable, NotSupported


async def test_complete_renders_fim_by_family_and_records_prompt() -> None:
    fake = FakeBackend(replies=["return a + b\n"], family="deepseek-coder")
    result = await fake.complete(CompletionRequest(prompt="def add(a, b):\n    ", suffix="\n"))
    assert result.text == "return a + b\n"
    assert fake.prompts == ["<｜fim▁begin｜>def add(a, b):\n    <｜fim▁hole｜>\n<｜fim▁end｜>"]
    assert result.finish_reason == "stop"
    assert result.usage.completion_tokens == 8  # return, ' ', a, ' ', +, ' ', b, '\n'
    assert result.cost is not None and result.cost.usd == 0.0


async def test_max_tokens_stop_strings_and_streaming() -> None:
    fake = FakeBackend(replies=["one two three\nfour"])
    chunks = [c async for c in fake.stream(CompletionRequest(prompt="x", max_tokens=3))]
    assert "".join(c.text for c in chunks) == "one two"
    assert chunks[-1].finish_reason == "length"
    stopped = await fake.complete(CompletionRequest(prompt="x", stop=("\n",)))
    assert stopped.text == "one two three"


async def test_family_stop_tokens_cut_leaked_control_tokens() -> None:
    fake = FakeBackend(replies=["x = 1<|file_sep|>junk"], family="qwen2.5-coder")
    assert (await fake.complete(CompletionRequest(prompt="a"))).text == "x = 1"


async def test_cancellation_stops_generation() -> None:
    token = CancelToken()
    fake = FakeBackend(replies=["a b c d e f g h"], delay_s=0.001)
    seen = []
    async for chunk in fake.stream(CompletionRequest(prompt="x", cancel=token)):
        seen.append(chunk)
        if len(seen) == 2:
            token.cancel()
    assert seen[-1].finish_reason == "cancelled"
    assert seen[-1].usage is not None and seen[-1].usage.completion_tokens == 2


async def test_chat_tokenize_embed() -> None:
    fake = FakeBackend(replies=lambda prompt: "echo:" + prompt[-12:])
    reply = await fake.chat(ChatRequest((ChatMessage("user", "hi"),)))
    assert reply.text.startswith("echo:")
    assert await fake.count_tokens("def f(x): return x") == len(await fake.tokenize("def f(x): return x")) == 11
    a, b, c = await fake.embed(["parse json file", "parse the json file", "matrix multiply"])
    dot = lambda u, v: sum(x * y for x, y in zip(u, v, strict=True))  # noqa: E731
    assert dot(a, b) > dot(a, c)


async def test_failure_and_unsupported() -> None:
    fake = FakeBackend(fail_with=BackendUnavailable("down", backend="fake:x"))
    with pytest.raises(BackendUnavailable):
        await fake.complete(CompletionRequest(prompt="x"))

    class Bare(Backend):
        async def complete(self, request: CompletionRequest) -> Completion:
            raise AssertionError("not called")

    with pytest.raises(NotSupported, match="bare:model"):
        await Bare("bare:model").embed(["x"])
    with pytest.raises(NotSupported, match="streaming"):
        Bare("bare:model").stream(CompletionRequest(prompt="x"))
