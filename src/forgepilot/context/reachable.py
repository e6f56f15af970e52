"""*Imports* context: what the code at the cursor can reach through its file's imports, as signatures.

Where a line starts with a name defined in another file (``raise InvalidURL(...)``, ``new Route(path)``), nothing
near the cursor names it yet: *related* context, which resolves the names around the cursor, has nothing to
resolve. What the model needs there is the API on offer: the names the file imports and how they are called. Each
imported file of the repository becomes one short snippet of signatures (a stub), the names the file takes from it
first (a from-import's names; every public top-level definition for a module import or ``require``), a class with
its public methods. A signature is a line; a whole API fits where one function body would.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping

from forgepilot.context.locate import Located
from forgepilot.context.types import Document, Snippet
from forgepilot.index.store import Definition, Store

_IDENT = re.compile(r"[A-Za-z_$][\w$]*")
_NEAR_LINES = 20
_CLASS_KINDS = frozenset({"class", "interface", "struct", "enum", "trait", "type"})
#: Signatures per imported file, and methods shown under a class.
MAX_SIGNATURES = 24
MAX_METHODS = 8


def _line(d: Definition) -> str:
    signature = d.signature.strip()
    return signature.splitlines()[0] if signature else d.name


def _public(d: Definition) -> bool:
    return not d.name.startswith("_") or d.name == "__init__"


class ImportedSignatures:
    def __init__(self, store: Store, *, max_signatures: int = MAX_SIGNATURES) -> None:
        self.store = store
        self.max_signatures = max_signatures

    def collect(self, doc: Document, located: Located, limit: int, *, whole_file: bool = False) -> list[Snippet]:
        """One snippet per imported file, files whose names are used near the cursor first (``whole_file``: used
        most in the whole document, so the choice does not move with the cursor)."""
        if limit <= 0 or located.file_id is None:
            return []
        lines = doc.text.splitlines()
        near: Mapping[str, int]
        if whole_file:
            near = Counter(_IDENT.findall(doc.text))
        else:
            near = dict.fromkeys(
                _IDENT.findall("\n".join(lines[max(0, doc.cursor_line - 1 - _NEAR_LINES) : doc.cursor_line])), 1
            )
        indent = "    " if doc.language is not None and doc.language.name == "python" else "  "
        found: list[Snippet] = []
        for order, target in enumerate(self.store.import_targets(located.file_id)):
            snippet = self._stub(target.path, target.names, self.store.definitions_in(target.file_id), near, indent)
            if snippet is not None:
                # Files whose names the code uses rank first; then the order of the imports.
                used = len({d for d in snippet.label.split(",") if d in near}) if snippet.label else 0
                found.append(
                    Snippet(
                        snippet.source,
                        snippet.path,
                        snippet.start_line,
                        snippet.end_line,
                        snippet.text,
                        round(1.0 / (1 + order) + used, 4),
                        label=snippet.label,
                    )
                )
        found.sort(key=lambda s: -s.score)
        return found[:limit]

    def _stub(
        self, path: str, names: frozenset[str], defs: list[Definition], near: Mapping[str, int], indent: str
    ) -> Snippet | None:
        top = [d for d in defs if d.qualified_name == d.name and _public(d)]
        taken = [d for d in top if d.name in names] if names else []
        chosen = taken or top
        # The names the code uses (most often first), then file order.
        chosen = sorted(chosen, key=lambda d: (-near.get(d.name, 0), d.start_line))[: self.max_signatures]
        if not chosen:
            return None
        # Definitions in priority order until the stub is full, then shown in file order.
        blocks: list[tuple[int, list[str]]] = []
        room = self.max_signatures
        for d in chosen:
            block = [_line(d)]
            if d.kind in _CLASS_KINDS:
                methods = [
                    m
                    for m in defs
                    if m.qualified_name.startswith(d.name + ".") and m.qualified_name.count(".") == 1 and _public(m)
                ]
                block += [indent + _line(m) for m in methods[:MAX_METHODS]]
            if len(block) > room:
                block = block[: max(room, 0)]
            if not block:
                break
            blocks.append((d.start_line, block))
            room -= len(block)
        out = [line for _, block in sorted(blocks) for line in block]
        chosen = [d for d in chosen if any(d.start_line == b for b, _ in blocks)]
        start = min(d.start_line for d in chosen)
        end = max(d.end_line for d in chosen)
        return Snippet("imports", path, start, end, "\n".join(out), 1.0, label=",".join(d.name for d in chosen))
