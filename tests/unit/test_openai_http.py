"""The OpenAI-compatible backend against httpx.MockTransport: payloads per provider, retries, streams, errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from forgepilot.backends import ChatMessage, ChatRequest, CompletionRequest, Segment, fim_template, provider_profile
from forgepilot.backends.openai_http import OpenAICompatibleBackend, parse_retry_after
from forgepilot.config import HttpSettings
from forgepilot.errors import (
    BackendHTTPError,
    BackendStreamInterrupted,
    BackendTimeout,
    BackendUnavailable,
    ConfigError,
    NotSupported,
)

Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A scripted server: answers in order and keeps every request it saw."""

    def __init__(self, *responses: httpx.Response | Exception) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.responses.pop(0) if len(self.responses) > 1 else self.responses[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def body(self, i: int = -1) -> Any:
        return json.loads(self.requests[i].content)


def completion(text: str = "return a + b", **usage: int) -> httpx.Response:
    body: dict[str, Any] = {"choices": [{"text": text, "finish_reason": "stop"}]}
    body["usage"] = usage or {"prompt_tokens": 5, "completion_tokens": 4}
    return httpx.Response(200, json=body)


def make(
    handler: Handler,
    provider: str = "vllm",
    family: str = "qwen2.5-coder",
    sleeps: list[float] | None = None,
    **kw: Any,
) -> OpenAICompatibleBackend:
    async def sleep(s: float) -> None:
        if sleeps is not None:
            sleeps.append(s)

    return OpenAICompatibleBackend(
        f"{provider}:m",
        profile=provider_profile(provider),
        template=fim_template(family),
        model="org/model",
        base_url="http://server:8000/v1",
        client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
        settings=kw.pop("settings", HttpSettings(max_retries=2)),
        sleep=sleep,
        **kw,
    )


async def test_raw_fim_for_vllm_renders_template_and_adds_stop_tokens() -> None:
    server = Recorder(completion())
    result = await make(server).complete(
        CompletionRequest(prompt="def add(a, b):\n", suffix="\nprint(1)", stop=("\n\n",))
    )
    body = server.body()
    assert body["prompt"] == "<|fim_prefix|>def add(a, b):\n<|fim_suffix|>\nprint(1)<|fim_middle|>"
    assert "suffix" not in body
    assert body["stop"][0] == "\n\n" and "<|endoftext|>" in body["stop"] and "<|file_sep|>" in body["stop"]
    assert body["model"] == "org/model"
    assert str(server.requests[0].url) == "http://server:8000/v1/completions"
    assert result.text == "return a + b"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (5, 4)
    assert result.cost is not None and result.cost.usd == 0.0


@pytest.mark.parametrize("provider", ["ollama", "llamacpp-server"])
async def test_suffix_mode_sends_suffix_field(provider: str) -> None:
    server = Recorder(completion())
    await make(server, provider).complete(CompletionRequest(prompt="a = ", suffix="\nb = a"))
    body = server.body()
    assert (body["prompt"], body["suffix"]) == ("a = ", "\nb = a")


async def test_llama_cpp_python_server_gets_raw_fim_because_its_suffix_support_is_broken() -> None:
    server = Recorder(completion())
    await make(server, "llama-cpp-python").complete(CompletionRequest(prompt="a = ", suffix="\nb"))
    assert server.body()["prompt"] == "<|fim_prefix|>a = <|fim_suffix|>\nb<|fim_middle|>"


async def test_left_to_right_family_drops_suffix_and_raw_passes_through() -> None:
    server = Recorder(completion())
    backend = make(server, "ollama", family="plain")
    await backend.complete(CompletionRequest(prompt="x = ", suffix="\ny"))
    assert server.body()["prompt"] == "x = " and "suffix" not in server.body()
    segments = (Segment("<|repo_name|>", control=True), Segment("r"), Segment("\n", control=True))
    await backend.complete(CompletionRequest(prompt="<|repo_name|>r\n", segments=segments))
    assert server.body()["prompt"] == "<|repo_name|>r\n"


async def test_retries_429_honouring_retry_after_then_succeeds() -> None:
    sleeps: list[float] = []
    server = Recorder(
        httpx.Response(429, headers={"Retry-After": "2"}, json={"error": {"message": "slow down"}}), completion()
    )
    result = await make(server, sleeps=sleeps).complete(CompletionRequest(prompt="x"))
    assert result.text == "return a + b"
    assert sleeps == [2.0]
    assert len(server.requests) == 2


async def test_5xx_backoff_is_exponential_with_jitter_and_gives_up_with_the_server_message() -> None:
    sleeps: list[float] = []
    server = Recorder(httpx.Response(503, json={"error": {"message": "model loading"}}))
    settings = HttpSettings(max_retries=3, backoff_base_s=1.0, backoff_max_s=3.0)
    with pytest.raises(BackendHTTPError) as info:
        await make(server, sleeps=sleeps, settings=settings).complete(CompletionRequest(prompt="x"))
    assert len(server.requests) == 4
    assert 0.5 <= sleeps[0] <= 1.0 and 1.0 <= sleeps[1] <= 2.0 and 1.5 <= sleeps[2] <= 3.0
    assert info.value.status == 503 and info.value.retryable
    assert "model loading" in info.value.one_line() and "after 4 attempts" in info.value.one_line()


async def test_client_errors_are_not_retried() -> None:
    server = Recorder(httpx.Response(400, json={"error": {"message": "max_tokens too large", "type": "invalid"}}))
    with pytest.raises(BackendHTTPError, match="400: max_tokens too large"):
        await make(server).complete(CompletionRequest(prompt="x"))
    assert len(server.requests) == 1


async def test_retry_after_beyond_the_limit_is_not_waited_for() -> None:
    sleeps: list[float] = []
    server = Recorder(httpx.Response(429, headers={"Retry-After": "3600"}))
    with pytest.raises(BackendHTTPError) as info:
        await make(server, sleeps=sleeps).complete(CompletionRequest(prompt="x"))
    assert sleeps == [] and "retry after 3600s" in info.value.one_line()


async def test_dead_server_is_unavailable_after_retries() -> None:
    server = Recorder(httpx.ConnectError("Connection refused"))
    with pytest.raises(BackendUnavailable) as info:
        await make(server).complete(CompletionRequest(prompt="x"))
    assert len(server.requests) == 3
    assert "cannot connect to vllm:m at http://server:8000/v1" in info.value.one_line()


async def test_timeout_is_a_timeout_error() -> None:
    server = Recorder(httpx.ReadTimeout("timed out"))
    with pytest.raises(BackendTimeout, match="did not answer within"):
        await make(server).complete(CompletionRequest(prompt="x"))


def sse(*events: Any, done: bool = True) -> httpx.Response:
    lines = [f"data: {json.dumps(e)}\n\n" for e in events] + (["data: [DONE]\n\n"] if done else [])
    return httpx.Response(200, content="".join(lines).encode(), headers={"content-type": "text/event-stream"})


async def test_streaming_completion_with_usage_event() -> None:
    server = Recorder(
        sse(
            {"choices": [{"text": "return", "finish_reason": None}]},
            {"choices": [{"text": " a + b", "finish_reason": "length"}]},
            {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2}},
        )
    )
    chunks = [c async for c in make(server).stream(CompletionRequest(prompt="x"))]
    assert [c.text for c in chunks] == ["return", " a + b", ""]
    assert chunks[-1].finish_reason == "length"
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 7
    assert server.body()["stream"] is True and server.body()["stream_options"] == {"include_usage": True}


