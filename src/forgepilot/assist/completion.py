"""Code completion at a cursor: context, prompt, model, post-processing, cache, with the *why* of every answer.

One call runs the serving path used by the gateway, the LSP server, the CLI and the evaluation harness alike:
context assembled within the serving model's token budget, rendered for its family, completed, post-processed.
The result names the context sources used, the per-stage timings and, when it returns nothing, a reason code.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from forgepilot.assist.guarding import guard_for, guard_segments
from forgepilot.assist.models import ModelPool
from forgepilot.assist.postprocess import Mode, block_complete, infer_mode, postprocess
from forgepilot.assist.warming import Warmer
from forgepilot.backends.base import (
    Backend,
    CancelToken,
    Completion,
    CompletionChunk,
    CompletionRequest,
    Priority,
    Stopwatch,
    Usage,
    check_max_tokens,
    collect,
    prompt_text,
)
from forgepilot.backends.fim import FimTemplate, fim_template
from forgepilot.config import AssistSettings, GuardSettings
from forgepilot.context import ContextBuilder, ContextResult, Document, OpenFile, Snippet
from forgepilot.errors import Cancelled
from forgepilot.safety import PromptGuard
from forgepilot.syntax.languages import Language

_TEMPLATE_ATTR = "template"
#: Cursors this many lines apart are in other parts of a file: a warm for one replaces a warm for the other.
WARM_REGION_LINES = 48


@dataclass(frozen=True)
class CompletionInput:
    document: Document
    recent: Sequence[OpenFile] = ()
    mode: Mode | None = None  # None: inferred from the cursor
    model: str | None = None  # None: the ``fast`` tier
    max_tokens: int | None = None
    temperature: float = 0.0
    top_p: float = 1.0
    #: Sampling seed (evaluations draw n reproducible samples); None lets the backend choose.
    seed: int | None = None
    context: bool = True
    use_cache: bool = True
    #: Editors wait on completions (``interactive``); evaluations and dataset work run as ``batch``.
    priority: Priority = "interactive"
    #: Wall-clock seconds the request may take, queue included (None: no limit).
    deadline_s: float | None = None
    #: A tighter prompt budget than ``[context] max_prompt_tokens`` (degraded mode shrinks the prompt).
    prompt_tokens: int | None = None
    #: The context sources this request may use, of those the settings switch on (None: all of them); a
    #: deployment serves with its own.
    sources: frozenset[str] | None = None


@dataclass
class AssistCompletion:
    text: str
    mode: Mode
    model: str
    #: Why ``text`` is empty (None when it is not): empty_generation, repeats_suffix, breaks_parse, ...
    reason: str | None
    snippets: list[Snippet]
    #: Seconds per stage: context, render, first_token, model, postprocess, total.
    timings: dict[str, float]
    usage: Usage
    template: dict[str, str]
    format: str
    cached: bool = False
    steps: list[str] = field(default_factory=list)
    raw_text: str = ""
    finish_reason: str = "stop"
    context_tokens: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)

    def why(self) -> dict[str, Any]:
        """The explanation a client can show: sources used, timings, post-processing, template."""
        return {
            "mode": self.mode,
            "format": self.format,
            "reason": self.reason,
            "cached": self.cached,
            "sources": [
                {
                    "source": s.source,
                    "path": s.path,
                    "start_line": s.start_line,
                    "end_line": s.end_line,
                    "score": s.score,
                    **({"label": s.label} if s.label else {}),
                }
                for s in self.snippets
            ],
            "tokens": self.context_tokens,
            "dropped": self.dropped,
            "postprocess": self.steps,
            "timings_ms": {k: round(v * 1000, 3) for k, v in self.timings.items()},
            **self.template,
        }


def backend_template(backend: Backend) -> FimTemplate:
    """The FIM template a backend renders with (every built-in backend has one; others count as plain)."""
    template = getattr(backend, _TEMPLATE_ATTR, None)
    return template if isinstance(template, FimTemplate) else fim_template("plain")


class CompletionCache:
    """An LRU of finished completions keyed by everything that shapes an answer (``key``)."""

    def __init__(self, entries: int) -> None:
        self.entries = entries
        self._items: OrderedDict[str, AssistCompletion] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(
        backend: Backend, request: CompletionRequest, *, doc: Document, mode: str, indent: str, max_lines: int
    ) -> str:
        """The model, the exact request it would get (prompt with every snippet, suffix, sampling, stops) and what
        post-processing reads (the whole document around the cursor, its language, mode and limits).

        Keyed on the rendered prompt rather than on a list of request fields, a new input (context switched off,
        other recent files, another repository, a template edit, a re-indexed file) cannot be missed: whatever
        changes what the model sees changes the key.
        """
        h = hashlib.blake2b(digest_size=16)
        template = backend_template(backend)
        prompt = request.segments if request.segments is not None else ((request.prompt, request.suffix),)
        parts = (
            backend.name,
            template.family,
            repr(prompt),
            repr((request.max_tokens, request.temperature, request.top_p, request.stop, request.seed)),
            mode,
            doc.language.name if doc.language else "",
            indent,
            str(max_lines),
            doc.prefix,
            doc.suffix,
        )
        for part in parts:
            h.update(part.encode("utf-8", "surrogatepass"))
            h.update(b"\x00")
        return h.hexdigest()

    def get(self, key: str) -> AssistCompletion | None:
        found = self._items.get(key)
        if found is None:
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return found

    def put(self, key: str, value: AssistCompletion) -> None:
        if self.entries <= 0:
            return
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.entries:
            self._items.popitem(last=False)


@dataclass
class _Shown:
    key: str
    prefix: str
    suffix: str
    result: AssistCompletion


class TypedAhead:
    """The last suggestion per document, kept while the user types it: the rest of it is the next answer.

    An editor asks again at every pause; when what was typed since is the start of the suggestion it showed, the
    rest of that suggestion is still the continuation (the model's own, greedy), so it is answered at once, with no
    context build and no model call. Anything else (another file, context or model, the text after the cursor
    changed, a character the suggestion did not have) asks the model again.
    """

    def __init__(self, documents: int = 256) -> None:
        self.documents = documents
        self._shown: OrderedDict[str, _Shown] = OrderedDict()

    @staticmethod
    def key(model: str, request: CompletionInput) -> str:
        """What shapes an answer besides the cursor: the model, options and the files the editor has open."""
        doc = request.document
        h = hashlib.blake2b(digest_size=16)
        parts = [
            model,
            doc.path,
            doc.language.name if doc.language else "",
            doc.repository or "",
            repr(
                (
                    request.mode,
                    request.context,
                    request.max_tokens,
                    request.top_p,
                    request.seed,
                    None if request.sources is None else sorted(request.sources),
                    request.prompt_tokens,
                )
            ),
            *(
                f"{f.path}\x00{len(f.text)}\x00{hashlib.blake2b(f.text.encode('utf-8', 'surrogatepass')).hexdigest()}"
                for f in request.recent
            ),
        ]
        for part in parts:
            h.update(part.encode("utf-8", "surrogatepass"))
            h.update(b"\x00")
        return h.hexdigest()

    def lookup(self, key: str, doc: Document) -> AssistCompletion | None:
        shown = self._shown.get(doc.path)
        if shown is None or shown.key != key or doc.suffix != shown.suffix or not doc.prefix.startswith(shown.prefix):
            return None
        typed = doc.prefix[len(shown.prefix) :]
        text = shown.result.text
        if not typed or len(typed) >= len(text) or not text.startswith(typed):
            return None
        return replace(shown.result, text=text[len(typed) :], steps=[*shown.result.steps, "typed_ahead"])

    def remember(self, key: str, doc: Document, result: AssistCompletion) -> None:
        if not result.text:
            self._shown.pop(doc.path, None)
            return
        self._shown[doc.path] = _Shown(key, doc.prefix, doc.suffix, result)
        self._shown.move_to_end(doc.path)
        while len(self._shown) > self.documents:
            self._shown.popitem(last=False)


def place_after_held_whitespace(text: str, held: str) -> str:
    """The answer as it goes after the cursor, when the prompt held back the whitespace ``held`` typed before it.

    The model writes that whitespace back, usually exactly (" return" after "   "). When it writes more (it picked
    a deeper indentation level) the user's level wins: the extra is taken off every line, so a block keeps its
    shape and a dedent still leaves it.
    """
    lines = text.split("\n")
    first = lines[0]
    if not held or not first.strip():
        return text  # nothing typed, or the model began with a line break: its lines are where it put them
    model = first[: len(first) - len(first.lstrip(" \t"))]
    extra = len(model) - len(held)
    if extra <= 0:
        return first[len(model) :] + text[len(first) :]  # the first line after the user's indentation
    placed = [first[len(model) :]]
    for line in lines[1:]:
        lead = len(line) - len(line.lstrip(" \t"))
        placed.append(line[min(lead, extra) :])  # the model's deeper level, taken off every line
    return "\n".join(placed)


async def _generate_block(
    backend: Backend,
    request: CompletionRequest,
    prefix: str,
    mode: Mode,
    language: Language | None,
    cancel: CancelToken | None,
) -> Completion:
    """Stream a block completion and stop the model as soon as the block is finished (``block_complete``).

    Post-processing would cut what follows anyway; stopping early saves the tokens (and seconds) a model spends
    writing the next function. The model sees its own stop flag; the caller's cancellation is passed on to it.
    ``prefix`` is the text the model continues (without the whitespace the prompt holds back): judged after
    the document's own prefix, the model's first line would count its indentation twice and end the block early.
    """
    own = CancelToken()
    ended = False

    async def watched() -> AsyncIterator[CompletionChunk]:
        nonlocal ended
        parts: list[str] = []
        async for chunk in backend.stream(replace(request, cancel=own)):
            if cancel is not None and cancel.cancelled:
                own.cancel()
            if chunk.text:
                parts.append(chunk.text)
                if not ended and "\n" in chunk.text:
                    if block_complete("".join(parts), prefix=prefix, mode=mode, language=language):
                        ended = True
                        own.cancel()  # keep reading: the last chunk carries the usage
            yield chunk

    result = await collect(watched(), backend.name, Stopwatch(), getattr(backend, "prices", None))
    if ended and result.finish_reason == "cancelled":
        result.finish_reason = "stop"
    return result


@dataclass
class _Plan:
    """One completion request as the model will get it, with the context it was built from."""

    ctx: ContextResult
    request: CompletionRequest
    guard: PromptGuard
    context_s: float


class CompletionService:
    def __init__(
        self,
        models: ModelPool,
        builder: ContextBuilder,
        settings: AssistSettings | None = None,
        guards: GuardSettings | None = None,
    ) -> None:
        self.models = models
        self.builder = builder
        self.settings = settings or AssistSettings()
        self.guards = guards or GuardSettings()
        self.cache = CompletionCache(self.settings.cache_entries)
        self.typed_ahead = TypedAhead()
        self.warmer = Warmer(self.settings.warm_interval_s)

    async def aclose(self) -> None:
        await self.warmer.aclose()

    def _backend(self, request: CompletionInput) -> tuple[str, Backend]:
        # A model whose breaker is open (dead or slow backend) hands the request to its fallback.
        name = self.models.route(request.model or self.models.task_model("complete"))
        return name, self.models.get(name)

    def _limits(self, request: CompletionInput, backend: Backend) -> tuple[Mode, int, int]:
        doc = request.document
        mode = request.mode or infer_mode(doc.prefix, doc.suffix, doc.language)
        s = self.settings
        max_tokens = request.max_tokens or (s.inline_max_tokens if mode == "inline" else s.block_max_tokens)
        check_max_tokens(backend, max_tokens)
        return mode, max_tokens, 1 if mode == "inline" else s.block_max_lines

    async def _plan(
        self,
        backend: Backend,
        request: CompletionInput,
        mode: Mode,
        max_tokens: int,
        cancel: CancelToken | None,
        *,
        enabled: bool,
        prompt_tokens: int | None,
        warm: bool = False,
    ) -> _Plan:
        """Context assembled (on the builder's thread, never the event loop) and guarded into the model's request."""
        doc = request.document
        t = time.perf_counter()
        ctx = await self.builder.offload(
            self.builder.build,
            doc,
            template=backend_template(backend),
            count=backend.token_counter(),
            max_context=backend.max_context,
            max_tokens=max_tokens,
            recent=request.recent,
            enabled=enabled,
            # An editor typing keeps the file's (or the spot's) snippets: the cached prompt stays valid.
            pin=request.priority == "interactive",
            prompt_tokens=prompt_tokens,
            sources=request.sources,
            warm=warm,
        )
        context_s = time.perf_counter() - t - ctx.seconds.get("render", 0.0)
        stop = ("\n",) if mode == "inline" and doc.prefix.rpartition("\n")[2].strip() else ()
        # Secrets masked and planted instructions neutralised in everything the model reads, markers untouched.
        guard = guard_for(backend, self.guards)
        segments = guard_segments(guard, ctx.segments) if ctx.segments is not None else None
        model_request = CompletionRequest(
            prompt=prompt_text(segments) if segments is not None else guard.prompt_text(ctx.prompt),
            suffix=guard.prompt_text(ctx.suffix) if ctx.suffix is not None else None,
            segments=segments,
            max_tokens=max_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            seed=request.seed,
            stop=stop,
            priority=request.priority,
            deadline_s=request.deadline_s,
            predict_s=self.settings.completion_predict_s if request.priority == "interactive" else None,
            cancel=cancel,
        )
        return _Plan(ctx, model_request, guard, context_s)

    # -- warming ------------------------------------------------------------------------------------------
    async def prepare(self, request: CompletionInput) -> bool:
        """Evaluate into the model's cache what completions in this part of ``request.document`` start with (its
        context and prefix window), behind every other request. True when there was something to warm.

        Editors call it when a file is opened; ``complete`` calls it after a completion at a new spot. A window
        warmed less than ``[assist] warm_interval_s`` ago is not warmed again.
        """
        name, backend = self._backend(request)
        if not backend.can_warm:
            return False
        mode, max_tokens, _ = self._limits(request, backend)
        plan = await self._plan(
            backend, request, mode, max_tokens, None, enabled=request.context, prompt_tokens=request.prompt_tokens,
            warm=True,
        )  # fmt: skip
        if plan.ctx.warm is None:
            return False
        segments = guard_segments(plan.guard, plan.ctx.warm)
        window = hashlib.blake2b(f"{name}\x00{segments!r}".encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
        if self.warmer.recently(window):
            return False
        warm = CompletionRequest(prompt=prompt_text(segments), segments=segments, max_tokens=1)
        found = await self.builder.offload(backend.reusable_tokens, warm)
        self.warmer.mark(window)
        if found is not None and found[0] >= found[1]:
            return False  # already in the cache
        await backend.warm(warm)
        return True

    def warm_later(self, request: CompletionInput) -> bool:
        """``prepare`` in the background (at most one warm per file at a time); whether one started."""
        name, backend = self._backend(request)
        if not backend.can_warm:
            return False
        region = request.document.cursor_line // WARM_REGION_LINES
        return self.warmer.start(f"{name}\x00{request.document.path}", region, lambda: self.prepare(request))

    async def _cold_start(
        self, backend: Backend, request: CompletionInput, plan: _Plan, mode: Mode, max_tokens: int,
        cancel: CancelToken | None,
    ) -> _Plan | None:  # fmt: skip
        """A short in-file plan when ``plan`` would make an editor wait for the model to evaluate more than
        ``[assist] cold_prompt_tokens`` new tokens (a spot its cache has not seen); the full prompt is warmed in
        the background for the next request there. None when ``plan`` is quick enough."""
        limit = self.settings.cold_prompt_tokens
        if limit is None or request.priority != "interactive" or not backend.can_warm:
            return None
        found = await self.builder.offload(backend.reusable_tokens, plan.request)
        if found is None or found[1] - found[0] <= limit:
            return None
        self.warm_later(request)
        return await self._plan(backend, request, mode, max_tokens, cancel, enabled=False, prompt_tokens=limit)

    # -- completing ---------------------------------------------------------------------------------------
    async def complete(self, request: CompletionInput, cancel: CancelToken | None = None) -> AssistCompletion:
        started = time.perf_counter()
        doc = request.document
        name, backend = self._backend(request)
        mode, max_tokens, max_lines = self._limits(request, backend)
        reuse = request.use_cache and request.temperature == 0.0
        typed_key = TypedAhead.key(backend.name, request) if reuse else ""
        if reuse:
            ahead = self.typed_ahead.lookup(typed_key, doc)
            if ahead is not None:
                total = time.perf_counter() - started
                # The user typed what was suggested: the rest of it answers, with no context build or model call.
                return replace(ahead, timings={"total": total, "cache": total}, usage=Usage(), cached=True)

        plan = await self._plan(
            backend, request, mode, max_tokens, cancel, enabled=request.context, prompt_tokens=request.prompt_tokens
        )
        quick = await self._cold_start(backend, request, plan, mode, max_tokens, cancel)
        if quick is not None:
            quick.context_s += plan.context_s
            plan = quick
        ctx, model_request, guard = plan.ctx, plan.request, plan.guard
        cache_key = None
        if request.use_cache and request.temperature == 0.0:
            cache_key = CompletionCache.key(
                backend, model_request, doc=doc, mode=mode, indent=ctx.indent, max_lines=max_lines
            )
            hit = self.cache.get(cache_key)
            if hit is not None:
                total = time.perf_counter() - started
                # A cache hit costs no model tokens; its timings and context are this request's, not the original's.
                answer = replace(
                    hit,
                    timings={"context": plan.context_s, "total": total, "cache": total},
                    usage=Usage(),
                    cached=True,
                    snippets=ctx.snippets,
                    context_tokens=ctx.tokens,
                    dropped=ctx.dropped,
                )
                self.typed_ahead.remember(typed_key, doc, answer)
                return answer
        if cancel is not None and cancel.cancelled:
            raise Cancelled("completion cancelled before the model was called")
        t = time.perf_counter()
        with self.models.watched(name):
            if mode != "inline" and backend.can_stream:
                seen = doc.prefix[: len(doc.prefix) - len(ctx.indent)]
                result = await _generate_block(backend, model_request, seen, mode, doc.language, cancel)
            else:
                result = await backend.complete(model_request)
        model_s = time.perf_counter() - t
        if result.finish_reason == "cancelled":
            raise Cancelled("completion cancelled")
        if quick is None and request.priority == "interactive":
            self.warm_later(request)  # the rest of this window, for the next spot in it
        t = time.perf_counter()
        guarded = guard.answer(result.text, doc.text)
        processed = await self.builder.offload(
            postprocess,
            place_after_held_whitespace(guarded, ctx.indent),
            prefix=doc.prefix,
            suffix=doc.suffix,
            mode=mode,
            language=doc.language,
            max_lines=max_lines,
        )
        post_s = time.perf_counter() - t
        if quick is not None:
            processed.steps.append("cold_start")
        processed.steps += guard.counts.steps()
        if guard.counts.withheld or guard.counts.redacted:  # an answer that reaches for a secret is not shown
            processed.text = ""
            processed.reason = "withholds_secret" if guard.counts.withheld else "leaks_secret"
        timings = {
            "context": plan.context_s,
            "render": ctx.seconds.get("render", 0.0),
            "first_token": result.timings.first_token_s if result.timings.first_token_s is not None else model_s,
            "model": model_s,
            "postprocess": post_s,
            "total": time.perf_counter() - started,
        }
        timings.update({f"context.{k}": v for k, v in ctx.seconds.items() if k != "render"})
        out = AssistCompletion(
            text=processed.text,
            mode=mode,
            model=backend.name,
            reason=processed.reason,
            snippets=ctx.snippets,
            timings=timings,
            usage=result.usage,
            template=ctx.template,
            format=ctx.format,
            steps=processed.steps,
            raw_text=result.text,
            finish_reason=result.finish_reason,
            context_tokens=ctx.tokens,
            dropped=ctx.dropped,
        )
        # A generation cut by a time budget is not the model's answer: never replay it.
        timed = request.deadline_s is not None or model_request.predict_s is not None
        if cache_key is not None and not (result.finish_reason == "length" and timed):
            self.cache.put(cache_key, out)
        if reuse:
            self.typed_ahead.remember(typed_key, doc, out)
        return out
