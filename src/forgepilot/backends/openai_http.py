"""One backend for every OpenAI-compatible server (vLLM, TGI, Ollama, llama.cpp servers, OpenAI).

Servers differ only by their ``ProviderProfile``. Requests are retried with exponential backoff on connection
failures, 429 and 5xx, honouring ``Retry-After``; a stream is retried only before its first byte, since a partial
answer cannot be replayed. Errors come out as ``BackendError`` subclasses that say what failed and where.
The ``httpx.AsyncClient`` is injectable, so tests use ``httpx.MockTransport`` or a real server.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import httpx

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
    estimate_tokens,
)
from forgepilot.backends.fim import FimTemplate
from forgepilot.backends.pricing import PriceTable, builtin_price_table
from forgepilot.backends.providers import ProviderProfile
from forgepilot.config import HttpSettings
from forgepilot.errors import (
    BackendError,
    BackendHTTPError,
    BackendStreamInterrupted,
    BackendTimeout,
    BackendUnavailable,
    ConfigError,
    NotSupported,
)

RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
Sleep = Callable[[float], Awaitable[None]]


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date; None when absent/invalid."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _finish(reason: Any) -> FinishReason:
    return "length" if reason == "length" else "stop"


def _usage(data: Any, *, estimated: bool = False) -> Usage | None:
    if not isinstance(data, dict):
        return None
    details = data.get("prompt_tokens_details") or {}
    return Usage(
        prompt_tokens=int(data.get("prompt_tokens") or 0),
        completion_tokens=int(data.get("completion_tokens") or 0),
        cached_prompt_tokens=int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0,
        estimated=estimated,
    )


def _error_message(response: httpx.Response) -> str:
    """The server's own explanation from an OpenAI error envelope (or whatever text it sent)."""
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        return response.text[:300].strip() or response.reason_phrase
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            return str(err.get("message") or err.get("detail") or err)[:300]
        if isinstance(body.get("detail"), str | list):
            return str(body["detail"])[:300]
        return str(err)[:300]
    return str(body)[:300]


