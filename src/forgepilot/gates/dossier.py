"""The audit dossier of a gate decision: Markdown, one HTML file with charts, and JSON.

It says what was decided and why, shows every check's evidence (slice tables, latency distribution, stability per
perturbation, probe outcomes) and carries the full lineage: model and dataset hashes, prompt versions, the
evaluation runs, the code commit, installed package versions and the hardware.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forgepilot.evals.report import Cell, Section, latency_sections, write_documents

if TYPE_CHECKING:
    from forgepilot.gates.context import CheckResult, GateContext
    from forgepilot.gates.engine import Decision


def _check_section(result: CheckResult) -> list[Section]:
    ev = result.evidence
    sections = [Section(f"{result.status}  {result.name}", "\n".join(result.reasons), charts=list(result.charts))]
    if result.type == "slices" and ev.get("slices"):
        rows: list[Sequence[Cell]] = [[v, st["cases"], st.get(ev["metric"])] for v, st in ev["slices"].items()]
        sections.append(Section(f"{result.name}: slices", "", (ev["by"], "cases", ev["metric"]), rows))
    elif result.type == "stability" and ev.get("perturbations"):
        rows = [
            [k, r["changed"], r["kept"], r["broken"], r.get("base"), r.get("perturbed"), r.get("drop")]
            for k, r in ev["perturbations"].items()
        ]
        sections.append(
            Section(
                f"{result.name}: perturbations",
                "kept = edited cases whose edited canonical solution still passes its tests",
                ("perturbation", "changed", "kept", "broken", "base", "perturbed", "drop"),
                rows,
            )
        )
    elif result.type in ("injection", "leakage") and ev.get("probes"):
        rows = [[p["probe"], p["surface"], p["hit"], p["output"][:80]] for p in ev["probes"]]
        sections.append(Section(f"{result.name}: probes", "", ("probe", "surface", "hit", "output"), rows))
    elif result.type == "champion" and ev.get("interval"):
        iv = ev["interval"]
        rows = [[ev["figure"], iv["a"], iv["b"], iv["diff"], iv["low"], iv["high"], ev["mcnemar"]["p_value"]]]
        sections.append(
            Section(
                f"{result.name}: champion vs challenger",
                f"champion: {json.dumps(ev['champion'], sort_keys=True)}",
                ("figure", "champion", "challenger", "diff", "low", "high", "McNemar p"),
                rows,
            )
        )
    else:
        flat: list[Sequence[Cell]] = [
            [k, v if isinstance(v, int | float | str) or v is None else json.dumps(v)[:120]] for k, v in ev.items()
        ]
        if flat:
            sections.append(Section(f"{result.name}: evidence", "", ("field", "value"), flat))
    return sections


def _lineage_sections(decision: Decision) -> list[Section]:
    lin = decision.lineage
    model = lin["model"]
    rows: list[Sequence[Cell]] = [[k, v] for k, v in model.items()]
    rows.append(["fim family", lin.get("fim_family")])
    sections = [Section("Lineage: model", "", ("field", "value"), rows)]
    ds = lin.get("dataset")
    if ds:
        files = ds.get("files") or {}
        rows = [[name, f.get("path"), f.get("sha256")] for name, f in files.items()]
        text = "sources: " + ", ".join(
            f"{s.get('repository')}@{(s.get('commit') or 'uncommitted')[:12]} ({s.get('licence')})"
            for s in ds.get("sources") or []
        )
        sections.append(Section("Lineage: training dataset", text, ("file", "path", "sha256"), rows))
    sections.append(
        Section(
            "Lineage: prompt templates",
            "",
            ("template", "version"),
            [[k, v] for k, v in sorted(lin["templates"].items())],
        )
    )
    sections.append(
        Section(
            "Lineage: evaluation runs",
            "",
            ("run", "suite", "suite sha256", "model"),
            [[r["id"], r["suite"], r["suite_sha256"][:16], r["model"]] for r in lin["runs"]],
        )
    )
    code = lin["code"]
    env_rows: list[Sequence[Cell]] = [
        [
            "forgepilot",
            f"{code['version']} commit {code.get('commit') or 'unknown'}"
            + (" (with local edits)" if code.get("dirty") else ""),
        ]
    ]
    env_rows += [[k, v] for k, v in lin["packages"].items()]
    env_rows += [[f"hardware.{k}", v] for k, v in lin["hardware"].items()]
    sections.append(Section("Lineage: code, packages, hardware", "", ("what", "version"), env_rows))
    return sections


def write_dossier(decision: Decision, ctx: GateContext, out_dir: Path) -> dict[str, Path]:
    cand = decision.candidate
    head = Section(
        f"Decision: {decision.status}",
        "\n".join(decision.reasons) or "every check passed",
        ("field", "value"),
        [
            ["decision", decision.id],
            ["spec", f"{decision.spec['name']} ({decision.spec['path']})"],
            ["spec sha256", decision.spec["sha256"]],
            ["candidate", cand["id"]],
            ["model", cand["model"]],
            ["context sources", ", ".join(cand["sources"]) or "in-file only"],
            ["generation", f"temperature {cand['temperature']}, max tokens {cand['max_tokens'] or 'serving default'}"],
            ["made", time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(decision.created_at))],
        ],
    )
    summary = Section(
        "Checks",
        "",
        ("check", "type", "status", "reason"),
        [[c.name, c.type, c.status, "; ".join(c.reasons)[:200]] for c in decision.checks],
    )
    sections = [head, summary]
    for result in decision.checks:
        sections += _check_section(result)
    # The latency distribution of every candidate run, as the serving path delivered it.
    for run in ctx.runs():
        if run.model != cand["model"] or not run.summary:
            continue
        values = [float(s["latency_s"]) for r in ctx.store.results(run.id) for s in r.get("samples", [])]
        for section in latency_sections(run.summary.get("latency", {}), values):
            section.title = f"{section.title}: {run.suite}"
            sections.append(section)
        break
    sections += _lineage_sections(decision)
    data: dict[str, Any] = decision.record()
    title = f"Release dossier: {decision.spec['name']} on {cand['model']}: {decision.status}"
    return write_documents(out_dir, "dossier", title, sections, data)
