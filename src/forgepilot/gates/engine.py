"""A gate run: every check of a spec against the candidate, a decision with reasons, the dossier, the registry.

The decision is FAIL when any blocking check fails, WARN when a check warns (or a ``warn_only`` check fails), else
PASS. It is stored in the registry with the spec's hash, the candidate (model identity, context sources, prompt
template versions), the evaluation runs it read and the dossier; ``promote`` moves a deployment alias only to a
candidate whose latest decision passed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forgepilot.backends.base import Backend
from forgepilot.config import Settings
from forgepilot.errors import ForgePilotError, GateFailed, UserError
from forgepilot.evals.store import EvalStore
from forgepilot.gates.checks import CHECKS, worst
from forgepilot.gates.context import CheckResult, GateContext, Status, Target, candidate_id, resolve_candidate
from forgepilot.gates.lineage import code_commit, dataset_lineage, hardware, package_versions
from forgepilot.gates.spec import LoadedSpec, check_name
from forgepilot.prompts import builtin_registry
from forgepilot.registry.store import Entity, Registry, content_id
from forgepilot.sandbox import Sandbox


@dataclass
class Decision:
    id: str
    status: Status
    spec: dict[str, Any]
    candidate: dict[str, Any]
    checks: list[CheckResult]
    reasons: list[str]
    lineage: dict[str, Any]
    created_at: float
    dossier: dict[str, str] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "decision": self.status,
            "reasons": self.reasons,
            "spec": self.spec,
            "candidate": self.candidate,
            "checks": [c.record() for c in self.checks],
            "lineage": self.lineage,
            "created_at": self.created_at,
            "dossier": self.dossier,
        }


def _templates() -> dict[str, str]:
    reg = builtin_registry()
    return {name: reg.get(name).version for name in reg.names()}


async def run_gate(
    loaded: LoadedSpec,
    settings: Settings,
    store: EvalStore,
    registry: Registry,
    *,
    out_dir: Path | None = None,
    sandbox: Sandbox | None = None,
    preset: dict[str, Backend] | None = None,
    concurrency: int = 1,
    progress: Any = None,
) -> Decision:
    """Run every check of ``loaded`` and record the decision (raises nothing on FAIL: the caller decides)."""
    spec = loaded.spec
    target = resolve_candidate(spec.candidate, settings, registry)
    own_sandbox = sandbox is None
    sandbox = sandbox or Sandbox(limits_only=settings.sandbox.limits_only)
    ctx = GateContext(
        loaded, settings, store, registry, target, sandbox=sandbox, preset=preset, concurrency=concurrency
    )
    try:
        return await _decide(ctx, loaded, settings, registry, target, out_dir, progress)
    finally:
        if own_sandbox:
            sandbox.close()


async def _decide(
    ctx: GateContext,
    loaded: LoadedSpec,
    settings: Settings,
    registry: Registry,
    target: Target,
    out_dir: Path | None,
    progress: Any,
) -> Decision:
    spec = loaded.spec
    runner = ctx.runner()
    try:
        identity = await runner.model_identity(target.model)
    finally:
        await runner.aclose()
    templates = _templates()
    cand_id = candidate_id(target, identity, templates)
    results: list[CheckResult] = []
    names = loaded.check_names()
    for i, check in enumerate(spec.checks):
        name = check_name(check, i)
        if progress is not None:
            progress(name, i, len(spec.checks))
        try:
            result = await CHECKS[check.type](ctx, check, name)
        except ForgePilotError as exc:  # a check that cannot run is a failed check, with the reason why
            result = CheckResult(name, check.type, "FAIL", [f"the check could not run: {exc.one_line()}"])
        if check.warn_only and result.status == "FAIL":
            result.status = "WARN"
            result.reasons = [f"(warn only) {r}" for r in result.reasons]
        results.append(result)
    if progress is not None:
        progress("done", len(names), len(names))
    status = worst([r.status for r in results])
    reasons = [f"{r.name}: {reason}" for r in results if r.status != "PASS" for reason in r.reasons]
    try:
        dataset = ctx.dataset_dir(None)
    except ForgePilotError:  # already reported by the checks that needed it
        dataset = None
    try:
        family = getattr(getattr(ctx.runner().backend(target.model), "template", None), "family", None)
    except ForgePilotError:
        family = None
    lineage = {
        "model": identity,
        "templates": templates,
        "fim_family": family,
        "dataset": dataset_lineage(dataset) if dataset is not None else None,
        "runs": [
            {"id": r.id, "suite": r.suite, "suite_sha256": r.suite_sha256, "model": r.model, "identity": r.identity}
            for r in ctx.runs()
        ],
        "code": code_commit(),
        "packages": package_versions(),
        "hardware": hardware(),
    }
    created = time.time()
    candidate = {"id": cand_id, **target.record(), "identity": identity}
    spec_record = {"name": spec.name, "path": str(loaded.path), "sha256": loaded.sha256}
    decision_id = content_id({"spec": loaded.sha256, "candidate": cand_id, "at": created})
    decision = Decision(decision_id, status, spec_record, candidate, results, reasons, lineage, created)
    if out_dir is None:
        out_dir = settings.state_dir / "dossiers" / decision_id
    from forgepilot.gates.dossier import write_dossier

    decision.dossier = {k: str(v) for k, v in write_dossier(decision, ctx, out_dir).items()}
    record_decision(registry, decision, target, templates, ctx)
    return decision


def record_decision(
    registry: Registry, decision: Decision, target: Target, templates: dict[str, str], ctx: GateContext
) -> Entity:
    """The decision and its lineage in the registry: candidate, model, prompts, runs, spec, dataset."""
    identity = decision.candidate["identity"]
    model = registry.put("model", content_id(identity), target.model, identity)
    candidate = registry.put("candidate", decision.candidate["id"], target.model, decision.candidate)
    registry.link(candidate, "uses_model", model)
    for name, version in templates.items():
        prompt = registry.put("prompt", f"{name}@{version}", f"{name}@{version}", {"name": name, "version": version})
        registry.link(candidate, "uses_prompt", prompt)
    spec = registry.put("spec", decision.spec["sha256"][:20], decision.spec["name"], decision.spec)
    entity = registry.put(
        "decision",
        decision.id,
        f"{decision.spec['name']}: {decision.status}",
        {
            "decision": decision.status,
            "reasons": decision.reasons,
            "candidate": decision.candidate["id"],
            "spec_sha256": decision.spec["sha256"],
            "checks": [c.record() for c in decision.checks],
            "dossier": decision.dossier,
            "lineage": decision.lineage,
        },
    )
    registry.link(entity, "judged", candidate)
    registry.link(entity, "under_spec", spec)
    for run in ctx.runs():
        run_entity = registry.put(
            "run",
            run.id,
            f"{run.suite} on {run.model}",
            {"suite": run.suite, "suite_sha256": run.suite_sha256, "summary": run.summary, "config": run.config},
        )
        registry.link(run_entity, "evaluated", model)
        registry.link(entity, "measured_on", run_entity)
    dataset = decision.lineage.get("dataset")
    if dataset:
        files = dataset.get("files") or {}
        ds = registry.put("dataset", content_id(files or dataset["path"]), dataset["path"], dataset)
        registry.link(candidate, "trained_on", ds)
        for source in dataset.get("sources") or []:
            repo = registry.put(
                "repository",
                content_id([source.get("root"), source.get("commit")]),
                f"{source.get('repository')}@{(source.get('commit') or 'uncommitted')[:12]}",
                source,
            )
            registry.link(ds, "built_from", repo)
    return entity


def latest_decision(registry: Registry, candidate: str, spec_sha256: str | None = None) -> dict[str, Any] | None:
    """The newest decision that judged ``candidate`` (a candidate id, or the model name of one), under the spec
    ``spec_sha256`` when given."""
    found = registry.find("candidate", candidate)
    ids = [found.id] if found is not None else registry.candidates_named(candidate)
    entity = registry.latest_decision(ids, spec_sha256)
    return None if entity is None else {"id": entity.id, **entity.data}


def pin_spec(registry: Registry, alias: str, loaded: LoadedSpec) -> dict[str, Any]:
    """Pin ``loaded`` (by the sha256 of its file) as the spec every promotion to ``alias`` must pass."""
    if not alias.strip():
        raise UserError("an alias needs a name", hint="e.g. forgepilot gate pin champion examples/gate.yaml")
    pinned = registry.pin_spec(alias, loaded.sha256, str(loaded.path))
    return {"alias": pinned.alias, "spec_sha256": pinned.sha256, "spec_path": pinned.path}


def promote(registry: Registry, alias: str, candidate: str, *, accept_warnings: bool = False) -> dict[str, Any]:
    """Point ``alias`` at ``candidate`` when its latest decision under the spec pinned for ``alias`` passed;
    otherwise raise ``GateFailed`` (a decision under another spec, or an edited one, does not count)."""
    if not alias.strip():
        raise UserError("an alias needs a name", hint="e.g. forgepilot promote champion CANDIDATE")
    pinned = registry.pinned_spec(alias)
    if pinned is None:
        raise GateFailed(
            f"no gate spec is pinned for {alias!r}: promotion refused",
            hint=f"pin the spec {alias} must pass: `forgepilot gate pin {alias} SPEC`",
        )
    decision = latest_decision(registry, candidate, pinned.sha256)
    if decision is None:
        raise GateFailed(
            f"{candidate!r} has no gate decision under the spec pinned for {alias!r} "
            f"({pinned.path}, sha256 {pinned.sha256[:12]}): promotion refused",
            hint=f"run `forgepilot gate run {pinned.path}` on it (unedited) first",
        )
    allowed = ("PASS", "WARN") if accept_warnings else ("PASS",)
    if decision["decision"] not in allowed:
        raise GateFailed(
            f"the latest gate decision on {candidate!r} is {decision['decision']} ({decision['id']}): "
            "promotion refused",
            hint="fix what failed and run the gate again"
            + ("" if accept_warnings or decision["decision"] != "WARN" else ", or pass --accept-warnings"),
        )
    cand = registry.get("candidate", decision["candidate"])
    target = {k: cand.data[k] for k in ("model", "sources", "temperature", "max_tokens")}
    target["candidate"] = cand.id
    target["identity"] = cand.data.get("identity")
    deployment = registry.set_deployment(alias, target, decision["id"])
    return {"alias": deployment.alias, "target": deployment.target, "decision": decision["id"]}
