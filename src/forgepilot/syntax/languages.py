"""Which language a file is written in, and tree-sitter parsers and tags queries for the ones we understand.

Grammars come from ``tree-sitter-language-pack`` 0.13 (compiled into its wheel; its 1.x releases download
grammars at run time, which cannot work offline). Tags queries are our own ``.scm`` data files under
``queries/``. Parsers are not thread-safe, so each thread gets its own.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import PurePath
from typing import Any

from forgepilot.errors import MissingExtra


@dataclass(frozen=True)
class Language:
    name: str
    extensions: tuple[str, ...]
    #: The grammar name in the language pack; None for text we index but do not parse.
    grammar: str | None
    line_comment: str | None


LANGUAGES: dict[str, Language] = {
    lang.name: lang
    for lang in (
        Language("python", (".py", ".pyi"), "python", "#"),
        Language("java", (".java",), "java", "//"),
        Language("kotlin", (".kt", ".kts"), "kotlin", "//"),
        Language("javascript", (".js", ".mjs", ".cjs", ".jsx"), "javascript", "//"),
        Language("typescript", (".ts", ".mts", ".cts"), "typescript", "//"),
        Language("tsx", (".tsx",), "tsx", "//"),
        Language("go", (".go",), "go", "//"),
        Language("rust", (".rs",), "rust", "//"),
        Language("c", (".c", ".h"), "c", "//"),
        Language("cpp", (".cc", ".cpp", ".cxx", ".c++", ".hpp", ".hh", ".hxx", ".h++", ".ipp"), "cpp", "//"),
        Language("csharp", (".cs",), "csharp", "//"),
        # Indexed for search and retrieval, chunked by lines and paragraphs, without symbols.
        Language("markdown", (".md", ".markdown", ".rst", ".txt"), None, None),
        Language("config", (".toml", ".yaml", ".yml", ".json", ".ini", ".cfg"), None, "#"),
        Language("shell", (".sh", ".bash"), None, "#"),
    )
}
_BY_EXTENSION = {ext: lang for lang in LANGUAGES.values() for ext in lang.extensions}
PARSED_LANGUAGES = tuple(name for name, lang in LANGUAGES.items() if lang.grammar)


def detect_language(path: str | PurePath, head: bytes = b"") -> Language | None:
    """The language of a file by extension, or by a ``#!`` line for extension-less scripts; None if unknown."""
    suffix = PurePath(path).suffix.lower()
    if suffix in _BY_EXTENSION:
        return _BY_EXTENSION[suffix]
    if not suffix and head.startswith(b"#!"):
        first = head.split(b"\n", 1)[0]
        if b"python" in first:
            return LANGUAGES["python"]
        if b"node" in first:
            return LANGUAGES["javascript"]
        if b"sh" in first:
            return LANGUAGES["shell"]
    return None


def _pack() -> Any:
    try:
        import tree_sitter_language_pack
    except ImportError as exc:  # pragma: no cover - a core dependency; only a broken install gets here
        raise MissingExtra("tree_sitter_language_pack", "index") from exc
    return tree_sitter_language_pack


_local = threading.local()


def parser_for(grammar: str) -> Any:
    """A parser for ``grammar`` owned by the calling thread."""
    parsers: dict[str, Any] = getattr(_local, "parsers", None) or {}
    _local.parsers = parsers
    if grammar not in parsers:
        parsers[grammar] = _pack().get_parser(grammar)
    return parsers[grammar]


# Grammars whose node types are a superset of another's use its query file (TSX is TypeScript plus JSX).
_SHARED_QUERIES = {"tsx": "typescript"}


@cache
def tags_query(grammar: str) -> Any:
    """The compiled tags query for a grammar (queries are immutable and shareable across threads)."""
    import tree_sitter

    name = _SHARED_QUERIES.get(grammar, grammar)
    source = files("forgepilot.syntax").joinpath("queries", f"{name}.scm").read_text(encoding="utf-8")
    return tree_sitter.Query(_pack().get_language(grammar), source)


def parse(text: bytes, grammar: str) -> Any:
    """Parse source bytes; tree-sitter never fails on bad input, it marks errors in the tree."""
    return parser_for(grammar).parse(text)
