"""Fill a token budget with the most useful context for a completion at the cursor.

Budget order (DESIGN "ContextSource"): the prefix first, then the suffix's share, then snippets by source priority
(related, similar, retrieved), each in score order, each counted with the serving model's own tokenizer. A related
definition that does not fit whole is tried as its signature and docstring. The result says which snippets were
used, which were dropped for the budget, and how long each source took.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import re
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from forgepilot.backends.base import Segment
from forgepilot.backends.fim import FimTemplate
from forgepilot.config import ContextSettings
from forgepilot.context.locate import Located, locate
from forgepilot.context.reachable import ImportedSignatures
from forgepilot.context.related import FileLines, RelatedDefinitions
from forgepilot.context.render import render_completion, render_warm
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
#: How long a file keeps the snippets chosen for it (whole-file scope) while its imports stay the same.
FILE_PIN_SECONDS = 600.0
_IMPORT_LINE = re.compile(r"^\s*(?:import|from|using|#include|require|use|package)\b.*$|^.*\brequire\(.*$", re.M)


def _imports_key(text: str) -> str:
    """A digest of a document's import statements: what whole-file snippets depend on, beyond the index."""
    return hashlib.blake2b("\n".join(_IMPORT_LINE.findall(text)).encode("utf-8", "replace"), digest_size=8).hexdigest()


@dataclass(frozen=True)
class _Spot:
    path: str
    family: str
    line: int
    #: The open files (path and content hash): another file opened or edited chooses again.
    recent: tuple[tuple[str, int], ...]
    #: The sources a deployment allows (None: as the settings say).
    sources: tuple[str, ...] | None = None
    #: The file's import statements (whole-file snippets): a new import chooses again.
    imports: str = ""

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


