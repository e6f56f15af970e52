"""*Related* context: definitions of what the code at the cursor uses, found through the index.

Candidates are the identifiers near the cursor, the types in the enclosing function's signature and the parent
types of the enclosing class. Each is looked up among the repository's indexed definitions (one query) and scored
by how surely it is the definition meant: defined in a file the document imports, a parent or signature type, in
the same directory, or the only definition of that name in the repository. Names the document defines itself are
skipped (the model sees them in the prefix).
"""

from __future__ import annotations

import posixpath
import re
import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass
from pathlib import Path

from forgepilot.context.locate import Located
from forgepilot.context.types import Document, Snippet
from forgepilot.index.store import Definition, FoundDefinition, Store
from forgepilot.syntax.imports import RepoFiles, resolve
from forgepilot.syntax.symbols import analyze

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DOTTED = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)")
_NEAR_LINES_BEFORE = 20
_NEAR_LINES_AFTER = 3
_HEAD_LINES = 150  # imports live at the top of a file in every parsed language
_LOCAL_LINES = 200  # how far back an unindexed document is parsed for its enclosing definitions
_CLASS_KINDS = {"class", "interface", "struct", "enum", "trait", "type"}
_FUNCTION_KINDS = {"function", "method", "constructor"}

SCORE_IMPORTED = 1.0
SCORE_PARENT = 0.9
SCORE_SIGNATURE = 0.8
SCORE_SAME_DIR = 0.6
SCORE_UNIQUE = 0.4
#: Lines of a docstring kept where a definition is shown without its body; a class keeps its summary only, so that
#: the signatures of its methods fit.
_DOC_LINES = 12
_CLASS_DOC_LINES = 2
#: Member signatures in the outline of a class too long to show whole: a few, so that the outline costs about what a
#: short body would and the other definitions the file uses still fit.
_OUTLINE_MEMBERS = 6
_ATTRIBUTE = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)")


@dataclass(frozen=True)
class _LocalSymbol:
    name: str
    kind: str
    signature: str
    start_line: int
    end_line: int


@dataclass
class _Outline:
    """What the document says about itself: its definitions and the files its imports resolve to."""

    symbols: list[_LocalSymbol]
    import_targets: set[int]  # file ids
    imported_names: set[str]


class FileLines:
    """Lines of repository files read from disk, cached by path and modification time."""

    def __init__(self, entries: int = 256) -> None:
        self._cache: OrderedDict[str, tuple[int, list[str]]] = OrderedDict()
        self._entries = entries
        self._lock = threading.Lock()

    def get(self, path: Path) -> list[str] | None:
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            return None
        key = str(path)
        with self._lock:
            found = self._cache.get(key)
            if found is not None and found[0] == mtime:
                self._cache.move_to_end(key)
                return found[1]
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return None
        with self._lock:
            self._cache[key] = (mtime, lines)
            while len(self._cache) > self._entries:
                self._cache.popitem(last=False)
        return lines


