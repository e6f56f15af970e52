"""Code metrics and smells: cyclomatic complexity and size (lizard), nesting and class shape (tree-sitter).

Lizard is the well-kept analyzer made for function metrics in every language we parse (McCabe complexity, NLOC,
parameter count). Nesting depth and the class smells (god class, data class) need the tree, which the caller
already has from ``syntax.analyze``. Test smells are per-language patterns over a test's text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from forgepilot.errors import MissingExtra
from forgepilot.syntax.symbols import Symbol

# Control-flow nodes that nest (branches of one `if`, like elif/else clauses, do not add a level).
_NESTING = re.compile(
    r"^(if|for|while|do|try|with|switch|match|loop|select|foreach|enhanced_for|for_in|for_range|expression_switch|"
    r"type_switch|using|lock|catch)_(statement|expression|clause|block)$"
)
_FUNCTION_NODES = re.compile(r"(function|method|constructor|func_literal|lambda|arrow_function|closure)")
_FIELD_NODES = frozenset(
    {"field_declaration", "public_field_definition", "property_declaration", "field_definition", "property_signature"}
)
_ACCESSOR = re.compile(r"^(get|set|is|has|__(init|repr|str|eq|hash|post_init)__$|equals$|hashCode$|toString$)")
_PY_SELF_FIELD = re.compile(r"\bself\.([A-Za-z_]\w*)\s*(?::[^=\n]*)?=(?!=)")
_PY_CLASS_FIELD = re.compile(r"^\s{4}([A-Za-z_]\w*)\s*:\s*[^=\n]+(?:=.*)?$", re.MULTILINE)


@dataclass(frozen=True)
class FunctionMetrics:
    name: str
    start_line: int
    end_line: int
    complexity: int
    nloc: int
    parameters: int
    nesting: int = 0


@dataclass(frozen=True)
class ClassMetrics:
    name: str
    start_line: int
    end_line: int
    methods: int
    fields: int
    #: Every method is an accessor, constructor or dunder (a data class when it also has many fields).
    accessors_only: bool

    @property
    def lines(self) -> int:
        return self.end_line - self.start_line + 1


_LIZARD_EXT = {
    "python": ".py",
    "java": ".java",
    "kotlin": ".kt",
    "javascript": ".js",
    "typescript": ".ts",
    "tsx": ".tsx",
    "go": ".go",
    "rust": ".rs",
    "c": ".c",
    "cpp": ".cpp",
    "csharp": ".cs",
}


def function_metrics(text: str, language: str, tree: Any = None) -> dict[int, FunctionMetrics]:
    """Metrics of every function lizard finds, by 1-based start line (nesting from ``tree`` when given)."""
    ext = _LIZARD_EXT.get(language)
    if ext is None:
        return {}
    try:
        import lizard
    except ImportError as exc:
        raise MissingExtra("lizard", "datagen") from exc

    info = lizard.analyze_file.analyze_source_code(f"unit{ext}", text)
    nesting = _nesting_by_line(tree) if tree is not None else {}
    out: dict[int, FunctionMetrics] = {}
    for f in info.function_list:
        out[f.start_line] = FunctionMetrics(
            name=f.name,
            start_line=f.start_line,
            end_line=f.end_line,
            complexity=f.cyclomatic_complexity,
            nloc=f.nloc,
            parameters=f.parameter_count,
            nesting=nesting.get(f.start_line, 0),
        )
    return out


def _nesting_by_line(tree: Any) -> dict[int, int]:
    """Deepest control-flow nesting inside each function node, keyed by the function's first line."""
    out: dict[int, int] = {}
    # Iterative walk: (node, depth, enclosing function lines); recursion would overflow on generated code.
    stack: list[tuple[Any, int, tuple[int, ...]]] = [(tree.root_node, 0, ())]
    while stack:
        node, depth, funcs = stack.pop()
        kind = node.type
        if _FUNCTION_NODES.search(kind) and kind.endswith(("definition", "declaration", "item", "literal", "function")):
            line = node.start_point.row + 1
            funcs = (*funcs, line)
            out.setdefault(line, 0)
            depth = 0
        elif _NESTING.match(kind):
            depth += 1
            for line in funcs[-1:]:
                if depth > out[line]:
                    out[line] = depth
        for child in node.children:
            stack.append((child, depth, funcs))
    return out


def nesting_of(fm: FunctionMetrics | None) -> int:
    return fm.nesting if fm else 0