def take_tail(text: str, budget: int, count: TokenCounter, *, align_lines: int = 0) -> tuple[str, int]:
    """The longest run of whole lines at the end of ``text`` within ``budget`` tokens, and its token count.

    Lines are counted in groups of ``_GROUP`` aligned to the start of ``text``, so while the user types only the
    cursor's group is new to the (caching) counter; the group at the edge of the budget is counted line by line.
    With ``align_lines``, the run starts on a multiple of that many lines (or of a half, a quarter... of it where the
    budget holds few lines): it then starts at the same line wherever the cursor is in that stretch, so prompts there
    share their start.
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
    start = _aligned_start(first, len(lines), align_lines)
    if start != first:
        return "".join(lines[start:]), sum(count(line) for line in lines[start:])
    return "".join(lines[first:]), used


def _aligned_start(first: int, total: int, align_lines: int) -> int:
    """The boundary at or after ``first`` to start a window of ``total - first`` lines on.

    The coarsest of ``align_lines``, its half, its quarter... that keeps at least half of the lines that fit: a
    coarse boundary keeps the start still over a longer stretch, but never at the price of most of the window.
    """
    fitting, step = total - first, align_lines
    while step > 1:
        start = -(-first // step) * step
        if (total - start) * 2 >= fitting:
            return start
        step //= 2
    return first


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
        whole = s.snippet_scope == "file"
        found: dict[str, list[Snippet]] = {}
        if s.related and self.related is not None and located is not None:
            t = time.perf_counter()
            found["related"] = self.related.collect(doc, located, s.related_max, whole_file=whole)
            seconds["related"] = time.perf_counter() - t
        if s.imports and self.imports is not None and located is not None:
            t = time.perf_counter()
            found["imports"] = self.imports.collect(doc, located, s.imports_max, whole_file=whole)
            seconds["imports"] = time.perf_counter() - t
        if s.similar and s.similar_top > 0:
            t = time.perf_counter()
            files = self._similar_files(doc, recent, located)
            # Whole-file scope: windows most like the document as a whole, not the lines above the cursor.
            query = set(_IDENT.findall(doc.text)) if whole else None
            found["similar"] = self.similar.best(
                doc.prefix, files, top=s.similar_top, min_score=s.similar_min_score, query=query
            )
            seconds["similar"] = time.perf_counter() - t
        if s.retrieved and s.retrieved_top > 0 and self.searcher is not None and located is not None:
            t = time.perf_counter()
            found["retrieved"] = self._retrieve(doc, located, whole_file=whole)
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

    def _retrieve(self, doc: Document, located: Located, *, whole_file: bool = False) -> list[Snippet]:
        """BM25 over the identifiers nearest the cursor (``whole_file``: the document's most frequent ones)."""
        assert self.searcher is not None
        if whole_file:
            counts = Counter(w for w in _IDENT.findall(doc.text) if len(w) > 2 and w.lower() not in _STOP)
            words = [w for w, _ in counts.most_common(_RETRIEVAL_QUERY_TERMS)]
        else:
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
        warm: bool = False,
    ) -> ContextResult:
        """The prompt for completing ``doc`` at its cursor; ``enabled=False`` sends prefix and suffix alone.

        ``warm`` also lays out what the next prompts here start with (``ContextResult.warm``).

        The budget is split so that the prompt's start moves as little as possible with the cursor: the text after
        the cursor has a fixed share, the snippets are chosen for the whole file (``snippet_scope = "file"``) before
        the prefix, and the prefix window starts on a line boundary (``prefix_align_lines``). Prompts at two
        spots of one file then share everything up to the higher spot, which the model's cache reuses.

        ``pin`` (an editor typing) keeps the snippets chosen for the file (or, with ``snippet_scope = "cursor"``,
        for the spot while the cursor stays within ``PIN_LINES`` lines) while the same files are open and they
        still fit, so the prompt before the prefix stays the same tokens. Evaluation and data generation never
        pin: their answers must not depend on the order of their cases.
        """
        s = self.settings
        count = self.cached(count)
        budget = max_context - max_tokens
        if s.max_prompt_tokens is not None:
            budget = min(budget, s.max_prompt_tokens)
        if prompt_tokens is not None:
            budget = min(budget, prompt_tokens)
        budget = max(budget, 16)
        located = self.locate(doc) if enabled else None
        current = located.path if located else doc.path
        comment = doc.language.line_comment if doc.language else None
        repo_name = located.repository.name if located else None
        # The budget is the whole prompt's: the template's own tokens (control tokens, path, repository) come off it.
        skeleton = render_completion(
            template, path=current, prefix="x", suffix="", snippets=[], comment=comment, repo_name=repo_name,
            prompts=self.prompts, layout=s.layout, snippet_format=s.snippet_format,
        )  # fmt: skip
        total, template_tokens = budget, count(skeleton.prompt + (skeleton.suffix or ""))
        budget = max(budget - template_tokens, 16)
        seconds: dict[str, float] = {}
        t = time.perf_counter()
        after = doc.suffix if s.layout != "left-to-right" else ""
        if s.suffix_max_lines is not None:
            after = "".join(after.splitlines(keepends=True)[: s.suffix_max_lines + 1])  # + the cursor's own line
        shows_suffix = template.supports_fim or s.layout == "suffix-first"
        suffix_reserve = int(budget * s.suffix_share) if shows_suffix else 0
        suffix, suffix_tokens = take_head(after, suffix_reserve, count) if shows_suffix else ("", 0)
        # The cursor's line after the cursor is kept even when the suffix budget is tiny: it decides inline mode.
        if shows_suffix and not suffix and after:
            suffix = after.split("\n", 1)[0]
            suffix_tokens = count(suffix)
        indent = held_back_whitespace(doc.prefix, left_to_right=s.layout != "fim" or not template.supports_fim)
        before = doc.prefix[: len(doc.prefix) - len(indent)]
        seconds["prefix_suffix"] = time.perf_counter() - t

        chosen, dropped = self._snippets(
            doc, recent, located, current, seconds, sources, count, template, enabled=enabled, pin=pin, budget=budget
        )
        used_tokens = sum(count(s.text) + _SNIPPET_OVERHEAD_TOKENS for s in chosen)
        t = time.perf_counter()
        # The prefix gets what the snippets leave: its budget does not depend on how long the suffix is here.
        room = max(budget - max(suffix_reserve, suffix_tokens) - used_tokens, 8)
        prefix, prefix_tokens = take_tail(before, room, count, align_lines=s.prefix_align_lines)
        seconds["prefix_suffix"] += time.perf_counter() - t
        t = time.perf_counter()
        rendered = render_completion(
            template,
            path=current,
            prefix=prefix,
            suffix=suffix,
            snippets=chosen,
            comment=comment,
            repo_name=repo_name,
            prompts=self.prompts,
            layout=s.layout,
            snippet_format=s.snippet_format,
        )
        warm_segments = None
        if warm and s.layout == "suffix-first":
            # Typing only appends to this prompt: the whole of it is what the next keystrokes here start with.
            if rendered.segments is not None:
                warm_segments = rendered.segments
            elif rendered.suffix is None:
                warm_segments = (Segment(rendered.prompt),)
        elif warm and s.layout == "fim":
            # The window from where this prefix starts, as far as the prefix's budget goes, and an eighth more: lines
            # counted one by one and in groups differ by a few tokens, and a warm too short misses its last lines.
            window, _ = take_head(doc.text[len(before) - len(prefix) :], room + room // 8, count)
            warm_segments = render_warm(
                template,
                path=current,
                window=window,
                snippets=chosen,
                comment=comment,
                repo_name=repo_name,
                prompts=self.prompts,
                snippet_format=s.snippet_format,
            )
        seconds["render"] = time.perf_counter() - t
        return ContextResult(
            prompt=rendered.prompt,
            suffix=rendered.suffix,
            segments=rendered.segments,
            snippets=chosen,
            budget=total,
            tokens={
                "prefix": prefix_tokens,
                "suffix": suffix_tokens,
                "snippets": used_tokens,
                "template": template_tokens,
            },
            dropped=dropped,
            seconds=seconds,
            template=rendered.template,
            repository=repo_name,
            format=rendered.format,
            indent=indent,
            warm=warm_segments,
        )

    def _snippets(
        self,
        doc: Document,
        recent: Sequence[OpenFile],
        located: Located | None,
        current: str,
        seconds: dict[str, float],
        sources: frozenset[str] | None,
        count: TokenCounter,
        template: FimTemplate,
        *,
        enabled: bool,
        pin: bool,
        budget: int,
    ) -> tuple[list[Snippet], dict[str, int]]:
        """The snippets for ``doc`` within their share of ``budget`` (pinned ones while they hold), and how many
        candidates of each source did not fit."""
        if not enabled:
            return [], {}
        s = self.settings
        whole = s.snippet_scope == "file"
        # A short file leaves its unused prefix share to the snippets (counted on the whole file: cursor-free). Code
        # averages 3-4 characters a token: a longer file leaves nothing and is not tokenized whole for it.
        share = int(budget * s.snippet_share)
        room = share
        if whole and len(doc.text) < 4 * (budget - share):
            room = max(share, budget - int(budget * s.suffix_share) - count(doc.text))
        spot = _Spot(
            doc.path,
            template.family,
            doc.cursor_line,
            tuple((f.path, hash(f.text)) for f in recent),
            tuple(sorted(sources)) if sources is not None else None,
            _imports_key(doc.text) if whole else "",
        )
        chosen = self._pinned(spot, room, count, whole_file=whole) if pin else None
        if chosen is not None:
            seconds["pinned"] = 0.0
            return chosen, {}
        candidates = self.collect(doc, recent, located, seconds, sources)
        t = time.perf_counter()
        chosen, dropped = self._choose(candidates, current, room, count)
        seconds["budget"] = time.perf_counter() - t
        if pin:
            self._pin(spot, chosen)
        return chosen, dropped

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

    def _pinned(self, spot: _Spot, room: int, count: TokenCounter, *, whole_file: bool) -> list[Snippet] | None:
        """The snippets pinned for this file (``whole_file``) or spot, if still valid and they still fit."""
        found = self._pins.get(spot.key)
        if found is None:
            return None
        moved = not whole_file and abs(found.spot.line - spot.line) > PIN_LINES
        same = (found.spot.recent, found.spot.sources, found.spot.imports) == (spot.recent, spot.sources, spot.imports)
        if moved or not same:
            return None
        if time.monotonic() - found.at > (FILE_PIN_SECONDS if whole_file else PIN_SECONDS):
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
