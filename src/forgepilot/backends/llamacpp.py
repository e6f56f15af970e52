"""The embedded runtime: a GGUF model run in-process by llama.cpp (``llama_cpp.Llama``).

A ``Llama`` object is one mutable context, not safe to share between threads, so each loaded model lives in a
``LlamaHost`` with a single worker thread: concurrent requests queue up in arrival order and never interleave.
Consecutive prompts sharing a prefix reuse the KV cache (llama.cpp keeps the longest common prefix), which is why
completions of the same file stay fast; ``usage.cached_prompt_tokens`` reports how many tokens were reused. Earlier
prompts' caches are also kept (``kvstates``): a file's prompt warmed in the background (``warm``), and the last
few editor requests, so moving between spots and files, or a chat task in between, does not start from nothing.

Prompts are tokenized here, not by llama-cpp-python: control tokens of the FIM and chat templates are parsed as
special tokens while the user's code is tokenized as plain text, so code that happens to contain ``<|endoftext|>``
cannot inject a control token. (llama-cpp-python 0.3.36's own ``suffix`` support uses token id 0 for every FIM
token, so it is never used.)
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import logging
import os
import re
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forgepilot.backends.base import (
    BACKGROUND_RANK,
    PRIORITY_RANK,
    Backend,
    CancelToken,
    ChatRequest,
    Completion,
    CompletionChunk,
    CompletionRequest,
    FinishReason,
    Segment,
    Stopwatch,
    Usage,
    collect,
)
from forgepilot.backends.fim import FimTemplate
from forgepilot.backends.pricing import PriceTable, builtin_price_table
from forgepilot.backends.worker import PriorityWorker
from forgepilot.config import LlamaSettings
from forgepilot.errors import BackendError, BackendTimeout, MissingExtra, UserError

if TYPE_CHECKING:
    import numpy as np

    from forgepilot.backends.kvstates import PromptStates

_DONE = object()
#: Tokens a background warm evaluates between two looks at the queue (an editor's request waits one chunk at most).
WARM_CHUNK_TOKENS = 32
_log = logging.getLogger("forgepilot.llama_cpp")

# Chat formats for GGUFs that carry no ``tokenizer.chat_template``, by declared family (the model cards' formats).
_FALLBACK_CHAT_TEMPLATES: dict[str, str] = {
    "gemma3": (
        "{{ bos_token }}{% for m in messages %}"
        "{% set role = 'model' if m['role'] == 'assistant' else 'user' %}"
        "<start_of_turn>{{ role }}\n{{ m['content'] | trim }}<end_of_turn>\n{% endfor %}"
        "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
    ),
    "qwen2.5-coder": (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    ),
}
_FALLBACK_CHAT_TEMPLATES["codegemma"] = _FALLBACK_CHAT_TEMPLATES["gemma3"]
#: What ends an assistant turn, by family (serving stops there; training ends each answer with it).
CHAT_TURN_ENDS: dict[str, list[str]] = {
    "gemma3": ["<end_of_turn>"],
    "codegemma": ["<end_of_turn>"],
    "qwen2.5-coder": ["<|im_end|>"],
}

# llama.cpp logs from C; route it into Python logging instead of letting it write over the CLI's output.
# ggml's levels: 0 none, 1 debug, 2 info, 3 warn, 4 error, 5 continuation of the previous line.
_GGML_LEVELS = {1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR}
_log_callback: Any = None


def _install_log_callback(llama_cpp: Any) -> None:
    global _log_callback
    if _log_callback is not None:
        return

    @llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
    def forward(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        message = text.decode("utf-8", errors="replace").rstrip()
        if message:
            _log.log(_GGML_LEVELS.get(level, logging.DEBUG), "%s", message)

    _log_callback = forward  # keep a reference: C holds only a pointer
    llama_cpp.llama_log_set(forward, ctypes.c_void_p(0))


def default_threads() -> int:
    """All CPUs this process may run on: llama-cpp-python's default (half the cores) halves generation speed on
    small machines, where generation is compute-bound."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def import_llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError as exc:
        raise MissingExtra("llama_cpp", "llama") from exc
    _install_log_callback(llama_cpp)
    return llama_cpp


