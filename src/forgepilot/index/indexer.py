"""Index repositories incrementally and crash-safely into a workspace.

Stages, each committing as it goes so a ``kill -9`` anywhere loses at most one batch:
1. scan: list files, record every skip with its reason;
2. parse: for files whose content hash changed, store symbols, imports, references and chunks (one SQLite
   transaction per batch; the hash is written with them, so a committed file is never parsed again);
3. lexical: files whose ``lexical_done`` flag is 0 are (re)written to tantivy, then flagged, so a crash between
   the two only repeats work;
4. imports: resolved to files of the repository whenever files appeared, changed or went away;
5. vectors: chunks without a stored vector are embedded in batches; the faiss file is saved with the
   generation of the vectors it holds and rebuilt from SQLite when they disagree.
"""

from __future__ import annotations

import hashlib
import posixpath
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forgepilot.index.lexical import LexicalDoc, LexicalIndex
from forgepilot.index.scan import Candidate, ScanSettings, Skipped, content_skip, scan
from forgepilot.index.store import Store
from forgepilot.index.vectors import EMBEDDING_DIM, Embedder, VectorIndex
from forgepilot.syntax.chunking import DEFAULT_HARD_MAX, DEFAULT_TARGET, chunk_text
from forgepilot.syntax.imports import RepoFiles, resolve
from forgepilot.syntax.symbols import FileSyntax, ImportRef, analyze

Progress = Callable[[str, int, int], None]  # (stage, done, total)
_BATCH_FILES = 64
_EMBED_BATCH = 64


@dataclass
class IndexReport:
    repository: str
    files_seen: int = 0
    parsed: int = 0
    unchanged: int = 0
    deleted: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> files
    errors: list[tuple[str, str]] = field(default_factory=list)
    chunks_written: int = 0
    embedded: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


