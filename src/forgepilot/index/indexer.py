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

import ctypes
import hashlib
import logging
import multiprocessing
import os
import posixpath
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forgepilot.errors import UserError
from forgepilot.index.lexical import LexicalDoc, LexicalIndex
from forgepilot.index.scan import Candidate, ScanSettings, Skipped, content_skip, scan
from forgepilot.index.store import Store
from forgepilot.index.vectors import EMBEDDING_DIM, Embedder, VectorIndex
from forgepilot.syntax.chunking import DEFAULT_HARD_MAX, DEFAULT_TARGET, chunk_text
from forgepilot.syntax.imports import RepoFiles, resolve
from forgepilot.syntax.symbols import FileSyntax, ImportRef, analyze

Progress = Callable[[str, int, int], None]  # (stage, done, total)
_log = logging.getLogger(__name__)
_BATCH_FILES = 64
_EMBED_BATCH = 64
# Below this many files to parse, worker processes cost more to start than they save.
_POOL_MIN_FILES = 48


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
            directory = self.root / "lexical"
            try:
                self._lexical = LexicalIndex(directory)
            except ValueError as exc:
                # Written by another version with another schema. It is derived data: drop it and flag every
                # file so the next index run rebuilds it from SQLite.
                _log.warning("rebuilding the lexical index (%s)", exc)
                shutil.rmtree(directory, ignore_errors=True)
                with self.store.transaction() as tx:
                    tx.execute("UPDATE files SET lexical_done = 0")
                self._lexical = LexicalIndex(directory)
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

    def vectors_dropped(self, tx: Any, chunk_ids: list[int]) -> None:
        """Chunks whose vectors were deleted in transaction ``tx``: bump the generation with them, so a saved
        index that still holds those vectors is never trusted again, and drop them from the live index."""
        if not chunk_ids:
            return
        self.store.set_meta(tx, "vector_generation", str(self.vector_generation() + 1))
        if self._vectors is not None:
            self._vectors.remove(chunk_ids)

    def save_vectors(self) -> None:
        """Persist the live vector index if it is loaded and the stored generation moved past the saved one."""
        if self._vectors is not None and self._vectors.generation != self.vector_generation():
            self._vectors.save(self.vector_generation())

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
        # Otherwise only the imports of re-parsed files need resolving. The flag is stored before the change is
        # committed, so a run killed in between still resolves everything next time.
        dirty_key = f"imports_dirty:{repo.id}"
        structure_changed = store.get_meta(dirty_key) is not None

        def mark_structure_changed() -> None:
            nonlocal structure_changed
            if not structure_changed:
                with store.transaction() as tx:
                    store.set_meta(tx, dirty_key, "1")
                structure_changed = True

        # Deleted files: derived indexes first (idempotent), then the rows.
        if gone:
            mark_structure_changed()
            gone_ids = [row.id for row in gone]
            stale = store.chunk_ids_of(gone_ids)
            self.ws.lexical.delete_files(gone_ids)
            self.ws.lexical.commit()
            with store.transaction() as tx:
                store.delete_files(tx, gone_ids)
                self.ws.vectors_dropped(tx, stale)
            report.deleted = len(gone)

        timer = time.perf_counter()
        pending: list[_Parsed | Skipped] = []
        to_read: list[Candidate] = []
        for entry in listed:
            if isinstance(entry, Skipped):
                row = known.get(entry.path)
                report.skip(entry.reason)
                if row is None or row.status != "skipped" or row.reason != entry.reason:
                    pending.append(entry)
                    mark_structure_changed()
            elif not self._unchanged_by_stat(entry, known, report):
                to_read.append(entry)
        added_to_lexical: list[int] = []
        touched: list[tuple[int, int, int]] = []  # (mtime_ns, size, file id) of files touched, not changed
        results = self._read_all(root, to_read, known)
        for done, (entry, result) in enumerate(zip(to_read, results, strict=True), start=1):
            item = self._apply(entry, result, known, report, touched)
            if item is not None:
                pending.append(item)
                row = known.get(entry.path)
                if isinstance(item, Skipped) or row is None or row.status != "indexed":
                    mark_structure_changed()
                elif row.package != item.syntax.package:
                    mark_structure_changed()
            if len(pending) >= _BATCH_FILES:
                added_to_lexical += self._write(repo.id, pending, known, report)
                pending = []
            if done % 25 == 0 or done == len(to_read):
                self.progress("parse", done, len(to_read))
        if pending:
            added_to_lexical += self._write(repo.id, pending, known, report)
        if touched:  # one transaction for all (a checkout can touch every file); lost in a crash, it is redone
            with store.transaction() as tx:
                tx.executemany("UPDATE files SET mtime_ns = ?, size = ? WHERE id = ?", touched)
        report.seconds["parse"] = time.perf_counter() - timer

        timer = time.perf_counter()
        self._lexical_stage(repo.id, added_to_lexical)
        report.seconds["lexical"] = time.perf_counter() - timer

        timer = time.perf_counter()
        # Files whose imports are not resolved yet (re-parsed now, or before a crash) carry imports_resolved = 0.
        self._resolve_imports(repo.id, everything=structure_changed)
        if structure_changed:
            with store.transaction() as tx:
                tx.execute("DELETE FROM meta WHERE key = ?", (dirty_key,))
        report.seconds["imports"] = time.perf_counter() - timer

        timer = time.perf_counter()
        if self.embeddings:
            report.embedded = self._vector_stage(repo.id)
        self.ws.save_vectors()
        report.seconds["vectors"] = time.perf_counter() - timer
        store.finish_repository(repo.id, _git_head(root))
        return report

    # -- parse --------------------------------------------------------------------------------------------------

    def _unchanged_by_stat(self, entry: Candidate, known: dict[str, Any], report: IndexReport) -> bool:
        """A file seen before (indexed, or skipped for its content) with the same size and mtime is unchanged."""
        row = known.get(entry.path)
        if row is None or not row.sha256 or row.size != entry.size or row.mtime_ns != entry.mtime_ns:
            return False
        if row.status == "skipped" and row.reason:
            report.skip(row.reason)
        report.unchanged += row.status == "indexed"
        return True

    def _read_all(self, root: Path, entries: list[Candidate], known: dict[str, Any]) -> Iterator[_Result]:
        """Read and parse files, in order; in worker processes when there are enough to pay for them."""
        jobs = [
            (str(root), e, known[e.path].sha256 if e.path in known else None, self.scan_settings,
             self.chunk_target, self.chunk_hard_max)
            for e in entries
        ]  # fmt: skip
        workers = min(os.cpu_count() or 1, 4)
        if len(jobs) < _POOL_MIN_FILES or workers < 2:
            yield from (_read_and_parse(*job) for job in jobs)
            return
        # spawn: never fork a process that runs writer threads, and keep workers direct children of this one so
        # they can be told to die with it (see _worker_init).
        context = multiprocessing.get_context("spawn")
        done = 0
        try:
            with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_worker_init) as pool:
                for result in pool.map(_read_and_parse_job, jobs, chunksize=4):
                    done += 1
                    yield result
        except BrokenProcessPool as exc:
            # Workers could not start or died (e.g. a __main__ that cannot be imported again): go on in-process.
            _log.warning("parsing in-process after the worker pool failed: %s", exc)
            yield from (_read_and_parse(*job) for job in jobs[done:])

    def _apply(
        self,
        entry: Candidate,
        result: _Result,
        known: dict[str, Any],
        report: IndexReport,
        touched: list[tuple[int, int, int]],
    ) -> _Parsed | Skipped | None:
        row = known.get(entry.path)
        if isinstance(result, _Same):
            # Touched, not changed: keep everything, remember the new mtime (written in one batch later).
            assert row is not None
            if row.status == "skipped" and row.reason:
                report.skip(row.reason)
            report.unchanged += row.status == "indexed"
            touched.append((entry.mtime_ns, entry.size, row.id))
            return None
        if isinstance(result, Skipped):
            report.skip(result.reason)
            if result.reason == "error":
                report.errors.append((result.path, result.detail))
        return result

    def _write(
        self, repo_id: int, items: list[_Parsed | Skipped], known: dict[str, Any], report: IndexReport
    ) -> list[int]:
        """Store a batch in one transaction and queue it for the lexical index; returns the queued file ids."""
        store = self.ws.store
        stale_chunks = store.chunk_ids_of(known[_path(i)].id for i in items if _path(i) in known)
        now = time.time()
        docs: list[LexicalDoc] = []
        file_ids: list[int] = []
        with store.transaction() as tx:
            next_chunk_id = int(tx.execute("SELECT coalesce(max(id), 0) + 1 FROM chunks").fetchone()[0])
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
                    values = (
                        None, item.size, item.mtime_ns, item.sha256, status, item.reason, item.detail,
                        None, 0, 0, 0, now,
                    )  # fmt: skip
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
                file_ids.append(file_id)
                if isinstance(item, _Parsed):
                    docs += self._insert_children(tx, repo_id, file_id, item, next_chunk_id)
                    next_chunk_id += len(item.chunks)
                    report.parsed += 1
                    report.chunks_written += len(item.chunks)
            # Vectors of replaced chunks went with them (cascade).
            self.ws.vectors_dropped(tx, stale_chunks)
        for item in items:
            known.pop(_path(item), None)
        # Hand the batch to tantivy now: its writer thread indexes while we parse the next batch. The files are
        # flagged lexical_done only after the commit, so a crash before it just repeats this.
        self.ws.lexical.replace_files(file_ids, docs)
        return file_ids

    def _insert_children(
        self, tx: Any, repo_id: int, file_id: int, item: _Parsed, first_chunk_id: int
    ) -> list[LexicalDoc]:
        """Insert a parsed file's rows (chunk ids from ``first_chunk_id``); returns its lexical documents."""
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
        lines: dict[tuple[str, str], list[str]] = {}
        for r in syntax.references:
            lines.setdefault((r.name, r.kind), []).append(str(r.line))
        tx.executemany(
            "INSERT INTO refs(file_id, name, kind, lines) VALUES (?, ?, ?, ?)",
            [(file_id, name, kind, " ".join(at)) for (name, kind), at in lines.items()],
        )
        rows = []
        docs = []
        # Symbols defined in each chunk, by one sweep over both lists (sorted by line).
        starts = sorted(syntax.symbols, key=lambda s: s.start_line)
        at = 0
        for ordinal, chunk in enumerate(item.chunks):
            while at < len(starts) and starts[at].start_line < chunk.start_line:
                at += 1
            inside = []
            while at < len(starts) and starts[at].start_line <= chunk.end_line:
                inside.append(starts[at])
                at += 1
            pairs = list(dict.fromkeys((s.name, s.kind) for s in inside))
            # Workers send chunk boundaries only; the text is cut here from the file text they already sent.
            text = item.text[chunk.start_char : chunk.end_char]
            chunk_id = first_chunk_id + ordinal
            rows.append(
                (chunk_id, file_id, ordinal, chunk.start_line, chunk.end_line, chunk.start_char, chunk.end_char,
                 text, chunk.context, " ".join(f"{n}:{k}" for n, k in pairs))
            )  # fmt: skip
            docs.append(
                _lexical_doc(chunk_id, file_id, repo_id, item.candidate.path, item.candidate.language.name, pairs, text)
            )
        tx.executemany(
            "INSERT INTO chunks(id, file_id, ordinal, start_line, end_line, start_char, end_char, text, context, "
            "symbol_names) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        return docs

    # -- lexical ------------------------------------------------------------------------------------------------

    def _lexical_add(self, repo_id: int, files: list[Any]) -> list[int]:
        """Replace the lexical documents of ``files`` (rows: id, path, language, status); not yet committed."""
        store = self.ws.store
        docs = []
        for r in files:
            if r["status"] != "indexed":
                continue  # skipped now: its old documents are only deleted
            for c in store.conn.execute("SELECT id, text, symbol_names FROM chunks WHERE file_id = ?", (r["id"],)):
                pairs = [(n, k) for n, _, k in (p.rpartition(":") for p in c["symbol_names"].split())]
                docs.append(_lexical_doc(c["id"], r["id"], repo_id, r["path"], r["language"] or "", pairs, c["text"]))
        ids = [r["id"] for r in files]
        self.ws.lexical.replace_files(ids, docs)
        return ids

    def _lexical_stage(self, repo_id: int, added: list[int]) -> None:
        """Add what is still missing (e.g. after a crash), commit, then flag every added file as done."""
        store = self.ws.store
        queued = set(added)
        todo = [
            r
            for r in store.conn.execute(
                "SELECT id, path, language, status FROM files WHERE repo_id = ? AND lexical_done = 0", (repo_id,)
            ).fetchall()
            if r["id"] not in queued
        ]
        ids = list(added)
        for start in range(0, len(todo), _BATCH_FILES * 4):
            ids += self._lexical_add(repo_id, todo[start : start + _BATCH_FILES * 4])
            self.progress("lexical", min(start + _BATCH_FILES * 4, len(todo)), len(todo))
        if not ids:
            return
        self.ws.lexical.commit()
        with store.transaction() as tx:
            tx.executemany("UPDATE files SET lexical_done = 1 WHERE id = ?", [(i,) for i in ids])

    # -- imports ------------------------------------------------------------------------------------------------

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

    def _vector_stage(self, repo_id: int) -> int:
        store = self.ws.store
        todo = store.conn.execute(
            "SELECT chunks.id, chunks.text, chunks.context, files.path FROM chunks JOIN files ON files.id = file_id "
            "LEFT JOIN chunk_vectors ON chunk_vectors.chunk_id = chunks.id "
            "WHERE files.repo_id = ? AND chunk_vectors.chunk_id IS NULL ORDER BY chunks.id",
            (repo_id,),
        ).fetchall()
        import numpy as np

        # Loaded even with nothing to embed: a stale saved index is rebuilt here and saved by save_vectors().
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
            vectors.add(np.asarray([r["id"] for r in batch], dtype="int64"), matrix)
            done += len(batch)
            self.progress("embed", done, len(todo))
        return done


@dataclass(frozen=True)
class _Same:
    """The file's bytes hash to what is stored: nothing to do but remember its new mtime."""

    path: str


_Result = _Parsed | Skipped | _Same


def _read_and_parse(
    root: str,
    entry: Candidate,
    known_sha: str | None,
    settings: ScanSettings,
    target: int,
    hard_max: int,
) -> _Result:
    """Read, hash, check and parse one file (runs in worker processes: plain data in, plain data out)."""
    try:
        data = (Path(root) / entry.path).read_bytes()
    except OSError as exc:
        return Skipped(entry.path, "unreadable", f"{type(exc).__name__}: {exc}", entry.size)
    sha = hashlib.sha256(data).hexdigest()
    if known_sha == sha:
        return _Same(entry.path)
    skip = content_skip(data, settings)
    if skip is not None:
        return Skipped(entry.path, skip[0], skip[1], entry.size, sha, entry.mtime_ns)
    detail = None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        text = data.decode("utf-8", errors="replace")
        detail = f"not valid UTF-8 at byte {exc.start}: indexed with replacement characters"
    try:
        language = entry.language
        syntax = analyze(text.encode("utf-8"), language)
        # Without texts: the main process cuts them from ``text``, so they are not sent twice.
        chunks = chunk_text(text, language, target=target, hard_max=hard_max, tree=syntax.tree, with_text=False)
        syntax.tree = None  # trees hold C memory (and do not pickle): drop them once chunked
    except Exception as exc:  # one bad file must not stop the run: record it and go on
        return Skipped(entry.path, "error", f"{type(exc).__name__}: {exc}", entry.size)
    return _Parsed(entry, sha, text, syntax, chunks, detail)


def _worker_init() -> None:
    """Make a parse worker die with the indexer: a ``kill -9`` of the indexer must not leave workers waiting
    forever on its queues. Linux only (prctl PR_SET_PDEATHSIG); elsewhere workers exit when their queue closes."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            return
        if os.getppid() == 1:  # the parent died before the signal was armed
            os._exit(1)


def _read_and_parse_job(job: tuple[str, Candidate, str | None, ScanSettings, int, int]) -> _Result:
    return _read_and_parse(*job)


def _lexical_doc(
    chunk_id: int, file_id: int, repo_id: int, path: str, language: str, symbols: list[tuple[str, str]], text: str
) -> LexicalDoc:
    """The lexical document of a chunk; ``symbols`` are the (name, kind) pairs it defines."""
    return LexicalDoc(
        chunk_id=chunk_id,
        file_id=file_id,
        repo_id=repo_id,
        path=path,
        language=language,
        kinds=" ".join(sorted({kind for _, kind in symbols})),
        symbols=" ".join(name for name, _ in symbols),
        content=text,
    )


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
