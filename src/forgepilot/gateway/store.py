"""The gateway's own SQLite database: API keys, stored hashed.

Its ``events`` table is legacy: events now live in the monitor's database (``forgepilot.monitor``), which copies
an older gateway's events over once, the first time it opens next to it.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import time
from dataclasses import dataclass
from typing import Literal

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
    ),
    (
        2,
        "a role per key: read (the API and the dashboard's pages) or admin (also the dashboard's actions)",
        """
        -- Keys made before roles existed could do everything: they stay admin.
        ALTER TABLE api_keys ADD COLUMN role TEXT NOT NULL DEFAULT 'admin';
        """,
    ),
]


def hash_key(key: str) -> str:
    # API keys are 190-bit random strings: a fast hash is enough (nothing to brute-force), and lookups stay O(1).
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


Role = Literal["read", "admin"]
ROLES: tuple[Role, ...] = ("read", "admin")


@dataclass(frozen=True)
class ApiKey:
    name: str
    hint: str
    rate_per_minute: int | None
    created_at: float
    revoked_at: float | None
    last_used_at: float | None
    role: Role = "admin"


class GatewayStore(SqliteStore):
    MIGRATIONS = MIGRATIONS

    # -- keys ---------------------------------------------------------------------------------------------
    def create_key(self, name: str, rate_per_minute: int | None = None, role: str = "read") -> str:
        """Create a key named ``name`` and return it; only its hash is stored, so it cannot be shown again."""
        if not name.strip():
            raise UserError("an API key needs a name", hint="forgepilot keys create NAME")
        if role not in ROLES:
            raise UserError(f"unknown role {role!r}", hint=f"one of: {', '.join(ROLES)}")
        key = KEY_PREFIX + secrets.token_urlsafe(24)
        with self._lock:
            try:
                self.conn.execute(
                    "INSERT INTO api_keys(name, hash, hint, rate_per_minute, created_at, role) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (name, hash_key(key), key[:7], rate_per_minute, time.time(), role),
                )
            except sqlite3.IntegrityError:
                raise UserError(f"an API key named {name!r} exists", hint="pick another name or revoke it") from None
        return key

    def keys(self) -> list[ApiKey]:
        return [
            ApiKey(
                r["name"],
                r["hint"],
                r["rate_per_minute"],
                r["created_at"],
                r["revoked_at"],
                r["last_used_at"],
                r["role"],
            )  # fmt: skip
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
        return ApiKey(
            row["name"], row["hint"], row["rate_per_minute"], row["created_at"], None, row["last_used_at"], row["role"]
        )

    def has_keys(self) -> bool:
        return self.conn.execute("SELECT 1 FROM api_keys WHERE revoked_at IS NULL LIMIT 1").fetchone() is not None
