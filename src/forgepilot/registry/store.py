"""The registry (``STATE/registry.db``): what was built, measured, decided and deployed, and how they connect.

Entities are models (weights by hash, base or adapter), prompt template versions, datasets (card and its hash),
evaluation runs, gate decisions and deployments (an alias such as ``champion`` pointing at a model, prompt
versions and context settings). Edges record lineage: a decision *evaluated* a model *on* runs, a dataset was
*built from* a repository commit, a deployment *was promoted by* a decision. Every entity has a stable id derived
from its content, so registering the same thing twice is one entry.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from forgepilot.db import DatabaseStore, Migration, store_location
from forgepilot.errors import UserError

EntityType = Literal["model", "candidate", "prompt", "dataset", "run", "decision", "deployment", "repository", "spec"]
ENTITY_TYPES: tuple[EntityType, ...] = (
    "model",
    "candidate",
    "prompt",
    "dataset",
    "run",
    "decision",
    "deployment",
    "repository",
    "spec",
)

MIGRATIONS: list[Migration] = [
    (
        1,
        "registry entities, lineage edges, deployments and their history",
        """
        CREATE TABLE entities (
            type TEXT NOT NULL,
            id TEXT NOT NULL,              -- content-derived (a hash) or the entity's own id (run ids, aliases)
            name TEXT NOT NULL,            -- what people call it: a model name, a template name@version, a path
            data TEXT NOT NULL,            -- JSON
            created_at REAL NOT NULL,
            PRIMARY KEY (type, id)
        );
        CREATE INDEX entities_name ON entities(type, name);
        CREATE TABLE edges (
            src_type TEXT NOT NULL,
            src_id TEXT NOT NULL,
            relation TEXT NOT NULL,        -- evaluated, used_prompt, built_from, trained_on, decided, deploys, ...
            dst_type TEXT NOT NULL,
            dst_id TEXT NOT NULL,
            created_at REAL NOT NULL,
            PRIMARY KEY (src_type, src_id, relation, dst_type, dst_id)
        );
        CREATE INDEX edges_dst ON edges(dst_type, dst_id);
        CREATE TABLE deployments (
            alias TEXT PRIMARY KEY,
            target TEXT NOT NULL,          -- JSON: model, prompt versions, context settings
            decision_id TEXT,              -- the passing gate decision that allowed it
            updated_at REAL NOT NULL
        );
        CREATE TABLE deployment_history (
            id INTEGER PRIMARY KEY,
            alias TEXT NOT NULL,
            target TEXT NOT NULL,
            decision_id TEXT,
            moved_at REAL NOT NULL
        )
        """,
    ),
    (
        2,
        "the gate spec pinned for each deployment alias",
        """
        CREATE TABLE alias_specs (
            alias TEXT PRIMARY KEY,
            spec_sha256 TEXT NOT NULL,     -- promotion to the alias needs a PASS under exactly this spec
            spec_path TEXT NOT NULL,
            pinned_at REAL NOT NULL
        )
        """,
    ),
    (
        3,
        "canary rollouts and their decisions",
        """
        CREATE TABLE rollouts (
            id TEXT PRIMARY KEY,
            spec TEXT NOT NULL,            -- JSON: the rollout spec as validated
            spec_sha256 TEXT NOT NULL,
            spec_path TEXT NOT NULL,
            champion TEXT NOT NULL,        -- JSON: the champion's target when the rollout started
            canary TEXT NOT NULL,          -- JSON: the canary's target
            step INTEGER NOT NULL,         -- index into the spec's shares
            share REAL NOT NULL,           -- the canary's share of users now (0 once it ends)
            state TEXT NOT NULL,           -- running | promoted | rolled_back | stopped
            reason TEXT NOT NULL,
            step_started_at REAL NOT NULL,
            started_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE INDEX rollouts_state ON rollouts(state, started_at);
        CREATE TABLE rollout_decisions (
            id INTEGER PRIMARY KEY,
            rollout_id TEXT NOT NULL REFERENCES rollouts(id),
            at REAL NOT NULL,
            action TEXT NOT NULL,          -- started | next_step | promoted | rolled_back | stopped | waiting
            step INTEGER NOT NULL,
            share REAL NOT NULL,
            reason TEXT NOT NULL,
            evidence TEXT NOT NULL         -- JSON: per guard, the counts, estimates and boundary of the test
        );
        CREATE INDEX rollout_decisions_rollout ON rollout_decisions(rollout_id, id);
        """,
    ),
]

#: The same tables on PostgreSQL (its own numbering: the schema as of SQLite's version 3).
PG_MIGRATIONS: list[Migration] = [
    (
        1,
        "entities, lineage edges, deployments, pinned specs, rollouts",
        """
        CREATE TABLE entities (
            type TEXT NOT NULL,
            id TEXT NOT NULL,
            name TEXT NOT NULL,
            data TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (type, id)
        );
        CREATE INDEX entities_name ON entities(type, name);
        CREATE TABLE edges (
            src_type TEXT NOT NULL,
            src_id TEXT NOT NULL,
            relation TEXT NOT NULL,
            dst_type TEXT NOT NULL,
            dst_id TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (src_type, src_id, relation, dst_type, dst_id)
        );
        CREATE INDEX edges_dst ON edges(dst_type, dst_id);
        CREATE TABLE deployments (
            alias TEXT PRIMARY KEY,
            target TEXT NOT NULL,
            decision_id TEXT,
            updated_at DOUBLE PRECISION NOT NULL
        );
        CREATE TABLE deployment_history (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            alias TEXT NOT NULL,
            target TEXT NOT NULL,
            decision_id TEXT,
            moved_at DOUBLE PRECISION NOT NULL
        );
        CREATE TABLE alias_specs (
            alias TEXT PRIMARY KEY,
            spec_sha256 TEXT NOT NULL,
            spec_path TEXT NOT NULL,
            pinned_at DOUBLE PRECISION NOT NULL
        );
        CREATE TABLE rollouts (
            id TEXT PRIMARY KEY,
            spec TEXT NOT NULL,
            spec_sha256 TEXT NOT NULL,
            spec_path TEXT NOT NULL,
            champion TEXT NOT NULL,
            canary TEXT NOT NULL,
            step INTEGER NOT NULL,
            share DOUBLE PRECISION NOT NULL,
            state TEXT NOT NULL,
            reason TEXT NOT NULL,
            step_started_at DOUBLE PRECISION NOT NULL,
            started_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL
        );
        CREATE INDEX rollouts_state ON rollouts(state, started_at);
        CREATE TABLE rollout_decisions (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            rollout_id TEXT NOT NULL REFERENCES rollouts(id),
            at DOUBLE PRECISION NOT NULL,
            action TEXT NOT NULL,
            step INTEGER NOT NULL,
            share DOUBLE PRECISION NOT NULL,
            reason TEXT NOT NULL,
            evidence TEXT NOT NULL
        );
        CREATE INDEX rollout_decisions_rollout ON rollout_decisions(rollout_id, id);
        """,
    ),
]

RolloutState = Literal["running", "paused", "promoted", "rolled_back", "stopped"]


@dataclass(frozen=True)
class Entity:
    type: str
    id: str
    name: str
    data: dict[str, Any]
    created_at: float

    def record(self) -> dict[str, Any]:
        return {"type": self.type, "id": self.id, "name": self.name, "data": self.data, "created_at": self.created_at}


@dataclass(frozen=True)
class Edge:
    src_type: str
    src_id: str
    relation: str
    dst_type: str
    dst_id: str


@dataclass(frozen=True)
class PinnedSpec:
    alias: str
    sha256: str
    path: str
    pinned_at: float


@dataclass(frozen=True)
class Deployment:
    alias: str
    target: dict[str, Any]
    decision_id: str | None
    updated_at: float


@dataclass(frozen=True)
class Rollout:
    id: str
    spec: dict[str, Any]
    spec_sha256: str
    spec_path: str
    champion: dict[str, Any]
    canary: dict[str, Any]
    step: int
    share: float
    state: RolloutState
    reason: str
    step_started_at: float
    started_at: float
    updated_at: float


@dataclass(frozen=True)
class RolloutDecision:
    rollout_id: str
    at: float
    action: str
    step: int
    share: float
    reason: str
    evidence: dict[str, Any]


def _rollout(r: Any) -> Rollout:
    return Rollout(
        r["id"], json.loads(r["spec"]), r["spec_sha256"], r["spec_path"], json.loads(r["champion"]),
        json.loads(r["canary"]), r["step"], r["share"], r["state"], r["reason"], r["step_started_at"],
        r["started_at"], r["updated_at"],
    )  # fmt: skip


def content_id(data: Any) -> str:
    """A stable id for JSON-able ``data`` (sorted keys): the same content is the same entity."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:20]


class Registry(DatabaseStore):
    MIGRATIONS = MIGRATIONS
    PG_MIGRATIONS = PG_MIGRATIONS
    SCHEMA = "fp_registry"

    # -- entities ------------------------------------------------------------------------------------------
    def put(self, type_: EntityType, id_: str, name: str, data: dict[str, Any]) -> Entity:
        """Register an entity (an existing id keeps its first registration time and gets the new data)."""
        now = time.time()
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO entities(type, id, name, data, created_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(type, id) DO UPDATE SET name = excluded.name, data = excluded.data",
                (type_, id_, name, json.dumps(data, sort_keys=True, default=str), now),
            )
        return self.get(type_, id_)

    def get(self, type_: str, id_: str) -> Entity:
        row = self.conn.execute("SELECT * FROM entities WHERE type = ? AND id = ?", (type_, id_)).fetchone()
        if row is None:
            rows = self.conn.execute(
                "SELECT * FROM entities WHERE type = ? AND (id LIKE ? || '%' OR name = ?) ORDER BY created_at DESC",
                (type_, id_, id_),
            ).fetchall()
            if not rows:
                raise UserError(f"no {type_} {id_!r} in the registry", hint=f"see `forgepilot registry ls {type_}`")
            if len({r["id"] for r in rows}) > 1 and not all(r["name"] == id_ for r in rows):
                raise UserError(f"{id_!r} names several {type_} entries", hint="give more of the id")
            row = rows[0]
        return Entity(row["type"], row["id"], row["name"], json.loads(row["data"]), row["created_at"])

    def find(self, type_: str, id_: str) -> Entity | None:
        try:
            return self.get(type_, id_)
        except UserError:
            return None

    def entities(self, type_: str | None = None, limit: int = 100) -> list[Entity]:
        rows = self.conn.execute(
            "SELECT * FROM entities WHERE (CAST(? AS TEXT) IS NULL OR type = ?) ORDER BY created_at DESC LIMIT ?",
            (type_, type_, limit),
        ).fetchall()
        return [Entity(r["type"], r["id"], r["name"], json.loads(r["data"]), r["created_at"]) for r in rows]

    # -- lineage -------------------------------------------------------------------------------------------
    def link(self, src: Entity | tuple[str, str], relation: str, dst: Entity | tuple[str, str]) -> None:
        s = (src.type, src.id) if isinstance(src, Entity) else src
        d = (dst.type, dst.id) if isinstance(dst, Entity) else dst
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO edges(src_type, src_id, relation, dst_type, dst_id, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (*s, relation, *d, time.time()),
            )

    def edges_from(self, type_: str, id_: str) -> list[Edge]:
        rows = self.conn.execute(
            "SELECT src_type, src_id, relation, dst_type, dst_id FROM edges WHERE src_type = ? AND src_id = ? "
            "ORDER BY relation, dst_type, dst_id",
            (type_, id_),
        ).fetchall()
        return [Edge(*r) for r in rows]

    def edges_to(self, type_: str, id_: str) -> list[Edge]:
        rows = self.conn.execute(
            "SELECT src_type, src_id, relation, dst_type, dst_id FROM edges WHERE dst_type = ? AND dst_id = ? "
            "ORDER BY relation, src_type, src_id",
            (type_, id_),
        ).fetchall()
        return [Edge(*r) for r in rows]

    def lineage(self, type_: str, id_: str, depth: int = 6) -> dict[str, Any]:
        """The tree of what ``(type, id)`` was made from or judged on, ``depth`` levels down."""
        entity = self.get(type_, id_)
        seen: set[tuple[str, str]] = set()

        def walk(e: Entity, level: int) -> dict[str, Any]:
            node: dict[str, Any] = {"type": e.type, "id": e.id, "name": e.name, "links": []}
            seen.add((e.type, e.id))
            if level >= depth:
                return node
            for edge in self.edges_from(e.type, e.id):
                child = self.find(edge.dst_type, edge.dst_id)
                if child is None or (child.type, child.id) in seen:
                    node["links"].append({"relation": edge.relation, "type": edge.dst_type, "id": edge.dst_id})
                    continue
                node["links"].append({"relation": edge.relation, **walk(child, level + 1)})
            return node

        return walk(entity, 0)

    # -- deployments ---------------------------------------------------------------------------------------
    def deployment(self, alias: str) -> Deployment | None:
        row = self.conn.execute("SELECT * FROM deployments WHERE alias = ?", (alias,)).fetchone()
        if row is None:
            return None
        return Deployment(row["alias"], json.loads(row["target"]), row["decision_id"], row["updated_at"])

    def deployments(self) -> list[Deployment]:
        return [
            Deployment(r["alias"], json.loads(r["target"]), r["decision_id"], r["updated_at"])
            for r in self.conn.execute("SELECT * FROM deployments ORDER BY alias")
        ]

    def history(self, alias: str) -> list[dict[str, Any]]:
        return [
            {"target": json.loads(r["target"]), "decision_id": r["decision_id"], "moved_at": r["moved_at"]}
            for r in self.conn.execute("SELECT * FROM deployment_history WHERE alias = ? ORDER BY id DESC", (alias,))
        ]

    def set_deployment(self, alias: str, target: dict[str, Any], decision_id: str | None) -> Deployment:
        """Point ``alias`` at ``target`` (callers check the gate first: see ``gates.promote``)."""
        with self.transaction() as conn:
            self._write_deployment(conn, alias, target, decision_id)
        entity = self.put("deployment", alias, alias, {"target": target, "decision_id": decision_id})
        if decision_id:
            self.link(entity, "promoted_by", ("decision", decision_id))
        return self.deployment(alias)  # type: ignore[return-value]

    @staticmethod
    def _write_deployment(conn: Any, alias: str, target: dict[str, Any], decision_id: str | None) -> None:
        """Point ``alias`` at ``target`` and add the move to its history, inside the caller's transaction."""
        now = time.time()
        payload = json.dumps(target, sort_keys=True)
        conn.execute(
            "INSERT INTO deployments(alias, target, decision_id, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(alias) DO UPDATE SET target = excluded.target, decision_id = excluded.decision_id, "
            "updated_at = excluded.updated_at",
            (alias, payload, decision_id, now),
        )
        conn.execute(
            "INSERT INTO deployment_history(alias, target, decision_id, moved_at) VALUES (?, ?, ?, ?)",
            (alias, payload, decision_id, now),
        )

    # -- pinned specs ----------------------------------------------------------------------------------------
    def pin_spec(self, alias: str, sha256: str, path: str) -> PinnedSpec:
        """Require a PASS under the spec with ``sha256`` for any promotion to ``alias`` (replaces an earlier pin)."""
        now = time.time()
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO alias_specs(alias, spec_sha256, spec_path, pinned_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(alias) DO UPDATE SET spec_sha256 = excluded.spec_sha256, "
                "spec_path = excluded.spec_path, pinned_at = excluded.pinned_at",
                (alias, sha256, path, now),
            )
        return PinnedSpec(alias, sha256, path, now)

    def pinned_spec(self, alias: str) -> PinnedSpec | None:
        row = self.conn.execute("SELECT * FROM alias_specs WHERE alias = ?", (alias,)).fetchone()
        if row is None:
            return None
        return PinnedSpec(row["alias"], row["spec_sha256"], row["spec_path"], row["pinned_at"])

    def latest_decision(self, candidate_ids: list[str], spec_sha256: str | None = None) -> Entity | None:
        """The newest decision that judged one of ``candidate_ids`` (under the spec ``spec_sha256``, when given)."""
        if not candidate_ids:
            return None
        marks = ",".join("?" * len(candidate_ids))
        rows = self.conn.execute(
            "SELECT e.* FROM edges g JOIN entities e ON e.type = 'decision' AND e.id = g.src_id "
            f"WHERE g.relation = 'judged' AND g.dst_type = 'candidate' AND g.dst_id IN ({marks}) "
            "ORDER BY e.created_at DESC",
            candidate_ids,
        ).fetchall()
        for r in rows:
            entity = Entity(r["type"], r["id"], r["name"], json.loads(r["data"]), r["created_at"])
            if spec_sha256 is None or entity.data.get("spec_sha256") == spec_sha256:
                return entity
        return None

    def candidates_named(self, name: str) -> list[str]:
        """Ids of the candidates of model ``name``, newest first."""
        rows = self.conn.execute(
            "SELECT id FROM entities WHERE type = 'candidate' AND name = ? ORDER BY created_at DESC", (name,)
        ).fetchall()
        return [str(r[0]) for r in rows]

    # -- rollouts --------------------------------------------------------------------------------------------
    def start_rollout(
        self, spec: dict[str, Any], spec_sha256: str, spec_path: str, champion: dict[str, Any], canary: dict[str, Any]
    ) -> Rollout:
        """Begin a rollout at its first step; refused while another one runs."""
        now = time.time()
        rollout_id = f"rollout-{content_id([spec_sha256, canary, now])[:12]}"
        share = float(spec["steps"][0])
        with self.transaction() as conn:
            running = conn.execute("SELECT id FROM rollouts WHERE state IN ('running', 'paused')").fetchone()
            if running is not None:
                raise UserError(
                    f"rollout {running['id']} is still running", hint="wait for it, or `forgepilot rollout stop`"
                )
            conn.execute(
                "INSERT INTO rollouts VALUES (?, ?, ?, ?, ?, ?, 0, ?, 'running', 'started', ?, ?, ?)",
                (
                    rollout_id, json.dumps(spec, sort_keys=True), spec_sha256, spec_path,
                    json.dumps(champion, sort_keys=True), json.dumps(canary, sort_keys=True), share, now, now, now,
                ),
            )  # fmt: skip
            self._decision(conn, rollout_id, "started", 0, share, f"canary at {share:.0%} of users", {})
        return self.rollout(rollout_id)

    def rollout(self, rollout_id: str) -> Rollout:
        row = self.conn.execute("SELECT * FROM rollouts WHERE id = ?", (rollout_id,)).fetchone()
        if row is None:
            raise UserError(f"no rollout {rollout_id!r}", hint="see `forgepilot rollout status`")
        return _rollout(row)

    def active_rollout(self) -> Rollout | None:
        row = self.conn.execute("SELECT * FROM rollouts WHERE state = 'running' LIMIT 1").fetchone()
        return _rollout(row) if row else None

    def paused_rollout(self) -> Rollout | None:
        row = self.conn.execute("SELECT * FROM rollouts WHERE state = 'paused' LIMIT 1").fetchone()
        return _rollout(row) if row else None

    def latest_rollout(self) -> Rollout | None:
        row = self.conn.execute("SELECT * FROM rollouts ORDER BY started_at DESC LIMIT 1").fetchone()
        return _rollout(row) if row else None

    def move_rollout(
        self,
        rollout_id: str,
        *,
        action: str,
        step: int,
        share: float,
        state: RolloutState,
        reason: str,
        evidence: dict[str, Any],
        promote: bool = False,
        from_state: RolloutState = "running",
    ) -> Rollout | None:
        """Record a decision and apply it in one transaction (the canary's share, the rollout's state, and when
        ``promote``, the champion alias moved to the canary's target); None when the rollout is no longer
        running (another process decided first: the first decision wins)."""
        now = time.time()
        with self.transaction() as conn:
            row = conn.execute("SELECT * FROM rollouts WHERE id = ? AND state = ?", (rollout_id, from_state)).fetchone()
            if row is None:
                return None
            new_step = step != row["step"] or from_state == "paused"  # a resumed step gathers its evidence anew
            conn.execute(
                "UPDATE rollouts SET step = ?, share = ?, state = ?, reason = ?, updated_at = ?, "
                "step_started_at = CASE WHEN ? THEN ? ELSE step_started_at END WHERE id = ?",
                (step, share, state, reason, now, new_step, now, rollout_id),
            )
            self._decision(conn, rollout_id, action, step, share, reason, evidence)
            if promote:
                self._write_deployment(conn, "champion", json.loads(row["canary"]), rollout_id)
        if promote:
            entity = self.put("deployment", "champion", "champion", {"target": json.loads(row["canary"])})
            self.link(entity, "promoted_by", ("rollout", rollout_id))
        return self.rollout(rollout_id)

    @staticmethod
    def _decision(
        conn: Any, rollout_id: str, action: str, step: int, share: float, reason: str, evidence: dict[str, Any]
    ) -> None:
        conn.execute(
            "INSERT INTO rollout_decisions(rollout_id, at, action, step, share, reason, evidence) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (rollout_id, time.time(), action, step, share, reason, json.dumps(evidence, sort_keys=True, default=str)),
        )

    def rollout_decisions(self, rollout_id: str) -> list[RolloutDecision]:
        rows = self.conn.execute(
            "SELECT * FROM rollout_decisions WHERE rollout_id = ? ORDER BY id", (rollout_id,)
        ).fetchall()
        return [
            RolloutDecision(r["rollout_id"], r["at"], r["action"], r["step"], r["share"], r["reason"],
                            json.loads(r["evidence"]))
            for r in rows
        ]  # fmt: skip

    def serving_version(self) -> tuple[float, float]:
        """Changes when a deployment or a rollout changes: what a serving process polls (one cheap query)."""
        row = self.conn.execute(
            "SELECT (SELECT coalesce(max(updated_at), 0) FROM deployments), "
            "(SELECT coalesce(max(updated_at), 0) FROM rollouts)"
        ).fetchone()
        return float(row[0]), float(row[1])

    def counts(self) -> dict[str, int]:
        return dict(self.conn.execute("SELECT type, count(*) FROM entities GROUP BY type").fetchall())


def open_registry(state_dir: Path, database_url: str | None = None) -> Registry:
    """The registry: ``STATE/registry.db``, or the shared database at ``database_url``."""
    return Registry(store_location(state_dir, "registry.db", database_url))