@dataclass(frozen=True)
class _HostKey:
    path: str
    n_ctx: int
    n_threads: int | None
    n_batch: int
    prompt_cache_mib: int
    prompt_lookup_tokens: int
    flash_attn: bool
    lora: str | None = None


class LlamaHost:
    """One loaded model and the single thread that runs everything touching its context."""

    def __init__(self, path: Path, settings: LlamaSettings, *, lora: Path | None = None) -> None:
        llama_cpp = import_llama_cpp()
        if not path.is_file():
            raise UserError(f"model file {path} does not exist")
        if lora is not None and not lora.is_file():
            raise UserError(f"adapter file {lora} does not exist")
        try:
            draft = None
            if settings.prompt_lookup_tokens:
                from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

                draft = LlamaPromptLookupDecoding(num_pred_tokens=settings.prompt_lookup_tokens)
            self.llm = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=settings.n_ctx,
                n_threads=settings.n_threads or default_threads(),
                n_batch=settings.n_batch,
                flash_attn=settings.flash_attn,
                draft_model=draft,
                lora_path=str(lora) if lora is not None else None,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise BackendError(f"llama.cpp could not load {path}: {exc}", hint="run `forgepilot doctor`") from exc
        # numpy and the state cache load with the model, not with the package (``forgepilot --help`` stays fast).
        import numpy as np

        from forgepilot.backends.kvstates import PromptStates

        self.states: PromptStates = PromptStates(settings.prompt_cache_mib << 20)
        #: The tokens of the live cache as of the last job (read by other threads to estimate reuse).
        self._live: np.ndarray = np.zeros(0, dtype=np.int32)
        self.path = path
        self.n_ctx = settings.n_ctx
        self.worker = PriorityWorker(f"llama-{path.stem[:24]}")
        self.add_bos = bool(self.llm._model.add_bos_token())
        self._formatter: Any = None
        #: Jobs run in place of a lower-priority generation that paused for them (tests read it).
        self.preemptions = 0

    def serve_waiting(self, rank: int) -> None:
        """Called between two tokens of a generation of priority ``rank``: run every waiting job that is more
        urgent first, with this generation's state (KV cache, tokens) saved before and restored after.

        An editor's completion then waits for one token of a long chat answer, not for all of it; the chat goes on
        exactly where it was (greedy output is unchanged).
        """
        job = self.worker.pop_more_urgent(rank)
        if job is None:
            return
        import numpy as np

        from forgepilot.backends.kvstates import load_snapshot, snapshot

        llm = self.llm
        tokens = np.array(llm.input_ids[: llm.n_tokens], dtype=np.int32)
        cells = snapshot(llm)
        # The urgent job's generation installs its own sampler: the paused one keeps its own (temperature, seed).
        sampler, mu = llm._sampler, llm._mirostat_mu
        try:
            while job is not None:
                self.preemptions += 1
                job.run()
                job = self.worker.pop_more_urgent(rank)
        finally:
            if cells is None or not load_snapshot(llm, tokens, cells):
                raise BackendError("llama.cpp could not resume a paused generation", backend=self.path.name)
            llm._sampler, llm._mirostat_mu = sampler, mu
            self._note_live()

    def _note_live(self) -> None:
        import numpy as np

        self._live = np.array(self.llm.input_ids[: self.llm.n_tokens], dtype=np.int32)

    def reusable(self, tokens: Sequence[int]) -> int:
        """How many leading ``tokens`` need no evaluation: held by the live cache or a saved state (any thread)."""
        import numpy as np

        from forgepilot.backends.kvstates import common_prefix

        want = np.asarray(tokens, dtype=np.int32)
        _, saved = self.states.best(want)
        return max(common_prefix(self._live, want), saved)

    def _resume_best(self, tokens: list[int]) -> int:
        """Put the cache holding most of ``tokens`` live (a saved state when it beats the live one); the length of
        the prefix it holds."""
        import numpy as np

        from forgepilot.backends.kvstates import common_prefix

        llm = self.llm
        want = np.asarray(tokens, dtype=np.int32)
        live = common_prefix(np.asarray(llm.input_ids[: llm.n_tokens], dtype=np.int32), want)
        state, saved = self.states.best(want)
        if state is not None and saved > live and self.states.restore(llm, state):
            return saved
        return live

    def warm_step(self, tokens: list[int], rank: int) -> bool:
        """Evaluate ``tokens`` into the cache, from the best cache there is, and keep the result as a warm state.

        Runs in chunks: when a more urgent job waits, the progress is saved and False returned (the caller queues
        the rest again), so an editor's completion waits for one chunk at most. True when every token is cached.
        """
        llm = self.llm
        if len(tokens) >= self.n_ctx:
            return True  # longer than the window: no request can use it
        have = min(self._resume_best(tokens), len(tokens))
        llm.n_tokens = have
        llm._ctx.kv_cache_seq_rm(-1, have, -1)
        done = have >= len(tokens)
        try:
            while not done:
                llm.eval(tokens[llm.n_tokens : llm.n_tokens + WARM_CHUNK_TOKENS])
                done = llm.n_tokens >= len(tokens)
                if self.worker.has_more_urgent(rank):
                    break
        finally:
            self.states.save(llm, "warm")
            self._note_live()
        return done

    # Tokenization reads only the vocabulary, so it may run beside generation on another thread.
    def tokenize_text(self, text: str) -> list[int]:
        return self._tokenize(text, special=False)

    def tokenize_special(self, text: str) -> list[int]:
        return self._tokenize(text, special=True)

    def tokenize_segments(self, segments: Sequence[Segment]) -> list[int]:
        """Control segments parsed for special tokens, text segments as plain text."""
        tokens: list[int] = []
        for segment in segments:
            tokens += self.tokenize_special(segment.text) if segment.control else self.tokenize_text(segment.text)
        return tokens

    def _tokenize(self, text: str, *, special: bool) -> list[int]:
        # llama-cpp-python's own tokenize allocates a zeroed buffer of the training context (32k tokens for
        # Qwen) on every call: ~0.3 ms for a one-line text. A text never has more tokens than bytes (+ a few
        # specials), so a buffer of that size is enough; a too small buffer is reported and retried exactly.
        if not text:
            return []
        llama_cpp = import_llama_cpp()
        data = text.encode("utf-8")
        size = len(data) + 8
        buf = (llama_cpp.llama_token * size)()
        n = llama_cpp.llama_tokenize(self.llm._model.vocab, data, len(data), buf, size, False, special)
        if n < 0:
            size = -n
            buf = (llama_cpp.llama_token * size)()
            n = llama_cpp.llama_tokenize(self.llm._model.vocab, data, len(data), buf, size, False, special)
            if n < 0:
                raise BackendError(f"llama.cpp could not tokenize a text of {len(data)} bytes", backend=self.path.name)
        return list(buf[:n])

    def bos(self) -> list[int]:
        return [int(self.llm.token_bos())] if self.add_bos else []

    def chat_prompt(self, messages: Sequence[dict[str, str]], family: str) -> tuple[list[int], list[str]]:
        """Tokens and stop strings for a chat, rendered with the GGUF's chat template (else the family's format).

        The template is rendered with a placeholder for each message's content, so its own markers (turn starts and
        ends) are parsed as special tokens and every message as plain text: a message holding ``<|im_end|>`` does
        not close its turn.
        """
        extra_stop: list[str] = []
        if self._formatter is None:
            template = self.llm.metadata.get("tokenizer.chat_template") or _FALLBACK_CHAT_TEMPLATES.get(family)
            if not template:
                raise UserError(
                    f"{self.path.name} has no chat template and family {family!r} has no known chat format",
                    hint="use completion instead of chat",
                )
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            eos, bos = int(self.llm.token_eos()), int(self.llm.token_bos())
            self._formatter = Jinja2ChatFormatter(
                template=template,
                eos_token=self.llm._model.token_get_text(eos) if eos != -1 else "",
                bos_token=self.llm._model.token_get_text(bos) if bos != -1 else "",
            )
        if "tokenizer.chat_template" not in self.llm.metadata:
            extra_stop = CHAT_TURN_ENDS.get(family, [])
        placeholders = [{**m, "content": _placeholder(i)} for i, m in enumerate(messages)]
        result = self._formatter(messages=placeholders)
        segments = _fill_placeholders(result.prompt, [m["content"] for m in messages])
        tokens = ([] if result.added_special else self.bos()) + self.tokenize_segments(segments)
        stop = result.stop if isinstance(result.stop, list) else [result.stop] if result.stop else []
        return tokens, [s for s in [*stop, *extra_stop] if s]

    def generate(
        self,
        tokens: list[int],
        *,
        max_tokens: int,
        temperature: float,
        top_p: float,
        stop: list[str],
        seed: int | None,
        cancel: CancelToken,
        emit: Callable[[object], None],
        rank: int = 0,
        deadline: float | None = None,
        predict_s: float | None = None,
        keep_state: bool = False,
    ) -> None:
        """Run one generation on the worker thread, handing chunks to ``emit``; the last one carries usage.

        Between tokens, more urgent jobs run first (``serve_waiting``); past ``deadline`` (monotonic seconds) the
        generation stops with finish reason ``length``. ``keep_state`` saves the cache afterwards (an editor's
        request: the next keystroke there starts from it even when other work used the model in between).
        """
        llama_cpp = import_llama_cpp()
        llm = self.llm
        if len(tokens) >= self.n_ctx:
            raise UserError(
                f"the prompt has {len(tokens)} tokens but the model's context holds {self.n_ctx}",
                hint="send less context or raise llama.n_ctx",
            )
        max_tokens = min(max_tokens, self.n_ctx - len(tokens))
        cached = self._resume_best(tokens)
        calls = 0
        out_of_time = False
        first_token_at = 0.0

        def keep_going(input_ids: Any, logits: Any) -> bool:
            # Called once per sampled token, plus once after the loop: count, stop at once on cancellation or at
            # the deadline, and let a more urgent request use the model before the next token.
            nonlocal calls, out_of_time, first_token_at
            calls += 1
            now = time.monotonic()
            first_token_at = first_token_at or now
            if (deadline is not None and now > deadline) or (
                predict_s is not None and now - first_token_at > predict_s
            ):
                out_of_time = True
                return True
            if not cancel.cancelled:
                self.serve_waiting(rank)
            return cancel.cancelled

        finish: FinishReason = "stop"
        for chunk in llm.create_completion(
            prompt=tokens,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            stop=stop or None,
            seed=seed,
            stream=True,
            stopping_criteria=llama_cpp.StoppingCriteriaList([keep_going]),
        ):
            choice = chunk["choices"][0]
            if choice["text"]:
                emit(CompletionChunk(text=choice["text"]))
            if choice.get("finish_reason") == "length":
                finish = "length"
            if cancel.cancelled:
                break
        if out_of_time:
            finish = "length"
        if cancel.cancelled:
            finish = "cancelled"
        if keep_state:
            self.states.save(llm, "request")
        self._note_live()
        # Sampled tokens include the end-of-generation token (the model computed it); a token sampled after
        # cancellation was never shown, so it is not charged.
        sampled = max(calls - 1, 0)
        completion_tokens = max(sampled - 1, 0) if cancel.cancelled else sampled
        usage = Usage(
            prompt_tokens=len(tokens),
            completion_tokens=completion_tokens,
            cached_prompt_tokens=min(cached, max(len(tokens) - 1, 0)),
        )
        emit(CompletionChunk(text="", finish_reason=finish, usage=usage))


