"""The ``Backend`` interface every model adapter implements, and the request/response types it speaks.

A backend has one required async method, ``complete``; the rest (``stream``, ``chat``, ``stream_chat``, ``embed``,
``tokenize``) are optional and raise ``NotSupported`` naming the backend when absent. Capabilities are class
attributes so callers can route without trying.
"""

from __future__ import annotations

import abc
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from forgepilot.errors import MaxTokensTooLarge, NotSupported

FinishReason = Literal["stop", "length", "cancelled"]
Role = Literal["system", "user", "assistant"]


class CancelToken:
    """A stop flag shared between the caller and a generation loop (which may run in another thread)."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


@dataclass(frozen=True)
class Segment:
    """A piece of a rendered prompt: one of the template's own markers (``control``), or text.

    Text (documents, snippets, paths, chat messages) is always tokenized as plain text, so a file holding
    ``<|endoftext|>`` is seven ordinary tokens, never the control token; only a template's markers are special.
    """

    text: str
    control: bool = False


def prompt_text(segments: Sequence[Segment]) -> str:
    """The segments joined as one string (what a log or a dataset shows; never what a tokenizer should parse)."""
    return "".join(s.text for s in segments)


#: How urgently a request wants the model: editors wait on ``interactive`` (completions) ahead of ``chat`` tasks,
#: and both ahead of ``batch`` work (evaluations, dataset generation, distillation).
Priority = Literal["interactive", "chat", "batch"]
PRIORITY_RANK: dict[str, int] = {"interactive": 0, "chat": 1, "batch": 2}
#: Warming a prompt into the model's cache (``Backend.warm``) runs only when nothing else waits.
BACKGROUND_RANK = 3


@dataclass(frozen=True)
class CompletionRequest:
    """Complete ``prompt``; with ``suffix`` the backend fills the middle through the model family's FIM template.

    ``segments`` is an already rendered model-specific prompt (FIM or repository-level), sent as given: its control
    segments as the template's markers, its text segments as plain text; ``prompt`` is then its text, for logs.
    ``deadline_s`` stops generation after that many seconds of wall-clock time, queue and prompt included, and
    ``predict_s`` after that many seconds of generating (finish reason ``length`` for both).
    """

    prompt: str
    suffix: str | None = None
    max_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    segments: tuple[Segment, ...] | None = None
    priority: Priority = "interactive"
    deadline_s: float | None = None
    #: Seconds generation may run after its first token (llama.vscode's ``t_max_predict_ms``): a suggestion while
    #: typing is worth less than the next keystroke. Finish reason ``length`` when it cuts.
    predict_s: float | None = None
    cancel: CancelToken | None = None

    @property
    def raw(self) -> bool:
        return self.segments is not None


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True)
class ChatRequest:
    messages: tuple[ChatMessage, ...]
    max_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    priority: Priority = "chat"
    deadline_s: float | None = None
    cancel: CancelToken | None = None


@dataclass
class Usage:
    """Token counts from the serving model's own tokenizer; ``cached_prompt_tokens`` were reused from the KV cache."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    #: True when the server reported no usage and the counts were derived (e.g. one token per streamed chunk).
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class Cost:
    """Money for one request from the versioned price table; ``usd`` is None when the model has no price."""

    usd: float | None
    price_table_version: str


@dataclass
class Timings:
    """Seconds from the request reaching the backend: to the first generated text, and to the end."""

    first_token_s: float | None = None
    total_s: float = 0.0


@dataclass
class Completion:
    text: str
    finish_reason: FinishReason
    model: str
    usage: Usage = field(default_factory=Usage)
    cost: Cost | None = None
    timings: Timings = field(default_factory=Timings)


@dataclass
class CompletionChunk:
    """A piece of a streamed completion; the last chunk has ``finish_reason`` and the final ``usage``."""

    text: str
    finish_reason: FinishReason | None = None
    usage: Usage | None = None


