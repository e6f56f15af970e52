"""PostgreSQL as the stores use it when a team outgrows one machine: several gateways, the CLI and the dashboard
on other hosts, all reading and writing the same events, keys, registry, evaluation runs and audit log.

Each store keeps its tables in a schema of its own (``fp_registry``, ``fp_monitor``, ...), so two stores never
clash on a table name and one database holds them all. Connections come from a psycopg pool; statements are
written once, with SQLite's ``?`` placeholders, and translated to PostgreSQL's ``$1, $2, ...`` here (a raw cursor:
no client-side interpolation, so a ``%`` in a statement is just a character).

Write transactions are exclusive by default, as SQLite's ``BEGIN IMMEDIATE`` is: a transaction-scoped advisory
lock per store makes read-then-write sequences (the audit chain, rollout decisions, migrations) safe across
processes. Inserts that need no such order (events, completions) ask for ``exclusive=False`` and run side by side.
A server that cannot be reached raises ``DatabaseUnavailable`` (the gateway's 503), never a half-written change.
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from forgepilot.errors import DatabaseUnavailable, MissingExtra, first_line

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

Migration = tuple[int, str, str]
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
#: Seconds a statement waits for a pooled connection, or a new connection for the server, before giving up.
CONNECT_TIMEOUT_S = 5.0
#: Connections one store of one process may hold at once. Five stores per gateway: a gateway uses at most 40 of the
#: server's ``max_connections`` (100 by default), and holds one per store when idle.
POOL_SIZE = 8


def is_postgres_url(where: object) -> bool:
    return isinstance(where, str) and where.startswith(("postgresql://", "postgres://"))


def redact(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


@functools.lru_cache(maxsize=1024)
def translate(sql: str) -> str:
    """``sql`` with each ``?`` placeholder outside string literals, quoted names and comments numbered ``$n``."""
    out: list[str] = []
    n = 0
    i = 0
    while i < len(sql):
        ch = sql[i]
        if ch in "'\"":
            end = sql.find(ch, i + 1)
            while end != -1 and end + 1 < len(sql) and sql[end + 1] == ch:  # '' and "" escape the quote
                end = sql.find(ch, end + 2)
            end = len(sql) - 1 if end == -1 else end
            out.append(sql[i : end + 1])
            i = end + 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            end = len(sql) if end == -1 else end
            out.append(sql[i:end])
            i = end
        elif ch == "?":
            n += 1
            out.append(f"${n}")
            i += 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


class Row(tuple[Any, ...]):
    """A result row read by position or by column name, as ``sqlite3.Row`` is."""

    _index: dict[str, int]

    def __new__(cls, values: Sequence[Any], index: dict[str, int]) -> Row:
        row = super().__new__(cls, values)
        row._index = index
        return row

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)


def _row_factory(cursor: Any) -> Callable[[Sequence[Any]], Row]:
    index = {column.name: i for i, column in enumerate(cursor.description or ())}
    return lambda values: Row(values, index)


class Result:
    """A statement's rows, read whole before its connection goes back to the pool."""

    def __init__(self, rows: list[Row], rowcount: int) -> None:
        self.rows = rows
        self.rowcount = rowcount

    @classmethod
    def of(cls, cursor: Any) -> Result:
        return cls(cursor.fetchall() if cursor.description is not None else [], cursor.rowcount)

    def fetchone(self) -> Any:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[Any]:
        return list(self.rows)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.rows)


class PostgresConnection:
    """What a store's ``conn`` is on PostgreSQL: the calling thread's transaction when it has one open, else a
    pooled connection in autocommit for the one statement."""

    def __init__(self, database: PostgresDatabase) -> None:
        self._database = database

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Result:
        with self._database.connection() as conn:
            return Result.of(conn.execute(translate(sql), tuple(parameters)))

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Result:
        with self._database.connection() as conn:
            cursor = conn.cursor()
            cursor.executemany(translate(sql), [tuple(p) for p in parameters])
            return Result(rows=[], rowcount=cursor.rowcount)


def _import_psycopg() -> tuple[Any, Any]:
    try:
        import psycopg
        import psycopg_pool
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise MissingExtra(exc.name or "psycopg", "postgres") from None
    return psycopg, psycopg_pool


def _cannot_connect(url: str, why: str | None = None) -> DatabaseUnavailable:
    return DatabaseUnavailable(
        f"cannot connect to PostgreSQL at {redact(url)}" + (f": {why}" if why else ""),
        hint="check that the server runs and FORGEPILOT_DATABASE_URL is right (user, password, database)",
    )


