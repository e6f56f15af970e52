"""The OpenAI-compatible backend against a real `python -m llama_cpp.server` on a loopback port."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from forgepilot.backends import (
    ChatMessage,
    ChatRequest,
    CompletionRequest,
    LlamaCppBackend,
    OpenAICompatibleBackend,
    fim_template,
    provider_profile,
)
from forgepilot.config import HttpSettings
from forgepilot.errors import BackendStreamInterrupted, BackendUnavailable

from .conftest import LlamaServer, free_port


def http_backend(base_url: str, alias: str, family: str, **settings: float) -> OpenAICompatibleBackend:
    return OpenAICompatibleBackend(
        f"llama-cpp-python:{alias}",
        profile=provider_profile("llama-cpp-python"),
        template=fim_template(family),
        model=alias,
        base_url=base_url,
        settings=HttpSettings(**settings),
    )


async def test_completion_with_suffix(qwen_server: LlamaServer) -> None:
    backend = http_backend(qwen_server.base_url, "qwen", "qwen2.5-coder")
    result = await backend.complete(
        CompletionRequest(prompt="def add(a, b):\n", suffix="\n\n\nprint(add(2, 3))\n", max_tokens=32, stop=("\n\n",))
    )
    await backend.aclose()
    assert "return a + b" in result.text
    assert result.usage.prompt_tokens > 10 and result.usage.completion_tokens > 0 and not result.usage.estimated


async def test_chat(qwen_server: LlamaServer) -> None:
    backend = http_backend(qwen_server.base_url, "qwen", "qwen2.5-coder")
    result = await backend.chat(
        ChatRequest((ChatMessage("user", "What is 2 + 2? Answer with just the number."),), max_tokens=8)
    )
    await backend.aclose()
    assert "4" in result.text


async def test_streaming(qwen_server: LlamaServer) -> None:
    backend = http_backend(qwen_server.base_url, "qwen", "qwen2.5-coder")
    request = CompletionRequest(prompt="# Print the numbers 1 to 3 in Python\n", max_tokens=24)
    chunks = [c async for c in backend.stream(request)]
    chat_chunks = [c async for c in backend.stream_chat(ChatRequest((ChatMessage("user", "Say hi"),), max_tokens=8))]
    await backend.aclose()
    assert sum(1 for c in chunks if c.text) > 3
    assert chunks[-1].finish_reason in {"stop", "length"} and chunks[-1].usage is not None
    assert "".join(c.text for c in chat_chunks).strip()


async def test_server_tokenizer_matches_the_in_process_one(qwen_server: LlamaServer, qwen: LlamaCppBackend) -> None:
    backend = http_backend(qwen_server.base_url, "qwen", "qwen2.5-coder")
    text = "def parse_config(path: str) -> dict[str, int]:\n    return {}\n"
    assert await backend.tokenize(text) == await qwen.tokenize(text)
    await backend.aclose()


async def test_server_killed_mid_stream_is_a_clear_error(gemma_path: Path, tmp_path: Path) -> None:
    server = LlamaServer(gemma_path, "gemma", tmp_path, n_ctx=1024)
    backend = http_backend(server.base_url, "gemma", "gemma3", timeout_s=20, max_retries=0)
    received = 0
    try:

        async def consume() -> None:
            nonlocal received
            async for chunk in backend.stream(CompletionRequest(prompt="Once upon a time", max_tokens=900)):
                if chunk.text:
                    received += 1
                    if received == 3:
                        server.process.send_signal(signal.SIGKILL)

        with pytest.raises(BackendStreamInterrupted) as info:
            await asyncio.wait_for(consume(), timeout=60)  # a hang would fail here instead
        assert "cut off" in info.value.one_line() or "ended before it was complete" in info.value.one_line()
        assert received >= 3
    finally:
        await backend.aclose()
        server.stop()


async def test_dead_port_is_a_clear_error() -> None:
    backend = http_backend(f"http://127.0.0.1:{free_port()}/v1", "none", "qwen2.5-coder", max_retries=1)
    with pytest.raises(BackendUnavailable) as info:
        await backend.complete(CompletionRequest(prompt="x"))
    await backend.aclose()
    assert "cannot connect to llama-cpp-python:none" in info.value.one_line()
    assert "is the model server running" in info.value.one_line()
