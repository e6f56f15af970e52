"""The monitor's database (``STATE/monitor.db``, or the shared PostgreSQL): client events, completions served,
degraded-mode changes.

The gateway and the LSP server write through ``MonitorStore``; ``forgepilot monitor`` and the drift report read it.
Events are acknowledged only after their commit. Completions are written by a background thread in batches, so
that serving never waits on a disk sync; an event always sees the completions queued before it. On a shared
database each completion is written at once (without waiting for the sync): the client's events may arrive at
another gateway, which must find it.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from forgepilot.db import DatabaseStore, Migration
from forgepilot.errors import DatabaseUnavailable, UserError
from forgepilot.monitor.types import (
    GROUP_KEYS,
    AcceptanceRow,
    Event,
    LatencyRow,
    ModeChange,
    RecordResult,
    RetentionRow,
    SeriesPoint,
    ServedCompletion,
)

_log = logging.getLogger("forgepilot.monitor")

MIGRATIONS: list[Migration] = [
    (
        1,
        "events, completions served, degraded-mode changes",
        """
        CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            received_at REAL NOT NULL,     -- the server's clock: windows and ordering use it, never the client's
            type TEXT NOT NULL,            -- shown | accepted | rejected | partially_accepted | retained
            completion_id TEXT,
            known INTEGER NOT NULL,        -- 1 when completion_id is a completion this store recorded
            deployment TEXT,
            user TEXT,                     -- the API key's name, or NULL without auth
            model TEXT,
            mode TEXT,
            language TEXT,
            template_id TEXT,
            template_version TEXT,
            shown_chars INTEGER,
            accepted_chars INTEGER,
            latency_ms REAL,
            after_s REAL,                  -- retained: seconds after the accept
            retained_share REAL,           -- retained: 0..1, NULL when it could not be checked
            reason TEXT,
            client_time REAL,
            skew_s REAL,                   -- received_at - client_time
            payload TEXT NOT NULL          -- the event as sent, JSON
        );
        -- Window aggregations read this index alone (covering): no table lookups for a million events.
        CREATE INDEX events_window ON events(
            received_at, type, deployment, model, language, mode, template_version, shown_chars, accepted_chars
        );
        CREATE INDEX events_completion ON events(completion_id);
        CREATE INDEX events_retention ON events(type, received_at, after_s, retained_share);
        CREATE TABLE completions (
            id TEXT PRIMARY KEY,
            served_at REAL NOT NULL,
            deployment TEXT NOT NULL,
            user TEXT,
            model TEXT NOT NULL,
            mode TEXT NOT NULL,
            language TEXT,
            template_id TEXT,
            template_version TEXT,
            prompt_tokens INTEGER NOT NULL,
            completion_tokens INTEGER NOT NULL,
            latency_ms REAL NOT NULL,
            output_chars INTEGER NOT NULL,
            empty_reason TEXT,
            sources TEXT NOT NULL,         -- context sources in the prompt, comma-separated
            cached INTEGER NOT NULL,
            degraded INTEGER NOT NULL,
            error TEXT                     -- the backend's failure (no answer was served), else NULL
        );
        CREATE INDEX completions_time ON completions(served_at);
        CREATE INDEX completions_deployment ON completions(deployment, served_at);
        CREATE TABLE mode_changes (
            id INTEGER PRIMARY KEY,
            at REAL NOT NULL,
            mode TEXT NOT NULL,            -- normal | degraded
            reason TEXT NOT NULL,
            burn TEXT NOT NULL             -- JSON: burn rate per window
        );
        -- Hourly counts per group, kept in the events' own transaction: acceptance over weeks reads these instead of
        -- every event (raw events only for the partial hours at a window's edges). '' stands for NULL (NULLs are
        -- distinct in a primary key, which would defeat the upsert).
        CREATE TABLE event_hours (
            hour INTEGER NOT NULL,
            type TEXT NOT NULL,
            deployment TEXT NOT NULL,
            model TEXT NOT NULL,
            language TEXT NOT NULL,
            mode TEXT NOT NULL,
            template_version TEXT NOT NULL,
            events INTEGER NOT NULL,
            shown_chars INTEGER NOT NULL,
            accepted_chars INTEGER NOT NULL,
            PRIMARY KEY (hour, type, deployment, model, language, mode, template_version)
        ) WITHOUT ROWID;
        CREATE TABLE imports (source TEXT PRIMARY KEY, rows INTEGER NOT NULL, at REAL NOT NULL);
        """,
    )
]

#: The same tables on PostgreSQL: REAL is double precision there, and ``user`` a reserved word (quoted).
PG_MIGRATIONS: list[Migration] = [
    (
        1,
        "events, completions served, degraded-mode changes, hourly counts",
        """
        CREATE TABLE events (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            received_at DOUBLE PRECISION NOT NULL,
            type TEXT NOT NULL,
            completion_id TEXT,
            known INTEGER NOT NULL,
            deployment TEXT,
            "user" TEXT,
            model TEXT,
            mode TEXT,
            language TEXT,
            template_id TEXT,
            template_version TEXT,
            shown_chars INTEGER,
            accepted_chars INTEGER,
            latency_ms DOUBLE PRECISION,
            after_s DOUBLE PRECISION,
            retained_share DOUBLE PRECISION,
            reason TEXT,
            client_time DOUBLE PRECISION,
            skew_s DOUBLE PRECISION,
            payload TEXT NOT NULL
        );
        CREATE INDEX events_window ON events(
            received_at, type, deployment, model, language, mode, template_version, shown_chars, accepted_chars
        );
        CREATE INDEX events_completion ON events(completion_id);
        CREATE INDEX events_retention ON events(type, received_at, after_s, retained_share);
        CREATE INDEX events_deployment ON events(deployment, received_at);
        CREATE TABLE completions (
            id TEXT PRIMARY KEY,
            served_at DOUBLE PRECISION NOT NULL,
            deployment TEXT NOT NULL,
            "user" TEXT,
            model TEXT NOT NULL,
            mode TEXT NOT NULL,
            language TEXT,
            template_id TEXT,
            template_version TEXT,
            prompt_tokens INTEGER NOT NULL,
            completion_tokens INTEGER NOT NULL,
            latency_ms DOUBLE PRECISION NOT NULL,
            output_chars INTEGER NOT NULL,
            empty_reason TEXT,
            sources TEXT NOT NULL,
            cached INTEGER NOT NULL,
            degraded INTEGER NOT NULL,
            error TEXT
        );
        CREATE INDEX completions_time ON completions(served_at);
        CREATE INDEX completions_deployment ON completions(deployment, served_at);
        CREATE TABLE mode_changes (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            at DOUBLE PRECISION NOT NULL,
            mode TEXT NOT NULL,
            reason TEXT NOT NULL,
            burn TEXT NOT NULL
        );
        CREATE TABLE event_hours (
            hour BIGINT NOT NULL,
            type TEXT NOT NULL,
            deployment TEXT NOT NULL,
            model TEXT NOT NULL,
            language TEXT NOT NULL,
            mode TEXT NOT NULL,
            template_version TEXT NOT NULL,
            events BIGINT NOT NULL,
            shown_chars BIGINT NOT NULL,
            accepted_chars BIGINT NOT NULL,
            PRIMARY KEY (hour, type, deployment, model, language, mode, template_version)
        );
        CREATE TABLE imports (source TEXT PRIMARY KEY, rows INTEGER NOT NULL, at DOUBLE PRECISION NOT NULL);
        """,
    )
]

_ENRICHED = ("deployment", "model", "mode", "language", "template_id", "template_version")
_EVENT_COLUMNS = (
    "type",
    "completion_id",
    "known",
    "deployment",
    "user",
    "model",
    "mode",
    "language",
    "template_id",
    "template_version",
    "shown_chars",
    "accepted_chars",
    "latency_ms",
    "after_s",
    "retained_share",
    "reason",
    "client_time",
    "skew_s",
    "payload",
)
_COMPLETION_COLUMNS = (
    "id",
    "served_at",
    "deployment",
    "user",
    "model",
    "mode",
    "language",
    "template_id",
    "template_version",
    "prompt_tokens",
    "completion_tokens",
    "latency_ms",
    "output_chars",
    "empty_reason",
    "sources",
    "cached",
    "degraded",
    "error",
)
_HOUR = 3600.0
_ROLLUP_UPSERT = (
    "INSERT INTO event_hours VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT(hour, type, deployment, model, language, mode, template_version) DO UPDATE SET "
    "events = event_hours.events + excluded.events, "
    "shown_chars = event_hours.shown_chars + excluded.shown_chars, "
    "accepted_chars = event_hours.accepted_chars + excluded.accepted_chars"
)


def _columns(names: Sequence[str]) -> str:
    """A column list both engines read (``user`` is reserved in PostgreSQL: quoted)."""
    return ", ".join(f'"{n}"' if n == "user" else n for n in names)


_INSERT_EVENT = "INSERT INTO events(received_at, {}) VALUES (?, {})".format(
    _columns(_EVENT_COLUMNS), ", ".join("?" * len(_EVENT_COLUMNS))
)
_FAILED = "CASE WHEN error IS NOT NULL THEN 1 ELSE 0 END"
_FLUSH_EVERY_S = 1.0
_FLUSH_ROWS = 512


@dataclass
class _Batch:
    """One caller's rows waiting for a group commit."""

    rows: list[tuple[Any, ...]]
    done: bool = False
    error: BaseException | None = None


