"""The databases stores keep their tables in: SQLite by default (a file per store under the state directory), or
PostgreSQL shared by several processes and hosts (``FORGEPILOT_DATABASE_URL``). The repository index is always
SQLite (``SqliteStore``): it is a per-machine build artefact with full-text search of its own."""

from forgepilot.db.postgres import PostgresDatabase, is_postgres_url, redact, server_version, translate
from forgepilot.db.sqlite import (
    Migration,
    SqliteStore,
    Synchronous,
    connect,
    migrate,
    open_connection,
    write_transaction,
)
from forgepilot.db.store import Connection, Cursor, DatabaseStore, Dialect, store_location

__all__ = [
    "Connection",
    "Cursor",
    "DatabaseStore",
    "Dialect",
    "Migration",
    "PostgresDatabase",
    "SqliteStore",
    "Synchronous",
    "connect",
    "is_postgres_url",
    "migrate",
    "open_connection",
    "redact",
    "server_version",
    "store_location",
    "translate",
    "write_transaction",
]
