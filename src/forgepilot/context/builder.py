"""Fill a token budget with the most useful context for a completion at the cursor.

Budget order (DESIGN "ContextSource"): the prefix first, then the suffix's share, then snippets by source priority
(related, similar, retrieved), each in score order, each counted with the serving model's own tokenizer. A related
definition that does not fit whole is tried as its signature and docstring. The result says which snippets were
used, which were dropped for the budget, and how long each source took.
"""

from __future__ import annotations

import asyncio
import functools
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from forgepilot.backends.fim import FimTemplate
from forgepilot.config import ContextSettings
from forgepilot.context.locate import Located, locate
from forgepilot.context.reachable import ImportedSignatures
from forgepilot.context.related import FileLines, RelatedDefinitions
from forgepilot.context.render import render_completion
from forgepilot.context.similar import SimilarWindows
from forgepilot.context.types import SNIPPET_SOURCES, ContextResult, Document, OpenFile, Snippet, held_back_whitespace
from forgepilot.index.indexer import Workspace
from forgepilot.index.search import Filters, Searcher
from forgepilot.prompts import PromptRegistry, builtin_registry
from forgepilot.syntax.languages import detect_language

TokenCounter = Callable[[str], int]
T = TypeVar("T")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_RETRIEVAL_QUERY_LINES = 12
_RETRIEVAL_QUERY_TERMS = 16  # the identifiers nearest the cursor
# Keywords of the languages we parse match everywhere: they only slow BM25 down.
_STOP = frozenset(
    "def class return self import from none true false for while with elif else and not pass lambda yield "
    "async await raise try except finally func var let const function new this public private protected static "
    "void int string bool null nil package struct interface".split()
)
_SNIPPET_OVERHEAD_TOKENS = 12
_GROUP = 16  # lines counted together when trimming prefix and suffix  # path line and separators around each snippet


#: How far the cursor may move (lines) and for how long (seconds) a spot keeps its pinned snippets.
PIN_LINES = 12
PIN_SECONDS = 120.0


@dataclass(frozen=True)
class _Spot:
    path: str
    family: str
    line: int
    #: The open files (path and content hash): another file opened or edited chooses again.
    recent: tuple[tuple[str, int], ...]
    #: The sources a deployment allows (None: as the settings say).
    sources: tuple[str, ...] | None = None

    @property
    def key(self) -> str:
        return f"{self.family}\x00{self.path}"


@dataclass
class _Pin:
    spot: _Spot
    chosen: list[Snippet]
    at: float


class CachedCounter:
    """Token counts by text, remembered: editors resend mostly unchanged lines and snippets on every keystroke.

    Counting line by line (and summing) lets the prefix and suffix be trimmed on line boundaries without
    re-tokenizing the whole text for every candidate length.
    """

    def __init__(self, count: TokenCounter, entries: int = 65536) -> None:
        self.count = count
        self.entries = entries
        self._cache: OrderedDict[str, int] = OrderedDict()

    def __call__(self, text: str) -> int:
        found = self._cache.get(text)
        if found is not None:
            self._cache.move_to_end(text)
            return found
        n = self.count(text)
        self._cache[text] = n
        if len(self._cache) > self.entries:
            self._cache.popitem(last=False)
        return n


def _groups_backward(n: int) -> list[tuple[int, int]]:
    """Line ranges of ``_GROUP`` lines aligned to the start, last first (the last one may be partial)."""
    out = []
    end = n
    start = (n - 1) // _GROUP * _GROUP if n else 0
    while end > 0:
        out.append((start, end))
        end, start = start, max(0, start - _GROUP)
    return out


def take_tail(text: str, budget: int, count: TokenCounter) -> tuple[str, int]:
    """The longest run of whole lines at the end of ``text`` within ``budget`` tokens, and its token count.

    Lines are counted in groups of ``_GROUP`` aligned to the start of ``text``, so while the user types only the
    cursor's group is new to the (caching) counter; the group at the edge of the budget is counted line by line.
    """
    if budget <= 0 or not text:
        return "", 0
    lines = text.splitlines(keepends=True)
    used, first = 0, len(lines)
    for a, b in _groups_backward(len(lines)):
        n = count("".join(lines[a:b]))
        if used + n <= budget:
            used, first = used + n, a
            continue
        for i in range(b - 1, a - 1, -1):
            n = count(lines[i])
            if used + n > budget:
                break
            used, first = used + n, i
        break
    return "".join(lines[first:]), used


