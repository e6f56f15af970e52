"""SQLite as every ForgePilot store uses it: WAL mode, ordered migrations recorded in a table, one write transaction
at a time, and a connection per thread. The index, the gateway's events and keys, the evaluation runs and the
registry each keep a database of their own on top of this.

Why a connection per thread: a ``sqlite3.Connection`` shared between threads interleaves their statements and
cursors (one thread's read can see another's half-finished transaction, or fail with "recursive use of cursors");
each thread opening its own keeps SQLite's own isolation between them. Writers are still serialised in-process by
a lock, so they never wait on SQLite's busy timeout.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Literal

#: (version, name, SQL): ordered and append-only; a released migration is never edited, a change is a new entry.
#: The SQL is executed whole (triggers and string literals may hold semicolons), in one transaction.
Migration = tuple[int, str, str]
#: FULL: a commit is on disk when it returns (what an acknowledged event needs). NORMAL: durable at checkpoints,
#: a power loss may drop the last commits (fine for data that can be rebuilt, such as the index).
Synchronous = Literal["FULL", "NORMAL"]


def connect(path: Path, migrations: Sequence[Migration], *, synchronous: Synchronous = "FULL") -> sqlite3.Connection:
    """A WAL-mode connection to the database at ``path`` with ``migrations`` applied."""
    conn = open_connection(path, synchronous=synchronous)
    migrate(conn, migrations)
    return conn


def open_connection(path: Path, *, synchronous: Synchronous = "FULL") -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    # check_same_thread=False only so that ``SqliteStore.close`` may close every thread's connection at the end;
    # each connection is used by the one thread that opened it.
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA cache_size=-65536")  # 64 MiB of pages: bulk inserts touch many index pages
    return conn


@contextmanager
def write_transaction(conn: sqlite3.Connection, lock: threading.Lock | None = None) -> Iterator[sqlite3.Connection]:
    """One write transaction on an autocommit connection: BEGIN IMMEDIATE, then COMMIT, or ROLLBACK on any error
    (Ctrl-C included); ``lock`` serialises the threads writing to one database."""
    with lock or contextlib.nullcontext():
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


class SqliteStore:
    """A database of its own migrations (``MIGRATIONS`` of the subclass): a connection per thread (``conn``),
    writes serialised by a lock, each in one ``transaction()``; commits durable unless ``SYNCHRONOUS`` says not."""

    MIGRATIONS: Sequence[Migration] = ()
    SYNCHRONOUS: Synchronous = "FULL"

    def __init__(
        self, path: Path, *, migrations: Sequence[Migration] | None = None, synchronous: Synchronous | None = None
    ) -> None:
        self.path = path
        if migrations is not None:
            self.MIGRATIONS = migrations
        if synchronous is not None:
            self.SYNCHRONOUS = synchronous
        self._lock = threading.Lock()
        self._local = threading.local()
        self._open: list[sqlite3.Connection] = []
        self._open_lock = threading.Lock()
        self._closed = False
        self._adopt(connect(path, self.MIGRATIONS, synchronous=self.SYNCHRONOUS))

    def _adopt(self, conn: sqlite3.Connection) -> sqlite3.Connection:
        with self._open_lock:
            self._open.append(conn)
        self._local.conn = conn
        return conn

    @property
    def conn(self) -> sqlite3.Connection:
        """This thread's connection (opened on its first use)."""
        found: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if found is None:
            if self._closed:
                raise sqlite3.ProgrammingError(f"the store {self.path} is closed")
            found = self._adopt(open_connection(self.path, synchronous=self.SYNCHRONOUS))
        return found

    def close(self) -> None:
        self._closed = True
        with self._open_lock:
            conns, self._open = self._open, []
        for conn in conns:
            conn.close()
        self._local = threading.local()

    def transaction(self, *, exclusive: bool = True) -> AbstractContextManager[sqlite3.Connection]:
        """One write transaction; SQLite's are always exclusive (``exclusive`` is for PostgreSQL's sake)."""
        return write_transaction(self.conn, self._lock)

    @property
    def integrity_errors(self) -> tuple[type[BaseException], ...]:
        return (sqlite3.IntegrityError,)

    @property
    def errors(self) -> tuple[type[BaseException], ...]:
        return (sqlite3.Error,)


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration]) -> list[int]:
    """Apply pending migrations in order, each whole in its own transaction; returns the versions applied."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL)"
    )
    done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    applied = []
    for version, name, sql in migrations:
        if version in done:
            continue
        # executescript runs the script as SQLite parses it (a trigger body or a ';' in a string stays whole); the
        # transaction it opens stays open for the bookkeeping row, so both commit together or not at all.
        try:
            conn.executescript(f"BEGIN IMMEDIATE;\n{sql}\n;")
            conn.execute(
                "INSERT INTO schema_migrations(version, name, applied_at) VALUES (?, ?, ?)",
                (version, name, time.time()),
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        applied.append(version)
    return applied