class Stopwatch:
    """Measures first-token and total time of one request."""

    def __init__(self) -> None:
        self._start = time.perf_counter()
        self.first_token_s: float | None = None

    def mark_token(self) -> None:
        if self.first_token_s is None:
            self.first_token_s = time.perf_counter() - self._start

    def timings(self) -> Timings:
        return Timings(first_token_s=self.first_token_s, total_s=time.perf_counter() - self._start)


class Backend(abc.ABC):
    """A model behind one interface. Subclasses set the capability attributes truthfully."""

    supports_fim: bool = False
    can_stream: bool = False
    can_chat: bool = False
    can_embed: bool = False
    can_tokenize: bool = False
    max_context: int = 2048
    #: Another process or machine reads the prompts (an HTTP model server): guards always mask secrets for it.
    remote: bool = False
    #: ``warm`` evaluates a prompt into a cache that later requests sharing its start reuse.
    can_warm: bool = False

    def __init__(self, name: str) -> None:
        #: ``provider:model``, as users and telemetry name it.
        self.name = name

    @abc.abstractmethod
    async def complete(self, request: CompletionRequest) -> Completion:
        """Return the whole completion of ``request``."""

    def stream(self, request: CompletionRequest) -> AsyncIterator[CompletionChunk]:
        raise NotSupported(self.name, "streaming")

    async def chat(self, request: ChatRequest) -> Completion:
        raise NotSupported(self.name, "chat")

    def stream_chat(self, request: ChatRequest) -> AsyncIterator[CompletionChunk]:
        raise NotSupported(self.name, "streaming chat")

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        raise NotSupported(self.name, "embeddings")

    async def tokenize(self, text: str) -> list[int]:
        raise NotSupported(self.name, "tokenization")

    async def count_tokens(self, text: str) -> int:
        return len(await self.tokenize(text))

    async def warm(self, request: CompletionRequest) -> None:
        """Evaluate ``request``'s prompt into the model's cache when the model is otherwise idle, so that a later
        request starting with the same tokens (a file's context and prefix window) evaluates only the rest."""
        raise NotSupported(self.name, "warming prompts")

    def reusable_tokens(self, request: CompletionRequest) -> tuple[int, int] | None:
        """How many of ``request``'s prompt tokens are cached already, and how many it has; None when unknown."""
        return None

    def token_counter(self) -> Callable[[str], int]:
        """A fast synchronous token count for budgeting prompts (context assembly calls it many times).

        Backends with a local tokenizer return the exact count; remote ones an estimate of ~3.5 characters per
        token (code tokenizers average 3-4), so a budget is never spent on a network round trip per snippet.
        """
        return estimate_tokens

    async def aclose(self) -> None:  # noqa: B027 - optional hook, a no-op for backends holding nothing
        """Release connections or model handles held by this backend object."""


def check_max_tokens(backend: Backend, max_tokens: int, field_name: str = "max_tokens") -> int:
    """``max_tokens`` when the model's window can hold it; ``MaxTokensTooLarge`` (a 400) when it cannot.

    A request for a billion tokens must fail at the door, not hold the model until a client gives up.
    """
    if max_tokens > backend.max_context:
        raise MaxTokensTooLarge(max_tokens, backend.max_context, backend.name, field_name)
    return max_tokens


def estimate_tokens(text: str) -> int:
    return -(-len(text) * 2 // 7)


class Pricer(Protocol):
    def cost(self, model: str, usage: Usage) -> Cost: ...


async def collect(
    chunks: AsyncIterator[CompletionChunk], model: str, watch: Stopwatch, prices: Pricer | None = None
) -> Completion:
    """Fold a chunk stream into one ``Completion`` (used by backends whose ``complete`` is their stream)."""
    parts: list[str] = []
    finish: FinishReason = "stop"
    usage = Usage()
    async for chunk in chunks:
        if chunk.text:
            watch.mark_token()
            parts.append(chunk.text)
        if chunk.finish_reason is not None:
            finish = chunk.finish_reason
        if chunk.usage is not None:
            usage = chunk.usage
    cost = prices.cost(model, usage) if prices is not None else None
    return Completion(
        text="".join(parts), finish_reason=finish, model=model, usage=usage, cost=cost, timings=watch.timings()
    )
