"""Definitions, references and imports of one source file, from the tags queries.

A definition gets a qualified name from the definitions and containers (impl blocks, namespaces) around it, a
signature (its text up to the body), a docstring or leading comment, and an exact span. Functions directly inside
a class-like definition are methods.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from typing import Any

from forgepilot.syntax.languages import Language, parse, tags_query

_COMMENT_TYPES = frozenset({"comment", "line_comment", "block_comment", "multiline_comment"})
# Wrappers whose leading comment documents the definition inside them.
_WRAPPERS = frozenset({"export_statement", "type_declaration", "decorated_definition", "template_declaration"})
_CLASS_LIKE = frozenset({"class", "interface", "struct", "enum", "container"})
_SIGNATURE_MAX = 400
_DOC_MAX = 2000


@dataclass(frozen=True)
class Symbol:
    name: str
    qualified_name: str
    kind: str  # function, method, class, interface, struct, enum
    signature: str
    doc: str | None
    start_line: int  # 1-based, inclusive
    end_line: int
    start_byte: int
    end_byte: int


@dataclass(frozen=True)
class Reference:
    name: str
    kind: str  # call or type
    line: int


@dataclass(frozen=True)
class ImportRef:
    """An import as written: ``module`` is the path/module text, ``names`` what a from-import took from it."""

    module: str
    line: int
    names: tuple[str, ...] = ()
    kind: str = "module"  # module, wildcard, mod (Rust `mod x;`)


@dataclass
class FileSyntax:
    language: str
    symbols: list[Symbol] = field(default_factory=list)
    references: list[Reference] = field(default_factory=list)
    imports: list[ImportRef] = field(default_factory=list)
    package: str | None = None
    has_errors: bool = False
    #: The tree-sitter tree, for callers that go on to chunk the same source (None for unparsed languages).
    tree: Any = field(default=None, repr=False, compare=False)


def _text(node: Any) -> str:
    return bytes(node.text).decode("utf-8", errors="replace")


def _collapse(text: str, limit: int) -> str:
    return " ".join(text.split())[:limit]


def _signature(node: Any, source: bytes) -> str:
    body = node.child_by_field_name("body")
    if body is not None and body.start_byte > node.start_byte:
        head = source[node.start_byte : body.start_byte]
    else:
        head = source[node.start_byte : node.end_byte].split(b"\n", 1)[0]
    text = head.decode("utf-8", errors="replace").rstrip().removesuffix("{").rstrip()
    return _collapse(text, _SIGNATURE_MAX)


def _python_docstring(node: Any) -> str | None:
    body = node.child_by_field_name("body")
    if body is None or body.named_child_count == 0:
        return None
    string = body.named_children[0]
    # Grammar versions differ: the docstring is a bare string or an expression statement holding one.
    if string.type == "expression_statement" and string.named_child_count == 1:
        string = string.named_children[0]
    if string.type != "string":
        return None
    raw = _text(string)
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw.strip("\"'")
    return value.strip() if isinstance(value, str) else None


_COMMENT_MARKS = re.compile(r"^\s*(?:/\*\*?|\*/|\*(?!/)|///?|//!|#+|--)\s?")


_DOC_TAGS = re.compile(r"</?(?:summary|remarks|returns|param|typeparam|value|example|para)\b[^>]*>")


def _clean_comment(text: str) -> str:
    text = _DOC_TAGS.sub("", text)
    lines = []
    for line in text.replace("*/", "").splitlines():
        lines.append(_COMMENT_MARKS.sub("", line).rstrip())
    return "\n".join(line for line in lines).strip()


def _leading_comment(node: Any) -> str | None:
    target = node
    while target.parent is not None and target.parent.type in _WRAPPERS:
        target = target.parent
    parts: list[str] = []
    expected_row = target.start_point.row
    sibling = target.prev_sibling
    # Some grammars (Kotlin) attach a comment to the end of the node before it: look at its last descendant.
    while (
        sibling is not None
        and sibling.type not in _COMMENT_TYPES
        and sibling.child_count
        and (sibling.type != "attribute_item")
    ):
        last = sibling.children[-1]
        if last.end_point.row < expected_row - 1:
            break
        sibling = last
    while sibling is not None:
        if sibling.type == "attribute_item":  # Rust #[derive(...)] between doc comment and item
            expected_row = sibling.start_point.row
        elif sibling.type in _COMMENT_TYPES and sibling.end_point.row >= expected_row - 1:
            parts.append(_text(sibling))
            expected_row = sibling.start_point.row
        else:
            break
        sibling = sibling.prev_sibling
    if not parts:
        return None
    doc = _clean_comment("\n".join(reversed(parts)))
    return doc[:_DOC_MAX] or None


def _refine_kind(kind: str, node: Any, language: str) -> str:
    if language == "kotlin" and node.type == "class_declaration":
        child_types = {c.type for c in node.children}
        if "interface" in child_types:
            return "interface"
        if "enum_class_body" in child_types:
            return "enum"
    return kind


def _go_receiver(node: Any) -> str | None:
    receiver = node.child_by_field_name("receiver")
    if receiver is None:
        return None
    stack = [receiver]
    while stack:
        current = stack.pop()
        if current.type == "type_identifier":
            return _text(current)
        stack.extend(reversed(current.named_children))
    return None


def analyze(source: bytes, language: Language) -> FileSyntax:
    """Symbols, references, imports and package of one file (an empty result for unparsed languages)."""
    result = FileSyntax(language=language.name)
    if language.grammar is None:
        return result
    import tree_sitter

    tree = parse(source, language.grammar)
    result.tree = tree
    root = tree.root_node
    result.has_errors = bool(root.has_error)
    matches = tree_sitter.QueryCursor(tags_query(language.grammar)).matches(root)

    defs: dict[int, tuple[Any, Any, str]] = {}  # node id -> (node, name node, kind)
    imports: dict[int, ImportRef] = {}
    references: set[tuple[int, str, str]] = set()  # (line, name, kind): plain tuples, references are many
    for _pattern, captures in matches:
        names = captures.get("name")
        for key, nodes in captures.items():
            if key.startswith("definition.") and names:
                node = nodes[0]
                defs[node.id] = (node, names[0], _refine_kind(key.partition(".")[2], node, language.name))
            elif key == "container" and names:
                defs[nodes[0].id] = (nodes[0], names[0], "container")
            elif key.startswith("reference."):
                kind = key[10:]
                for n in nodes:
                    name = source[n.start_byte : n.end_byte].decode("utf-8", errors="replace")
                    references.add((n.start_point.row + 1, name, kind))
            elif key == "package" and result.package is None:
                result.package = _text(nodes[0])
        for key in ("import", "import.mod"):
            for n in captures.get(key, []):
                prev = imports.get(n.id)
                names_taken = tuple(_text(x) for x in captures.get("import.name", []))
                kind = "mod" if key == "import.mod" else "wildcard" if "import.wildcard" in captures else "module"
                if prev is None:
                    imports[n.id] = ImportRef(_text(n), n.start_point.row + 1, names_taken, kind)
                else:
                    merged = prev.names + tuple(x for x in names_taken if x not in prev.names)
                    # Several patterns can match one import; the most specific kind wins.
                    imports[n.id] = ImportRef(prev.module, prev.line, merged, kind if kind != "module" else prev.kind)

    for node, name_node, kind in defs.values():
        if kind == "container":
            continue
        name = _text(name_node)
        parts = [name.replace("::", ".")]
        parent_kind = None
        ancestor = node.parent
        while ancestor is not None:
            if ancestor.id in defs:
                _, anc_name, anc_kind = defs[ancestor.id]
                parts.append(_text(anc_name).replace("::", "."))
                parent_kind = parent_kind or anc_kind
            ancestor = ancestor.parent
        if language.name == "go" and kind == "method":
            receiver = _go_receiver(node)
            if receiver:
                parts.append(receiver)
        if kind == "function" and parent_kind in _CLASS_LIKE:
            kind = "method"
        doc = _python_docstring(node) if language.name == "python" else None
        doc = doc or _leading_comment(node)
        result.symbols.append(
            Symbol(
                name=name.rsplit("::", 1)[-1],
                qualified_name=".".join(reversed(parts)),
                kind=kind,
                signature=_signature(node, source),
                doc=doc[:_DOC_MAX] if doc else None,
                start_line=node.start_point.row + 1,
                end_line=node.end_point.row + 1,
                start_byte=node.start_byte,
                end_byte=node.end_byte,
            )
        )
    result.symbols.sort(key=lambda s: (s.start_byte, -s.end_byte))
    result.imports = sorted(imports.values(), key=lambda i: (i.line, i.module))
    result.references = [Reference(name, kind, line) for line, name, kind in sorted(references)]
    return result