def server_version(url: str) -> str:
    """The version of the PostgreSQL server at ``url`` (changes nothing there); DatabaseUnavailable if none."""
    psycopg, _ = _import_psycopg()
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            return str(conn.execute("SHOW server_version").fetchone()[0])
    except psycopg.Error as exc:
        raise _cannot_connect(url, first_line(exc)) from None


class PostgresDatabase:
    """One store's schema in a PostgreSQL database: a connection pool, migrations, exclusive write transactions."""

    def __init__(
        self, url: str, schema: str, migrations: Sequence[Migration], *, max_connections: int = POOL_SIZE
    ) -> None:
        if not _SCHEMA_NAME.match(schema):
            raise ValueError(f"bad schema name {schema!r}")
        self.url = url
        self.schema = schema
        self._psycopg, pool_module = _import_psycopg()
        self._pool_timeout = pool_module.PoolTimeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self.conn = PostgresConnection(self)
        pool: ConnectionPool[Any] = pool_module.ConnectionPool(
            url,
            min_size=1,
            max_size=max_connections,
            kwargs={"autocommit": True, "cursor_factory": self._psycopg.RawCursor, "connect_timeout": 5},
            configure=self._configure,
            check=pool_module.ConnectionPool.check_connection,
            timeout=CONNECT_TIMEOUT_S,
            open=False,
            name=f"forgepilot-{schema}",
        )
        self._pool = pool
        try:
            pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
        except self._pool_timeout:
            pool.close()
            raise _cannot_connect(url) from None
        self.migrate(migrations)

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        from psycopg.types.numeric import FloatLoader

        # sum() and avg() over integers give numeric: read it as float, as SQLite gives it.
        conn.adapters.register_loader("numeric", FloatLoader)
        conn.row_factory = _row_factory
        conn.execute(f"SET search_path TO {self.schema}")

    @property
    def lock_key(self) -> str:
        return f"forgepilot:{self.schema}"

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """This thread's open transaction, or a pooled connection; a lost server becomes DatabaseUnavailable."""
        current = getattr(self._local, "tx", None)
        if current is not None:
            yield current
            return
        with self._unavailable_as_error(), self._pool.connection() as conn:
            yield conn

    @contextmanager
    def _unavailable_as_error(self) -> Iterator[None]:
        try:
            yield
        except (self._psycopg.OperationalError, self._pool_timeout) as exc:
            raise DatabaseUnavailable(
                f"PostgreSQL at {redact(self.url)} is unavailable: {first_line(exc)}",
                hint="nothing was written; retry when the server is back",
            ) from exc

    @contextmanager
    def transaction(self, *, exclusive: bool = True) -> Iterator[PostgresConnection]:
        """One transaction for this thread; ``exclusive`` also holds the store's lock across processes until it
        ends (a read-then-write that must not interleave with another process's)."""
        if getattr(self._local, "tx", None) is not None:  # nested: part of the enclosing transaction
            yield self.conn
            return
        with (
            self._lock if exclusive else contextlib.nullcontext(),
            self._unavailable_as_error(),
            self._pool.connection() as conn,
            conn.transaction(),
        ):
            if exclusive:
                conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", (self.lock_key,))
            self._local.tx = conn
            try:
                yield self.conn
            finally:
                self._local.tx = None

    def migrate(self, migrations: Sequence[Migration]) -> list[int]:
        """Apply pending migrations in order, each in its own transaction, one process at a time."""
        applied: list[int] = []
        with self.transaction() as conn:
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at DOUBLE PRECISION)"
            )
        done = {row[0] for row in self.conn.execute("SELECT version FROM schema_migrations")}
        for version, name, sql in migrations:
            if version in done:
                continue
            with self.transaction() as conn:
                # Another process may have applied it while this one waited for the lock.
                if conn.execute("SELECT 1 FROM schema_migrations WHERE version = ?", (version,)).fetchone():
                    continue
                with self.connection() as raw:
                    raw.execute(sql)  # no parameters: PostgreSQL runs the whole script
                conn.execute(
                    "INSERT INTO schema_migrations(version, name, applied_at) VALUES (?, ?, ?)",
                    (version, name, time.time()),
                )
            applied.append(version)
        return applied

    @property
    def integrity_errors(self) -> tuple[type[BaseException], ...]:
        return (self._psycopg.IntegrityError,)

    @property
    def errors(self) -> tuple[type[BaseException], ...]:
        return (self._psycopg.Error, DatabaseUnavailable)

    def close(self) -> None:
        self._pool.close()
