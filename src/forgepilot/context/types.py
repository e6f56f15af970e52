"""The shapes the context engine speaks: the document at the cursor, the snippets it chose, and the result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from forgepilot.backends.base import Segment
from forgepilot.errors import UserError
from forgepilot.syntax.languages import LANGUAGES, Language, detect_language

SourceName = Literal["prefix", "suffix", "related", "imports", "similar", "retrieved"]
#: Snippet sources in budget priority order.
SNIPPET_SOURCES: tuple[SourceName, ...] = ("related", "imports", "similar", "retrieved")


@dataclass(frozen=True)
class Snippet:
    """A piece of code shown to the model, and why: which source chose it, from where, and how strongly."""

    source: SourceName
    path: str
    start_line: int  # 1-based, inclusive
    end_line: int
    text: str
    score: float
    #: What the snippet is about (the symbol a related definition defines), for the response's "why".
    label: str | None = None
    #: A shorter form (signature and docstring) used when the whole text does not fit the budget.
    short_text: str | None = None


@dataclass(frozen=True)
class OpenFile:
    """A file the editor has open or used recently (it feeds *similar* context)."""

    path: str
    text: str


@dataclass(frozen=True)
class Document:
    """The file being edited, as the editor has it now (possibly unsaved), and the cursor in it."""

    path: str
    text: str
    offset: int  # cursor position in characters from the start of ``text``
    language: Language | None = None
    repository: str | None = None  # an indexed repository's name or root; found from ``path`` when None

    @classmethod
    def at(
        cls,
        path: str,
        text: str,
        *,
        line: int | None = None,
        character: int | None = None,
        offset: int | None = None,
        language: str | None = None,
        repository: str | None = None,
    ) -> Document:
        """A document with the cursor given as an offset or as a 0-based (line, character) pair."""
        if offset is None:
            if line is None or character is None:
                raise UserError(
                    "the cursor needs an offset or a line and a character", hint="send cursor.line/.character"
                )
            offset = offset_of(text, line, character)
        elif not 0 <= offset <= len(text):
            raise CursorOutOfRange("cursor.offset", f"offset {offset} is outside the document (0..{len(text)})")
        lang = LANGUAGES.get(language) if language else detect_language(path)
        if language and lang is None:
            raise UserError(f"unknown language {language!r}", hint=f"one of: {', '.join(sorted(LANGUAGES))}")
        return cls(path=path, text=text, offset=offset, language=lang, repository=repository)

    @property
    def prefix(self) -> str:
        return self.text[: self.offset]

    @property
    def suffix(self) -> str:
        return self.text[self.offset :]

    @property
    def cursor_line(self) -> int:
        """The 1-based line of the cursor."""
        return self.text.count("\n", 0, self.offset) + 1


class CursorOutOfRange(UserError):
    """The cursor does not point into the document; ``field`` names the request field at fault."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message, hint="send a cursor inside the document text")
        self.field = field_name


def offset_of(text: str, line: int, character: int) -> int:
    """The offset of a 0-based (line, character) position; a position past the end of a line is an error."""
    if line < 0:
        raise CursorOutOfRange("cursor.line", f"line {line} is negative")
    if character < 0:
        raise CursorOutOfRange("cursor.character", f"character {character} is negative")
    start = 0
    for _ in range(line):
        nl = text.find("\n", start)
        if nl < 0:
            lines = text.count("\n") + 1
            raise CursorOutOfRange("cursor.line", f"line {line} is past the end of the document ({lines} lines)")
        start = nl + 1
    end = text.find("\n", start)
    length = (len(text) if end < 0 else end) - start
    if character > length:
        raise CursorOutOfRange("cursor.character", f"character {character} is past the end of line {line} ({length})")
    return start + character


@dataclass
class ContextResult:
    """What the builder chose within the budget, and the prompt rendered from it."""

    prompt: str
    #: The text after the cursor for the backend's FIM template; None when ``prompt`` is already complete.
    suffix: str | None
    #: The fully rendered model-specific prompt (repository-level format) as segments, sent as they are; None
    #: when the backend applies its FIM template to ``prompt`` and ``suffix``.
    segments: tuple[Segment, ...] | None
    snippets: list[Snippet]
    budget: int
    tokens: dict[str, int] = field(default_factory=dict)
    #: Candidates per source that did not fit the budget.
    dropped: dict[str, int] = field(default_factory=dict)
    #: Seconds each source took to collect its candidates.
    seconds: dict[str, float] = field(default_factory=dict)
    template: dict[str, str] = field(default_factory=dict)
    repository: str | None = None
    format: str = "plain"  # "repo-level", "comment-snippets" or "plain"
    #: Whitespace typed before the cursor that the prompt holds back (token healing): the last space of an
    #: indentation-only line. Tokenizers attach one space to the word after it (" return"), so a prompt ending in
    #: the whole indentation asks for a token split the model never saw (it answers " return" after "    "), while
    #: a prompt without the indentation hides the block the line belongs to. The model writes it back; the answer
    #: loses it (serving), or the training target starts with it (datagen's FIM format).
    indent: str = ""
    #: What the next prompts here start with, to warm into the model's cache ahead of requests: with ``fim``, the
    #: start every prompt in this prefix window shares (context, then the window's text to its end); with
    #: ``suffix-first``, the whole prompt (typing appends to it). None unless asked for.
    warm: tuple[Segment, ...] | None = None

    @property
    def raw(self) -> bool:
        return self.segments is not None


def held_back_whitespace(prefix: str, *, left_to_right: bool = False) -> str:
    """The space the prompt leaves for the model to write: the last one of an indentation-only cursor line, and,
    when the prompt ends at the cursor (left to right), the last space of any line (``x = `` ends in a token the
    model never writes alone: it writes `` 1``)."""
    line = prefix.rpartition("\n")[2]
    if not line.endswith(" "):
        return ""
    return " " if left_to_right or not line.strip() else ""
