"""*Similar* context: the window of a recently used file most like the code before the cursor (Jaccard).

This is the published Copilot recipe: the last ``window`` lines before the cursor are the query; every
``window``-line window of each recent same-language file is scored by the Jaccard similarity of their sets of
identifiers; the best window per file is kept and the best ``top`` files win.

Scoring every window of 20 files x 1,000 lines per keystroke in pure Python is far too slow, so each file is
turned once (cached by content) into (token, line) pairs sorted by token and line. The lines where a token's
occurrence first enters a window give, through a difference array, how many distinct tokens each window holds;
the same arrays restricted to the query's tokens give each window's intersection with the query. A request is
then a few numpy operations per file.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from forgepilot.context.types import OpenFile, Snippet

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class _Windows:
    lines: list[str]
    n_windows: int
    pair_token: IntArray  # token id of each distinct (token, line) pair, sorted by token then line
    starts: IntArray  # first window start that this occurrence adds its token to
    ends: IntArray  # last window start containing this occurrence (inclusive); starts > ends means none
    sizes: IntArray  # distinct tokens per window


class SimilarWindows:
    """Scores windows of open files against the code before the cursor, caching each file's token layout."""

    def __init__(self, window: int = 60, cache_files: int = 256, max_tokens: int = 500_000) -> None:
        self.window = window
        self._cache: OrderedDict[tuple[str, int, int], _Windows] = OrderedDict()
        self._cache_files = cache_files
        #: Identifier -> id, shared by the cached layouts. Bounded: past ``max_tokens`` distinct identifiers the
        #: ids and the layouts numbered with them are dropped together and rebuilt as files come back.
        self._ids: dict[str, int] = {}
        self._max_tokens = max_tokens
        self._lock = threading.Lock()

    def _id(self, token: str) -> int:
        found = self._ids.get(token)
        if found is None:
            found = self._ids[token] = len(self._ids)
        return found

    @property
    def interned(self) -> int:
        """Distinct identifiers currently numbered (bounded by ``max_tokens``)."""
        return len(self._ids)

    def _layout(self, text: str) -> _Windows:
        lines = text.splitlines()
        w = self.window
        n_windows = max(1, len(lines) - w + 1)
        pairs = sorted({(self._id(tok), i) for i, line in enumerate(lines) for tok in _IDENT.findall(line)})
        if pairs:
            arr = np.array(pairs, dtype=np.int64)
            token, line = arr[:, 0], arr[:, 1]
        else:
            token = line = np.zeros(0, dtype=np.int64)
        # Window s holds line l when s <= l <= s + w - 1. An occurrence adds its token to the windows
        # [l - w + 1, l] not already reached by the token's previous occurrence p, i.e. from max(l - w + 1, p + 1).
        prev = np.full(len(line), -(1 << 40), dtype=np.int64)
        if len(line) > 1:
            same = token[1:] == token[:-1]
            prev[1:] = np.where(same, line[:-1], prev[1:])
        starts = np.maximum(np.maximum(line - w + 1, prev + 1), 0)
        ends = np.minimum(line, n_windows - 1)
        sizes = self._count(starts, ends, n_windows)
        return _Windows(lines, n_windows, token, starts, ends, sizes)

    @staticmethod
    def _count(starts: IntArray, ends: IntArray, n_windows: int) -> IntArray:
        keep = starts <= ends
        diff = np.bincount(starts[keep], minlength=n_windows + 1)[: n_windows + 1]
        diff = diff - np.bincount(ends[keep] + 1, minlength=n_windows + 1)[: n_windows + 1]
        return np.cumsum(diff)[:n_windows]

    def _windows(self, file: OpenFile) -> _Windows:
        key = (file.path, len(file.text), hash(file.text))
        with self._lock:
            found = self._cache.get(key)
            if found is not None:
                self._cache.move_to_end(key)
                return found
            if len(self._ids) > self._max_tokens:
                self._ids.clear()
                self._cache.clear()
            layout = self._layout(file.text)
            self._cache[key] = layout
            while len(self._cache) > self._cache_files:
                self._cache.popitem(last=False)
            return layout

    def query_tokens(self, prefix: str) -> set[str]:
        lines = prefix.splitlines()[-self.window :]
        return {tok for line in lines for tok in _IDENT.findall(line)}

    def best(
        self,
        prefix: str,
        files: Sequence[OpenFile],
        *,
        top: int = 4,
        min_score: float = 0.0,
        query: set[str] | None = None,
    ) -> list[Snippet]:
        """The best window of each file, the ``top`` best files first; windows scoring below ``min_score`` dropped.

        The query is the identifiers of the last ``window`` lines of ``prefix``, or ``query`` when given."""
        query = self.query_tokens(prefix) if query is None else query
        if not query or top <= 0:
            return []
        found: list[Snippet] = []
        # Lay every file out first (that may intern new tokens), then map the query to token ids once.
        layouts = [(file, self._windows(file)) for file in files]
        with self._lock:
            ids = np.fromiter((self._ids[t] for t in query if t in self._ids), dtype=np.int64)
        for file, layout in layouts:
            if len(layout.pair_token) == 0:
                continue
            mask = np.isin(layout.pair_token, ids)
            inter = self._count(layout.starts[mask], layout.ends[mask], layout.n_windows)
            union = layout.sizes + len(query) - inter
            scores = inter / np.maximum(union, 1)
            best = int(np.argmax(scores))
            score = float(scores[best])
            if score < min_score or score <= 0.0:
                continue
            end = min(best + self.window, len(layout.lines))
            text = "\n".join(layout.lines[best:end])
            found.append(Snippet("similar", file.path, best + 1, end, text, round(score, 4)))
        found.sort(key=lambda s: (-s.score, s.path))
        return found[:top]