def class_metrics(text: str, language: str, symbols: Iterable[Symbol], tree: Any = None) -> list[ClassMetrics]:
    """Size and shape of each class-like symbol: its methods, its fields, whether it only holds data."""
    syms = list(symbols)
    classes = [s for s in syms if s.kind in ("class", "struct", "interface", "enum")]
    out = []
    for c in classes:
        prefix = c.qualified_name + "."
        methods = [
            s
            for s in syms
            if s.kind in ("method", "function")
            and s.qualified_name.startswith(prefix)
            and s.qualified_name.count(".") == c.qualified_name.count(".") + 1
        ]
        body = text.encode("utf-8", "surrogatepass")[c.start_byte : c.end_byte].decode("utf-8", "replace")
        if language == "python":
            fields = len(set(_PY_SELF_FIELD.findall(body)) | set(_PY_CLASS_FIELD.findall(body)))
        else:
            fields = _count_fields(tree, c) if tree is not None else 0
        accessors_only = all(_ACCESSOR.match(m.name) for m in methods)
        out.append(ClassMetrics(c.qualified_name, c.start_line, c.end_line, len(methods), fields, accessors_only))
    return out


def _count_fields(tree: Any, cls: Symbol) -> int:
    node = tree.root_node.descendant_for_byte_range(cls.start_byte, cls.end_byte)
    while node is not None and (node.start_byte, node.end_byte) != (cls.start_byte, cls.end_byte):
        node = node.parent
    if node is None:
        return 0
    count = 0
    stack = list(node.children)
    while stack:
        n = stack.pop()
        if n.type in _FIELD_NODES:
            count += 1
            continue
        if _FUNCTION_NODES.search(n.type):
            continue
        stack.extend(n.children)
    return count


# -- test smells ---------------------------------------------------------------------------------------------
_ASSERTION = re.compile(
    r"\bassert\w*\b|\bexpect\s*\(|\bpytest\.raises\b|\bself\.assert\w+|\bfail\s*\(|\bverify\s*\(|"
    r"\bt\.(Error|Errorf|Fatal|Fatalf|Fail|FailNow)\b|\brequire\.\w+|\bassert\.\w+|\bshould\b|\.to\w*\("
)
_SKIPPED = re.compile(
    r"@(pytest\.mark\.skip\w*|unittest\.skip\w*|Disabled|Ignore)\b|\b(xit|xdescribe|xtest)\s*\(|"
    r"\b(it|test|describe)\.skip\s*\(|\bt\.Skip\w*\s*\(|\bpytest\.skip\s*\(|\bself\.skipTest\s*\("
)
_SLEEP = re.compile(r"\btime\.sleep\s*\(|\bThread\.sleep\s*\(|\bsetTimeout\s*\(|\btime\.Sleep\s*\(|\bsleep\s*\(")
_PRINT = re.compile(
    r"(?<![\w.])print\s*\(|\bSystem\.(out|err)\.print|\bconsole\.(log|info|debug)\s*\(|\bfmt\.Print\w*\s*\("
)
_ASSERT_LINE = re.compile(r"^\s*(.*\b(assert\w*|expect|require\.\w+|t\.Error\w*)\b.*)$", re.MULTILINE)
_COMMENT_LINE = re.compile(r"^\s*(#|//|/\*|\*)")


def _body_of(code: str) -> str:
    """A test's body without its decorators and header line (or the inside of a one-line ``{ ... }``)."""
    lines = [line for line in code.splitlines() if not line.strip().startswith("@")]
    if len(lines) > 1:
        return "\n".join(lines[1:])
    one = lines[0] if lines else ""
    if "{" in one:
        return one[one.find("{") + 1 : one.rfind("}")]
    return one.partition(":")[2]


def smells_of_test(test_text: str, body: str | None = None) -> list[str]:
    """The smells of one test (its full text, ``body`` without signature and decorators when known)."""
    smells = []
    code = "\n".join(line for line in test_text.splitlines() if not _COMMENT_LINE.match(line))
    inner = body if body is not None else _body_of(code)
    stripped = [
        line.strip()
        for line in inner.splitlines()
        if line.strip()
        and not _COMMENT_LINE.match(line)
        and line.strip() not in ("pass", "...", "{", "}", "});", "})", ");")
    ]
    if not stripped:
        smells.append("empty")
    elif not _ASSERTION.search(code):
        smells.append("no_assertion")
    if _SKIPPED.search(test_text):
        smells.append("skipped")
    if _SLEEP.search(code):
        smells.append("sleep")
    if _PRINT.search(code):
        smells.append("print")
    asserts = [" ".join(m.group(1).split()) for m in _ASSERT_LINE.finditer(code)]
    if len(asserts) != len(set(asserts)):
        smells.append("duplicate_assert")
    return smells
