"""Split a file into retrieval chunks along its syntax tree.

Chunks are contiguous and cover the whole file exactly: joined in order they give the original text back. Each
aims at ``target`` characters: a node that fits stays whole (a function, a class), small neighbours are merged,
a node that does not fit is split along its children, recursively, and only text with no usable structure is cut
by lines (or, for one over-long line, by characters) so no chunk exceeds ``hard_max``. A chunk cut from inside a
class keeps the class's header line as ``context``, so a lone method still says where it lives.
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass
from typing import Any

from forgepilot.syntax.languages import Language, parse

DEFAULT_TARGET = 1500
DEFAULT_HARD_MAX = 3000
_CLASS_NODES = frozenset(
    {
        "class_definition",
        "class_declaration",
        "class_specifier",
        "struct_specifier",
        "interface_declaration",
        "impl_item",
        "trait_item",
        "struct_item",
        "object_declaration",
        "struct_declaration",
        "record_declaration",
        "namespace_declaration",
        "namespace_definition",
        "abstract_class_declaration",
    }
)


@dataclass(frozen=True)
class Chunk:
    start_line: int  # 1-based, inclusive
    end_line: int  # 1-based, inclusive
    start_char: int  # offsets into the decoded text: text[start_char:end_char] is the chunk
    end_char: int
    text: str
    #: Header of the enclosing class when the chunk was cut from inside one (not part of ``text``).
    context: str | None = None


class _Lines:
    """Character offsets of line starts, to move between rows and offsets."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.starts = self._starts(text)

    @staticmethod
    def _starts(text: str) -> list[int]:
        """Offsets where lines start: running sums of line lengths plus their newline (computed in C)."""
        lengths = map(len, text.split("\n"))
        starts = [0]
        with_newline = map((1).__add__, itertools.islice(lengths, text.count("\n")))  # every line but the last
        starts.extend(itertools.accumulate(with_newline))
        return starts

    def row_of(self, offset: int) -> int:
        return bisect.bisect_right(self.starts, offset) - 1

    def line_start(self, row: int) -> int:
        return self.starts[row] if row < len(self.starts) else len(self.text)


class _Chunker:
    def __init__(self, text: str, target: int, hard_max: int) -> None:
        self.text = text
        self.lines = _Lines(text)
        self.target = target
        self.hard_max = hard_max
        self.spans: list[tuple[int, int, str | None]] = []  # (start, end, context)

    def emit(self, start: int, end: int, context: str | None) -> None:
        if end > start:
            self.spans.append((start, end, context))

    def split_plain(self, start: int, end: int, context: str | None) -> None:
        """Cut unstructured text at line ends (paragraph breaks preferred), then over-long lines by characters."""
        while end - start > self.target:
            limit = start + self.target
            window = self.text[start:limit]
            cut = window.rfind("\n\n")
            if cut < self.target // 3:
                cut = window.rfind("\n")
            cut = start + cut + 1 if cut > 0 else min(start + self.hard_max, end)
            self.emit(start, cut, context)
            start = cut
        self.emit(start, end, context)

    def boundaries(self, node: Any, start: int, end: int) -> list[tuple[int, int, Any]]:
        """``node``'s children as contiguous units covering [start, end), each cut at the start of a child's line.

        A unit is owned by the child it begins with (None for text before the first child); children sharing a
        line share a unit, so a cut never falls mid-line.
        """
        owner: Any = None
        cuts: list[tuple[int, Any]] = []
        for child in node.named_children:
            offset = self.lines.line_start(self.lines.row_of(self._char(child.start_byte)))
            if offset <= start:
                owner = child
            elif offset >= end:
                break
            elif not cuts or offset > cuts[-1][0]:
                cuts.append((offset, child))
        units: list[tuple[int, int, Any]] = []
        cursor = start
        for offset, child in cuts:
            units.append((cursor, offset, owner))
            cursor, owner = offset, child
        units.append((cursor, end, owner))
        return units

    def _char(self, byte_offset: int) -> int:
        return self.byte_to_char(byte_offset)

    byte_to_char: _ByteToChar

    def split(self, node: Any, start: int, end: int, context: str | None) -> None:
        if end - start <= self.target:
            self.emit(start, end, context)
            return
        if node is None or node.named_child_count == 0:
            self.split_plain(start, end, context)
            return
        inner_context = context
        if node.type in _CLASS_NODES:
            header = self.text[start:end].split("\n", 1)[0].strip()
            inner_context = header[:200] or context
        units = self.boundaries(node, start, end)
        if len(units) == 1:
            only = units[0][2]
            # One child spans everything: descend into it (unless it is this node again).
            if only is not None and (only.start_byte, only.end_byte) != (node.start_byte, node.end_byte):
                self.split(only, start, end, inner_context)
            else:
                self.split_plain(start, end, inner_context)
            return
        group_start: int | None = None
        group_end = start
        for unit_start, unit_end, child in units:
            if unit_end - unit_start > self.target:
                # Too big to keep whole: flush what we have (or fold a small remainder into the split).
                sub_start = unit_start
                if group_start is not None:
                    # A small preamble (a signature, a class header, a few statements) goes with the split
                    # node's first chunk instead of standing alone.
                    if group_end - group_start < self.target // 3:
                        sub_start = group_start
                    else:
                        self.emit(group_start, group_end, inner_context if group_start > start else context)
                    group_start = None
                self.split(child, sub_start, unit_end, inner_context)
                group_end = unit_end
                continue
            if group_start is None:
                group_start, group_end = unit_start, unit_end
            elif unit_end - group_start <= self.target:
                group_end = unit_end
            else:
                self.emit(group_start, group_end, inner_context if group_start > start else context)
                group_start, group_end = unit_start, unit_end
        if group_start is not None:
            self.emit(group_start, group_end, inner_context if group_start > start else context)


