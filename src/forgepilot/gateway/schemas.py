"""Request bodies of the gateway (pydantic only): the OpenAI protocol subset we serve and the assist endpoints.

Strings are cleaned of lone surrogates (JSON can carry ``\\udc80``, which no tokenizer can encode) so a broken
encoding in a document is replaced by U+FFFD instead of failing deep inside a model call.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return value


Text = Annotated[str, BeforeValidator(_clean)]


class _Lenient(BaseModel):
    # OpenAI clients send fields we do not use (user, logit_bias, ...): accept and ignore them.
    model_config = ConfigDict(extra="ignore")


class SamplingBody(_Lenient):
    """What completions and chat completions share: the model, sampling and streaming options."""

    model: str
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    n: int = Field(default=1, ge=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    stop: Text | list[Text] | None = None
    seed: int | None = None

    def stops(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    @property
    def include_usage(self) -> bool:
        return bool((self.stream_options or {}).get("include_usage"))


class CompletionBody(SamplingBody):
    prompt: Text | list[Text]
    suffix: Text | None = None
    max_tokens: int | None = Field(default=16, ge=1)
    echo: bool = False
    logprobs: int | None = None

    def prompt_text(self) -> str:
        if isinstance(self.prompt, str):
            return self.prompt
        if len(self.prompt) != 1:
            raise ValueError("prompt")
        return self.prompt[0]


class ContentPart(_Lenient):
    type: str
    text: Text | None = None


class MessageBody(_Lenient):
    role: Literal["system", "developer", "user", "assistant"]
    content: Text | list[ContentPart] | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text or "" for p in self.content if p.type == "text")


class ChatBody(SamplingBody):
    messages: list[MessageBody] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)


class EmbeddingBody(_Lenient):
    model: str | None = None
    input: Text | list[Text]
    encoding_format: Literal["float"] = "float"


class Cursor(BaseModel):
    """Where the cursor is: 0-based ``line`` and ``character`` (as LSP counts them), or an ``offset``."""

    line: int | None = None
    character: int | None = None
    offset: int | None = None

    @model_validator(mode="after")
    def _one_form(self) -> Cursor:
        if self.offset is None and (self.line is None or self.character is None):
            raise ValueError("give either offset, or line and character")
        return self


class OpenFileBody(BaseModel):
    path: Text
    text: Text


class AssistCompleteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: Text
    path: Text = "untitled"
    cursor: Cursor
    language: str | None = None
    repository: str | None = None
    recent_files: list[OpenFileBody] = Field(default_factory=list, max_length=64)
    mode: Literal["inline", "in-block", "after-block"] | None = None
    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=4096)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    context: bool = True
    cache: bool = True
    #: Who is typing (any stable id): a canary's share of users is sticky per user. With API keys, the key's
    #: name is the user and this is ignored; without, the ``X-ForgePilot-User`` header or this field.
    user: str | None = Field(default=None, max_length=200)


class AssistTaskBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: Text = ""
    path: Text = ""
    language: str | None = None
    diff: Text = ""
    question: Text = ""
    instruction: Text = ""
    variables: dict[str, Any] = Field(default_factory=dict)
    repository: str | None = None
    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=8192)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)


class EventBody(_Lenient):
    """A client's report on a completion; ``retained`` reports how much of an accepted one is still in the
    document ``after_s`` seconds later (``retained_share`` 0..1, or null with a ``reason``)."""

    type: Literal["shown", "accepted", "rejected", "partially_accepted", "retained"]
    completion_id: str | None = None
    model: str | None = None
    mode: str | None = None
    language: str | None = None
    template_id: str | None = None
    template_version: str | None = None
    shown_chars: int | None = Field(default=None, ge=0)
    accepted_chars: int | None = Field(default=None, ge=0)
    latency_ms: float | None = Field(default=None, ge=0)
    after_s: float | None = Field(default=None, ge=0)
    retained_share: float | None = Field(default=None, ge=0, le=1)
    reason: str | None = Field(default=None, max_length=200)
    #: The client's clock (unix seconds) when the event happened; the server records its own receipt time.
    client_time: float | None = None

    @model_validator(mode="after")
    def _retention_has_its_time(self) -> EventBody:
        if self.type == "retained" and self.after_s is None:
            raise ValueError("a retained event needs after_s (seconds after the accept)")
        return self


class EventsBody(BaseModel):
    events: list[EventBody] = Field(min_length=1, max_length=1000)