# Private-use characters: no chat template writes them, so they mark exactly where a message's content goes.
_PLACEHOLDER = re.compile("\ue000([0-9]+)\ue001")


def _placeholder(index: int) -> str:
    return f"\ue000{index}\ue001"


def _fill_placeholders(rendered: str, contents: Sequence[str]) -> list[Segment]:
    """The rendered chat as segments: the template's text (control) with each message's content (text) put back."""
    segments: list[Segment] = []
    at = 0
    for match in _PLACEHOLDER.finditer(rendered):
        segments.append(Segment(rendered[at : match.start()], control=True))
        segments.append(Segment(contents[int(match.group(1))]))
        at = match.end()
    segments.append(Segment(rendered[at:], control=True))
    return [s for s in segments if s.text]


_HOSTS: dict[_HostKey, LlamaHost] = {}
_HOSTS_LOCK = threading.Lock()


@atexit.register
def _close_hosts() -> None:
    """Free models while llama.cpp is still loaded: freeing them during interpreter teardown raises noise."""
    with _HOSTS_LOCK:
        for host in _HOSTS.values():
            host.worker.shutdown()
            with contextlib.suppress(Exception):
                # Not verbose, llama-cpp-python redirects stdout/stderr to /dev/null around the free and leaks
                # the handles at exit; its log output already goes through our callback.
                host.llm.verbose = True
                host.llm.close()
        _HOSTS.clear()
    # llama-cpp-python opens two /dev/null files at import and never closes them (a ResourceWarning at every exit).
    utils = sys.modules.get("llama_cpp._utils")
    for name in ("outnull_file", "errnull_file"):
        handle = getattr(utils, name, None)
        if handle is not None:
            handle.close()


