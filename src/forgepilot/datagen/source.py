"""One repository file as data generation sees it: redacted text, syntax, metrics, and the gates on its code units."""

from __future__ import annotations

import hashlib
import textwrap
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from forgepilot.config import DatasetSettings
from forgepilot.syntax.languages import Language
from forgepilot.syntax.metrics import ClassMetrics, FunctionMetrics, class_metrics, function_metrics
from forgepilot.syntax.symbols import FileSyntax, Symbol, analyze

FUNCTION_KINDS = frozenset({"function", "method"})


@dataclass
class SourceFile:
    repository: str  # the repository's name
    root: Path
    path: str  # relative, with forward slashes
    text: str  # after secret redaction
    language: Language
    sha256: str
    syntax: FileSyntax = field(init=False)

    def __post_init__(self) -> None:
        self.data = self.text.encode("utf-8", "surrogatepass")
        self.syntax = analyze(self.data, self.language)
        # Symbols store byte offsets; instances cut the text by characters.
        self._char_of: list[int] | None = None

    @classmethod
    def read(cls, repository: str, root: Path, path: str, text: str, language: Language) -> SourceFile:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        return cls(repository, root, path, text, language, digest)

    @property
    def abspath(self) -> str:
        return str(self.root / self.path)

    def char(self, byte_offset: int) -> int:
        """The character offset of a byte offset (the text is mostly ASCII: the fast path is exact then)."""
        if len(self.data) == len(self.text):
            return byte_offset
        return len(self.data[:byte_offset].decode("utf-8", "surrogatepass"))

    def node(self, sym: Symbol) -> Any:
        """The tree-sitter node of a symbol's definition."""
        tree = self.syntax.tree
        if tree is None:
            return None
        node = tree.root_node.descendant_for_byte_range(sym.start_byte, sym.end_byte)
        while node is not None and (node.start_byte, node.end_byte) != (sym.start_byte, sym.end_byte):
            node = node.parent
        return node

    @cached_property
    def functions(self) -> list[Symbol]:
        return [s for s in self.syntax.symbols if s.kind in FUNCTION_KINDS]

    @cached_property
    def function_metrics(self) -> dict[int, FunctionMetrics]:
        return function_metrics(self.text, self.language.name, self.syntax.tree)

    @cached_property
    def class_metrics(self) -> list[ClassMetrics]:
        return class_metrics(self.text, self.language.name, self.syntax.symbols, self.syntax.tree)

    def metrics_of(self, sym: Symbol) -> FunctionMetrics | None:
        fm = self.function_metrics.get(sym.start_line)
        if fm is not None:
            return fm
        inside = [m for m in self.function_metrics.values() if sym.start_line <= m.start_line <= sym.end_line]
        return min(inside, key=lambda m: m.start_line) if inside else None

    def enclosing_class(self, sym: Symbol) -> ClassMetrics | None:
        owners = [c for c in self.class_metrics if c.start_line <= sym.start_line and sym.end_line <= c.end_line]
        return max(owners, key=lambda c: c.start_line) if owners else None

    def unit_gates(self, sym: Symbol, s: DatasetSettings) -> str | None:
        """The first quality gate a function fails (complexity, then the code smells), or None."""
        fm = self.metrics_of(sym)
        if fm is not None:
            if fm.complexity > s.max_complexity:
                return "gate:complexity"
            if fm.nloc > s.max_function_lines:
                return "smell:long_method"
            if fm.parameters > s.max_parameters:
                return "smell:long_parameter_list"
            if fm.nesting > s.max_nesting:
                return "smell:deep_nesting"
        cls = self.enclosing_class(sym)
        if cls is not None:
            if cls.methods > s.max_class_methods or cls.lines > s.max_class_lines:
                return "smell:god_class"
            if cls.fields >= s.data_class_min_fields and cls.accessors_only:
                return "smell:data_class"
        return None

    def symbol_text(self, sym: Symbol) -> str:
        return self.data[sym.start_byte : sym.end_byte].decode("utf-8", "replace")

    def block_text(self, sym: Symbol) -> str:
        """The definition from the start of its line, dedented (a method reads like a top-level function)."""
        start = self.char(sym.start_byte)
        indent = self.text[self.line_start(start) : start]
        return textwrap.dedent((indent if not indent.strip() else "") + self.symbol_text(sym)).strip("\n")

    def line_start(self, char_offset: int) -> int:
        return self.text.rfind("\n", 0, char_offset) + 1