class _ByteToChar:
    """UTF-8 byte offsets (tree-sitter's) to character offsets; the identity for ASCII text, the common case."""

    def __init__(self, text: str) -> None:
        self.length = len(text)
        self.char_starts: Any = None
        if not text.isascii():
            import numpy as np

            # A character starts at every byte that is not a UTF-8 continuation byte (0b10xxxxxx).
            data = np.frombuffer(text.encode("utf-8", errors="surrogatepass"), dtype=np.uint8)
            self.char_starts = np.flatnonzero((data & 0xC0) != 0x80)

    def __call__(self, byte_offset: int) -> int:
        if self.char_starts is None:
            return min(byte_offset, self.length)
        return min(int(self.char_starts.searchsorted(byte_offset, side="right")) - 1, self.length)


def _merge_small(spans: list[tuple[int, int, str | None]], target: int) -> list[tuple[int, int, str | None]]:
    """Fold fragments (a closing ``return``, a lone import) into a neighbour when the pair still fits."""
    small = max(target // 8, 1)
    merged: list[tuple[int, int, str | None]] = []
    for start, end, context in spans:
        if merged:
            p_start, p_end, p_context = merged[-1]
            if (end - start < small or p_end - p_start < small) and end - p_start <= target:
                merged[-1] = (p_start, end, p_context if p_context == context else None)
                continue
        merged.append((start, end, context))
    return merged


def chunk_text(
    text: str,
    language: Language | None,
    *,
    target: int = DEFAULT_TARGET,
    hard_max: int = DEFAULT_HARD_MAX,
    tree: Any = None,
    with_text: bool = True,
) -> list[Chunk]:
    """Chunks covering ``text`` exactly, cut along its syntax tree where the language is parsed.

    ``with_text=False`` leaves ``Chunk.text`` empty for callers that cut it from ``text`` themselves.
    """
    if hard_max < target:
        raise ValueError("hard_max must be at least target")
    chunker = _Chunker(text, target, hard_max)
    if language is not None and language.grammar is not None and text:
        if tree is None:
            tree = parse(text.encode("utf-8", errors="surrogatepass"), language.grammar)
        chunker.byte_to_char = _ByteToChar(text)
        chunker.split(tree.root_node, 0, len(text), None)
    else:
        chunker.split_plain(0, len(text), None)
    lines = chunker.lines
    chunks = []
    for start, end, context in _merge_small(chunker.spans, target):
        last = end - 1 if end > start else start
        chunks.append(
            Chunk(
                start_line=lines.row_of(start) + 1,
                end_line=lines.row_of(last) + 1,
                start_char=start,
                end_char=end,
                text=text[start:end] if with_text else "",
                context=context,
            )
        )
    return chunks
