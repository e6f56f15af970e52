"""The gateway's own SQLite database: API keys (hashed) and telemetry events (acknowledged after commit)."""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from forgepilot.db import Migration, SqliteStore
from forgepilot.errors import UserError

KEY_PREFIX = "fp-"

MIGRATIONS: list[Migration] = [
    (
        1,
        "api keys and telemetry events",
        """
        CREATE TABLE api_keys (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            hash TEXT NOT NULL UNIQUE,     -- sha256 of the key (the key itself is shown once, never stored)
            hint TEXT NOT NULL,            -- the key's first characters, to tell keys apart in listings
            rate_per_minute INTEGER,       -- NULL: the gateway default
            created_at REAL NOT NULL,
            revoked_at REAL,
            last_used_at REAL
        );
        CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            received_at REAL NOT NULL,
            type TEXT NOT NULL,            -- shown | accepted | rejected | partially_accepted
            completion_id TEXT,
            api_key TEXT,                  -- the key's name, or NULL without auth
            model TEXT,
            mode TEXT,
            language TEXT,
            template_id TEXT,
            template_version TEXT,
            shown_chars INTEGER,
            accepted_chars INTEGER,
            latency_ms REAL,
            payload TEXT NOT NULL          -- the event as sent, JSON
        );
        CREATE INDEX events_type_time ON events(type, received_at);
        CREATE INDEX events_completion ON events(completion_id);
        """,
    )
]

EVENT_TYPES = ("shown", "accepted", "rejected", "partially_accepted")
_EVENT_COLUMNS = (
    "completion_id",
    "model",
    "mode",
    "language",
    "template_id",
    "template_version",
    "shown_chars",
    "accepted_chars",
    "latency_ms",
)


def hash_key(key: str) -> str:
    # API keys are 190-bit random strings: a fast hash is enough (nothing to brute-force), and lookups stay O(1).
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    name: str
    hint: str
    rate_per_minute: int | None
    created_at: float
    revoked_at: float | None
    last_used_at: float | None


class GatewayStore(SqliteStore):
    MIGRATIONS = MIGRATIONS

    # -- keys ---------------------------------------------------------------------------------------------
    def create_key(self, name: str, rate_per_minute: int | None = None) -> str:
        """Create a key named ``name`` and return it; only its hash is stored, so it cannot be shown again."""
        if not name.strip():
            raise UserError("an API key needs a name", hint="forgepilot keys create NAME")
        key = KEY_PREFIX + secrets.token_urlsafe(24)
        with self._lock:
            try:
                self.conn.execute(
                    "INSERT INTO api_keys(name, hash, hint, rate_per_minute, created_at) VALUES (?, ?, ?, ?, ?)",
                    (name, hash_key(key), key[:7], rate_per_minute, time.time()),
                )
            except sqlite3.IntegrityError:
                raise UserError(f"an API key named {name!r} exists", hint="pick another name or revoke it") from None
        return key

    def keys(self) -> list[ApiKey]:
        return [
            ApiKey(r["name"], r["hint"], r["rate_per_minute"], r["created_at"], r["revoked_at"], r["last_used_at"])
            for r in self.conn.execute("SELECT * FROM api_keys ORDER BY created_at")
        ]

    def revoke(self, name: str) -> None:
        with self._lock:
            cur = self.conn.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL", (time.time(), name)
            )
        if cur.rowcount == 0:
            raise UserError(f"no active API key named {name!r}", hint="see `forgepilot keys list`")

    def verify(self, key: str) -> ApiKey | None:
        """The active key ``key`` is, or None."""
        row = self.conn.execute(
            "SELECT * FROM api_keys WHERE hash = ? AND revoked_at IS NULL", (hash_key(key),)
        ).fetchone()
        if row is None:
            return None
        return ApiKey(row["name"], row["hint"], row["rate_per_minute"], row["created_at"], None, row["last_used_at"])

    def has_keys(self) -> bool:
        return self.conn.execute("SELECT 1 FROM api_keys WHERE revoked_at IS NULL LIMIT 1").fetchone() is not None

    # -- events -------------------------------------------------------------------------------------------
    def record_events(self, events: Sequence[dict[str, Any]], api_key: str | None) -> int:
        """Write ``events`` in one transaction; returns only after the commit (the acknowledgement is durable)."""
        now = time.time()
        rows = [
            (now, e["type"], api_key, *(e.get(c) for c in _EVENT_COLUMNS), json.dumps(e, ensure_ascii=False))
            for e in events
        ]
        with self.transaction():
            self.conn.executemany(
                "INSERT INTO events(received_at, type, api_key, {}, payload) VALUES (?, ?, ?, {}, ?)".format(
                    ", ".join(_EVENT_COLUMNS), ", ".join("?" * len(_EVENT_COLUMNS))
                ),
                rows,
            )
        return len(rows)

    def event_counts(self) -> dict[str, int]:
        return {r[0]: r[1] for r in self.conn.execute("SELECT type, count(*) FROM events GROUP BY type")}