@dataclass(frozen=True)
class DeploymentCounts:
    requests: int
    errors: int
    slow: int
    shown: int
    accepted: int
    retention_checked: int
    retained: int


@dataclass(frozen=True)
class WindowSample:
    """The inputs and outputs of one time window, as drift compares them."""

    languages: list[str]
    prompt_tokens: list[int]
    output_chars: list[int]
    sources: list[tuple[str, ...]]
    empty_reasons: list[str]
    shown: int
    accepted: int


def _hourly(
    rows: Sequence[Sequence[Any]], columns: Sequence[str] = ("received_at", *_EVENT_COLUMNS)
) -> list[tuple[Any, ...]]:
    """The hourly-count increments of event ``rows`` (tuples in ``columns`` order)."""
    at = {c: i for i, c in enumerate(columns)}
    counts: dict[tuple[Any, ...], list[int]] = {}
    for r in rows:
        key = (
            int(r[at["received_at"]] // _HOUR),
            r[at["type"]],
            *("" if r[at[k]] is None else r[at[k]] for k in GROUP_KEYS),
        )
        c = counts.setdefault(key, [0, 0, 0])
        c[0] += 1
        c[1] += r[at["shown_chars"]] or 0
        c[2] += r[at["accepted_chars"]] or 0
    # Sorted: concurrent writers on PostgreSQL then lock the same rows in the same order (no deadlock).
    return [(*key, *c) for key, c in sorted(counts.items())]


def _group_sql(by: Sequence[str]) -> list[str]:
    bad = [k for k in by if k not in GROUP_KEYS]
    if bad:
        raise UserError(f"cannot group by {', '.join(bad)}", hint=f"group by any of {', '.join(GROUP_KEYS)}")
    return list(by)


class MonitorStore(DatabaseStore):
    MIGRATIONS = MIGRATIONS
    PG_MIGRATIONS = PG_MIGRATIONS
    SCHEMA = "fp_monitor"

    def __init__(self, where: Path | str, *, max_clock_skew_s: float = 300.0) -> None:
        super().__init__(where)
        self.max_clock_skew_s = max_clock_skew_s
        self._pending: list[ServedCompletion] = []
        self._pending_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._writer: threading.Thread | None = None
        self._queue: list[_Batch] = []
        self._queue_lock = threading.Lock()
        self._commit_lock = threading.Lock()

    # -- writing ------------------------------------------------------------------------------------------
    def record_completion(self, completion: ServedCompletion) -> None:
        """Queue ``completion``; a background thread writes queued completions every second (or sooner in bulk).
        On a shared database it is written now, so that another gateway finds it when its events arrive there."""
        if self.shared:
            try:
                self._insert_completions([completion])
                return
            except DatabaseUnavailable:
                pass  # queued below: the writer thread retries until the server is back
        with self._pending_lock:
            self._pending.append(completion)
            many = len(self._pending) >= _FLUSH_ROWS
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_loop, name="monitor-writer", daemon=True)
                self._writer.start()
        if many:
            self._wake.set()

    def _write_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(_FLUSH_EVERY_S)
            self._wake.clear()
            try:
                self.flush()
            except DatabaseUnavailable:
                continue  # a shared server restarting: the batch stays queued for the next round
            except self.errors:  # the database went away under us (closed at exit): nothing to do but stop
                return

    def flush(self) -> int:
        """Write the queued completions now; returns how many."""
        with self._pending_lock:
            batch, self._pending = self._pending, []
        if batch:
            try:
                self._insert_completions(batch)
            except DatabaseUnavailable:
                with self._pending_lock:  # kept, in order, for the next try
                    self._pending[:0] = batch
                raise
        return len(batch)

    def _insert_completions(self, batch: Sequence[ServedCompletion]) -> None:
        rows = [
            (
                c.id,
                c.served_at,
                c.deployment,
                c.user,
                c.model,
                c.mode,
                c.language,
                c.template_id,
                c.template_version,
                c.prompt_tokens,
                c.completion_tokens,
                c.latency_ms,
                c.output_chars,
                c.empty_reason,
                ",".join(sorted(set(c.sources))),
                int(c.cached),
                int(c.degraded),
                c.error,
            )
            for c in batch
        ]
        sql = "INSERT INTO completions({}) VALUES ({}) ON CONFLICT DO NOTHING".format(
            _columns(_COMPLETION_COLUMNS), ", ".join("?" * len(_COMPLETION_COLUMNS))
        )
        with self.transaction(exclusive=False) as conn:
            if self.dialect == "postgresql":
                # Rebuildable telemetry, as with SQLite's batches: visible at once, not waiting for the WAL sync.
                conn.execute("SET LOCAL synchronous_commit TO OFF")
            conn.executemany(sql, rows)

    def record_events(
        self, events: Sequence[Event], *, user: str | None = None, now: float | None = None
    ) -> RecordResult:
        """Write ``events`` in one transaction and return only after the commit (the acknowledgement is durable).

        Fields an event leaves out are filled from the completion it names; an id this store never recorded is
        kept (marked unknown) rather than dropped, so a client's report is never lost.
        """
        self.flush()
        received = time.time() if now is None else now
        ids = sorted({e.completion_id for e in events if e.completion_id})
        served = self._completions_by_id(ids)
        rows = []
        unknown = skewed = 0
        for e in events:
            info = served.get(e.completion_id or "")
            if e.completion_id and info is None:
                unknown += 1
            skew = received - e.client_time if e.client_time is not None else None
            if skew is not None and abs(skew) > self.max_clock_skew_s:
                skewed += 1
            values = asdict(e)
            for key in _ENRICHED:
                if values[key] is None and info is not None:
                    values[key] = info[key]
            values.update(
                user=user if user is not None else e.user,
                known=int(info is not None),
                skew_s=skew,
                payload=json.dumps({k: v for k, v in asdict(e).items() if v is not None}, ensure_ascii=False),
            )
            rows.append((received, *(values[c] for c in _EVENT_COLUMNS)))
        self._group_commit(rows)
        return RecordResult(len(rows), unknown, skewed)

    def _group_commit(self, rows: list[tuple[Any, ...]]) -> None:
        """Commit ``rows``, together with whatever other threads queued meanwhile, and return once they are durable.

        Group commit: while one thread syncs a transaction to disk, the others queue their rows; the next thread to
        get the lock writes every queued batch in one transaction (one sync for many callers), and each caller
        returns only when the transaction holding its rows has committed.
        """
        mine = _Batch(rows)
        with self._queue_lock:
            self._queue.append(mine)
        with self._commit_lock:
            if not mine.done:
                with self._queue_lock:
                    batches, self._queue = self._queue, []
                try:
                    every = [row for b in batches for row in b.rows]
                    with self.transaction(exclusive=False) as conn:
                        conn.executemany(_INSERT_EVENT, every)
                        conn.executemany(_ROLLUP_UPSERT, _hourly(every))
                except BaseException as exc:
                    for b in batches:
                        b.error = exc
                    raise
                finally:
                    for b in batches:
                        b.done = True
        if mine.error is not None:
            raise mine.error

    def _completions_by_id(self, ids: Sequence[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for start in range(0, len(ids), 500):  # SQLite caps bound parameters per statement
            chunk = ids[start : start + 500]
            query = "SELECT * FROM completions WHERE id IN ({})".format(", ".join("?" * len(chunk)))
            found.update({r["id"]: r for r in self.conn.execute(query, chunk)})
        return found

    def record_mode_change(self, change: ModeChange) -> None:
        with self.transaction():
            self.conn.execute(
                "INSERT INTO mode_changes(at, mode, reason, burn) VALUES (?, ?, ?, ?)",
                (change.at, change.mode, change.reason, json.dumps(change.burn)),
            )

    def import_legacy_events(self, gateway_db: Path) -> int:
        """Copy the events an older gateway kept in its own database (before the monitor owned them), once."""
        source = str(gateway_db.resolve())
        if not gateway_db.is_file():
            return 0
        if self.conn.execute("SELECT 1 FROM imports WHERE source = ?", (source,)).fetchone():
            return 0
        import sqlite3  # the legacy file is SQLite whatever this store is

        legacy = sqlite3.connect(f"file:{gateway_db}?mode=ro", uri=True)
        try:
            has = legacy.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='events'").fetchone()
            rows = (
                legacy.execute(
                    "SELECT received_at, type, completion_id, api_key, model, mode, language, template_id, "
                    "template_version, shown_chars, accepted_chars, latency_ms, payload FROM events ORDER BY id"
                ).fetchall()
                if has
                else []
            )
        finally:
            legacy.close()
        with self.transaction():
            self.conn.executemany(
                "INSERT INTO events(received_at, type, completion_id, known, user, model, mode, language, "
                "template_id, template_version, shown_chars, accepted_chars, latency_ms, payload) "
                "VALUES (?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            columns = (
                "received_at", "type", "deployment", "model", "mode", "language", "template_version", "shown_chars",
                "accepted_chars",
            )  # fmt: skip
            picked = [(r[0], r[1], None, r[4], r[5], r[6], r[8], r[9], r[10]) for r in rows]
            self.conn.executemany(_ROLLUP_UPSERT, _hourly(picked, columns))
            self.conn.execute("INSERT INTO imports VALUES (?, ?, ?)", (source, len(rows), time.time()))
        return len(rows)

    # -- reading ------------------------------------------------------------------------------------------
    def event_counts(self) -> dict[str, int]:
        """Events stored, by type (from the hourly counts: no scan of the events)."""
        return {r[0]: int(r[1]) for r in self.conn.execute("SELECT type, sum(events) FROM event_hours GROUP BY type")}

    def acceptance(
        self, since: float, until: float | None = None, by: Sequence[str] = GROUP_KEYS
    ) -> list[AcceptanceRow]:
        """Suggestions shown, accepted, partly accepted and rejected per group in ``[since, until)``.

        Whole hours come from the hourly counts, the partial hours at both edges from the events themselves.
        """
        keys = _group_sql(by)
        end = time.time() + 1 if until is None else until
        first, last = math.ceil(since / _HOUR), math.floor(end / _HOUR)
        select = "".join(f"{k}, " for k in keys)
        raw = (
            f"SELECT {select}type, count(*), coalesce(sum(shown_chars), 0), coalesce(sum(accepted_chars), 0) "
            "FROM events WHERE received_at >= ? AND received_at < ? AND type != 'retained' "
            f"GROUP BY {select}type"
        )
        parts: list[Any] = []
        if first < last:
            parts += self.conn.execute(
                f"SELECT {select}type, sum(events), sum(shown_chars), sum(accepted_chars) FROM event_hours "
                f"WHERE hour >= ? AND hour < ? AND type != 'retained' GROUP BY {select}type",
                (first, last),
            ).fetchall()
            parts += self.conn.execute(raw, (since, first * _HOUR)).fetchall()
            parts += self.conn.execute(raw, (last * _HOUR, end)).fetchall()
        else:
            parts += self.conn.execute(raw, (since, end)).fetchall()
        n = len(keys)
        totals: dict[tuple[Any, ...], dict[str, int]] = {}
        for r in parts:
            group = tuple(None if v == "" else v for v in r[:n])
            t = totals.setdefault(
                group,
                dict.fromkeys(
                    ("shown", "accepted", "partially_accepted", "rejected", "shown_chars", "accepted_chars"), 0
                ),
            )
            kind = r[n]
            t[kind] = t.get(kind, 0) + r[n + 1]
            if kind == "shown":
                t["shown_chars"] += r[n + 2] or 0
            elif kind in ("accepted", "partially_accepted"):
                t["accepted_chars"] += r[n + 3] or 0
        return [
            AcceptanceRow(
                dict(zip(keys, group, strict=True)),
                t["shown"],
                t["accepted"],
                t["partially_accepted"],
                t["rejected"],
                t["shown_chars"],
                t["accepted_chars"],
            )
            for group, t in sorted(totals.items(), key=lambda item: tuple(str(v) for v in item[0]))
        ]

    def retention(
        self, since: float, until: float | None = None, by: Sequence[str] = GROUP_KEYS, *, threshold: float = 0.5
    ) -> list[RetentionRow]:
        """Accepted completions still in the document per checkpoint (``after_s``) and group."""
        keys = _group_sql(by)
        select = ", ".join(keys) + ", " if keys else ""
        rows = self.conn.execute(
            f"SELECT {select}after_s, count(retained_share), sum(CASE WHEN retained_share >= ? THEN 1 ELSE 0 END), "
            "sum(CASE WHEN retained_share IS NULL THEN 1 ELSE 0 END), avg(retained_share) FROM events "
            "WHERE type = 'retained' AND received_at >= ? AND received_at < ? AND after_s IS NOT NULL "
            f"GROUP BY {select}after_s ORDER BY {select}after_s",
            (threshold, since, until if until is not None else float("inf")),
        ).fetchall()
        n = len(keys)
        return [
            RetentionRow({k: r[i] for i, k in enumerate(keys)}, r[n], r[n + 1], r[n + 2] or 0, r[n + 3] or 0, r[n + 4])
            for r in rows
        ]

    def latency(
        self, since: float, until: float | None = None, by: Sequence[str] = ("deployment", "model")
    ) -> list[LatencyRow]:
        """Completion latency percentiles per group (from the completions served)."""
        self.flush()
        keys = _group_sql(by)
        select = ", ".join(keys) + ", " if keys else ""
        rows = self.conn.execute(
            f"SELECT {select}latency_ms, CASE WHEN empty_reason IS NOT NULL THEN 1 ELSE 0 END, degraded "
            "FROM completions WHERE served_at >= ? AND served_at < ? AND error IS NULL",
            (since, until if until is not None else float("inf")),
        ).fetchall()
        groups: dict[tuple[Any, ...], list[tuple[float, int, int]]] = {}
        for r in rows:
            groups.setdefault(tuple(r[: len(keys)]), []).append((r[len(keys)], r[len(keys) + 1], r[len(keys) + 2]))
        out = []
        for key in sorted(groups, key=lambda k: tuple(str(v) for v in k)):
            values = groups[key]
            lat = np.array([v[0] for v in values])
            out.append(
                LatencyRow(
                    dict(zip(keys, key, strict=True)),
                    len(values),
                    float(np.percentile(lat, 50)),
                    float(np.percentile(lat, 95)),
                    sum(v[1] for v in values),
                    sum(v[2] for v in values),
                    float(np.percentile(lat, 99)),
                )
            )
        return out

    def acceptance_series(self, since: float, until: float) -> list[SeriesPoint]:
        """Suggestions shown and accepted per hour (from the hourly counts: fast over months)."""
        rows = self.conn.execute(
            "SELECT hour, coalesce(sum(CASE WHEN type = 'shown' THEN events END), 0), "
            "coalesce(sum(CASE WHEN type IN ('accepted', 'partially_accepted') THEN events END), 0) "
            "FROM event_hours WHERE hour >= ? AND hour < ? GROUP BY hour ORDER BY hour",
            (math.floor(since / _HOUR), math.ceil(until / _HOUR)),
        ).fetchall()
        return [SeriesPoint(r[0] * _HOUR, int(r[1]), int(r[2])) for r in rows]

    def retention_series(self, since: float, until: float, *, threshold: float = 0.5) -> list[SeriesPoint]:
        """Retention checks made and passed per hour."""
        rows = self.conn.execute(
            f"SELECT {self._hour_of('received_at')} AS hour, count(retained_share), "
            "coalesce(sum(CASE WHEN retained_share >= ? THEN 1 ELSE 0 END), 0) FROM events "
            "WHERE type = 'retained' AND received_at >= ? AND received_at < ? GROUP BY hour ORDER BY hour",
            (threshold, since, until),
        ).fetchall()
        return [SeriesPoint(r[0] * _HOUR, int(r[1]), int(r[2])) for r in rows]

    def served_counts(self, since: float, until: float) -> tuple[int, int]:
        """Completions served in ``[since, until)`` and how many of them failed (exact, not by the hour)."""
        self.flush()
        row = self.conn.execute(
            f"SELECT count(*), coalesce(sum({_FAILED}), 0) FROM completions WHERE served_at >= ? AND served_at < ?",
            (since, until),
        ).fetchone()
        return int(row[0]), int(row[1])

    def requests_series(self, since: float, until: float) -> list[SeriesPoint]:
        """Completions served per hour, and how many failed."""
        self.flush()
        rows = self.conn.execute(
            f"SELECT {self._hour_of('served_at')} AS hour, count(*), coalesce(sum({_FAILED}), 0) "
            "FROM completions WHERE served_at >= ? AND served_at < ? GROUP BY hour ORDER BY hour",
            (since, until),
        ).fetchall()
        return [SeriesPoint(r[0] * _HOUR, int(r[1]), int(r[2])) for r in rows]

    def window(self, since: float, until: float) -> WindowSample:
        """The completions served and the acceptance seen in ``[since, until)``, for drift."""
        self.flush()
        rows = self.conn.execute(
            "SELECT language, prompt_tokens, output_chars, sources, empty_reason FROM completions "
            "WHERE served_at >= ? AND served_at < ? AND error IS NULL",
            (since, until),
        ).fetchall()
        totals = self.acceptance(since, until, by=())  # hourly counts, raw events only at the edges
        shown = sum(a.shown for a in totals)
        accepted = sum(a.accepted + a.partially_accepted for a in totals)
        return WindowSample(
            languages=[r[0] or "unknown" for r in rows],
            prompt_tokens=[r[1] for r in rows],
            output_chars=[r[2] for r in rows],
            sources=[tuple(s for s in (r[3] or "").split(",") if s) for r in rows],
            empty_reasons=[r[4] or "answered" for r in rows],
            shown=shown,
            accepted=accepted,
        )

    def deployment_counts(self, deployment: str, since: float, *, slow_ms: float | None = None) -> DeploymentCounts:
        """What a rollout's guards read for one deployment since ``since``: requests, failures, slow answers,
        suggestions shown and accepted, retention checks and retained."""
        self.flush()
        served = self.conn.execute(
            f"SELECT count(*), coalesce(sum({_FAILED}), 0), "
            "coalesce(sum(CASE WHEN latency_ms > ? THEN 1 ELSE 0 END), 0) "
            "FROM completions WHERE deployment = ? AND served_at >= ?",
            (slow_ms if slow_ms is not None else float("inf"), deployment, since),
        ).fetchone()
        events = self.conn.execute(
            "SELECT coalesce(sum(CASE WHEN type = 'shown' THEN 1 ELSE 0 END), 0), "
            "coalesce(sum(CASE WHEN type IN ('accepted', 'partially_accepted') THEN 1 ELSE 0 END), 0), "
            "count(CASE WHEN type = 'retained' THEN retained_share END), "
            "coalesce(sum(CASE WHEN type = 'retained' AND retained_share >= 0.5 THEN 1 ELSE 0 END), 0) "
            "FROM events WHERE deployment = ? AND received_at >= ?",
            (deployment, since),
        ).fetchone()
        return DeploymentCounts(served[0], served[1], served[2], events[0], events[1], events[2], events[3])

    def _hour_of(self, column: str) -> str:
        """The hour ``column`` (seconds since the epoch) falls in, as an integer: floored on both engines
        (PostgreSQL's cast rounds)."""
        if self.dialect == "postgresql":
            return f"CAST(floor({column} / 3600) AS BIGINT)"
        return f"CAST({column} / 3600 AS INTEGER)"

    def mode_changes(self, limit: int = 20) -> list[ModeChange]:
        rows = self.conn.execute("SELECT * FROM mode_changes ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [ModeChange(r["at"], r["mode"], r["reason"], json.loads(r["burn"])) for r in rows]

    def query_plans(self) -> dict[str, list[str]]:
        """The engine's plan for each aggregation query (the benchmark prints them: they must use the indexes)."""
        queries = {
            "acceptance": "SELECT deployment, model, language, mode, template_version, type, sum(events) "
            "FROM event_hours WHERE hour >= 0 AND hour < 1e9 AND type != 'retained' "
            "GROUP BY deployment, model, language, mode, template_version, type",
            "acceptance_edges": "SELECT deployment, model, language, mode, template_version, type, count(*) "
            "FROM events WHERE received_at >= 0 AND received_at < 3600 AND type != 'retained' "
            "GROUP BY deployment, model, language, mode, template_version, type",
            "retention": "SELECT after_s, count(retained_share), avg(retained_share) FROM events "
            "WHERE type = 'retained' AND received_at >= 0 AND received_at < 1e12 GROUP BY after_s",
            "latency": "SELECT latency_ms FROM completions WHERE served_at >= 0 AND served_at < 1e12",
            "acceptance_series": "SELECT hour, sum(events) FROM event_hours WHERE hour >= 0 AND hour < 1e9 "
            "GROUP BY hour ORDER BY hour",
            "retention_series": "SELECT CAST(received_at / 3600 AS INTEGER) AS hour, count(retained_share) "
            "FROM events WHERE type = 'retained' AND received_at >= 0 AND received_at < 1e12 GROUP BY hour",
            "requests_series": "SELECT CAST(served_at / 3600 AS INTEGER) AS hour, count(*) FROM completions "
            "WHERE served_at >= 0 AND served_at < 1e12 GROUP BY hour",
            "rollout_counts": "SELECT count(*) FROM completions WHERE deployment = 'canary' AND served_at >= 0",
        }
        if self.dialect == "postgresql":
            return {name: [str(r[0]) for r in self.conn.execute("EXPLAIN " + sql)] for name, sql in queries.items()}
        return {
            name: [str(r["detail"]) for r in self.conn.execute("EXPLAIN QUERY PLAN " + sql)]
            for name, sql in queries.items()
        }

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._writer is not None:
            self._writer.join(timeout=5)
        if not self._closed:
            try:
                self.flush()
            except DatabaseUnavailable as exc:  # shutting down while the shared server is away: say what is lost
                _log.warning("%d completions not written at shutdown: %s", len(self._pending), exc.one_line())
        super().close()
