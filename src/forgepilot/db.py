"""SQLite as every ForgePilot store uses it: WAL mode, ordered migrations recorded in a table, one write transaction
at a time. The index, the gateway's events and keys, the evaluation runs and the registry each keep a database of
their own on top of this.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

#: (version, name, SQL): ordered and append-only; a released migration is never edited, a change is a new entry.
Migration = tuple[int, str, str]


def connect(path: Path, migrations: Sequence[Migration]) -> sqlite3.Connection:
    """A WAL-mode connection to the database at ``path`` with ``migrations`` applied."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; a crash loses at most the last commits
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA cache_size=-65536")  # 64 MiB of pages: bulk inserts touch many index pages
    migrate(conn, migrations)
    return conn


@contextmanager
def write_transaction(conn: sqlite3.Connection, lock: threading.Lock | None = None) -> Iterator[sqlite3.Connection]:
    """One write transaction on an autocommit connection: BEGIN IMMEDIATE, then COMMIT, or ROLLBACK on any error
    (Ctrl-C included); ``lock`` serialises threads sharing the connection."""
    with lock or contextlib.nullcontext():
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


class SqliteStore:
    """A database of its own migrations (``MIGRATIONS`` of the subclass): one connection shared by threads, writes
    serialised by a lock, each in one ``transaction()``."""

    MIGRATIONS: Sequence[Migration] = ()

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn: sqlite3.Connection = connect(path, self.MIGRATIONS)
        self._lock = threading.Lock()

    def close(self) -> None:
        self.conn.close()

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return write_transaction(self.conn, self._lock)


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration]) -> list[int]:
    """Apply pending migrations in order, each in its own transaction; returns the versions applied."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL)"
    )
    done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    applied = []
    for version, name, sql in migrations:
        if version in done:
            continue
        with write_transaction(conn):
            for statement in sql.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations(version, name, applied_at) VALUES (?, ?, ?)",
                (version, name, time.time()),
            )
        applied.append(version)
    return applied