async def test_stream_without_usage_estimates_from_chunks() -> None:
    server = Recorder(sse({"choices": [{"text": "a"}]}, {"choices": [{"text": "b", "finish_reason": "stop"}]}))
    result = await make(server, "tgi").collect_stream(CompletionRequest(prompt="x"))
    assert result.text == "ab"
    assert result.usage.completion_tokens == 2 and result.usage.estimated
    assert "stream_options" not in server.body()


async def test_stream_cut_before_done_is_an_interruption() -> None:
    server = Recorder(sse({"choices": [{"text": "a"}]}, done=False))
    with pytest.raises(BackendStreamInterrupted, match="ended before it was complete"):
        [c async for c in make(server).stream(CompletionRequest(prompt="x"))]


async def test_error_event_mid_stream() -> None:
    server = Recorder(sse({"choices": [{"text": "a"}]}, {"error": {"message": "out of memory"}}))
    with pytest.raises(BackendHTTPError, match="out of memory"):
        [c async for c in make(server).stream(CompletionRequest(prompt="x"))]


async def test_chat_and_streaming_chat() -> None:
    server = Recorder(
        httpx.Response(
            200,
            json={
                "choices": [{"message": {"content": "hi!"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2},
            },
        ),
        sse(
            {"choices": [{"delta": {"role": "assistant"}}]},
            {"choices": [{"delta": {"content": "h"}}]},
            {"choices": [{"delta": {"content": "i"}, "finish_reason": "stop"}]},
        ),
    )
    backend = make(server)
    request = ChatRequest((ChatMessage("system", "be brief"), ChatMessage("user", "hello")), max_tokens=9)
    assert (await backend.chat(request)).text == "hi!"
    assert server.body(0)["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello"},
    ]
    assert [c.text async for c in backend.stream_chat(request) if c.text] == ["h", "i"]
    assert str(server.requests[1].url).endswith("/v1/chat/completions")


async def test_embeddings_are_ordered_by_index() -> None:
    server = Recorder(
        httpx.Response(
            200, json={"data": [{"index": 1, "embedding": [0.0, 1.0]}, {"index": 0, "embedding": [1.0, 0.0]}]}
        )
    )
    assert await make(server).embed(["a", "b"]) == [[1.0, 0.0], [0.0, 1.0]]
    assert server.body()["input"] == ["a", "b"]
    with pytest.raises(NotSupported, match="embeddings"):
        await make(server, "tgi").embed(["a"])


@pytest.mark.parametrize(
    ("provider", "answer", "expected_path", "expected_payload"),
    [
        (
            "vllm",
            {"tokens": [1, 2], "count": 2},
            "/tokenize",
            {"model": "org/model", "prompt": "ab", "add_special_tokens": False},
        ),
        ("tgi", [{"id": 1, "text": "a"}, {"id": 2, "text": "b"}], "/tokenize", {"inputs": "ab"}),
        ("llamacpp-server", {"tokens": [1, 2]}, "/tokenize", {"content": "ab"}),
        ("llama-cpp-python", {"tokens": [1, 2]}, "/extras/tokenize", {"input": "ab", "model": "org/model"}),
    ],
)
async def test_tokenize_dialects(
    provider: str, answer: Any, expected_path: str, expected_payload: dict[str, Any]
) -> None:
    server = Recorder(httpx.Response(200, json=answer))
    backend = make(server, provider)
    assert await backend.tokenize("ab") == [1, 2]
    assert await backend.count_tokens("ab") == 2
    assert server.requests[0].url.path == expected_path  # from the server root, not under /v1
    assert server.body(0) == expected_payload


async def test_openai_needs_a_key_and_sends_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="needs an API key"):
        make(Recorder(completion()), "openai")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    server = Recorder(completion())
    backend = make(server, "openai", family="gpt")
    await backend.complete(CompletionRequest(prompt="x", stop=("a", "b", "c", "d", "e")))
    assert server.requests[0].headers["authorization"] == "Bearer sk-test"
    assert len(server.body()["stop"]) == 4
    with pytest.raises(NotSupported, match="tokenization"):
        await backend.tokenize("x")


def test_parse_retry_after() -> None:
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == pytest.approx(10.0)
