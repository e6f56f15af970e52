"""A store whose tables live in SQLite (one file under the state directory, the default) or in PostgreSQL (a schema
in a shared database, when ``FORGEPILOT_DATABASE_URL`` names one), behind the same methods.

Stores write their SQL once, in the dialect both engines share: ``?`` placeholders, ``INSERT ... ON CONFLICT``,
``CASE WHEN`` instead of summing booleans, ``"user"`` quoted. Only the schema (``MIGRATIONS`` for SQLite,
``PG_MIGRATIONS`` for PostgreSQL) and the few spots ``dialect`` names differ.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Literal, Protocol

from forgepilot.db.postgres import PostgresDatabase, is_postgres_url
from forgepilot.db.sqlite import Migration, SqliteStore, Synchronous

Dialect = Literal["sqlite", "postgresql"]


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...
    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Cursor: ...


def store_location(state_dir: Path, filename: str, database_url: str | None) -> Path | str:
    """Where a store lives: the shared database when one is configured, else ``filename`` in the state directory."""
    return database_url if database_url else state_dir / filename


class DatabaseStore:
    """Base of the stores that may be shared by several processes and hosts: SQLite or PostgreSQL by location."""

    MIGRATIONS: Sequence[Migration] = ()
    PG_MIGRATIONS: Sequence[Migration] = ()
    #: The PostgreSQL schema holding this store's tables.
    SCHEMA = ""
    SYNCHRONOUS: Synchronous = "FULL"

    def __init__(self, where: Path | str) -> None:
        self._db: SqliteStore | PostgresDatabase
        self.path: Path | None
        if is_postgres_url(where):
            assert isinstance(where, str)
            self.dialect: Dialect = "postgresql"
            self.path = None
            self._db = PostgresDatabase(where, self.SCHEMA, self.PG_MIGRATIONS)
        else:
            self.dialect = "sqlite"
            self.path = Path(where)
            self._db = SqliteStore(self.path, migrations=self.MIGRATIONS, synchronous=self.SYNCHRONOUS)

    @property
    def shared(self) -> bool:
        """True when other processes (other gateways, other hosts) may be writing to the same tables."""
        return self.dialect == "postgresql"

    @property
    def conn(self) -> Connection:
        """This thread's connection (SQLite), or the pool seen through this thread's transaction (PostgreSQL)."""
        return self._db.conn

    @property
    def _lock(self) -> Any:
        return self._db._lock

    @property
    def _closed(self) -> bool:
        return isinstance(self._db, SqliteStore) and self._db._closed

    def transaction(self, *, exclusive: bool = True) -> AbstractContextManager[Connection]:
        """One write transaction: committed on exit, rolled back on any error. ``exclusive=False`` lets PostgreSQL
        run it beside other writers (plain inserts); SQLite always runs one at a time."""
        return self._db.transaction(exclusive=exclusive)

    @property
    def integrity_errors(self) -> tuple[type[BaseException], ...]:
        return self._db.integrity_errors

    @property
    def errors(self) -> tuple[type[BaseException], ...]:
        """Every error the database itself may raise (a closed or lost database among them)."""
        return self._db.errors

    def close(self) -> None:
        self._db.close()