def llama_host(path: Path, settings: LlamaSettings, *, lora: Path | None = None) -> LlamaHost:
    """The process-wide host for this model file (and LoRA adapter) and settings, loading it on first use."""
    key = _HostKey(
        str(path.resolve()),
        settings.n_ctx,
        settings.n_threads,
        settings.n_batch,
        settings.prompt_cache_mib,
        settings.prompt_lookup_tokens,
        settings.flash_attn,
        str(lora.resolve()) if lora is not None else None,
    )
    with _HOSTS_LOCK:
        host = _HOSTS.get(key)
        if host is None:
            host = _HOSTS[key] = LlamaHost(path, settings, lora=lora)
        return host


class LlamaCppBackend(Backend):
    can_stream = True
    can_chat = True
    can_tokenize = True
    can_warm = True

    def __init__(
        self,
        name: str,
        *,
        path: Path,
        template: FimTemplate,
        settings: LlamaSettings | None = None,
        prices: PriceTable | None = None,
        lora: Path | None = None,
    ) -> None:
        super().__init__(name)
        self.path = path
        #: A LoRA adapter GGUF applied over ``path`` at load (a fine-tune served without merging).
        self.lora = lora
        self.template = template
        self.settings = settings or LlamaSettings()
        self.prices = prices or builtin_price_table()
        self.supports_fim = template.supports_fim
        self.max_context = self.settings.n_ctx
        self._host: LlamaHost | None = None
        self._counter: Callable[[str], int] | None = None
        #: The last prompt tokenized: a completion asks how much of its prompt is cached, then runs it.
        self._last_prompt: tuple[tuple[Segment, ...], list[int]] | None = None

    @property
    def host(self) -> LlamaHost:
        if self._host is None:
            self._host = llama_host(self.path, self.settings, lora=self.lora)
        return self._host

    def prompt_tokens(self, request: CompletionRequest) -> list[int]:
        """The exact tokens sent to the model: template markers special, every text plain."""
        segments = request.segments
        if segments is None:
            if self.template.supports_fim and request.suffix is not None:
                segments = self.template.segments(request.prompt, request.suffix)
            else:
                segments = (Segment(request.prompt),)
        key = tuple(segments)
        last = self._last_prompt  # one read: other threads may replace it meanwhile
        if last is not None and last[0] == key:
            return list(last[1])
        tokens = self.host.bos() + self.host.tokenize_segments(key)
        self._last_prompt = (key, tokens)
        return list(tokens)

    async def _run(
        self,
        make_tokens: Callable[[], tuple[list[int], list[str]]],
        request: CompletionRequest | ChatRequest,
    ) -> AsyncIterator[CompletionChunk]:
        host = self.host
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        token = request.cancel or CancelToken()
        rank = PRIORITY_RANK[request.priority]
        deadline = None if request.deadline_s is None else time.monotonic() + request.deadline_s

        def emit(item: object) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def work() -> None:
            try:
                if token.cancelled:  # cancelled while waiting in the queue: do not touch the model
                    emit(CompletionChunk(text="", finish_reason="cancelled", usage=Usage()))
                    return
                if deadline is not None and time.monotonic() > deadline:
                    raise BackendTimeout(
                        f"the request's budget of {request.deadline_s:g} s ran out while it waited for the model",
                        hint="the model is busy: retry later, or raise gateway.request_budget_s",
                        backend=self.name,
                        retryable=True,
                    )
                tokens, stop = make_tokens()
                host.generate(
                    tokens,
                    max_tokens=request.max_tokens,
                    temperature=request.temperature,
                    top_p=request.top_p,
                    stop=stop,
                    seed=request.seed,
                    cancel=token,
                    emit=emit,
                    rank=rank,
                    deadline=deadline,
                    predict_s=request.predict_s if isinstance(request, CompletionRequest) else None,
                    keep_state=request.priority == "interactive",
                )
            except BaseException as exc:  # handed to the awaiting coroutine, re-raised there
                emit(exc)
            finally:
                emit(_DONE)

        future = asyncio.wrap_future(host.worker.submit(work, rank))
        try:
            while True:
                item = await queue.get()
                if item is _DONE:
                    break
                if isinstance(item, BaseException):
                    if isinstance(item, UserError | BackendError):
                        raise item
                    raise BackendError(f"llama.cpp failed: {item}", backend=self.name) from item
                assert isinstance(item, CompletionChunk)
                yield item
        finally:
            # The consumer stopped early (closed the stream, was cancelled): stop generating at the next token.
            if not future.done():
                token.cancel()
            # Wait for the worker to let go of the model. Its own errors already came through the queue; our own
            # cancellation (the caller gave up while we waited) is not swallowed: it propagates.
            with contextlib.suppress(Exception):
                await asyncio.shield(future)

    def stream(self, request: CompletionRequest) -> AsyncIterator[CompletionChunk]:
        stop = [*request.stop, *(s for s in self.template.stop if s not in request.stop)]
        return self._run(lambda: (self.prompt_tokens(request), stop), request)

    async def complete(self, request: CompletionRequest) -> Completion:
        return await collect(self.stream(request), self.name, Stopwatch(), self.prices)

    async def warm(self, request: CompletionRequest) -> None:
        """Evaluate the prompt in chunks on the model's thread, behind every other job (it yields between chunks)."""
        host = self.host
        tokens = await asyncio.to_thread(self.prompt_tokens, request)
        while not await asyncio.wrap_future(
            host.worker.submit(lambda: host.warm_step(tokens, BACKGROUND_RANK), BACKGROUND_RANK)
        ):
            pass

    def reusable_tokens(self, request: CompletionRequest) -> tuple[int, int] | None:
        tokens = self.prompt_tokens(request)
        return self.host.reusable(tokens), len(tokens)

    def stream_chat(self, request: ChatRequest) -> AsyncIterator[CompletionChunk]:
        messages = [{"role": m.role, "content": m.content} for m in request.messages]

        def make_tokens() -> tuple[list[int], list[str]]:
            tokens, stop = self.host.chat_prompt(messages, self.template.family)
            return tokens, [*request.stop, *stop]

        return self._run(make_tokens, request)

    async def chat(self, request: ChatRequest) -> Completion:
        return await collect(self.stream_chat(request), self.name, Stopwatch(), self.prices)

    async def tokenize(self, text: str) -> list[int]:
        return await asyncio.to_thread(self.host.tokenize_text, text)

    def token_counter(self) -> Callable[[str], int]:
        # One function per backend, so callers can cache counts by it. Tokenization reads only the vocabulary:
        # safe beside a generation running on the worker thread.
        if self._counter is None:
            host = self.host
            self._counter = lambda text: len(host.tokenize_text(text))
        return self._counter

    def vocab_token_ids(self, text: str) -> list[int]:
        """How the model's vocabulary tokenizes ``text`` when control tokens are allowed (for template checks)."""
        return self.host.tokenize_special(text)
