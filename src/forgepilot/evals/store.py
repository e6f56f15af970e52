"""The evaluation database (``STATE/evals.db``): runs, per-case results, and the generation cache.

A run row holds its configuration (model and its identity, template versions, context settings, generation
parameters), the suite's hash and, once finished, its summary. Results are written one case at a time as they
finish, so an interrupted run keeps what it did and resumes with the rest. Generations are cached by a hash of
everything that determines them (model identity, the exact rendered request, sampling parameters), so a resumed or
repeated run never pays twice for the same model call.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forgepilot.db import DatabaseStore, Migration, store_location
from forgepilot.errors import UserError

MIGRATIONS: list[Migration] = [
    (
        1,
        "evaluation runs, results and generation cache",
        """
        CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            identity TEXT NOT NULL,        -- hash of suite + model identity + configuration: same identity, same run
            suite TEXT NOT NULL,
            suite_kind TEXT NOT NULL,
            suite_sha256 TEXT NOT NULL,
            model TEXT NOT NULL,
            label TEXT,
            status TEXT NOT NULL,          -- running | interrupted | complete | failed
            config TEXT NOT NULL,          -- JSON
            summary TEXT,                  -- JSON, once complete
            cases_total INTEGER NOT NULL,
            created_at REAL NOT NULL,
            finished_at REAL
        );
        CREATE INDEX runs_identity ON runs(identity, created_at);
        CREATE TABLE results (
            run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            case_id TEXT NOT NULL,
            position INTEGER NOT NULL,     -- the case's place in the suite
            status TEXT NOT NULL,          -- ok | error
            score REAL,                    -- the case's headline figure (pass@1, edit similarity, correctness)
            data TEXT NOT NULL,            -- JSON: samples, metrics, latency, tokens, cost, slices
            PRIMARY KEY (run_id, case_id)
        );
        CREATE TABLE generations (
            key TEXT PRIMARY KEY,
            model TEXT NOT NULL,
            text TEXT NOT NULL,
            finish_reason TEXT NOT NULL,
            usage TEXT NOT NULL,           -- JSON
            timings TEXT NOT NULL,         -- JSON: first_token_s, total_s when generated
            cost_usd REAL,
            created_at REAL NOT NULL
        )
        """,
    )
]


#: The same tables on PostgreSQL.
PG_MIGRATIONS: list[Migration] = [
    (
        1,
        "evaluation runs, results and generation cache",
        """
        CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            identity TEXT NOT NULL,
            suite TEXT NOT NULL,
            suite_kind TEXT NOT NULL,
            suite_sha256 TEXT NOT NULL,
            model TEXT NOT NULL,
            label TEXT,
            status TEXT NOT NULL,
            config TEXT NOT NULL,
            summary TEXT,
            cases_total INTEGER NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            finished_at DOUBLE PRECISION
        );
        CREATE INDEX runs_identity ON runs(identity, created_at);
        CREATE TABLE results (
            run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            case_id TEXT NOT NULL,
            position INTEGER NOT NULL,
            status TEXT NOT NULL,
            score DOUBLE PRECISION,
            data TEXT NOT NULL,
            PRIMARY KEY (run_id, case_id)
        );
        CREATE TABLE generations (
            key TEXT PRIMARY KEY,
            model TEXT NOT NULL,
            text TEXT NOT NULL,
            finish_reason TEXT NOT NULL,
            usage TEXT NOT NULL,
            timings TEXT NOT NULL,
            cost_usd DOUBLE PRECISION,
            created_at DOUBLE PRECISION NOT NULL
        );
        """,
    )
]


@dataclass(frozen=True)
class RunRow:
    id: str
    identity: str
    suite: str
    suite_kind: str
    suite_sha256: str
    model: str
    label: str | None
    status: str
    config: dict[str, Any]
    summary: dict[str, Any] | None
    cases_total: int
    cases_done: int
    created_at: float
    finished_at: float | None

    def record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "identity": self.identity,
            "suite": self.suite,
            "suite_kind": self.suite_kind,
            "suite_sha256": self.suite_sha256,
            "model": self.model,
            "label": self.label,
            "status": self.status,
            "config": self.config,
            "summary": self.summary,
            "cases_total": self.cases_total,
            "cases_done": self.cases_done,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
        }


@dataclass(frozen=True)
class CachedGeneration:
    text: str
    finish_reason: str
    usage: dict[str, Any]
    timings: dict[str, Any]
    cost_usd: float | None


class EvalStore(DatabaseStore):
    MIGRATIONS = MIGRATIONS
    PG_MIGRATIONS = PG_MIGRATIONS
    SCHEMA = "fp_evals"

    # -- runs ---------------------------------------------------------------------------------------------
    def create_run(
        self,
        *,
        identity: str,
        suite: dict[str, Any],
        model: str,
        config: dict[str, Any],
        label: str | None = None,
    ) -> str:
        run_id = time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO runs(id, identity, suite, suite_kind, suite_sha256, model, label, status, config, "
                "cases_total, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?)",
                (
                    run_id,
                    identity,
                    suite["name"],
                    suite["kind"],
                    suite["sha256"],
                    model,
                    label,
                    json.dumps(config, sort_keys=True),
                    suite["cases"],
                    time.time(),
                ),
            )
        return run_id

    def _row(self, r: Any) -> RunRow:
        done = self.conn.execute("SELECT count(*) FROM results WHERE run_id = ?", (r["id"],)).fetchone()[0]
        return RunRow(
            r["id"],
            r["identity"],
            r["suite"],
            r["suite_kind"],
            r["suite_sha256"],
            r["model"],
            r["label"],
            r["status"],
            json.loads(r["config"]),
            json.loads(r["summary"]) if r["summary"] else None,
            r["cases_total"],
            done,
            r["created_at"],
            r["finished_at"],
        )

    def run(self, run_id: str) -> RunRow:
        r = self.conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if r is None:
            # A unique prefix is enough, as with git commits.
            rows = self.conn.execute("SELECT * FROM runs WHERE id LIKE ? || '%'", (run_id,)).fetchall()
            if len(rows) != 1:
                raise UserError(f"no evaluation run {run_id!r}", hint="see `forgepilot eval list`")
            r = rows[0]
        return self._row(r)

    def runs(self, limit: int = 50, suite: str | None = None) -> list[RunRow]:
        rows = self.conn.execute(
            "SELECT * FROM runs WHERE (CAST(? AS TEXT) IS NULL OR suite = ?) ORDER BY created_at DESC LIMIT ?",
            (suite, suite, limit),
        ).fetchall()
        return [self._row(r) for r in rows]

    def unfinished(self, identity: str) -> RunRow | None:
        """The latest run of ``identity`` that did not complete (a run to resume)."""
        r = self.conn.execute(
            "SELECT * FROM runs WHERE identity = ? AND status != 'complete' ORDER BY created_at DESC LIMIT 1",
            (identity,),
        ).fetchone()
        return self._row(r) if r is not None else None

    def set_status(self, run_id: str, status: str, summary: dict[str, Any] | None = None) -> None:
        with self.transaction() as conn:
            conn.execute(
                "UPDATE runs SET status = ?, summary = coalesce(?, summary), finished_at = ? WHERE id = ?",
                (status, json.dumps(summary) if summary is not None else None, time.time(), run_id),
            )

    # -- results ------------------------------------------------------------------------------------------
    def add_result(self, run_id: str, case_id: str, position: int, status: str, score: float | None, data: Any) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO results(run_id, case_id, position, status, score, data) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (run_id, case_id) DO UPDATE SET position = excluded.position, "
                "status = excluded.status, score = excluded.score, data = excluded.data",
                (run_id, case_id, position, status, score, json.dumps(data, ensure_ascii=False)),
            )

    def results(self, run_id: str) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT case_id, position, status, score, data FROM results WHERE run_id = ? ORDER BY position",
            (run_id,),
        ).fetchall()
        return [{"case_id": r[0], "position": r[1], "status": r[2], "score": r[3], **json.loads(r[4])} for r in rows]

    def done_cases(self, run_id: str) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT case_id FROM results WHERE run_id = ?", (run_id,))}

    # -- generation cache ---------------------------------------------------------------------------------
    def generation(self, key: str) -> CachedGeneration | None:
        r = self.conn.execute(
            "SELECT text, finish_reason, usage, timings, cost_usd FROM generations WHERE key = ?", (key,)
        ).fetchone()
        if r is None:
            return None
        return CachedGeneration(r[0], r[1], json.loads(r[2]), json.loads(r[3]), r[4])

    def put_generation(self, key: str, model: str, gen: CachedGeneration) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO generations(key, model, text, finish_reason, usage, timings, cost_usd, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET model = excluded.model, "
                "text = excluded.text, finish_reason = excluded.finish_reason, usage = excluded.usage, "
                "timings = excluded.timings, cost_usd = excluded.cost_usd, created_at = excluded.created_at",
                (
                    key,
                    model,
                    gen.text,
                    gen.finish_reason,
                    json.dumps(gen.usage),
                    json.dumps(gen.timings),
                    gen.cost_usd,
                    time.time(),
                ),
            )


def evals_db(state_dir: Path, database_url: str | None = None) -> Path | str:
    """Where the evaluation store lives: ``STATE/evals.db``, or the shared database at ``database_url``."""
    return store_location(state_dir, "evals.db", database_url)


def open_store(state_dir: Path, database_url: str | None = None) -> EvalStore:
    return EvalStore(evals_db(state_dir, database_url))
