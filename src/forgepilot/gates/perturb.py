"""Meaning-preserving edits of Python programs, made on the tree-sitter syntax tree, for the stability check.

Each perturbation edits a whole program (a functional case's prompt followed by its canonical solution) and keeps
track of where the prompt ends, so the edited prompt is what the model sees and the edited canonical solution is
what proves the edit kept the meaning: a perturbed case is used only when its edited canonical solution still
passes the case's tests in the sandbox (``gates.checks``).

- ``rename_locals``: parameters and local variables of each function become ``v0``, ``v1``, ... (the docstring's
  mentions follow; attribute names and keyword-argument names are left alone).
- ``reformat``: no space after commas in parameter lists, and two blank lines before top-level definitions.
- ``comments``: existing comments removed, and a comment line added above each function.
- ``reorder_imports``: consecutive top-level imports reversed, and names inside ``from x import a, b`` reversed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from forgepilot.syntax.languages import parse

Edit = tuple[int, int, bytes]  # replace bytes [start, end) with the bytes given


@dataclass(frozen=True)
class Perturbed:
    prompt: str
    solution: str
    changed: bool


def _walk(node: Any) -> Iterator[Any]:
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(reversed(n.children))


def apply_edits(program: bytes, boundary: int, edits: list[Edit]) -> tuple[bytes, int]:
    """Apply non-overlapping ``edits``; returns the new program and where the prompt now ends. Edits that straddle
    the boundary are dropped (the prompt/solution split must stay exact)."""
    kept = sorted((e for e in edits if e[1] <= boundary or e[0] >= boundary), key=lambda e: (e[0], e[1]))
    out = bytearray()
    pos = 0
    new_boundary = boundary
    for start, end, text in kept:
        if start < pos:  # overlapping edit: keep the first
            continue
        out += program[pos:start] + text
        pos = end
        if end <= boundary:
            new_boundary += len(text) - (end - start)
    out += program[pos:]
    return bytes(out), new_boundary


# -- rename locals --------------------------------------------------------------------------------------------
def _bound_names(fn: Any) -> list[str]:
    """Names a function binds: parameters, assignment / for / with / comprehension targets, nested defs."""
    names: list[str] = []

    def add_targets(node: Any) -> None:
        if node.type == "identifier":
            names.append(node.text.decode())
        elif node.type in ("pattern_list", "tuple_pattern", "list_pattern", "tuple", "list", "list_splat_pattern"):
            for child in node.named_children:
                add_targets(child)

    params = fn.child_by_field_name("parameters")
    for p in params.named_children if params is not None else []:
        if p.type == "identifier":
            names.append(p.text.decode())
        elif p.type in ("default_parameter", "typed_default_parameter"):
            name = p.child_by_field_name("name")
            if name is not None and name.type == "identifier":
                names.append(name.text.decode())
        elif p.type in ("typed_parameter", "list_splat_pattern", "dictionary_splat_pattern"):
            ident = next((c for c in p.named_children if c.type == "identifier"), None)
            if ident is not None:
                names.append(ident.text.decode())
    body = fn.child_by_field_name("body")
    for node in _walk(body) if body is not None else []:
        if node.type in ("assignment", "augmented_assignment", "for_statement", "for_in_clause"):
            target = node.child_by_field_name("left")
            if target is not None:
                add_targets(target)
        elif node.type == "as_pattern":
            alias = node.child_by_field_name("alias")
            if alias is not None:
                add_targets(alias.named_children[0] if alias.named_children else alias)
        elif node.type == "function_definition":
            name = node.child_by_field_name("name")
            if name is not None:
                names.append(name.text.decode())
            names += _bound_names(node)
        elif node.type in ("global_statement", "nonlocal_statement"):
            return []  # scoping a rename cannot see through: leave such functions alone
    return list(dict.fromkeys(n for n in names if n not in ("self", "cls", "_")))


def _renamable(node: Any) -> bool:
    parent = node.parent
    if parent is None:
        return True
    if parent.type == "attribute" and parent.child_by_field_name("attribute") == node:
        return False
    if parent.type == "keyword_argument" and parent.child_by_field_name("name") == node:
        return False
    return True


def _docstring(fn: Any) -> Any | None:
    body = fn.child_by_field_name("body")
    if body is None or not body.named_children:
        return None
    first = body.named_children[0]
    if first.type == "string":  # this grammar's docstring node
        return first
    if first.type == "expression_statement" and first.named_children and first.named_children[0].type == "string":
        return first.named_children[0]
    return None


def rename_locals(program: bytes, boundary: int, tree: Any) -> list[Edit]:
    taken = {n.text.decode() for n in _walk(tree.root_node) if n.type == "identifier"}
    edits: list[Edit] = []
    counter = 0
    for fn in tree.root_node.children:
        if fn.type == "decorated_definition":
            fn = fn.child_by_field_name("definition")
        if fn is None or fn.type != "function_definition":
            continue
        mapping: dict[str, str] = {}
        for name in _bound_names(fn):
            while f"v{counter}" in taken:
                counter += 1
            mapping[name] = f"v{counter}"
            taken.add(mapping[name])
        if not mapping:
            continue
        fn_name = fn.child_by_field_name("name")
        for node in _walk(fn):
            if node.type == "identifier" and node != fn_name and node.text.decode() in mapping and _renamable(node):
                edits.append((node.start_byte, node.end_byte, mapping[node.text.decode()].encode()))
        doc = _docstring(fn)
        if doc is not None:
            text = doc.text.decode()
            pattern = re.compile(r"\b(" + "|".join(map(re.escape, sorted(mapping, key=len, reverse=True))) + r")\b")
            new = pattern.sub(lambda m, names=mapping: names[m.group(1)], text)  # type: ignore[misc]
            if new != text:
                edits.append((doc.start_byte, doc.end_byte, new.encode()))
    return edits


# -- reformat, comments, imports ------------------------------------------------------------------------------
def reformat(program: bytes, boundary: int, tree: Any) -> list[Edit]:
    edits: list[Edit] = []
    for node in _walk(tree.root_node):
        if node.type == "parameters":
            for child in node.children:
                if child.type == ",":
                    end = child.end_byte
                    while end < node.end_byte and program[end : end + 1] == b" ":
                        end += 1
                    if end > child.end_byte:
                        edits.append((child.end_byte, end, b""))
    for node in tree.root_node.children:
        if node.type in ("function_definition", "decorated_definition", "class_definition") and node.start_byte > 0:
            edits.append((node.start_byte, node.start_byte, b"\n\n"))
    return edits


def comments(program: bytes, boundary: int, tree: Any) -> list[Edit]:
    edits: list[Edit] = []
    for node in _walk(tree.root_node):
        if node.type == "comment":
            line_start = program.rfind(b"\n", 0, node.start_byte) + 1
            end = node.end_byte
            if program[line_start : node.start_byte].strip() == b"":
                # A comment alone on its line goes with its line.
                end = end + 1 if program[end : end + 1] == b"\n" else end
                edits.append((line_start, end, b""))
            else:
                start = node.start_byte
                while start > line_start and program[start - 1 : start] in (b" ", b"\t"):
                    start -= 1
                edits.append((start, end, b""))
        elif node.type == "function_definition":
            name = node.child_by_field_name("name")
            line_start = program.rfind(b"\n", 0, node.start_byte) + 1
            holder = node.parent if node.parent is not None and node.parent.type == "decorated_definition" else node
            line_start = program.rfind(b"\n", 0, holder.start_byte) + 1
            indent = program[line_start : holder.start_byte]
            if indent.strip() == b"" and name is not None:
                edits.append((line_start, line_start, indent + b"# Definition of " + name.text + b".\n"))
    return edits


def reorder_imports(program: bytes, boundary: int, tree: Any) -> list[Edit]:
    edits: list[Edit] = []
    block: list[Any] = []

    def flush() -> None:
        if len(block) > 1:
            texts = [n.text for n in block]
            for node, text in zip(block, reversed(texts), strict=True):
                edits.append((node.start_byte, node.end_byte, text))
        block.clear()

    for node in tree.root_node.children:
        if node.type in ("import_statement", "import_from_statement"):
            block.append(node)
        else:
            flush()
    flush()
    for node in tree.root_node.children:
        if node.type == "import_from_statement":
            names = [c for c in node.children_by_field_name("name")]
            if len(names) > 1:
                texts = [n.text for n in names]
                for n, text in zip(names, reversed(texts), strict=True):
                    edits.append((n.start_byte, n.end_byte, text))
    return _flatten_nested(edits)


def _flatten_nested(edits: list[Edit]) -> list[Edit]:
    """Whole-statement swaps win over name swaps inside the same statement (edits must not overlap)."""
    edits = sorted(edits, key=lambda e: (e[0], -(e[1] - e[0])))
    out: list[Edit] = []
    for e in edits:
        if out and e[0] < out[-1][1]:
            continue
        out.append(e)
    return out


PERTURBATIONS: dict[str, Callable[[bytes, int, Any], list[Edit]]] = {
    "rename_locals": rename_locals,
    "reformat": reformat,
    "comments": comments,
    "reorder_imports": reorder_imports,
}


def perturb(kind: str, prompt: str, solution: str) -> Perturbed:
    """Apply perturbation ``kind`` to ``prompt + solution``; the split between them is kept."""
    try:
        make = PERTURBATIONS[kind]
    except KeyError:
        raise ValueError(f"unknown perturbation {kind!r}; known: {', '.join(PERTURBATIONS)}") from None
    program = (prompt + solution).encode("utf-8")
    boundary = len(prompt.encode("utf-8"))
    tree = parse(program, "python")
    if tree.root_node.has_error:
        return Perturbed(prompt, solution, False)
    new, new_boundary = apply_edits(program, boundary, make(program, boundary, tree))
    new_prompt = new[:new_boundary].decode("utf-8")
    new_solution = new[new_boundary:].decode("utf-8")
    return Perturbed(new_prompt, new_solution, (new_prompt, new_solution) != (prompt, solution))