class RelatedDefinitions:
    def __init__(self, store: Store, *, body_max_lines: int = 30, lines: FileLines | None = None) -> None:
        self.store = store
        self.body_max_lines = body_max_lines
        self.lines = lines or FileLines()
        self._repo_files: dict[int, tuple[float | None, RepoFiles, dict[str, int]]] = {}
        self._file_definitions: dict[tuple[int, float | None], list[Definition]] = {}

    def _repo(self, located: Located) -> tuple[RepoFiles, dict[str, int]]:
        repo = located.repository
        cached = self._repo_files.get(repo.id)
        if cached is not None and cached[0] == repo.indexed_at:
            return cached[1], cached[2]
        rows = self.store.indexed_files_of(repo.id)
        ids = {r.path: r.id for r in rows}
        files = RepoFiles(ids, {r.path: r.package for r in rows if r.package})
        self._repo_files[repo.id] = (repo.indexed_at, files, ids)
        return files, ids

    def _outline(self, doc: Document, located: Located) -> _Outline:
        if located.file_id is not None:
            symbols = [
                _LocalSymbol(d.name, d.kind, d.signature, d.start_line, d.end_line)
                for d in self.store.definitions_in(located.file_id)
            ]
            targets = {t.file_id for t in self.store.import_targets(located.file_id)}
            return _Outline(symbols, targets, self.store.imported_names(located.file_id))
        # Not indexed (a new file): parse its head for imports and the code before the cursor for definitions.
        lang = doc.language
        if lang is None or lang.grammar is None:
            return _Outline([], set(), set())
        lines = doc.text.splitlines(keepends=True)
        head = analyze("".join(lines[:_HEAD_LINES]).encode("utf-8", "replace"), lang)
        first = max(0, doc.cursor_line - _LOCAL_LINES)
        local = analyze("".join(lines[first : doc.cursor_line + _NEAR_LINES_AFTER]).encode("utf-8", "replace"), lang)
        symbols = [
            _LocalSymbol(s.name, s.kind, s.signature, s.start_line + first, s.end_line + first) for s in local.symbols
        ]
        files, ids = self._repo(located)
        targets = {ids[p] for imp in head.imports for p in resolve(imp, located.path, lang.name, files) if p in ids}
        return _Outline(symbols, targets, {n for imp in head.imports for n in imp.names})

    def collect(self, doc: Document, located: Located, limit: int, *, whole_file: bool = False) -> list[Snippet]:
        """Definitions of the names near the cursor, closest first; ``whole_file``: of the names the whole document
        uses, most used first (a choice that stays the same wherever the cursor goes in the file)."""
        if limit <= 0:
            return []
        outline = self._outline(doc, located)
        line = doc.cursor_line
        local_names = {s.name for s in outline.symbols}
        enclosing = [] if whole_file else [s for s in outline.symbols if s.start_line <= line <= s.end_line]
        wanted: dict[str, float] = {}  # name -> the strongest reason it is wanted
        reached: set[str] = set()  # whole file: names imported, or reached as ``module.name`` of an imported module

        def want(name: str, score: float) -> None:
            if name not in local_names and (name not in wanted or wanted[name] < score):
                wanted[name] = score

        if whole_file:
            # What the file imports from the repository by name, most used first (a name used only at the cursor's
            # hole still counts: it is imported), then the attributes it reaches through imported modules
            # (``utils.x``, ``require('./utils')``): only definitions in imported files are kept below.
            used = Counter(_IDENT.findall(doc.text))
            dotted = Counter(m.group(2) for m in _DOTTED.finditer(doc.text) if m.group(1) in outline.imported_names)
            for name in sorted(outline.imported_names, key=lambda n: (-used[n], n)):
                want(name, 0.0)
            for name, _ in (dotted + used).most_common():
                want(name, 0.0)
            reached = outline.imported_names | set(dotted)
        for sym in enclosing:
            idents = _IDENT.findall(sym.signature)
            if sym.kind in _CLASS_KINDS:
                for name in idents[idents.index(sym.name) + 1 :] if sym.name in idents else idents:
                    want(name, SCORE_PARENT)
            elif sym.kind in _FUNCTION_KINDS:
                for name in idents:
                    if name[:1].isupper():  # types are capitalised in every language we parse
                        want(name, SCORE_SIGNATURE)
        lines = doc.text.splitlines()
        near = [] if whole_file else lines[max(0, line - 1 - _NEAR_LINES_BEFORE) : line + _NEAR_LINES_AFTER]
        for text in reversed(near):  # closest to the cursor first
            for name in _IDENT.findall(text):
                want(name, 0.0)
        if not wanted:
            return []
        names = [n for n in wanted if len(n) > 1][:400]
        if not names:
            return []
        repo_id = located.repository.id
        # Two steps: how many definitions each name has (cheap), then the full rows of only those that can score:
        # names defined once, wanted types, and definitions in imported files or the same directory.
        counts = self.store.definition_counts(repo_id, names)
        here = posixpath.dirname(located.path)
        rows = self.store.definitions_named(
            repo_id,
            names,
            any_of=[n for n in names if counts.get(n) == 1 or (wanted[n] > 0 and n in counts)],
            in_files=sorted(outline.import_targets),
            # Same-directory definitions only for names defined a few times: common names would flood the query.
            rare=[n for n in names if 0 < counts.get(n, 0) <= 5],
            directory=here,
        )
        by_name: dict[str, list[FoundDefinition]] = {}
        exact = set(names)
        for r in rows:
            if r.file_id != located.file_id and r.name in exact:
                by_name.setdefault(r.name, []).append(r)
        scored: list[tuple[float, int, FoundDefinition]] = []
        order = {name: i for i, name in enumerate(names)}
        for name, defs in by_name.items():
            for r in defs:
                if whole_file and name not in reached and r.qualified_name.partition(".")[0] not in reached:
                    # Any other name of the file found in an imported file must be a member of what the file
                    # imports (``ctx.invoke`` of an imported ``Context``), not a namesake (a local ``name``).
                    continue
                if r.file_id in outline.import_targets:
                    score = SCORE_IMPORTED
                elif whole_file:
                    continue  # whole-file context takes only what the file imports: nothing guessed from a name
                elif wanted[name] > 0:
                    score = wanted[name]
                elif posixpath.dirname(r.path) == here:
                    score = SCORE_SAME_DIR
                elif counts.get(name) == 1 and name in outline.imported_names:
                    score = SCORE_IMPORTED
                elif counts.get(name) == 1:
                    score = SCORE_UNIQUE
                else:
                    continue  # an ambiguous name: a guess would cost tokens and may mislead
                scored.append((score, order[name], r))
        scored.sort(key=lambda t: (-t[0], t[1], len(t[2].qualified_name)))
        attributes = set(_ATTRIBUTE.findall(doc.text))  # what the document reaches through ``x.name``
        seen: set[tuple[str, int]] = set()
        names_seen: set[str] = set()
        snippets = []
        for score, _, r in scored:
            key = (r.path, r.start_line)
            # One definition per qualified name: a property's getter and setter say the same thing twice.
            if key in seen or r.qualified_name in names_seen:
                continue
            seen.add(key)
            names_seen.add(r.qualified_name)
            snippets.append(self._snippet(located, r, score, attributes))
            if len(snippets) >= limit:
                break
        return snippets

    def _snippet(self, located: Located, r: FoundDefinition, score: float, attributes: set[str]) -> Snippet:
        short = self._outline_of(located, r, attributes)
        text = short
        span = r.end_line - r.start_line + 1
        if span <= self.body_max_lines:
            lines = self.lines.get(Path(located.repository.root) / r.path)
            if lines is not None and r.end_line <= len(lines):
                text = "\n".join(lines[r.start_line - 1 : r.end_line])
        return Snippet(
            "related",
            r.path,
            r.start_line,
            r.end_line,
            text,
            score,
            label=r.qualified_name,
            short_text=short if short != text else None,
        )

    def _outline_of(self, located: Located, r: FoundDefinition, attributes: set[str]) -> str:
        """A definition without its body: the signature and docstring; a class, the summary of its docstring and
        its public members' signatures (``Text.assemble(``, ``Measurement.get(`` are called through the class:
        what the model needs there is the method's parameters, which the class's own signature does not say).
        Members the document reaches (``attributes``) come first, then the constructor, then file order."""
        doc = r.doc.splitlines() if r.doc else []
        members: list[str] = []
        if r.kind in _CLASS_KINDS:
            summary = doc[: doc.index("")] if "" in doc else doc
            doc = summary[:_CLASS_DOC_LINES]
            public = [m for m in self._members_of(located, r) if not m.name.startswith("_") or m.name == "__init__"]
            ranked = sorted(public, key=lambda m: (m.name not in attributes, m.name != "__init__", m.start_line))
            shown = sorted(ranked[:_OUTLINE_MEMBERS], key=lambda m: m.start_line)
            members = ["    " + m.signature.strip() for m in shown]
        else:
            doc = doc[:_DOC_LINES]
        return "\n".join([r.signature, *(f"    {d}" if d else "" for d in doc), *members])

    def _members_of(self, located: Located, r: FoundDefinition) -> list[Definition]:
        """The definitions directly inside class ``r``, in file order (its file's definitions, read once per
        indexing of the repository)."""
        key = (r.file_id, located.repository.indexed_at)
        found = self._file_definitions.get(key)
        if found is None:
            if len(self._file_definitions) >= 256:
                self._file_definitions.clear()
            found = self._file_definitions[key] = self.store.definitions_in(r.file_id)
        prefix = r.qualified_name + "."
        return [
            d
            for d in found
            if d.qualified_name.startswith(prefix)
            and "." not in d.qualified_name[len(prefix) :]
            and r.start_line <= d.start_line <= r.end_line
        ]
