"""Reports as data first: sections of tables, text and charts, rendered to Markdown and to one HTML file.

Evaluation reports (a run, a comparison) and release dossiers (``gates/``) are built from the same ``Section``
shape, so both formats always say the same thing. Charts are inline SVG (``plots``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from forgepilot.evals import plots
from forgepilot.evals.store import RunRow
from forgepilot.evals.summary import HEADLINE

Cell = str | int | float | None


@dataclass
class Section:
    title: str
    text: str = ""
    headers: Sequence[str] = ()
    rows: list[Sequence[Cell]] = field(default_factory=list)
    #: Inline SVG charts (HTML only; Markdown notes that the HTML report has them).
    charts: list[str] = field(default_factory=list)


def fmt(value: Cell) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _md_cell(value: Cell) -> str:
    return fmt(value).replace("|", "\\|").replace("\n", " ")


def render_markdown(title: str, sections: Sequence[Section]) -> str:
    out = [f"# {title}", ""]
    for s in sections:
        out += [f"## {s.title}", ""]
        if s.text:
            out += [s.text, ""]
        if s.headers:
            out.append("| " + " | ".join(s.headers) + " |")
            out.append("|" + "|".join("---" for _ in s.headers) + "|")
            out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in s.rows]
            out.append("")
        if s.charts:
            out += [f"_{len(s.charts)} chart(s) in the HTML report._", ""]
    return "\n".join(out)


_HTML = jinja2.Environment(autoescape=True).from_string(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:72rem;padding:0 1rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1rem}td,th{border:1px solid #ccc;padding:.25rem .6rem;text-align:left}
th{background:#f3f3f3}pre{white-space:pre-wrap;background:#f7f7f7;padding:.5rem}
.PASS{color:#1a7f37;font-weight:600}.FAIL{color:#cf222e;font-weight:600}.WARN{color:#9a6700;font-weight:600}
.chart svg{max-width:100%;height:auto}
</style></head><body>
<h1>{{ title }}</h1>
{% for s in sections %}<section><h2>{{ s.title }}</h2>
{% if s.text %}<pre>{{ s.text }}</pre>{% endif %}
{% if s.headers %}<table><thead><tr>{% for h in s.headers %}<th>{{ h }}</th>{% endfor %}</tr></thead><tbody>
{% for row in s.rows %}<tr>{% for c in row %}<td class="{{ fmt(c) }}">{{ fmt(c) }}</td>{% endfor %}</tr>
{% endfor %}</tbody></table>{% endif %}
{% for chart in s.charts %}<div class="chart">{{ chart | safe }}</div>{% endfor %}
</section>
{% endfor %}</body></html>
"""
)


def render_html(title: str, sections: Sequence[Section]) -> str:
    return _HTML.render(title=title, sections=sections, fmt=fmt)


