"""Citations of ask-the-codebase answers: ``path:line`` checked against the sources given, ``[n]`` references
resolved to their source, and, when an answer cites nothing, the sources it drew on attached to it."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from forgepilot.context import Snippet

_CITATION = re.compile(r"([A-Za-z0-9_][\w./-]*\.[A-Za-z0-9]+):(\d+)(?:-(\d+))?")
_REFERENCE = re.compile(r"\[(\d{1,2})\]")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{2,}")
#: Words shared by an answer and a source that say nothing about which source the answer used.
_COMMON = frozenset(
    "the and for that this with from are was not but you can into when which code function return value "
    "file line used uses call calls class method def self none true false".split()
)


@dataclass(frozen=True)
class Citation:
    path: str
    line: int
    #: True when a source given to the model covers this line of this path.
    valid: bool
    #: How the answer referred to it: "path:line", "[n]" (a numbered source), or "attached" (added by us).
    via: str = "path:line"

    def record(self) -> dict[str, object]:
        return asdict(self)


def _covers(s: Snippet, path: str, line: int) -> bool:
    return (s.path == path or s.path.endswith("/" + path)) and s.start_line <= line <= s.end_line


def check_citations(text: str, sources: Sequence[Snippet]) -> list[Citation]:
    """Each distinct ``path:line`` and ``[n]`` in ``text``, marked valid when a source covers it."""
    out: list[Citation] = []
    seen: set[tuple[str, int]] = set()
    for m in _CITATION.finditer(text):
        path, line = m.group(1), int(m.group(2))
        if (path, line) not in seen:
            seen.add((path, line))
            out.append(Citation(path, line, any(_covers(s, path, line) for s in sources)))
    for m in _REFERENCE.finditer(text):
        n = int(m.group(1))
        if 1 <= n <= len(sources):
            s = sources[n - 1]
            if (s.path, s.start_line) not in seen:
                seen.add((s.path, s.start_line))
                out.append(Citation(s.path, s.start_line, True, via="[n]"))
    return out


def sources_used(text: str, sources: Sequence[Snippet], at_most: int = 3) -> list[Snippet]:
    """The sources whose distinctive identifiers the answer repeats most (an answer that cites nothing still
    drew on something): up to ``at_most``, best first, none when the answer shares nothing with any."""
    words = {w for w in _WORD.findall(text) if w.lower() not in _COMMON}
    scored = []
    for i, s in enumerate(sources):
        shared = words & set(_WORD.findall(s.text))
        if shared:
            scored.append((-len(shared), i, s))
    return [s for _, _, s in sorted(scored)[:at_most]]


def attach_sources(text: str, sources: Sequence[Snippet]) -> tuple[str, list[Citation]]:
    """``text`` with a "Sources:" line naming the sources it used (``path:start-end``) and their citations."""
    used = sources_used(text, sources)
    if not used:
        return text, []
    refs = ", ".join(f"`{s.path}:{s.start_line}-{s.end_line}`" for s in used)
    citations = [Citation(s.path, s.start_line, True, via="attached") for s in used]
    return f"{text.rstrip()}\n\nSources: {refs}", citations