class OpenAICompatibleBackend(Backend):
    can_stream = True
    can_chat = True
    remote = True

    def __init__(
        self,
        name: str,
        *,
        profile: ProviderProfile,
        template: FimTemplate,
        model: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        api_key_env: str | None = None,
        settings: HttpSettings | None = None,
        client: httpx.AsyncClient | None = None,
        prices: PriceTable | None = None,
        max_context: int = 8192,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        super().__init__(name)
        self.profile = profile
        self.template = template
        self.model = model or name.partition(":")[2] or name
        url = base_url or profile.default_base_url
        if not url:
            raise ConfigError(f"model {name} needs a base_url", hint=f'set base_url under [models."{name}"]')
        self.base_url = url.rstrip("/")
        env_name = api_key_env or profile.default_api_key_env
        self.api_key = api_key or (os.environ.get(env_name) if env_name else None)
        if profile.requires_api_key and not self.api_key:
            raise ConfigError(f"model {name} needs an API key", hint=f"export {env_name or 'the API key variable'}=...")
        self.settings = settings or HttpSettings()
        self._owns_client = client is None
        self.client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(self.settings.timeout_s, connect=self.settings.connect_timeout_s)
        )
        self.prices = prices or builtin_price_table()
        self.max_context = max_context
        self.supports_fim = template.supports_fim
        self.can_embed = profile.can_embed
        self.can_tokenize = profile.tokenize_path is not None
        self._sleep = sleep

    # -- transport ------------------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def _backoff(self, attempt: int) -> float:
        base = min(self.settings.backoff_max_s, self.settings.backoff_base_s * 2.0**attempt)
        return float(base * (0.5 + random.random() / 2))  # equal jitter: spread retries of concurrent clients

    async def _send(self, url: str, payload: dict[str, Any], *, stream: bool) -> httpx.Response:
        """POST with retries; returns a 2xx response (open, for streams) or raises a ``BackendError``."""
        attempts = self.settings.max_retries + 1
        last: BackendError | None = None
        for attempt in range(attempts):
            delay: float | None = None
            try:
                request = self.client.build_request("POST", url, json=payload, headers=self._headers())
                response = await self.client.send(request, stream=stream)
            except httpx.ConnectError as exc:
                last = BackendUnavailable(
                    f"cannot connect to {self.name} at {self.base_url}: {exc}",
                    hint="is the model server running and is base_url right?",
                    backend=self.name,
                    retryable=True,
                )
            except httpx.TimeoutException as exc:
                last = BackendTimeout(
                    f"{self.name} did not answer within {self.settings.timeout_s:g}s ({type(exc).__name__})",
                    hint="raise http.timeout_s or check the server's load",
                    backend=self.name,
                    retryable=True,
                )
            except httpx.TransportError as exc:
                last = BackendUnavailable(
                    f"connection to {self.name} failed: {exc or type(exc).__name__}",
                    backend=self.name,
                    retryable=True,
                )
            else:
                if response.status_code < 400:
                    return response
                if stream:
                    await response.aread()
                    await response.aclose()
                retryable = response.status_code in RETRYABLE_STATUS
                last = BackendHTTPError(
                    f"{self.name} answered {response.status_code}: {_error_message(response)}",
                    backend=self.name,
                    retryable=retryable,
                    status=response.status_code,
                )
                if not retryable:
                    raise last
                delay = parse_retry_after(response.headers.get("retry-after"))
                if delay is not None and delay > self.settings.max_retry_after_s:
                    last.hint = f"the server asked to retry after {delay:.0f}s"
                    raise last
            if attempt + 1 < attempts:
                await self._sleep(self._backoff(attempt) if delay is None else delay)
        assert last is not None
        if attempts > 1:
            last.message = f"{last.message} (after {attempts} attempts)"
            last.args = (last.message,)
        raise last

    async def _post_json(self, path: str, payload: dict[str, Any], *, root: bool = False) -> Any:
        base = self.base_url.removesuffix("/v1") if root else self.base_url
        response = await self._send(base + path, payload, stream=False)
        try:
            return response.json()
        except ValueError as exc:
            raise BackendError(f"{self.name} sent a response that is not JSON", backend=self.name) from exc

    async def _sse(self, path: str, payload: dict[str, Any], cancel: Callable[[], bool]) -> AsyncIterator[Any]:
        """Yield the JSON events of a server-sent-event stream; raise if it ends before ``[DONE]``."""
        response = await self._send(self.base_url + path, payload, stream=True)
        done = False
        try:
            async for line in response.aiter_lines():
                if cancel():
                    return
                if not line.startswith("data:"):
                    continue  # comments, event names, keep-alives
                data = line[5:].strip()
                if data == "[DONE]":
                    done = True
                    break
                try:
                    event = json.loads(data)
                except ValueError as exc:
                    raise BackendStreamInterrupted(
                        f"{self.name} sent a malformed stream event: {data[:120]!r}", backend=self.name
                    ) from exc
                if isinstance(event, dict) and "error" in event:
                    err = event["error"]
                    message = err.get("message", err) if isinstance(err, dict) else err
                    raise BackendHTTPError(f"{self.name} failed mid-stream: {message}", backend=self.name)
                yield event
        except httpx.TimeoutException as exc:
            raise BackendTimeout(
                f"{self.name} stalled mid-stream for over {self.settings.timeout_s:g}s", backend=self.name
            ) from exc
        except httpx.TransportError as exc:
            raise BackendStreamInterrupted(
                f"the stream from {self.name} was cut off: {exc or type(exc).__name__}",
                hint="the model server may have crashed or restarted",
                backend=self.name,
                retryable=True,
            ) from exc
        finally:
            await response.aclose()
        if not done and not cancel():
            raise BackendStreamInterrupted(
                f"the stream from {self.name} ended before it was complete", backend=self.name, retryable=True
            )

    # -- completions ----------------------------------------------------------------------------------------

    def _completion_payload(self, request: CompletionRequest, *, stream: bool) -> dict[str, Any]:
        # Servers tokenize a prompt string with its special tokens parsed: only the template's markers may be
        # spelled as control tokens; every text (document, suffix, snippets) goes out defanged.
        stop = list(request.stop)
        template = self.template
        payload: dict[str, Any] = {"model": self.model}
        segments = request.segments
        if segments is None and request.suffix is not None and template.supports_fim:
            if self.profile.fim_mode == "raw":
                segments = template.segments(request.prompt, request.suffix)
            else:
                payload["suffix"] = template.defang(request.suffix)
        payload["prompt"] = template.wire_text(segments) if segments is not None else template.defang(request.prompt)
        if "suffix" not in payload:  # the server applies no template of its own: our format's stops apply
            stop += [s for s in template.stop if s not in stop]
        return self._with_options(payload, request, stop, stream=stream)

    def _with_options(
        self, payload: dict[str, Any], request: CompletionRequest | ChatRequest, stop: list[str], *, stream: bool
    ) -> dict[str, Any]:
        """Sampling, stop and streaming fields shared by completions and chat."""
        payload.update(max_tokens=request.max_tokens, temperature=request.temperature, top_p=request.top_p)
        if stop:
            payload["stop"] = stop[:4] if self.profile.name == "openai" else stop  # OpenAI allows at most 4
        if request.seed is not None:
            payload["seed"] = request.seed
        if stream:
            payload["stream"] = True
            if self.profile.stream_usage:
                payload["stream_options"] = {"include_usage": True}
        return payload

    def _result(self, body: Any, watch: Stopwatch, text_of: Callable[[Any], Any], what: str) -> Completion:
        """A ``Completion`` from a non-streamed answer; ``text_of`` picks the text out of the first choice."""
        try:
            choice = body["choices"][0]
            text = text_of(choice) or ""
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise BackendError(f"{self.name} sent a {what} without choices", backend=self.name) from exc
        watch.mark_token()
        usage = _usage(body.get("usage")) or Usage(estimated=True)
        return Completion(
            text=text,
            finish_reason=_finish(choice.get("finish_reason")),
            model=self.name,
            usage=usage,
            cost=self.prices.cost(self.name, usage),
            timings=watch.timings(),
        )

    async def complete(self, request: CompletionRequest) -> Completion:
        watch = Stopwatch()
        body = await self._post_json("/completions", self._completion_payload(request, stream=False))
        return self._result(body, watch, lambda choice: choice.get("text"), "completion")

    async def _stream_events(
        self,
        path: str,
        payload: dict[str, Any],
        cancel_flag: Callable[[], bool],
        pick: Callable[[Any], str | None],
        prompt_chars: str,
    ) -> AsyncIterator[CompletionChunk]:
        finish: FinishReason | None = None
        usage: Usage | None = None
        chunks = 0
        async for event in self._sse(path, payload, cancel_flag):
            usage = _usage(event.get("usage")) or usage
            for choice in event.get("choices") or []:
                text = pick(choice)
                if text:
                    chunks += 1
                    yield CompletionChunk(text=text)
                if choice.get("finish_reason"):
                    finish = _finish(choice["finish_reason"])
        if cancel_flag():
            finish = "cancelled"
        yield CompletionChunk(
            text="",
            finish_reason=finish or "stop",
            # Without a usage event, one streamed chunk is one token on every server we support, and the prompt is
            # estimated from its length (never 0: that would under-report cost); say both are estimates.
            usage=usage or Usage(prompt_tokens=estimate_tokens(prompt_chars), completion_tokens=chunks, estimated=True),
        )

    def stream(self, request: CompletionRequest) -> AsyncIterator[CompletionChunk]:
        payload = self._completion_payload(request, stream=True)
        return self._stream_events(
            "/completions",
            payload,
            lambda: request.cancel is not None and request.cancel.cancelled,
            lambda choice: choice.get("text"),
            payload["prompt"] + payload.get("suffix", ""),
        )

    # -- chat -----------------------------------------------------------------------------------------------

    def _chat_payload(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m.role, "content": self.template.defang(m.content)} for m in request.messages],
        }
        return self._with_options(payload, request, list(request.stop), stream=stream)

    async def chat(self, request: ChatRequest) -> Completion:
        watch = Stopwatch()
        body = await self._post_json("/chat/completions", self._chat_payload(request, stream=False))
        return self._result(body, watch, lambda choice: (choice.get("message") or {}).get("content"), "chat completion")

    def stream_chat(self, request: ChatRequest) -> AsyncIterator[CompletionChunk]:
        return self._stream_events(
            "/chat/completions",
            self._chat_payload(request, stream=True),
            lambda: request.cancel is not None and request.cancel.cancelled,
            lambda choice: (choice.get("delta") or {}).get("content"),
            "".join(f"{m.role}\n{m.content}\n" for m in request.messages),
        )

    async def collect_stream(self, request: CompletionRequest) -> Completion:
        """Complete through the streaming endpoint (measures time to first token)."""
        return await collect(self.stream(request), self.name, Stopwatch(), self.prices)

    # -- embeddings and tokens ------------------------------------------------------------------------------

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not self.can_embed:
            raise NotSupported(self.name, "embeddings")
        body = await self._post_json("/embeddings", {"model": self.model, "input": list(texts)})
        try:
            rows = sorted(body["data"], key=lambda row: row.get("index", 0))
            return [[float(x) for x in row["embedding"]] for row in rows]
        except (KeyError, TypeError, ValueError) as exc:
            raise BackendError(f"{self.name} sent malformed embeddings", backend=self.name) from exc

    async def tokenize(self, text: str) -> list[int]:
        dialect, path = self.profile.tokenize_dialect, self.profile.tokenize_path
        if path is None:
            raise NotSupported(self.name, "tokenization")
        payload: dict[str, Any]
        if dialect == "vllm":
            payload = {"model": self.model, "prompt": text, "add_special_tokens": False}
        elif dialect == "tgi":
            payload = {"inputs": text}
        elif dialect == "llama-server":
            payload = {"content": text}
        else:
            payload = {"input": text, "model": self.model}
        body = await self._post_json(path, payload, root=True)
        try:
            if dialect == "tgi":
                return [int(t["id"]) for t in body]
            return [int(t) for t in body["tokens"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise BackendError(f"{self.name} sent a malformed tokenize answer", backend=self.name) from exc

    async def aclose(self) -> None:
        if self._owns_client:
            await self.client.aclose()