def write_documents(out_dir: Path, stem: str, title: str, sections: Sequence[Section], data: Any) -> dict[str, Path]:
    """``stem.md``, ``stem.html`` and ``stem.json`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out_dir / f"{stem}.md", "html": out_dir / f"{stem}.html", "json": out_dir / f"{stem}.json"}
    paths["markdown"].write_text(render_markdown(title, sections), encoding="utf-8")
    paths["html"].write_text(render_html(title, sections), encoding="utf-8")
    paths["json"].write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    return paths


# -- evaluation runs -----------------------------------------------------------------------------------------
def latency_sections(latency: dict[str, Any], values: Sequence[float]) -> list[Section]:
    """Latency percentiles overall and by token bucket, tokens/s and cost, with a histogram."""
    if not latency.get("requests"):
        return [Section("Latency and cost", "no requests reached the model")]
    cols = ("p50", "p75", "p90", "p95", "p99", "mean")
    rows: list[Sequence[Cell]] = [["all", latency["requests"], *(_ms(latency["latency_s"].get(c)) for c in cols)]]
    for name in ("by_input_tokens", "by_output_tokens"):
        label = "input" if name == "by_input_tokens" else "output"
        for bucket, st in latency[name].items():
            rows.append([f"{label} tokens {bucket}", st["n"], *(_ms(st.get(c)) for c in cols)])
    charts = []
    if values and plots.available():
        p = latency["latency_s"]
        charts.append(
            plots.histogram(
                [v * 1000 for v in values],
                title="request latency",
                xlabel="ms",
                marks={"p50": p["p50"] * 1000, "p95": p["p95"] * 1000},
            )
        )
    cost = latency["cost_usd"]
    text = (
        f"{latency['requests']} requests ({latency['cached']} from the generation cache, with their original "
        f"timings); {latency['prompt_tokens']} prompt and {latency['completion_tokens']} completion tokens; "
        f"{fmt(latency['tokens_per_s'])} completion tokens per second of model time (prompt processing included); "
        f"cost per request {fmt(cost['per_request'])} USD, "
        f"per 1,000 requests {fmt(cost['per_1000_requests'])} USD"
        + (f" ({cost['unpriced_requests']} requests of unpriced models)" if cost["unpriced_requests"] else "")
    )
    return [Section("Latency (ms) and cost", text, ("requests", "n", *cols), rows, charts)]


def _sandbox(mode: Any) -> str:
    if mode == "limits-only":
        return "LIMITS ONLY: no namespaces (the network was not cut and the file system was not sealed)"
    return "n/a" if mode is None else str(mode)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def run_sections(run: RunRow, results: Sequence[dict[str, Any]]) -> list[Section]:
    summary = run.summary or {}
    cfg = run.config
    sections = [
        Section(
            "Run",
            headers=("field", "value"),
            rows=[
                ["run", run.id],
                ["suite", f"{run.suite} ({run.suite_kind}, {run.cases_total} cases, sha256 {run.suite_sha256[:16]})"],
                ["model", json.dumps(cfg.get("model"), sort_keys=True)],
                ["templates", json.dumps(cfg.get("templates"), sort_keys=True)],
                ["context sources", _sources(cfg.get("sources"))],
                ["generation", json.dumps(cfg.get("params"), sort_keys=True)],
                ["sandbox", _sandbox(cfg.get("sandbox"))],
                ["status", run.status],
                ["identity", run.identity],
            ],
        )
    ]
    m = summary.get("metrics", {})
    headline = HEADLINE.get(run.suite_kind, "")
    rows: list[Sequence[Cell]] = [[k, v] for k, v in m.items() if not isinstance(v, dict)]
    rows += [[f"shots: {k}", v] for k, v in (m.get("shots") or {}).items()]
    rows.append(["errors", summary.get("errors", 0)])
    sections.append(Section("Quality", f"headline: {headline}", ("metric", "value"), rows))
    for name, values in (summary.get("slices") or {}).items():
        keys = sorted({k for st in values.values() for k, v in st.items() if isinstance(v, float | int)} - {"cases"})
        srows: list[Sequence[Cell]] = [[value, st["cases"], *(st.get(k) for k in keys)] for value, st in values.items()]
        charts = []
        if headline in keys and len(values) > 1 and plots.available():
            charts.append(
                plots.bars(
                    {v: {headline: float(st.get(headline) or 0.0)} for v, st in values.items()},
                    title=f"{headline} by {name}",
                    ylabel=headline,
                )
            )
        sections.append(Section(f"By {name}", "", (name, "cases", *keys), srows, charts))
    lat_values = [float(s["latency_s"]) for r in results for s in r.get("samples", [])]
    sections += latency_sections(summary.get("latency", {}), lat_values)
    failing = [r for r in results if r.get("status") == "error" or (r.get("score") is not None and r["score"] < 1.0)]
    if failing:
        sections.append(
            Section(
                "Cases below full marks (first 25)",
                headers=("case", "status", "score", "detail"),
                rows=[[r["case_id"], r["status"], r.get("score"), _detail(r)] for r in failing[:25]],
            )
        )
    return sections


def _sources(sources: list[str] | None) -> str:
    if sources is None:
        return "n/a (repository context applies to completion suites)"
    return ", ".join(sources) or "in-file only"


def _detail(result: dict[str, Any]) -> str:
    if result.get("error"):
        return str(result["error"])[:160]
    samples = result.get("samples") or []
    if not samples:
        return ""
    s = samples[0]
    if "verdict_reason" in s:
        tail = (s.get("stderr_tail") or "").strip().splitlines()
        return f"{s['status']} {s['verdict_reason']} {tail[-1] if tail else ''}"[:160]
    if "answer" in s:
        return f"answered {s['answer']!r}, expected {result.get('expected')!r}"[:160]
    return f"got {s.get('text', '')[:60]!r}"


def write_run_report(run: RunRow, results: Sequence[dict[str, Any]], out_dir: Path) -> dict[str, Path]:
    title = f"Evaluation {run.id}: {run.suite} on {run.model}"
    data = {"run": run.record(), "results": list(results)}
    return write_documents(out_dir, f"eval-{run.id}", title, run_sections(run, results), data)


def comparison_sections(a: RunRow, b: RunRow, comparison: dict[str, Any]) -> list[Section]:
    rows: list[Sequence[Cell]] = [
        [name, iv["a"], iv["b"], iv["diff"], iv["low"], iv["high"]] for name, iv in comparison["intervals"].items()
    ]
    mc = comparison["mcnemar"]
    sections = [
        Section(
            "Runs",
            headers=("", "run", "model", "suite sha256"),
            rows=[["A", a.id, a.model, a.suite_sha256[:16]], ["B", b.id, b.model, b.suite_sha256[:16]]],
        ),
        Section(
            "Paired bootstrap",
            f"{comparison['paired_cases']} paired cases; intervals of mean(B - A) at "
            f"{next(iter(comparison['intervals'].values()))['confidence']:.0%}",
            ("figure", "A", "B", "B - A", "low", "high"),
            rows,
        ),
        Section(
            "McNemar's test",
            f"on {mc['figure']}: {mc['only_a']} cases only A passes, {mc['only_b']} only B passes, "
            f"{mc['both']} both, {mc['neither']} neither; exact two-sided p = {mc['p_value']:.4g}",
        ),
    ]
    if comparison["changed"]:
        sections.append(
            Section(
                "Cases that changed (first 40)",
                headers=("case", "A", "B"),
                rows=[[c["case_id"], c["a"], c["b"]] for c in comparison["changed"][:40]],
            )
        )
    return sections
