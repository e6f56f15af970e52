"""What a gate run works with: the spec, the candidate (and champion) configurations, and their evaluation runs.

Every suite is run through the evaluation harness (the serving path, the generation cache, the eval store), so a
gate re-run after an edit to the spec costs only the model calls it has not made before.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from forgepilot.backends.base import Backend
from forgepilot.config import Settings
from forgepilot.context.types import SNIPPET_SOURCES
from forgepilot.errors import UserError
from forgepilot.evals import EvalRunner, GenerationParams, RunConfig, RunRow, Suite, load_suite
from forgepilot.evals.store import EvalStore
from forgepilot.gates.spec import Candidate, LoadedSpec
from forgepilot.index.indexer import Workspace
from forgepilot.registry.store import Registry
from forgepilot.sandbox import Sandbox

Status = Literal["PASS", "WARN", "FAIL"]


@dataclass
class CheckResult:
    name: str
    type: str
    status: Status
    reasons: list[str]
    evidence: dict[str, Any] = field(default_factory=dict)
    #: Evaluation runs the check read (ids), for lineage.
    runs: list[str] = field(default_factory=list)
    #: Inline SVG charts for the dossier.
    charts: list[str] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "status": self.status,
            "reasons": self.reasons,
            "evidence": self.evidence,
            "runs": self.runs,
        }


@dataclass(frozen=True)
class Target:
    """A configuration to evaluate: a model with context sources and generation parameters."""

    model: str
    sources: tuple[str, ...] = SNIPPET_SOURCES
    temperature: float = 0.0
    max_tokens: int | None = None

    def config(self, label: str | None = None, *, measure_latency: bool = False) -> RunConfig:
        return RunConfig(
            self.model,
            GenerationParams(n=1, temperature=self.temperature, max_tokens=self.max_tokens),
            self.sources,
            label=label,
            measure_latency=measure_latency,
        )

    def record(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "sources": list(self.sources),
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> Target:
        return cls(
            data["model"],
            tuple(data.get("sources", SNIPPET_SOURCES)),
            float(data.get("temperature", 0.0)),
            data.get("max_tokens"),
        )


def resolve_candidate(candidate: Candidate, settings: Settings, registry: Registry) -> Target:
    if candidate.alias:
        deployed = registry.deployment(candidate.alias)
        if deployed is None:
            raise UserError(f"no deployment named {candidate.alias!r}", hint="see `forgepilot registry ls deployment`")
        return Target.from_record(deployed.target)
    unknown = sorted(set(candidate.sources) - set(SNIPPET_SOURCES))
    if unknown:
        raise UserError(f"unknown context sources {unknown}", hint=f"choose from: {', '.join(SNIPPET_SOURCES)}")
    return Target(
        candidate.model or settings.assist.fast or settings.default_model,
        tuple(candidate.sources),
        candidate.temperature,
        candidate.max_tokens,
    )


class GateContext:
    def __init__(
        self,
        loaded: LoadedSpec,
        settings: Settings,
        store: EvalStore,
        registry: Registry,
        candidate: Target,
        *,
        workspace: Workspace | None = None,
        sandbox: Sandbox | None = None,
        preset: dict[str, Backend] | None = None,
        concurrency: int = 1,
    ) -> None:
        self.loaded = loaded
        self.spec = loaded.spec
        self.settings = settings
        self.store = store
        self.registry = registry
        self.candidate = candidate
        self.workspace = workspace
        self.sandbox = sandbox
        self.preset = preset or {}
        self.concurrency = concurrency
        self._suites: dict[str, Suite] = {}
        self._runs: dict[tuple[str, Target], RunRow] = {}
        #: Every text the candidate produced in this gate run (leakage of planted secrets is searched in all).
        self.outputs: list[str] = []
        self._indexed: set[str] = set()
        #: Suites a latency check reads: the candidate's runs of them call the model for every sample, so the
        #: latencies judged were measured in this gate run, on this machine (never replayed from the cache).
        self.measured_suites = {c.suite for c in self.spec.checks if c.type == "latency"}

    # -- suites and runs -----------------------------------------------------------------------------------
    def suite(self, key: str) -> Suite:
        if key not in self._suites:
            ref = self.spec.suites[key]
            self._suites[key] = load_suite(self.loaded.resolve(ref.suite)).limited(ref.limit)
            if ref.repos:
                self._index(ref.repos)
        return self._suites[key]

    def _index(self, repos: list[str]) -> None:
        from forgepilot.index.indexer import Indexer

        if self.workspace is None:
            self.workspace = Workspace(self.settings.state_dir / "index")
        for raw in repos:
            root = Path(self.loaded.resolve(raw))
            if str(root) in self._indexed:
                continue
            if not root.is_dir():
                raise UserError(f"repository {raw} of the gate spec is not a directory", hint="fix `repos` in the spec")
            Indexer(self.workspace, embeddings=self.settings.context.retrieved_vectors).index(root)
            self._indexed.add(str(root))

    def runner(self) -> EvalRunner:
        return EvalRunner(
            self.settings,
            self.store,
            workspace=self.workspace,
            sandbox=self.sandbox,
            preset=self.preset,
            concurrency=self.concurrency,
        )

    async def run(self, key: str, target: Target | None = None, suite: Suite | None = None) -> RunRow:
        """The run of suite ``key`` (or the given derived suite) for ``target`` (default: the candidate)."""
        target = target or self.candidate
        chosen = suite or self.suite(key)
        memo = (f"{key}:{chosen.sha256}", target)
        if memo not in self._runs:
            runner = self.runner()
            measure = target == self.candidate and suite is None and key in self.measured_suites
            config = target.config(label=f"gate {self.spec.name}: {chosen.name}", measure_latency=measure)
            try:
                row = await runner.run(chosen, config)
            finally:
                await runner.aclose()
            self._runs[memo] = row
            if target == self.candidate:
                self.outputs += [s.get("text", "") for r in self.store.results(row.id) for s in r.get("samples", [])]
        return self._runs[memo]

    def runs(self) -> list[RunRow]:
        return list(self._runs.values())

    def dataset_dir(self, ref: str | None) -> Path | None:
        chosen = ref or self.spec.candidate.dataset
        if chosen is None:
            return None
        path = Path(self.loaded.resolve(chosen))
        if not path.exists():
            raise UserError(f"dataset {chosen} of the gate spec does not exist", hint="build it with `dataset build`")
        return path


def candidate_id(target: Target, identity: dict[str, Any], templates: dict[str, str]) -> str:
    """The registry id of a candidate: its configuration with the model's weights and the prompt versions."""
    payload = {"target": target.record(), "model": identity, "templates": templates}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]