def take_head(text: str, budget: int, count: TokenCounter) -> tuple[str, int]:
    """The longest run of whole lines at the start of ``text`` within ``budget`` tokens, and its token count.

    The first line (the rest of the cursor's line) is counted alone; later lines in groups of ``_GROUP``.
    """
    if budget <= 0 or not text:
        return "", 0
    lines = text.splitlines(keepends=True)
    ranges = [(0, 1)] + [(a, min(a + _GROUP, len(lines))) for a in range(1, len(lines), _GROUP)]
    used, end = 0, 0
    for a, b in ranges:
        n = count("".join(lines[a:b]))
        if used + n <= budget:
            used, end = used + n, b
            continue
        for i in range(a, b):
            n = count(lines[i])
            if used + n > budget:
                break
            used, end = used + n, i + 1
        break
    return "".join(lines[:end]), used


class ContextBuilder:
    """Collects candidate snippets from each source and fits them, with prefix and suffix, into the budget."""

    def __init__(
        self,
        workspace: Workspace | None,
        settings: ContextSettings | None = None,
        prompts: PromptRegistry | None = None,
    ) -> None:
        self.workspace = workspace
        self.settings = settings or ContextSettings()
        self.prompts = prompts or builtin_registry()
        self.similar = SimilarWindows(self.settings.similar_window_lines)
        #: Repository files read from disk (related bodies, nearby files, example tests), one cache for all.
        self.files = FileLines()
        self.related = (
            RelatedDefinitions(workspace.store, body_max_lines=self.settings.related_body_max_lines, lines=self.files)
            if workspace
            else None
        )
        self.imports = ImportedSignatures(workspace.store) if workspace else None
        self.searcher = Searcher(workspace) if workspace else None
        self._counters: dict[int, CachedCounter] = {}
        self._pins: OrderedDict[str, _Pin] = OrderedDict()
        # One thread for the serving path's CPU work (context assembly, post-processing parses, query embeddings):
        # off the event loop, and one at a time, so the caches above need no locks of their own.
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="context")

    async def offload(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` on the builder's thread and await it: the event loop keeps answering meanwhile."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._worker, functools.partial(fn, *args, **kwargs))

    def close(self) -> None:
        self._worker.shutdown(wait=False, cancel_futures=True)

    def cached(self, count: TokenCounter) -> CachedCounter:
        """A remembering wrapper of ``count`` (one per serving model's counter)."""
        if isinstance(count, CachedCounter):
            return count
        found = self._counters.get(id(count))
        if found is None or found.count is not count:
            if len(self._counters) >= 8:  # a few models at most; never grow without bound
                self._counters.clear()
            found = self._counters[id(count)] = CachedCounter(count)
        return found

    def locate(self, doc: Document) -> Located | None:
        if self.workspace is None:
            return None
        return locate(self.workspace.store, doc.path, doc.repository)

    def collect(
        self,
        doc: Document,
        recent: Sequence[OpenFile],
        located: Located | None,
        seconds: dict[str, float],
        sources: frozenset[str] | None = None,
    ) -> dict[str, list[Snippet]]:
        """Candidates per source, best first (``seconds`` receives each source's time); ``sources`` narrows the
        sources the settings switch on (a deployment serves with its own)."""
        s = self.settings
        if sources is not None:
            s = s.model_copy(update={name: getattr(s, name) and name in sources for name in SNIPPET_SOURCES})
        found: dict[str, list[Snippet]] = {}
        if s.related and self.related is not None and located is not None:
            t = time.perf_counter()
            found["related"] = self.related.collect(doc, located, s.related_max)
            seconds["related"] = time.perf_counter() - t
        if s.imports and self.imports is not None and located is not None:
            t = time.perf_counter()
            found["imports"] = self.imports.collect(doc, located, s.imports_max)
            seconds["imports"] = time.perf_counter() - t
        if s.similar and s.similar_top > 0:
            t = time.perf_counter()
            files = self._similar_files(doc, recent, located)
            found["similar"] = self.similar.best(doc.prefix, files, top=s.similar_top, min_score=s.similar_min_score)
            seconds["similar"] = time.perf_counter() - t
        if s.retrieved and s.retrieved_top > 0 and self.searcher is not None and located is not None:
            t = time.perf_counter()
            found["retrieved"] = self._retrieve(doc, located)
            seconds["retrieved"] = time.perf_counter() - t
        return found

    def _similar_files(self, doc: Document, recent: Sequence[OpenFile], located: Located | None) -> list[OpenFile]:
        lang = doc.language.name if doc.language else None
        same = [
            f
            for f in recent
            if f.path != doc.path and (lang is None or (d := detect_language(f.path)) is not None and d.name == lang)
        ]
        if same or located is None or self.workspace is None:
            return same[: self.settings.similar_max_files]
        # No recent files from the client: the same-language files next to the document in the index.
        directory = located.path.rpartition("/")[0]
        paths = self.workspace.store.files_in_directory(
            located.repository.id, directory, lang, exclude=located.path, limit=self.settings.similar_max_files
        )
        nearby = []
        for path in paths:
            lines = self.files.get(Path(located.repository.root) / path)
            if lines is not None:
                nearby.append(OpenFile(path, "\n".join(lines)))
        return nearby

    def _retrieve(self, doc: Document, located: Located) -> list[Snippet]:
        assert self.searcher is not None
        lines = doc.prefix.splitlines()[-_RETRIEVAL_QUERY_LINES:]
        words = [w for line in reversed(lines) for w in _IDENT.findall(line) if len(w) > 2 and w not in _STOP]
        query = " ".join(list(dict.fromkeys(words))[:_RETRIEVAL_QUERY_TERMS])
        if not query:
            return []
        filters = Filters(repos=(located.repository.root,), language=doc.language.name if doc.language else None)
        # Per keystroke, BM25 over the identifiers before the cursor (vectors optional): the symbol-name search
        # of hybrid mode costs tens of milliseconds and is what *related* context already does better.
        hits = self.searcher.search(
            query,
            limit=self.settings.retrieved_top + 4,
            filters=filters,
            mode="hybrid" if self.settings.retrieved_vectors else "lexical",
            vectors=self.settings.retrieved_vectors,
        )
        out = []
        for hit in hits:
            if hit.path == located.path:
                continue
            out.append(Snippet("retrieved", hit.path, hit.start_line, hit.end_line, hit.text, round(hit.score, 5)))
            if len(out) >= self.settings.retrieved_top:
                break
        return out

    def build(
        self,
        doc: Document,
        *,
        template: FimTemplate,
        count: TokenCounter,
        max_context: int,
        max_tokens: int,
        recent: Sequence[OpenFile] = (),
        enabled: bool = True,
        pin: bool = False,
        prompt_tokens: int | None = None,
        sources: frozenset[str] | None = None,
    ) -> ContextResult:
        """The prompt for completing ``doc`` at its cursor; ``enabled=False`` sends prefix and suffix alone.

        ``pin`` (an editor typing at one spot) keeps the snippets chosen at this spot while the cursor stays within
        ``PIN_LINES`` lines for ``PIN_SECONDS`` and they still fit: the prompt before the prefix then stays the same
        tokens, and the model's cache reuses them instead of evaluating the whole prompt again at every keystroke.
        Evaluation and data generation never pin: their answers must not depend on the order of their cases.
        """
        s = self.settings
        count = self.cached(count)
        budget = max_context - max_tokens
        if s.max_prompt_tokens is not None:
            budget = min(budget, s.max_prompt_tokens)
        if prompt_tokens is not None:
            budget = min(budget, prompt_tokens)
        budget = max(budget, 16)
        seconds: dict[str, float] = {}
        t = time.perf_counter()
        after = doc.suffix if s.layout != "left-to-right" else ""
        if s.suffix_max_lines is not None:
            after = "".join(after.splitlines(keepends=True)[: s.suffix_max_lines + 1])  # + the cursor's own line
        shows_suffix = template.supports_fim or s.layout == "suffix-first"
        suffix, suffix_tokens = take_head(after, int(budget * s.suffix_share), count) if shows_suffix else ("", 0)
        # The cursor's line after the cursor is kept even when the suffix budget is tiny: it decides inline mode.
        if shows_suffix and not suffix and after:
            suffix = after.split("\n", 1)[0]
            suffix_tokens = count(suffix)
        snippet_reserve = int(budget * s.snippet_share) if enabled else 0
        indent = held_back_whitespace(doc.prefix, left_to_right=s.layout != "fim" or not template.supports_fim)
        prefix, prefix_tokens = take_tail(
            doc.prefix[: len(doc.prefix) - len(indent)], max(budget - suffix_tokens - snippet_reserve, 8), count
        )
        seconds["prefix_suffix"] = time.perf_counter() - t

        located = self.locate(doc) if enabled else None
        current = located.path if located else doc.path
        room = budget - prefix_tokens - suffix_tokens
        spot = _Spot(
            doc.path,
            template.family,
            doc.cursor_line,
            tuple((f.path, hash(f.text)) for f in recent),
            tuple(sorted(sources)) if sources is not None else None,
        )
        chosen = self._pinned(spot, room, count) if enabled and pin else None
        dropped: dict[str, int] = {}
        if chosen is None:
            candidates = self.collect(doc, recent, located, seconds, sources) if enabled else {}
            t = time.perf_counter()
            chosen, dropped = self._choose(candidates, current, room, count)
            if enabled and pin:
                self._pin(spot, chosen)
        else:
            t = time.perf_counter()
            seconds["pinned"] = 0.0
        used_tokens = sum(count(s.text) + _SNIPPET_OVERHEAD_TOKENS for s in chosen)
        seconds["budget"] = time.perf_counter() - t
        t = time.perf_counter()
        comment = doc.language.line_comment if doc.language else None
        rendered = render_completion(
            template,
            path=current,
            prefix=prefix,
            suffix=suffix,
            snippets=chosen,
            comment=comment,
            repo_name=located.repository.name if located else None,
            prompts=self.prompts,
            layout=s.layout,
        )
        seconds["render"] = time.perf_counter() - t
        return ContextResult(
            prompt=rendered.prompt,
            suffix=rendered.suffix,
            segments=rendered.segments,
            snippets=chosen,
            budget=budget,
            tokens={"prefix": prefix_tokens, "suffix": suffix_tokens, "snippets": used_tokens},
            dropped=dropped,
            seconds=seconds,
            template=rendered.template,
            repository=located.repository.name if located else None,
            format=rendered.format,
            indent=indent,
        )

    def _choose(
        self, candidates: dict[str, list[Snippet]], current: str, room: int, count: TokenCounter
    ) -> tuple[list[Snippet], dict[str, int]]:
        """Snippets in source priority order while they fit ``room``; how many of each source did not fit."""
        chosen: list[Snippet] = []
        dropped: dict[str, int] = {}
        used_tokens = 0
        # A snippet repeating what the prompt already holds (the same file's text) is not worth its tokens.
        spans: list[tuple[str, int, int]] = []
        for source in SNIPPET_SOURCES:
            for snip in candidates.get(source, []):
                if snip.path == current or any(
                    p == snip.path and a <= snip.end_line and snip.start_line <= b for p, a, b in spans
                ):
                    continue
                fitted = self._fit(snip, room - used_tokens, count)
                if fitted is None:
                    dropped[source] = dropped.get(source, 0) + 1
                    continue
                snip, tokens = fitted
                chosen.append(snip)
                spans.append((snip.path, snip.start_line, snip.end_line))
                used_tokens += tokens
        return chosen, dropped

    def _pinned(self, spot: _Spot, room: int, count: TokenCounter) -> list[Snippet] | None:
        """The snippets pinned at this spot, if the cursor is still near it, recently, and they still fit."""
        found = self._pins.get(spot.key)
        moved = abs(found.spot.line - spot.line) > PIN_LINES if found else True
        if found is None or moved or (found.spot.recent, found.spot.sources) != (spot.recent, spot.sources):
            return None
        if time.monotonic() - found.at > PIN_SECONDS:
            return None
        if sum(count(s.text) + _SNIPPET_OVERHEAD_TOKENS for s in found.chosen) > room:
            return None
        return found.chosen

    def _pin(self, spot: _Spot, chosen: list[Snippet]) -> None:
        self._pins[spot.key] = _Pin(spot, chosen, time.monotonic())
        self._pins.move_to_end(spot.key)
        while len(self._pins) > 64:
            self._pins.popitem(last=False)

    @staticmethod
    def _fit(snip: Snippet, room: int, count: TokenCounter) -> tuple[Snippet, int] | None:
        if room <= _SNIPPET_OVERHEAD_TOKENS:
            return None
        tokens = count(snip.text) + _SNIPPET_OVERHEAD_TOKENS
        if tokens <= room:
            return snip, tokens
        if snip.short_text:
            tokens = count(snip.short_text) + _SNIPPET_OVERHEAD_TOKENS
            if tokens <= room:
                short = Snippet(
                    snip.source,
                    snip.path,
                    snip.start_line,
                    snip.end_line,
                    snip.short_text,
                    snip.score,
                    label=snip.label,
                )
                return short, tokens
        return None
