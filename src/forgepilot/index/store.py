"""The workspace's index database: SQLite in WAL mode with ordered migrations recorded in a table.

SQLite is the source of truth; the lexical (tantivy) and vector (faiss) indexes are derived from it and carry
flags or generations that say how far they have caught up, so a crash anywhere leaves a state the next run can
finish. WAL lets searches read while the indexer writes.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from forgepilot.db import Migration, SqliteStore

# Ordered, append-only: a released migration is never edited, a change is a new entry.
MIGRATIONS: list[Migration] = [
    (
        1,
        "initial index schema",
        """
        CREATE TABLE repositories (
            id INTEGER PRIMARY KEY,
            root TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL,
            head_commit TEXT,
            created_at REAL NOT NULL,
            indexed_at REAL
        );
        CREATE TABLE files (
            id INTEGER PRIMARY KEY,
            repo_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
            path TEXT NOT NULL,
            language TEXT,
            size INTEGER,
            mtime_ns INTEGER,
            sha256 TEXT,
            status TEXT NOT NULL,            -- indexed | skipped | error
            reason TEXT,                     -- why skipped / failed (binary, too_large, ...)
            detail TEXT,                     -- human-readable detail, e.g. the decode problem
            package TEXT,
            parse_errors INTEGER NOT NULL DEFAULT 0,
            lexical_done INTEGER NOT NULL DEFAULT 0,
            imports_resolved INTEGER NOT NULL DEFAULT 0,
            indexed_at REAL,
            UNIQUE (repo_id, path)
        );
        CREATE INDEX files_status ON files(repo_id, status);
        CREATE TABLE chunks (
            id INTEGER PRIMARY KEY,
            file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
            ordinal INTEGER NOT NULL,
            start_line INTEGER NOT NULL,
            end_line INTEGER NOT NULL,
            start_char INTEGER NOT NULL,
            end_char INTEGER NOT NULL,
            text TEXT NOT NULL,
            context TEXT,
            symbol_names TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX chunks_file ON chunks(file_id);
        CREATE TABLE chunk_vectors (
            chunk_id INTEGER PRIMARY KEY REFERENCES chunks(id) ON DELETE CASCADE,
            model TEXT NOT NULL,
            vector BLOB NOT NULL
        );
        CREATE TABLE symbols (
            id INTEGER PRIMARY KEY,
            file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            qualified_name TEXT NOT NULL,
            kind TEXT NOT NULL,
            signature TEXT NOT NULL,
            doc TEXT,
            start_line INTEGER NOT NULL,
            end_line INTEGER NOT NULL
        );
        CREATE INDEX symbols_name ON symbols(name COLLATE NOCASE);
        CREATE INDEX symbols_file ON symbols(file_id);
        CREATE TABLE imports (
            id INTEGER PRIMARY KEY,
            file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
            module TEXT NOT NULL,
            names TEXT NOT NULL DEFAULT '',
            kind TEXT NOT NULL,
            line INTEGER NOT NULL
        );
        CREATE INDEX imports_file ON imports(file_id);
        CREATE TABLE import_edges (
            import_id INTEGER NOT NULL REFERENCES imports(id) ON DELETE CASCADE,
            target_file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
            PRIMARY KEY (import_id, target_file_id)
        );
        CREATE INDEX import_edges_target ON import_edges(target_file_id);
        CREATE TABLE refs (                  -- one row per name referenced in a file
            file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            kind TEXT NOT NULL,              -- call | type
            lines TEXT NOT NULL              -- space-separated line numbers, ascending
        );
        CREATE INDEX refs_file ON refs(file_id);
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        """,
    ),
]


@dataclass(frozen=True)
class FileRow:
    id: int
    repo_id: int
    path: str
    language: str | None
    size: int | None
    mtime_ns: int | None
    sha256: str | None
    status: str
    reason: str | None
    detail: str | None
    package: str | None
    lexical_done: bool


@dataclass(frozen=True)
class ImportTarget:
    """A repository file another file imports, and the names (from-imports) it takes from it."""

    file_id: int
    path: str
    names: frozenset[str]


@dataclass(frozen=True)
class Definition:
    name: str
    qualified_name: str
    kind: str
    signature: str
    doc: str | None
    start_line: int
    end_line: int


@dataclass(frozen=True)
class IndexedFile:
    id: int
    path: str
    package: str | None


@dataclass(frozen=True)
class FoundDefinition(Definition):
    """A definition found by name, and the file it is in."""

    file_id: int
    path: str


@dataclass(frozen=True)
class Repository:
    id: int
    root: str
    name: str
    head_commit: str | None
    indexed_at: float | None


@dataclass(frozen=True)
class FileProblem:
    path: str
    status: str
    reason: str | None
    detail: str | None


@dataclass(frozen=True)
class RepositoryStatus:
    """What ``index status`` and the dashboard show of one repository."""

    repository: Repository
    files: dict[str, int]
    skipped_by_reason: dict[str, int]
    chunks: int
    embedded_chunks: int
    symbols: int
    #: Files that failed, were indexed with a warning, or were skipped for a reason worth a look.
    problems: list[FileProblem]


class Store(SqliteStore):
    """Typed access to the index database; writes happen inside ``transaction()``."""

    MIGRATIONS = MIGRATIONS
    # The index is derived from the repositories and resumable: a commit lost to a power cut is indexed again, so
    # bulk indexing does not pay an fsync per transaction.
    SYNCHRONOUS = "NORMAL"

    # -- repositories -----------------------------------------------------------------------------------------

    def repository(self, root: str) -> Repository | None:
        row = self.conn.execute("SELECT * FROM repositories WHERE root = ?", (root,)).fetchone()
        return (
            None
            if row is None
            else Repository(row["id"], row["root"], row["name"], row["head_commit"], row["indexed_at"])
        )

    def repositories(self) -> list[Repository]:
        rows = self.conn.execute("SELECT * FROM repositories ORDER BY name, root").fetchall()
        return [Repository(r["id"], r["root"], r["name"], r["head_commit"], r["indexed_at"]) for r in rows]

    def status(self) -> list[RepositoryStatus]:
        """Each repository's files by state, skip reasons, chunks, vectors, symbols and problem files."""
        out = []
        for repo in self.repositories():
            conn = self.conn
            counts = dict(
                conn.execute(
                    "SELECT status, count(*) FROM files WHERE repo_id = ? GROUP BY status", (repo.id,)
                ).fetchall()
            )
            reasons = conn.execute(
                "SELECT reason, count(*) FROM files WHERE repo_id = ? AND status != 'indexed' "
                "GROUP BY reason ORDER BY 2 DESC",
                (repo.id,),
            ).fetchall()
            problems = conn.execute(
                "SELECT path, status, reason, detail FROM files WHERE repo_id = ? AND (status = 'error' OR "
                "(status = 'indexed' AND detail IS NOT NULL) OR (status = 'skipped' AND reason NOT IN "
                "('unsupported', 'vendored'))) ORDER BY path",
                (repo.id,),
            ).fetchall()
            chunks, vectors = conn.execute(
                "SELECT count(chunks.id), count(chunk_vectors.chunk_id) FROM chunks JOIN files ON files.id = file_id "
                "LEFT JOIN chunk_vectors ON chunk_vectors.chunk_id = chunks.id WHERE files.repo_id = ?",
                (repo.id,),
            ).fetchone()
            symbols = conn.execute(
                "SELECT count(*) FROM symbols JOIN files ON files.id = file_id WHERE repo_id = ?", (repo.id,)
            ).fetchone()[0]
            out.append(
                RepositoryStatus(
                    repo,
                    {str(k): int(v) for k, v in counts.items()},
                    {str(r[0]): int(r[1]) for r in reasons},
                    int(chunks),
                    int(vectors),
                    int(symbols),
                    [FileProblem(p["path"], p["status"], p["reason"], p["detail"]) for p in problems],
                )
            )
        return out

    def indexed_files(self) -> int:
        """Files indexed in every repository (what a page polls while indexing runs)."""
        return int(self.conn.execute("SELECT count(*) FROM files WHERE status = 'indexed'").fetchone()[0])

    def ensure_repository(self, root: str, name: str) -> Repository:
        existing = self.repository(root)
        if existing is not None:
            return existing
        with self.transaction() as tx:
            tx.execute("INSERT INTO repositories(root, name, created_at) VALUES (?, ?, ?)", (root, name, time.time()))
        repo = self.repository(root)
        assert repo is not None
        return repo

    def finish_repository(self, repo_id: int, head_commit: str | None) -> None:
        with self.transaction() as tx:
            tx.execute(
                "UPDATE repositories SET indexed_at = ?, head_commit = ? WHERE id = ?",
                (time.time(), head_commit, repo_id),
            )

    # -- files ------------------------------------------------------------------------------------------------

    def files(self, repo_id: int) -> dict[str, FileRow]:
        rows = self.conn.execute("SELECT * FROM files WHERE repo_id = ?", (repo_id,)).fetchall()
        return {r["path"]: _file_row(r) for r in rows}

    def chunk_ids_of(self, file_ids: Iterable[int]) -> list[int]:
        ids = list(file_ids)
        out: list[int] = []
        for i in range(0, len(ids), 500):
            part = ids[i : i + 500]
            marks = ",".join("?" * len(part))
            out += [r[0] for r in self.conn.execute(f"SELECT id FROM chunks WHERE file_id IN ({marks})", part)]
        return out

    def delete_files(self, tx: sqlite3.Connection, file_ids: Sequence[int]) -> None:
        for i in range(0, len(file_ids), 500):
            part = list(file_ids[i : i + 500])
            tx.execute(f"DELETE FROM files WHERE id IN ({','.join('?' * len(part))})", part)

    def example_test(self, repo_id: int, language: str) -> str | None:
        """The path of an indexed test file of ``language`` in the repository (the shortest path), or None."""
        row = self.conn.execute(
            "SELECT path FROM files WHERE repo_id = ? AND status = 'indexed' AND language = ? "
            "AND (path LIKE '%test%' OR path LIKE '%spec%') ORDER BY length(path) LIMIT 1",
            (repo_id, language),
        ).fetchone()
        return None if row is None else str(row[0])

    def files_in_directory(
        self, repo_id: int, directory: str, language: str | None, *, exclude: str, limit: int
    ) -> list[str]:
        """Indexed files directly in ``directory`` (not below it) of ``language``, other than ``exclude``."""
        rows = self.conn.execute(
            "SELECT path FROM files WHERE repo_id = ? AND status = 'indexed' AND language IS ? "
            f"AND {_DIRECTLY_IN.format(path='path')} AND path != ? ORDER BY path LIMIT ?",
            (repo_id, language, *_directly_in(directory), exclude, limit),
        ).fetchall()
        return [str(r[0]) for r in rows]

    def indexed_file_id(self, repo_id: int, path: str) -> int | None:
        row = self.conn.execute(
            "SELECT id FROM files WHERE repo_id = ? AND path = ? AND status = 'indexed'", (repo_id, path)
        ).fetchone()
        return None if row is None else int(row[0])

    def import_targets(self, file_id: int) -> list[ImportTarget]:
        """The repository files ``file_id`` imports, each with the names its import statements took from it."""
        rows = self.conn.execute(
            "SELECT import_edges.target_file_id, files.path, group_concat(imports.names, ' ') AS names "
            "FROM imports JOIN import_edges ON import_edges.import_id = imports.id "
            "JOIN files ON files.id = import_edges.target_file_id "
            "WHERE imports.file_id = ? AND import_edges.target_file_id != ? "
            "GROUP BY import_edges.target_file_id ORDER BY min(imports.line)",
            (file_id, file_id),
        ).fetchall()
        return [ImportTarget(int(r[0]), str(r[1]), frozenset((r[2] or "").split())) for r in rows]

    def definitions_in(self, file_id: int) -> list[Definition]:
        """The definitions of an indexed file, in file order."""
        rows = self.conn.execute(
            "SELECT name, qualified_name, kind, signature, doc, start_line, end_line FROM symbols "
            "WHERE file_id = ? ORDER BY start_line",
            (file_id,),
        ).fetchall()
        return [Definition(*r) for r in rows]

    def indexed_files_of(self, repo_id: int) -> list[IndexedFile]:
        rows = self.conn.execute(
            "SELECT id, path, package FROM files WHERE repo_id = ? AND status = 'indexed'", (repo_id,)
        ).fetchall()
        return [IndexedFile(int(r[0]), str(r[1]), r[2]) for r in rows]

    def imported_names(self, file_id: int) -> set[str]:
        """Every name the file's import statements take (from the repository or not)."""
        rows = self.conn.execute("SELECT names FROM imports WHERE file_id = ?", (file_id,))
        return {n for (text,) in rows for n in text.split()}

    def definition_counts(self, repo_id: int, names: Sequence[str]) -> dict[str, int]:
        """How many definitions each of ``names`` has in the repository (names with none are left out)."""
        if not names:
            return {}
        marks = ",".join("?" * len(names))
        rows = self.conn.execute(
            # COLLATE NOCASE lets SQLite use the (case-insensitive) name index; exact case is kept by GROUP BY.
            # CROSS JOIN keeps symbols as the outer loop: the planner would otherwise walk every file of the repo.
            "SELECT symbols.name, count(*) FROM symbols CROSS JOIN files ON files.id = symbols.file_id "
            f"WHERE symbols.name COLLATE NOCASE IN ({marks}) AND files.repo_id = ? GROUP BY symbols.name",
            [*names, repo_id],
        ).fetchall()
        return {str(r[0]): int(r[1]) for r in rows}

    def definitions_named(
        self,
        repo_id: int,
        names: Sequence[str],
        *,
        any_of: Sequence[str] = (),
        in_files: Sequence[int] = (),
        rare: Sequence[str] = (),
        directory: str = "",
    ) -> list[FoundDefinition]:
        """Definitions in the repository with one of ``names`` (case-insensitively) that are also: named one of
        ``any_of``, or in one of the files ``in_files``, or named one of ``rare`` and directly in ``directory``."""
        clauses: list[str] = []
        params: list[object] = []
        if any_of:
            clauses.append(f"symbols.name IN ({','.join('?' * len(any_of))})")
            params += any_of
        if in_files:
            clauses.append(f"symbols.file_id IN ({','.join('?' * len(in_files))})")
            params += in_files
        if rare:
            clauses.append(
                f"(symbols.name IN ({','.join('?' * len(rare))}) AND {_DIRECTLY_IN.format(path='files.path')})"
            )
            params += [*rare, *_directly_in(directory)]
        if not names or not clauses:
            return []
        rows = self.conn.execute(
            "SELECT symbols.name, symbols.qualified_name, symbols.kind, symbols.signature, symbols.doc, "
            "symbols.start_line, symbols.end_line, files.id, files.path FROM symbols "
            f"CROSS JOIN files ON files.id = symbols.file_id WHERE symbols.name COLLATE NOCASE IN "
            f"({','.join('?' * len(names))}) AND files.repo_id = ? AND ({' OR '.join(clauses)})",
            [*names, repo_id, *params],
        ).fetchall()
        return [FoundDefinition(*r) for r in rows]

    def has_vectors(self) -> bool:
        """Whether any chunk has an embedding (vector search has something to search)."""
        return self.conn.execute("SELECT 1 FROM chunk_vectors LIMIT 1").fetchone() is not None

    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, tx: sqlite3.Connection, key: str, value: str) -> None:
        tx.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )


#: A ``{path}`` column's value directly in a directory, not below it: the two patterns of ``_directly_in``.
_DIRECTLY_IN = "{path} LIKE ? ESCAPE '\\' AND {path} NOT LIKE ? ESCAPE '\\'"


def _directly_in(directory: str) -> tuple[str, str]:
    """The LIKE patterns of ``_DIRECTLY_IN`` for ``directory`` ("" is the repository's root), its own ``%`` and
    ``_`` escaped so that they match only themselves."""
    escaped = directory.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return (f"{escaped}/%", f"{escaped}/%/%") if directory else ("%", "%/%")


def _file_row(r: sqlite3.Row) -> FileRow:
    return FileRow(
        id=r["id"],
        repo_id=r["repo_id"],
        path=r["path"],
        language=r["language"],
        size=r["size"],
        mtime_ns=r["mtime_ns"],
        sha256=r["sha256"],
        status=r["status"],
        reason=r["reason"],
        detail=r["detail"],
        package=r["package"],
        lexical_done=bool(r["lexical_done"]),
    )
