"""The audit log (``STATE/audit.db``): append-only and hash-chained.

Each entry's hash covers its own fields and the previous entry's hash, so changing, removing or reordering any
entry breaks every hash after it. SQLite triggers refuse UPDATE and DELETE; someone who edits the file directly
still cannot fix the chain without every later hash changing, and the head (last sequence number and hash) is also
written to ``audit.head`` next to the database, so that cutting entries off the end is caught too.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from forgepilot.db import Connection, DatabaseStore, Migration

AuditAction = Literal[
    "key_created",
    "key_revoked",
    "promoted",
    "rolled_back",
    "rollout_started",
    "rollout_step",
    "rollout_paused",
    "rollout_resumed",
    "degraded",
    "recovered",
    "settings_changed",
    "auth_failed",
]

MIGRATIONS: list[Migration] = [
    (
        1,
        "hash-chained audit entries",
        """
        CREATE TABLE audit (
            seq INTEGER PRIMARY KEY,
            at REAL NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT NOT NULL,
            reason TEXT NOT NULL,
            details TEXT NOT NULL,         -- JSON, keys sorted
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL
        );
        CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN
            SELECT RAISE(ABORT, 'the audit log is append-only');
        END;
        CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN
            SELECT RAISE(ABORT, 'the audit log is append-only');
        END;
        """,
    )
]

#: The same on PostgreSQL; the head (last sequence number and hash) is a row of its own, written in each append's
#: transaction, where SQLite keeps it in a file beside the database.
PG_MIGRATIONS: list[Migration] = [
    (
        1,
        "hash-chained audit entries, append-only, with the chain's head",
        """
        CREATE TABLE audit (
            seq BIGINT PRIMARY KEY,
            at DOUBLE PRECISION NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT NOT NULL,
            reason TEXT NOT NULL,
            details TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL
        );
        CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'the audit log is append-only';
        END;
        $$;
        CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit
            FOR EACH ROW EXECUTE FUNCTION audit_append_only();
        CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
            FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
        CREATE TABLE audit_head (
            one INTEGER PRIMARY KEY CHECK (one = 1),
            seq BIGINT NOT NULL,
            hash TEXT NOT NULL
        );
        """,
    )
]

GENESIS = "0" * 64


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: float
    actor: str
    action: str
    target: str
    reason: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class AuditVerdict:
    ok: bool
    entries: int
    #: The first entry found wrong (None when ok), and what is wrong with it.
    seq: int | None = None
    problem: str | None = None


def entry_hash(
    prev_hash: str, seq: int, at: float, actor: str, action: str, target: str, reason: str, details: str
) -> str:
    body = json.dumps([prev_hash, seq, repr(at), actor, action, target, reason, details], ensure_ascii=False)
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def current_actor() -> str:
    """Who runs this command: the login name (a CLI action), or the process user when there is no terminal."""
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers)
        return f"uid:{os.getuid()}"


class AuditLog(DatabaseStore):
    MIGRATIONS = MIGRATIONS
    PG_MIGRATIONS = PG_MIGRATIONS
    SCHEMA = "fp_audit"

    @property
    def head_path(self) -> Path | None:
        """SQLite's head file (None on PostgreSQL, where the head is the ``audit_head`` row)."""
        return self.path.with_suffix(".head") if self.path is not None else None

    @property
    def _head_name(self) -> str:
        return self.head_path.name if self.head_path is not None else "the audit_head row"

    def append(
        self,
        action: AuditAction,
        *,
        actor: str,
        target: str = "",
        reason: str = "",
        details: dict[str, Any] | None = None,
    ) -> AuditEntry:
        """Add one entry at the end of the chain (serialised across processes by SQLite's write lock)."""
        text = json.dumps(details or {}, sort_keys=True, ensure_ascii=False, default=str)
        now = time.time()
        with self.transaction() as conn:
            last = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
            seq, prev = (last["seq"] + 1, last["hash"]) if last else (1, GENESIS)
            digest = entry_hash(prev, seq, now, actor, action, target, reason, text)
            conn.execute(
                "INSERT INTO audit(seq, at, actor, action, target, reason, details, prev_hash, hash) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (seq, now, actor, action, target, reason, text, prev, digest),
            )
            self._write_head(conn, seq, digest)
        return AuditEntry(seq, now, actor, action, target, reason, details or {}, prev, digest)

    def _write_head(self, conn: Connection, seq: int, digest: str) -> None:
        if self.head_path is None:
            conn.execute(
                "INSERT INTO audit_head(one, seq, hash) VALUES (1, ?, ?) "
                "ON CONFLICT (one) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
                (seq, digest),
            )
            return
        tmp = self.head_path.with_suffix(".head.tmp")
        tmp.write_text(f"{seq} {digest}\n", encoding="utf-8")
        os.replace(tmp, self.head_path)

    def _read_head(self) -> str | None:
        """The head as ``"SEQ HASH"``, or None when there is none."""
        if self.head_path is None:
            row = self.conn.execute("SELECT seq, hash FROM audit_head WHERE one = 1").fetchone()
            return f"{row[0]} {row[1]}" if row is not None else None
        return self.head_path.read_text(encoding="utf-8") if self.head_path.is_file() else None

    def entries(self, *, limit: int | None = None, action: str | None = None) -> list[AuditEntry]:
        """Entries newest first."""
        sql = "SELECT * FROM audit" + (" WHERE action = ?" if action else "") + " ORDER BY seq DESC"
        params: list[Any] = [action] if action else []
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [_entry(r) for r in self.conn.execute(sql, params)]

    def last(self, action: str) -> AuditEntry | None:
        found = self.entries(limit=1, action=action)
        return found[0] if found else None

    def verify(self) -> AuditVerdict:
        """Walk the chain from the first entry: every hash recomputed, every link and sequence number checked."""
        prev, expected, count = GENESIS, 1, 0
        for row in self.conn.execute("SELECT * FROM audit ORDER BY seq"):
            seq = row["seq"]
            if seq != expected:
                return AuditVerdict(False, count, expected, f"entry {expected} is missing (the next is {seq})")
            if row["prev_hash"] != prev:
                return AuditVerdict(False, count, seq, f"entry {seq} does not follow entry {seq - 1} (link broken)")
            digest = entry_hash(
                prev, seq, row["at"], row["actor"], row["action"], row["target"], row["reason"], row["details"]
            )
            if digest != row["hash"]:
                return AuditVerdict(False, count, seq, f"entry {seq} was changed after it was written (hash mismatch)")
            prev, expected, count = digest, expected + 1, count + 1
        return self._check_head(count, prev)

    def _check_head(self, count: int, last_hash: str) -> AuditVerdict:
        head = self._read_head()
        if head is None:
            return (
                AuditVerdict(True, count)
                if count == 0
                else AuditVerdict(
                    False, count, count, f"{self._head_name} is missing: the end of the log cannot be checked"
                )
            )
        seq_text, _, digest = head.strip().partition(" ")
        head_seq = int(seq_text) if seq_text.isdigit() else -1
        if head_seq > count:
            return AuditVerdict(False, count, count + 1, f"entries {count + 1}..{head_seq} were cut off the end")
        if head_seq != count or digest != last_hash:
            return AuditVerdict(False, count, head_seq, f"{self._head_name} does not match the last entry")
        return AuditVerdict(True, count)