class Workspace:
    """The index of one workspace: a SQLite store, a tantivy directory and a faiss file under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.store = Store(root / "index.db")
        self._lexical: LexicalIndex | None = None
        self._vectors: VectorIndex | None = None
        self._embedder: Embedder | None = None

    @property
    def lexical(self) -> LexicalIndex:
        if self._lexical is None:
            self._lexical = LexicalIndex(self.root / "lexical")
        return self._lexical

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = Embedder()
        return self._embedder

    def vector_generation(self) -> int:
        return int(self.store.get_meta("vector_generation") or 0)

    @property
    def vectors(self) -> VectorIndex:
        """The vector index, loaded from disk if current, else rebuilt from the vectors stored in SQLite."""
        if self._vectors is None:
            index = VectorIndex(self.root / "vectors.faiss")
            generation = self.vector_generation()
            if not index.load(generation):
                ids, matrix = self._stored_vectors()
                index.rebuild(ids, matrix, generation)
            self._vectors = index
        return self._vectors

    def _stored_vectors(self) -> tuple[Any, Any]:
        import numpy as np

        rows = self.store.conn.execute("SELECT chunk_id, vector FROM chunk_vectors ORDER BY chunk_id").fetchall()
        ids = np.asarray([r[0] for r in rows], dtype="int64")
        matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype="float32").reshape(len(rows), EMBEDDING_DIM)
        return ids, np.ascontiguousarray(matrix)

    def close(self) -> None:
        if self._lexical is not None:
            self._lexical.close()
        self.store.close()


def _git_head(root: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


@dataclass
class _Parsed:
    candidate: Candidate
    sha256: str
    text: str
    syntax: FileSyntax
    chunks: list[Any]
    detail: str | None


class Indexer:
    def __init__(
        self,
        workspace: Workspace,
        *,
        embeddings: bool = True,
        scan_settings: ScanSettings | None = None,
        chunk_target: int = DEFAULT_TARGET,
        chunk_hard_max: int = DEFAULT_HARD_MAX,
        progress: Progress | None = None,
    ) -> None:
        self.ws = workspace
        self.embeddings = embeddings
        self.scan_settings = scan_settings or ScanSettings()
        self.chunk_target = chunk_target
        self.chunk_hard_max = chunk_hard_max
        self.progress = progress or (lambda stage, done, total: None)

    def index(self, root: Path, name: str | None = None) -> IndexReport:
        root = root.resolve()
        if not root.is_dir():
            from forgepilot.errors import UserError

            raise UserError(f"{root} is not a directory", hint="index a repository folder")
        store = self.ws.store
        repo = store.ensure_repository(str(root), name or root.name)
        report = IndexReport(repository=str(root))
        timer = time.perf_counter()

        known = store.files(repo.id)
        listed = list(scan(root, self.scan_settings))
        report.files_seen = len(listed)
        report.seconds["scan"] = time.perf_counter() - timer
        seen_paths = {entry.path for entry in listed}
        gone = [row for path, row in known.items() if path not in seen_paths]
        # A changed set of files (or of declared packages) can change where any import points: resolve all.
        # Otherwise only the imports of re-parsed files need resolving.
        structure_changed = bool(gone)

        # Deleted files: derived indexes first (idempotent), then the rows.
        if gone:
            gone_ids = [row.id for row in gone]
            self._forget_vectors(store.chunk_ids_of(gone_ids))
            self.ws.lexical.delete_files(gone_ids)
            self.ws.lexical.commit()
            with store.transaction() as tx:
                store.delete_files(tx, gone_ids)
            report.deleted = len(gone)

        timer = time.perf_counter()
        pending: list[_Parsed | Skipped] = []
        total = len(listed)
        for done, entry in enumerate(listed, start=1):
            if isinstance(entry, Skipped):
                row = known.get(entry.path)
                report.skip(entry.reason)
                if row is None or row.status != "skipped" or row.reason != entry.reason:
                    pending.append(entry)
                    structure_changed = True
            else:
                item = self._prepare(root, entry, known, report)
                if item is not None:
                    pending.append(item)
                    if isinstance(item, Skipped):
                        report.skip(item.reason)
                    row = known.get(entry.path)
                    if isinstance(item, Skipped) or row is None or row.status != "indexed":
                        structure_changed = True
                    elif self._package_changed(row.id, item.syntax.package):
                        structure_changed = True
            if len(pending) >= _BATCH_FILES:
                self._write(repo.id, pending, known, report)
                pending = []
            if done % 25 == 0 or done == total:
                self.progress("parse", done, total)
        if pending:
            self._write(repo.id, pending, known, report)
        report.seconds["parse"] = time.perf_counter() - timer

        timer = time.perf_counter()
        self._lexical_stage(repo.id)
        report.seconds["lexical"] = time.perf_counter() - timer

        timer = time.perf_counter()
        # Files whose imports are not resolved yet (re-parsed now, or before a crash) carry imports_resolved = 0.
        self._resolve_imports(repo.id, everything=structure_changed)
        report.seconds["imports"] = time.perf_counter() - timer

        timer = time.perf_counter()
        if self.embeddings:
            report.embedded = self._vector_stage(repo.id)
        report.seconds["vectors"] = time.perf_counter() - timer
        store.finish_repository(repo.id, _git_head(root))
        return report

    # -- parse --------------------------------------------------------------------------------------------------

    def _prepare(
        self, root: Path, entry: Candidate, known: dict[str, Any], report: IndexReport
    ) -> _Parsed | Skipped | None:
        row = known.get(entry.path)
        if row is not None and row.status == "indexed" and row.size == entry.size and row.mtime_ns == entry.mtime_ns:
            report.unchanged += 1
            return None
        try:
            data = (root / entry.path).read_bytes()
        except OSError as exc:
            return Skipped(entry.path, "unreadable", f"{type(exc).__name__}: {exc}", entry.size)
        sha = hashlib.sha256(data).hexdigest()
        if row is not None and row.status == "indexed" and row.sha256 == sha:
            report.unchanged += 1  # touched, not changed: keep everything, remember the new mtime
            with self.ws.store.transaction() as tx:
                tx.execute("UPDATE files SET mtime_ns = ?, size = ? WHERE id = ?", (entry.mtime_ns, entry.size, row.id))
            return None
        skip = content_skip(data, self.scan_settings)
        if skip is not None:
            return Skipped(entry.path, skip[0], skip[1], entry.size)
        detail = None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            text = data.decode("utf-8", errors="replace")
            detail = f"not valid UTF-8 at byte {exc.start}: indexed with replacement characters"
        try:
            source = text.encode("utf-8")
            language = entry.language
            syntax = analyze(source, language)
            chunks = chunk_text(
                text, language, target=self.chunk_target, hard_max=self.chunk_hard_max, tree=syntax.tree
            )
            syntax.tree = None  # trees hold C memory: do not keep them in the write batch
        except Exception as exc:  # one bad file must not stop the run: record it and go on
            report.errors.append((entry.path, f"{type(exc).__name__}: {exc}"))
            return Skipped(entry.path, "error", f"{type(exc).__name__}: {exc}", entry.size)
        return _Parsed(entry, sha, text, syntax, chunks, detail)

    def _write(self, repo_id: int, items: list[_Parsed | Skipped], known: dict[str, Any], report: IndexReport) -> None:
        store = self.ws.store
        stale_chunks = store.chunk_ids_of(known[_path(i)].id for i in items if _path(i) in known)
        now = time.time()
        with store.transaction() as tx:
            for item in items:
                path = _path(item)
                row = known.get(path)
                if row is not None:
                    for table in ("chunks", "symbols", "imports", "refs"):
                        tx.execute(f"DELETE FROM {table} WHERE file_id = ?", (row.id,))
                values: tuple[object, ...]
                if isinstance(item, Skipped):
                    status = "error" if item.reason == "error" else "skipped"
                    # lexical_done = 0 here too: the lexical stage removes what the file had in the index.
                    values = (None, item.size, None, None, status, item.reason, item.detail, None, 0, 0, 0, now)
                else:
                    c = item.candidate
                    values = (
                        c.language.name, c.size, c.mtime_ns, item.sha256, "indexed", None, item.detail,
                        item.syntax.package, int(item.syntax.has_errors), 0, 0, now,
                    )  # fmt: skip
                columns = (
                    "language, size, mtime_ns, sha256, status, reason, detail, package, parse_errors, "
                    "lexical_done, imports_resolved, indexed_at"
                )
                if row is None:
                    cursor = tx.execute(
                        f"INSERT INTO files(repo_id, path, {columns}) VALUES (?, ?, {','.join('?' * len(values))})",
                        (repo_id, path, *values),
                    )
                    file_id = int(cursor.lastrowid or 0)
                else:
                    sets = ", ".join(f"{col.strip()} = ?" for col in columns.split(","))
                    tx.execute(f"UPDATE files SET {sets} WHERE id = ?", (*values, row.id))
                    file_id = row.id
                if isinstance(item, _Parsed):
                    self._insert_children(tx, file_id, item)
                    report.parsed += 1
                    report.chunks_written += len(item.chunks)
        # Vectors of replaced chunks went with them (cascade); take them out of the live index too.
        self._forget_vectors(stale_chunks)
        for item in items:
            known.pop(_path(item), None)

    def _insert_children(self, tx: Any, file_id: int, item: _Parsed) -> None:
        syntax = item.syntax
        tx.executemany(
            "INSERT INTO symbols(file_id, name, qualified_name, kind, signature, doc, start_line, end_line) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (file_id, s.name, s.qualified_name, s.kind, s.signature, s.doc, s.start_line, s.end_line)
                for s in syntax.symbols
            ],
        )
        tx.executemany(
            "INSERT INTO imports(file_id, module, names, kind, line) VALUES (?, ?, ?, ?, ?)",
            [(file_id, i.module, " ".join(i.names), i.kind, i.line) for i in syntax.imports],
        )
        tx.executemany(
            "INSERT INTO refs(file_id, name, kind, line) VALUES (?, ?, ?, ?)",
            [(file_id, r.name, r.kind, r.line) for r in syntax.references],
        )
        rows = []
        for ordinal, chunk in enumerate(item.chunks):
            inside = [
                s for s in syntax.symbols if chunk.start_line <= s.start_line <= chunk.end_line
            ]  # symbols defined in this chunk
            names = " ".join(dict.fromkeys(f"{s.name}:{s.kind}" for s in inside))
            rows.append(
                (file_id, ordinal, chunk.start_line, chunk.end_line, chunk.start_char, chunk.end_char, chunk.text,
                 chunk.context, names)
            )  # fmt: skip
        tx.executemany(
            "INSERT INTO chunks(file_id, ordinal, start_line, end_line, start_char, end_char, text, context, "
            "symbol_names) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )

    # -- lexical ------------------------------------------------------------------------------------------------

    def _lexical_stage(self, repo_id: int) -> None:
        store = self.ws.store
        todo = store.conn.execute(
            "SELECT id, path, language, status FROM files WHERE repo_id = ? AND lexical_done = 0", (repo_id,)
        ).fetchall()
        for start in range(0, len(todo), _BATCH_FILES * 4):
            batch = todo[start : start + _BATCH_FILES * 4]
            ids = [r["id"] for r in batch]
            docs = []
            for r in batch:
                if r["status"] != "indexed":
                    continue
                for c in store.conn.execute("SELECT id, text, symbol_names FROM chunks WHERE file_id = ?", (r["id"],)):
                    pairs = [p.rsplit(":", 1) for p in c["symbol_names"].split()]
                    docs.append(
                        LexicalDoc(
                            chunk_id=c["id"],
                            file_id=r["id"],
                            repo_id=repo_id,
                            path=r["path"],
                            language=r["language"] or "",
                            kinds=" ".join(sorted({k for _, k in pairs})),
                            symbols=" ".join(n for n, _ in pairs),
                            content=c["text"],
                        )
                    )
            self.ws.lexical.replace_files(ids, docs)
            self.ws.lexical.commit()
            with store.transaction() as tx:
                tx.executemany("UPDATE files SET lexical_done = 1 WHERE id = ?", [(i,) for i in ids])
            self.progress("lexical", min(start + len(batch), len(todo)), len(todo))

    # -- imports ------------------------------------------------------------------------------------------------

    def _package_changed(self, file_id: int, package: str | None) -> bool:
        row = self.ws.store.conn.execute("SELECT package FROM files WHERE id = ?", (file_id,)).fetchone()
        return row is None or row[0] != package

    def _resolve_imports(self, repo_id: int, *, everything: bool) -> None:
        """Point imports at the files they name: all of the repository's, or those of files not resolved yet."""
        store = self.ws.store
        files = store.conn.execute(
            "SELECT id, path, language, package, imports_resolved FROM files WHERE repo_id = ? AND status = 'indexed'",
            (repo_id,),
        ).fetchall()
        pending = [r["id"] for r in files if everything or not r["imports_resolved"]]
        if not pending:
            return
        by_path = {r["path"]: r["id"] for r in files}
        packages = {r["path"]: r["package"] for r in files if r["package"]}
        repo_root = Path(store.conn.execute("SELECT root FROM repositories WHERE id = ?", (repo_id,)).fetchone()[0])
        go_modules = {}
        for path in _go_mod_files(repo_root, by_path):
            go_modules[posixpath.dirname(path)] = _go_module(repo_root / path)
        repo = RepoFiles(by_path, packages, {k: v for k, v in go_modules.items() if v})
        language_of = {r["id"]: (r["path"], r["language"]) for r in files}
        edges = []
        only_ids = None if everything else set(pending)
        for imp in store.conn.execute(
            "SELECT imports.id, file_id, module, names, kind, line FROM imports JOIN files ON files.id = file_id "
            "WHERE files.repo_id = ?",
            (repo_id,),
        ):
            if only_ids is not None and imp["file_id"] not in only_ids:
                continue
            path, language = language_of[imp["file_id"]]
            ref = ImportRef(imp["module"], imp["line"], tuple(imp["names"].split()), imp["kind"])
            for target in resolve(ref, path, language, repo):
                edges.append((imp["id"], by_path[target]))
        with store.transaction() as tx:
            if only_ids is None:  # (a re-parsed file's old edges went with its old import rows)
                tx.execute(
                    "DELETE FROM import_edges WHERE import_id IN "
                    "(SELECT imports.id FROM imports JOIN files ON files.id = imports.file_id WHERE files.repo_id = ?)",
                    (repo_id,),
                )
            tx.executemany("INSERT OR IGNORE INTO import_edges(import_id, target_file_id) VALUES (?, ?)", edges)
            tx.executemany("UPDATE files SET imports_resolved = 1 WHERE id = ?", [(i,) for i in pending])

    # -- vectors ------------------------------------------------------------------------------------------------

    def _forget_vectors(self, chunk_ids: list[int]) -> None:
        if chunk_ids and (self.ws._vectors is not None or (self.ws.root / "vectors.faiss").exists()):
            self.ws.vectors.remove(chunk_ids)

    def _vector_stage(self, repo_id: int) -> int:
        store = self.ws.store
        todo = store.conn.execute(
            "SELECT chunks.id, chunks.text, chunks.context, files.path FROM chunks JOIN files ON files.id = file_id "
            "LEFT JOIN chunk_vectors ON chunk_vectors.chunk_id = chunks.id "
            "WHERE files.repo_id = ? AND chunk_vectors.chunk_id IS NULL ORDER BY chunks.id",
            (repo_id,),
        ).fetchall()
        vectors = self.ws.vectors
        done = 0
        for start in range(0, len(todo), _EMBED_BATCH):
            batch = todo[start : start + _EMBED_BATCH]
            texts = [embedding_text(r["path"], r["context"], r["text"]) for r in batch]
            matrix = self.ws.embedder.encode(texts)
            generation = self.ws.vector_generation() + 1
            with store.transaction() as tx:
                tx.executemany(
                    "INSERT OR REPLACE INTO chunk_vectors(chunk_id, model, vector) VALUES (?, ?, ?)",
                    [(r["id"], Embedder.name, matrix[i].tobytes()) for i, r in enumerate(batch)],
                )
                store.set_meta(tx, "vector_generation", str(generation))
            import numpy as np

            vectors.add(np.asarray([r["id"] for r in batch], dtype="int64"), matrix)
            done += len(batch)
            self.progress("embed", done, len(todo))
        if todo or vectors.generation != self.ws.vector_generation():
            vectors.save(self.ws.vector_generation())
        return done


def embedding_text(path: str, context: str | None, text: str) -> str:
    """What is embedded for a chunk: where it lives, its enclosing class, its code."""
    head = f"{path}\n{context}\n" if context else f"{path}\n"
    return head + text


def _path(item: _Parsed | Skipped) -> str:
    return item.path if isinstance(item, Skipped) else item.candidate.path


def _go_mod_files(root: Path, indexed: dict[str, int]) -> list[str]:
    """go.mod files are not source we index, but they say how Go imports map to directories."""
    dirs = {posixpath.dirname(p) for p in indexed if p.endswith(".go")}
    found = []
    for d in dirs:
        while True:
            candidate = posixpath.join(d, "go.mod") if d else "go.mod"
            if (root / candidate).is_file():
                found.append(candidate)
                break
            if not d:
                break
            d = posixpath.dirname(d)
    return sorted(set(found))


def _go_module(path: Path) -> str:
    try:
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("module "):
                return line.split()[1].strip('"')
    except OSError:
        pass
    return ""
