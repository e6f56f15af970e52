"""The checks of a readiness spec, each a function from the gate context to a PASS / WARN / FAIL with evidence."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from forgepilot.assist import Assistant
from forgepilot.backends.resolve import model_identity
from forgepilot.datagen.dataset import Dataset, DatasetError
from forgepilot.evals import compare_results, metrics, plots
from forgepilot.evals.cache import CachingBackend
from forgepilot.evals.compare import BINARY, CASE_FIGURES
from forgepilot.evals.execution import check_program
from forgepilot.evals.suites import Case, Suite
from forgepilot.gates import probes
from forgepilot.gates.context import CheckResult, GateContext, Status, Target
from forgepilot.gates.perturb import perturb
from forgepilot.gates.spec import (
    ChampionCheck,
    InjectionCheck,
    LatencyCheck,
    LeakageCheck,
    MemorisationCheck,
    MetricCheck,
    OutOfDomainCheck,
    SlicesCheck,
    StabilityCheck,
)
from forgepilot.monitor.drift import DomainProfile
from forgepilot.sandbox import Sandbox


def worst(statuses: list[Status]) -> Status:
    return "FAIL" if "FAIL" in statuses else "WARN" if "WARN" in statuses else "PASS"


def _metric(summary: dict[str, Any] | None, name: str) -> float | None:
    value: Any = (summary or {}).get("metrics", {})
    for part in name.split("."):  # "shots.accuracy" reads a nested figure
        value = value.get(part) if isinstance(value, dict) else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _bound(value: float, *, low: float | None, high: float | None, warn_margin: float) -> tuple[Status, str]:
    if low is not None and value < low:
        status: Status = "WARN" if value >= low - warn_margin and warn_margin > 0 else "FAIL"
        return status, f"{value:.4g} is below the minimum {low:.4g}"
    if high is not None and value > high:
        status = "WARN" if value <= high + warn_margin and warn_margin > 0 else "FAIL"
        return status, f"{value:.4g} is above the maximum {high:.4g}"
    return "PASS", ""


# -- quality -------------------------------------------------------------------------------------------------
async def metric(ctx: GateContext, check: MetricCheck, name: str) -> CheckResult:
    run = await ctx.run(check.suite)
    value = _metric(run.summary, check.metric)
    if value is None:
        known = ", ".join(k for k, v in (run.summary or {}).get("metrics", {}).items() if not isinstance(v, dict))
        return CheckResult(
            name, check.type, "FAIL", [f"the run reports no {check.metric!r} (it has: {known})"], runs=[run.id]
        )
    status, why = _bound(value, low=check.min, high=check.max, warn_margin=check.warn_margin)
    evidence = {
        "suite": check.suite,
        "metric": check.metric,
        "value": value,
        "min": check.min,
        "max": check.max,
        "cases": (run.summary or {}).get("cases"),
        "errors": (run.summary or {}).get("errors"),
    }
    reasons = [f"{check.metric} on {check.suite}: {why}"] if why else [f"{check.metric} on {check.suite} = {value:.4g}"]
    return CheckResult(name, check.type, status, reasons, evidence, [run.id])


async def latency(ctx: GateContext, check: LatencyCheck, name: str) -> CheckResult:
    run = await ctx.run(check.suite)
    results = ctx.store.results(run.id)
    samples = [s for r in results for s in r.get("samples", [])]
    # Only latencies measured in this run count: a generation replayed from the cache carries the time it took
    # when (and where) it was first made.
    replayed = sum(1 for s in samples if s.get("cached") or s.get("latency_s") is None)
    if replayed:
        return CheckResult(
            name,
            check.type,
            "FAIL",
            [f"latency not measured: {replayed} of {len(samples)} requests were not timed in this run"],
            {"requests": len(samples), "not_measured": replayed},
            [run.id],
        )
    values = [float(s["latency_s"]) * 1000 for s in samples]
    if not values:
        return CheckResult(name, check.type, "FAIL", ["no request reached the model"], runs=[run.id])
    mean = sum(values) / len(values)
    p95 = metrics.percentile(values, 95)
    evidence: dict[str, Any] = {
        "requests": len(values),
        "mean_ms": mean,
        "p95_ms": p95,
        "p50_ms": metrics.percentile(values, 50),
        "p99_ms": metrics.percentile(values, 99),
    }
    fails: list[str] = []
    if check.mean_max_ms is not None and mean > check.mean_max_ms:
        fails.append(f"mean {mean:.0f} ms > {check.mean_max_ms:.0f} ms")
    if check.p95_max_ms is not None and p95 > check.p95_max_ms:
        fails.append(f"p95 {p95:.0f} ms > {check.p95_max_ms:.0f} ms")
    if check.over_ms is not None:
        share = sum(1 for v in values if v > check.over_ms) / len(values)
        evidence["share_over"] = share
        if share > check.max_share_over:
            fails.append(f"{share:.1%} of requests over {check.over_ms:.0f} ms > {check.max_share_over:.1%}")
    per_1000 = ((run.summary or {}).get("latency", {}).get("cost_usd") or {}).get("per_1000_requests")
    evidence["cost_per_1000_usd"] = per_1000
    if check.cost_per_1000_max_usd is not None:
        if per_1000 is None:
            fails.append("the model has no price: cost per 1,000 requests is unknown")
        elif per_1000 > check.cost_per_1000_max_usd:
            fails.append(f"cost per 1,000 requests {per_1000:.4g} USD > {check.cost_per_1000_max_usd:.4g} USD")
    charts = []
    if plots.available():
        marks = {"mean": mean, "p95": p95}
        if check.over_ms is not None:
            marks["bound"] = check.over_ms
        charts.append(plots.histogram(values, title=f"latency on {check.suite}", xlabel="ms", marks=marks))
    ok = f"mean {mean:.0f} ms, p95 {p95:.0f} ms over {len(values)} requests"
    return CheckResult(name, check.type, "FAIL" if fails else "PASS", fails or [ok], evidence, [run.id], charts)


async def slices(ctx: GateContext, check: SlicesCheck, name: str) -> CheckResult:
    run = await ctx.run(check.suite)
    groups = (run.summary or {}).get("slices", {}).get(check.by)
    if not groups:
        return CheckResult(name, check.type, "FAIL", [f"the suite's cases carry no {check.by!r} slice"], runs=[run.id])
    table = {v: {"cases": st["cases"], check.metric: st.get(check.metric)} for v, st in groups.items()}
    judged = {
        v: float(st[check.metric])
        for v, st in table.items()
        if st["cases"] >= check.min_cases and st[check.metric] is not None
    }
    fails: list[str] = []
    if not judged:
        return CheckResult(
            name,
            check.type,
            "WARN",
            [f"no {check.by} slice has {check.min_cases} cases to judge"],
            {"slices": table},
            [run.id],
        )
    if check.min is not None:
        for v, x in sorted(judged.items()):
            if x < check.min:
                fails.append(f"{check.by}={v}: {check.metric} {x:.4g} < {check.min:.4g}")
    gap = max(judged.values()) - min(judged.values())
    if check.max_gap is not None and gap > check.max_gap:
        lo = min(judged, key=lambda k: judged[k])
        hi = max(judged, key=lambda k: judged[k])
        fails.append(f"gap {gap:.4g} between {check.by}={hi} and {check.by}={lo} > {check.max_gap:.4g}")
    charts = []
    if plots.available():
        charts.append(
            plots.bars(
                {v: {check.metric: x} for v, x in judged.items()},
                title=f"{check.metric} by {check.by}",
                ylabel=check.metric,
                limit=check.min,
            )
        )
    evidence = {"by": check.by, "metric": check.metric, "slices": table, "gap": gap, "min_cases": check.min_cases}
    ok = f"{len(judged)} {check.by} slices judged, gap {gap:.4g}"
    return CheckResult(name, check.type, "FAIL" if fails else "PASS", fails or [ok], evidence, [run.id], charts)


# -- stability -----------------------------------------------------------------------------------------------
def perturbed_suite(suite: Suite, kind: str, sandbox: Sandbox) -> tuple[Suite, dict[str, int]]:
    """``suite`` with each case's prompt perturbed by ``kind``, keeping only the cases whose perturbed canonical
    solution still passes the tests (the proof that the edit preserved the meaning)."""
    edited: list[Case] = []
    originals: list[Case] = []
    unchanged = 0
    for case in suite.cases:
        if case.kind != "functional" or not case.canonical:
            continue
        p = perturb(kind, case.input["prompt"], case.canonical)
        if not p.changed:
            unchanged += 1
            continue
        edited.append(replace(case, input={**case.input, "prompt": p.prompt}, canonical=p.solution))
        originals.append(case)
    programs = [check_program(c, c.canonical, key=c.id) for c in edited]
    programs += [check_program(c, c.canonical, key=c.id) for c in originals]
    outcomes = list(sandbox.run_many(programs))
    kept = [
        c
        for c, a, b in zip(edited, outcomes[: len(edited)], outcomes[len(edited) :], strict=True)
        if a.passed and b.passed
    ]
    counts = {"changed": len(edited), "unchanged": unchanged, "kept": len(kept), "broken": len(edited) - len(kept)}
    digest = f"{suite.sha256}~{kind}~{','.join(c.id for c in kept)}"
    sha = hashlib.sha256(digest.encode()).hexdigest()
    return Suite(f"{suite.name}~{kind}", suite.kind, kept, suite.source, sha, f"{suite.description} ({kind})"), counts


async def stability(ctx: GateContext, check: StabilityCheck, name: str) -> CheckResult:
    base_suite = ctx.suite(check.suite)
    if base_suite.kind != "functional":
        return CheckResult(
            name,
            check.type,
            "FAIL",
            [f"suite {check.suite} is not functional (no tests to prove an edit kept the meaning)"],
        )
    # run_gate always gives one; a bare context makes its own
    sandbox = ctx.sandbox or Sandbox(limits_only=ctx.settings.sandbox.limits_only)
    base = await ctx.run(check.suite)
    base_by_case = {r["case_id"]: r for r in ctx.store.results(base.id)}
    rows: dict[str, dict[str, Any]] = {}
    fails: list[str] = []
    run_ids = [base.id]
    for kind in check.perturbations:
        suite, counts = await asyncio.to_thread(perturbed_suite, base_suite, kind, sandbox)
        row: dict[str, Any] = dict(counts)
        if not suite.cases:
            row.update(base=None, perturbed=None, drop=None)
            rows[kind] = row
            continue
        run = await ctx.run(check.suite, suite=suite)
        run_ids.append(run.id)
        ids = [c.id for c in suite.cases]
        base_value = sum(_case_score(base_by_case.get(i)) for i in ids) / len(ids)
        new_value = _metric(run.summary, check.metric)
        drop = base_value - (new_value or 0.0)
        row.update(base=base_value, perturbed=new_value, drop=drop, run=run.id)
        rows[kind] = row
        if drop > check.max_drop:
            fails.append(
                f"{kind}: {check.metric} drops {drop:.4g} ({base_value:.4g} -> {new_value:.4g}) on "
                f"{len(ids)} edited cases > {check.max_drop:.4g}"
            )
    judged = [k for k, r in rows.items() if r.get("drop") is not None]
    if not judged:
        return CheckResult(
            name, check.type, "WARN", ["no perturbation changed a case"], {"perturbations": rows}, run_ids
        )
    ok = ", ".join(f"{k} {rows[k]['drop']:+.3f}" for k in judged)
    return CheckResult(
        name,
        check.type,
        "FAIL" if fails else "PASS",
        fails or [f"drops: {ok}"],
        {"metric": check.metric, "max_drop": check.max_drop, "perturbations": rows},
        run_ids,
    )


def _case_score(result: dict[str, Any] | None) -> float:
    if result is None or result.get("status") == "error":
        return 0.0
    n, c = result.get("n", 0), result.get("c", 0)
    return c / n if n else 0.0


# -- security probes -----------------------------------------------------------------------------------------
def _assistant(ctx: GateContext, target: Target) -> Assistant:
    runner = ctx.runner()
    inner = runner.backend(target.model)
    identity = json.dumps(model_identity(target.model, ctx.settings), sort_keys=True)
    cached = CachingBackend(inner, ctx.store, identity)
    settings = runner.settings_for(target.config())
    return Assistant(settings, workspace=None, preset={target.model: cached})


async def injection(ctx: GateContext, check: InjectionCheck, name: str) -> CheckResult:
    assistant = _assistant(ctx, ctx.candidate)
    try:
        outcomes = await probes.injection(assistant, ctx.candidate.model, seed=ctx.loaded.sha256[:8])
    finally:
        await assistant.aclose()
    ctx.outputs += [o.output for o in outcomes]
    followed = [o for o in outcomes if o.hit]
    share = len(followed) / len(outcomes)
    evidence = {"probes": [o.record() for o in outcomes], "followed": len(followed), "share": share}
    if share > check.max_followed:
        return CheckResult(
            name,
            check.type,
            "FAIL",
            [
                f"{len(followed)} of {len(outcomes)} planted instructions "
                f"were followed ({', '.join(o.probe for o in followed)})"
            ],
            evidence,
        )
    return CheckResult(
        name, check.type, "PASS", [f"{len(followed)} of {len(outcomes)} planted instructions followed"], evidence
    )


async def leakage(ctx: GateContext, check: LeakageCheck, name: str) -> CheckResult:
    assistant = _assistant(ctx, ctx.candidate)
    try:
        outcomes, planted = await probes.leakage(assistant, ctx.candidate.model, seed=ctx.loaded.sha256[:8])
    finally:
        await assistant.aclose()
    ctx.outputs += [o.output for o in outcomes]
    leaks = [f"{o.probe}: a context canary in the output" for o in outcomes if o.hit]
    for canary in check.canaries:
        n = sum(1 for text in ctx.outputs if canary in text)
        if n:
            leaks.append(f"training canary {canary[:6]}... appears in {n} outputs")
    evidence = {
        "probes": [o.record() for o in outcomes],
        "context_canaries": len(planted),
        "training_canaries": len(check.canaries),
        "outputs_searched": len(ctx.outputs),
        "leaks": leaks,
    }
    if len(leaks) > check.max_leaks:
        return CheckResult(name, check.type, "FAIL", leaks, evidence)
    return CheckResult(name, check.type, "PASS", [f"no canary in {len(ctx.outputs)} outputs"], evidence)


async def memorisation(ctx: GateContext, check: MemorisationCheck, name: str) -> CheckResult:
    dataset = ctx.dataset_dir(check.dataset)
    if dataset is None:
        return CheckResult(name, check.type, "WARN", ["no training dataset named: memorisation not measured"])
    rows = probes.training_texts(dataset)
    assistant = _assistant(ctx, ctx.candidate)
    try:
        outcomes = await probes.memorisation(
            assistant, ctx.candidate.model, rows, samples=check.samples, min_chars=check.min_chars
        )
    finally:
        await assistant.aclose()
    ctx.outputs += [o.output for o in outcomes]
    if not outcomes:
        return CheckResult(name, check.type, "WARN", ["the dataset has no block instances long enough to probe"])
    hits = [o for o in outcomes if o.hit]
    share = len(hits) / len(outcomes)
    evidence = {
        "dataset": str(dataset),
        "probed": len(outcomes),
        "memorised": len(hits),
        "share": share,
        "min_chars": check.min_chars,
        "examples": [o.record() for o in hits[:5]],
    }
    why = f"{len(hits)} of {len(outcomes)} training prefixes completed verbatim ({share:.1%})"
    if share > check.max_share:
        return CheckResult(name, check.type, "FAIL", [f"{why} > {check.max_share:.1%}"], evidence)
    return CheckResult(name, check.type, "PASS", [why], evidence)


# -- champion and out-of-domain ------------------------------------------------------------------------------
async def champion(ctx: GateContext, check: ChampionCheck, name: str) -> CheckResult:
    deployed = ctx.registry.deployment(check.alias)
    if deployed is None:
        return CheckResult(name, check.type, "WARN", [f"no {check.alias!r} deployment to compare with (first release)"])
    champ = Target.from_record(deployed.target)
    challenger = await ctx.run(check.suite)
    incumbent = await ctx.run(check.suite, champ)
    kind = challenger.suite_kind
    figure = check.metric or BINARY[kind]
    if figure not in CASE_FIGURES[kind]:
        return CheckResult(
            name,
            check.type,
            "FAIL",
            [f"{figure!r} is not a per-case figure of {kind} suites (one of: {', '.join(CASE_FIGURES[kind])})"],
        )
    result = compare_results(
        kind, ctx.store.results(incumbent.id), ctx.store.results(challenger.id), confidence=check.confidence
    )
    iv = result["intervals"][figure]
    evidence = {
        "champion": deployed.target,
        "figure": figure,
        "interval": iv,
        "mcnemar": result["mcnemar"],
        "margin": check.margin,
        "paired_cases": result["paired_cases"],
    }
    text = (
        f"{figure}: challenger - champion = {iv['diff']:+.4g}, {iv['confidence']:.0%} interval "
        f"[{iv['low']:+.4g}, {iv['high']:+.4g}], margin -{check.margin:.4g}; McNemar p = "
        f"{result['mcnemar']['p_value']:.3g}"
    )
    runs = [challenger.id, incumbent.id]
    if iv["low"] > -check.margin:
        return CheckResult(name, check.type, "PASS", [f"non-inferior: {text}"], evidence, runs)
    if iv["diff"] >= -check.margin:
        return CheckResult(
            name, check.type, "WARN", [f"not shown non-inferior (too few cases): {text}"], evidence, runs
        )
    return CheckResult(name, check.type, "FAIL", [f"inferior: {text}"], evidence, runs)


async def out_of_domain(ctx: GateContext, check: OutOfDomainCheck, name: str) -> CheckResult:
    dataset = ctx.dataset_dir(check.dataset)
    if dataset is None:
        return CheckResult(name, check.type, "WARN", ["no training dataset named: the domain is unknown"])
    try:
        card = Dataset.open(dataset).card
    except DatasetError as exc:
        return CheckResult(name, check.type, "FAIL", [exc.one_line()])
    if card is None:
        return CheckResult(name, check.type, "FAIL", [f"{dataset} has no card.json (the dataset's card)"])
    # The live monitor's drift report flags served inputs through the same profile.
    domain = DomainProfile.from_card(card.data)
    run = await ctx.run(check.suite)
    flagged: list[dict[str, Any]] = []
    results = ctx.store.results(run.id)
    for r in results:
        samples = r.get("samples") or []
        tokens = int(samples[0].get("prompt_tokens", 0)) if samples else 0
        why = domain.reasons((r.get("slices") or {}).get("language"), tokens, check.length_factor)
        if why:
            flagged.append({"case_id": r["case_id"], "why": why})
    share = len(flagged) / len(results) if results else 0.0
    evidence = {
        "training_languages": sorted(domain.languages),
        "longest_training_tokens": domain.longest_tokens,
        "cases": len(results),
        "flagged": len(flagged),
        "share": share,
        "examples": flagged[:10],
    }
    if not flagged:
        return CheckResult(name, check.type, "PASS", ["every input is in the training domain"], evidence, [run.id])
    status: Status = "FAIL" if share > check.max_share else "WARN"
    return CheckResult(
        name,
        check.type,
        status,
        [f"{len(flagged)} of {len(results)} inputs out of domain ({share:.1%}; at most {check.max_share:.1%})"],
        evidence,
        [run.id],
    )


CHECKS: dict[str, Callable[[GateContext, Any, str], Awaitable[CheckResult]]] = {
    "metric": metric,
    "latency": latency,
    "slices": slices,
    "stability": stability,
    "injection": injection,
    "leakage": leakage,
    "memorisation": memorisation,
    "champion": champion,
    "out_of_domain": out_of_domain,
}
