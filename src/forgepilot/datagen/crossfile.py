"""Cross-file completion holes, cut the way CrossCodeEval cuts them, from any repository.

A hole starts at a name the file uses but does not define, defined in another file of the same repository that
this file imports (resolved as the index resolves imports): ``crossfile_line`` runs from that name to the end of
its line, ``crossfile_api`` to the end of the call it starts (``Route(path)``, ``layer.match(path)`` from
``match``). These are the holes where repository context can help and in-file context cannot: a suite of them
(``forgepilot dataset build REPO --kinds crossfile_line,crossfile_api`` then ``forgepilot eval run DIR --ablate``)
measures what each context source is worth on a user's own code.

Unlike the training kinds, holes are not held to the code-quality gates: a hole in a long function is still a
hole a developer types.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from forgepilot.datagen.builders import RenderKit, stable_rank
from forgepilot.datagen.source import SourceFile
from forgepilot.datagen.types import Instance, Rejections
from forgepilot.syntax.imports import RepoFiles, resolve

CROSSFILE_KINDS = ("crossfile_line", "crossfile_api")
Loader = Callable[[str], SourceFile | None]

_IDENT = re.compile(r"[A-Za-z_$][\w$]*")
_COMMENT_PREFIXES = ("#", "//", "/*", "*", "--")
# Lines that import (or declare) rather than use: never a hole.
_NOT_A_USE = re.compile(
    r"^\s*(?:from\s|import\s|export\s+\*|package\s|using\s|#include|require\(|"
    r"(?:const|let|var)\s+[\w${},\s]+=\s*require\(|def\s|class\s|function\s|func\s|async\s+def\s)"
)
_DEFINITION_AFTER = re.compile(r"\s*(?:=(?!=)|:\s*function\b)")  # ``name = ...`` defines, it does not use
#: Names too common to say anything about the repository (they are also defined in every other file).
_MIN_NAME = 3
_MIN_HOLE = 4


@dataclass(frozen=True)
class _Hole:
    rank: str
    kind: str
    start: int
    end: int
    name: str
    defined_in: str


@dataclass
class CrossFileNames:
    """What a file may use from its same-repository imports: bare names (``Route``, ``helper``) and names reached
    through an import's receiver (Go's ``pkg.Func``), each with the file that defines it."""

    bare: dict[str, str]
    qualified: dict[str, dict[str, str]]

    def __bool__(self) -> bool:
        return bool(self.bare or self.qualified)


def _definitions(other: SourceFile, *, top_level: bool) -> dict[str, str]:
    return {
        s.name: other.path
        for s in other.syntax.symbols
        if (not top_level or s.qualified_name == s.name) and len(s.name) >= _MIN_NAME and not s.name.startswith("_")
    }


_JS_DEFAULT = re.compile(r"\bimport\s+(?:type\s+)?([A-Za-z_$][\w$]*)\s*(?:,|\s+from\b)")
_JS_NAMED = re.compile(r"\bimport\s+(?:type\s+)?(?:[A-Za-z_$][\w$]*\s*,\s*)?\{([^}]*)\}")
_JS_NAMESPACE = re.compile(r"\*\s*as\s+([A-Za-z_$][\w$]*)")
_JS_REQUIRE = re.compile(r"([A-Za-z_$][\w$]*)\s*=\s*require\s*\(")
_JS_DESTRUCTURED = re.compile(r"\{([^}]*)\}\s*=\s*require\s*\(")
_PY_ALIAS = re.compile(r"\bimport\s+([\w.]+)\s+as\s+(\w+)")


def _statement_rows(sf: SourceFile, line: int) -> range:
    """The 0-based rows of the import statement whose module is on 1-based ``line`` (multi-line imports start
    above it, and a Python ``from x import (`` list continues below it)."""
    lines = sf.text.split("\n")
    end = min(line, len(lines))
    start = end - 1
    while start > 0 and end - start < 20 and not re.match(r"\s*(import|export|const|let|var|from)\b", lines[start]):
        start -= 1
    if lines[end - 1].rstrip().endswith("("):
        while end < len(lines) and end - start < 60 and ")" not in lines[end - 1]:
            end += 1
    return range(start, end)


def _statement(sf: SourceFile, line: int) -> str:
    rows = _statement_rows(sf, line)
    return "\n".join(sf.text.split("\n")[rows.start : rows.stop])


def _spec_names(spec: str) -> set[str]:
    """Local names of ``a, b as c`` (ES) or ``a, b: c`` (destructuring)."""
    out = set()
    for part in spec.split(","):
        words = re.findall(r"[A-Za-z_$][\w$]*", part.replace(" as ", " ").replace(":", " "))
        if words:
            out.add(words[-1])
    return out


def _bindings(sf: SourceFile, module: str, names: tuple[str, ...], line: int) -> tuple[set[str], set[str]]:
    """The names an import binds in ``sf``: used bare, and used as a receiver (``ns.name``)."""
    lang = sf.language.name
    if lang == "python":
        alias = _PY_ALIAS.search(_statement(sf, line))
        return set(names), ({alias.group(2)} if alias else set()) | set(names)
    if lang in ("java", "kotlin"):
        return {module.rsplit(".", 1)[-1]}, {module.rsplit(".", 1)[-1]}
    if lang in ("javascript", "typescript", "tsx"):
        stmt = _statement(sf, line)
        bare: set[str] = set()
        for pattern in (_JS_DEFAULT, _JS_REQUIRE):
            bare.update(m.group(1) for m in pattern.finditer(stmt))
        receivers = set(bare) | {m.group(1) for m in _JS_NAMESPACE.finditer(stmt)}
        for pattern in (_JS_NAMED, _JS_DESTRUCTURED):
            for m in pattern.finditer(stmt):
                bare |= _spec_names(m.group(1))
        return bare, receivers
    return set(), set()


def imported_names(sf: SourceFile, files: RepoFiles, load: Loader) -> CrossFileNames:
    """The names ``sf`` binds by importing other files of its repository, and where each is defined.

    Bound names come from the import statement (a from-import's names, ES and ``require`` bindings, a JVM class or
    static member); a bound module or namespace reaches the definitions of its file as ``ns.name``, as a Go
    package's name reaches its package's definitions. Names ``sf`` defines itself are in-file.
    """
    lang = sf.language.name
    bare: dict[str, str] = {}
    qualified: dict[str, dict[str, str]] = {}
    for imp in sf.syntax.imports:
        targets = [
            other
            for other in (load(t) for t in resolve(imp, sf.path, lang, files) if t != sf.path)
            if other is not None
        ]
        if not targets:
            continue
        if lang == "go":
            for other in targets:
                package = other.syntax.package or imp.module.rsplit("/", 1)[-1]
                qualified.setdefault(package, {}).update(_definitions(other, top_level=True))
            continue
        everything: dict[str, str] = {}
        for other in targets:
            everything.update(_definitions(other, top_level=False))
        bound, receivers = _bindings(sf, imp.module, imp.names, imp.line)
        for name in bound:
            # A binding of the module itself (``var Route = require('./route')``) names what the module defines.
            path = everything.get(name) or (targets[0].path if lang not in ("python",) else None)
            if path is not None:
                bare.setdefault(name, path)
        for receiver in receivers:
            qualified.setdefault(receiver, {}).update(everything)
    local = {s.name for s in sf.syntax.symbols}
    return CrossFileNames(
        {n: p for n, p in bare.items() if n not in local},
        {r: {n: p for n, p in names.items() if n not in local} for r, names in qualified.items() if r not in local},
    )


def _in_text(sf: SourceFile, offset: int) -> bool:
    """True when the character at ``offset`` is inside a string, a docstring or a comment (prose, not code)."""
    tree = sf.syntax.tree
    if tree is None:
        return False
    byte = offset if len(sf.data) == len(sf.text) else len(sf.text[:offset].encode("utf-8", "surrogatepass"))
    node = tree.root_node.descendant_for_byte_range(byte, byte)
    while node is not None:
        if "comment" in node.type or "string" in node.type:
            return True
        node = node.parent
    return False


def _call_end(line: str, open_at: int) -> int | None:
    """The index after the parenthesis closing the one at ``open_at`` on this line, or None."""
    depth = 0
    quote: str | None = None
    for i in range(open_at, len(line)):
        c = line[i]
        if quote:
            if c == quote and line[i - 1] != "\\":
                quote = None
        elif c in "\"'`":
            quote = c
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i + 1
    return None


def _cross_file(line: str, m: re.Match[str], names: CrossFileNames) -> str | None:
    """Where the name at ``m`` is defined, if it is a cross-file use here (not an attribute of something local)."""
    name = m.group()
    receiver = re.search(r"([A-Za-z_$][\w$]*)\s*\.\s*$", line[: m.start()])
    if receiver is not None:
        return names.qualified.get(receiver.group(1), {}).get(name)
    if line[: m.start()].rstrip().endswith("."):
        return None
    return names.bare.get(name)


def _holes(sf: SourceFile, names: CrossFileNames, kinds: set[str]) -> list[_Hole]:
    holes: list[_Hole] = []
    importing = {row for imp in sf.syntax.imports for row in _statement_rows(sf, imp.line)}
    offset = 0
    for row, line in enumerate(sf.text.split("\n")):
        start_of_line, offset = offset, offset + len(line) + 1
        code = line.strip()
        if not code or row in importing or code.startswith(_COMMENT_PREFIXES) or _NOT_A_USE.match(line):
            continue
        for m in _IDENT.finditer(line):
            name = m.group()
            if _DEFINITION_AFTER.match(line, m.end()):
                continue
            defined_in = _cross_file(line, m, names)
            if defined_in is None or _in_text(sf, start_of_line + m.start()):
                continue
            rest = line[m.start() :].rstrip()
            after = line[m.end() :]
            if "crossfile_line" in kinds and len(rest) >= _MIN_HOLE and rest != name:
                end = start_of_line + m.start() + len(rest)
                rank = stable_rank(sf.path, row, "line")
                holes.append(_Hole(rank, "crossfile_line", start_of_line + m.start(), end, name, defined_in))
            if "crossfile_api" in kinds and after.lstrip().startswith("("):
                close = _call_end(line, m.end() + len(after) - len(after.lstrip()))
                if close is not None and close - m.start() >= _MIN_HOLE:
                    rank = stable_rank(sf.path, row, "api")
                    start = start_of_line + m.start()
                    holes.append(_Hole(rank, "crossfile_api", start, start_of_line + close, name, defined_in))
            break  # the first cross-file name of a line is where its hole starts
    return holes


def crossfile(
    sf: SourceFile, files: RepoFiles, load: Loader, kit: RenderKit, rejected: Rejections, kinds: set[str]
) -> Iterator[Instance]:
    """Up to ``per_file`` holes of each requested cross-file kind, spread over the file by a stable hash."""
    wanted = kinds & set(CROSSFILE_KINDS)
    names = imported_names(sf, files, load) if wanted else CrossFileNames({}, {})
    if not names:
        return
    made = dict.fromkeys(wanted, 0)
    for hole in sorted(_holes(sf, names, wanted), key=lambda h: h.rank):
        if made[hole.kind] >= kit.settings.per_file:
            continue
        made[hole.kind] += 1
        line = sf.text[sf.line_start(hole.start) : hole.end]
        inst = kit.completion(sf, hole.start, hole.end, hole.kind, line)
        inst.meta = {**inst.meta, "identifier": hole.name, "defined_in": hole.defined_in}
        yield inst.finish()