def _entry(r: Any) -> AuditEntry:
    return AuditEntry(
        r["seq"],
        r["at"],
        r["actor"],
        r["action"],
        r["target"],
        r["reason"],
        json.loads(r["details"]),
        r["prev_hash"],
        r["hash"],
    )


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): value}


def record_settings(audit: AuditLog, settings: dict[str, Any], *, actor: str) -> AuditEntry | None:
    """Audit ``settings`` (a model dump) when they differ from the last ones audited: which keys, old and new.

    The first start records them all; an unchanged restart records nothing.
    """
    flat = _flatten(settings)
    digest = hashlib.sha256(json.dumps(flat, sort_keys=True, default=str).encode()).hexdigest()
    last = audit.last("settings_changed")
    before: dict[str, Any] = last.details.get("settings", {}) if last else {}
    if last is not None and last.details.get("sha256") == digest:
        return None
    changed = sorted(k for k in set(flat) | set(before) if flat.get(k) != before.get(k))
    return audit.append(
        "settings_changed",
        actor=actor,
        target="settings",
        reason="first start" if last is None else f"{len(changed)} settings changed",
        details={
            "sha256": digest,
            "changed": {k: [before.get(k), flat.get(k)] for k in changed} if last else {},
            "settings": flat,
        },
    )
