"""``forgepilot eval run|list|show|compare|export``: score models, prompts and context settings on suites."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from forgepilot.cli._common import RayAddress, RayWorkerCount, err, out, print_json, run, settings
from forgepilot.cli.index import stage_progress
from forgepilot.errors import Cancelled, UserError

if TYPE_CHECKING:
    from forgepilot.evals.store import EvalStore, RunRow

app = typer.Typer(help="Evaluate models, prompt versions and context settings on suites.", no_args_is_help=True)


def _csv(value: str | None) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


def _store() -> EvalStore:
    from forgepilot.evals.store import open_store

    s = settings()
    return open_store(s.state_dir, s.database_url)


def _headline(row: RunRow) -> str:
    if not row.summary:
        return f"{row.cases_done}/{row.cases_total} cases"
    m = row.summary.get("metrics", {})
    shown = ", ".join(f"{k} {v:.4g}" for k, v in m.items() if isinstance(v, float | int) and not isinstance(v, bool))
    lat = row.summary.get("latency", {}).get("latency_s", {})
    p50 = f", p50 {lat['p50'] * 1000:.0f} ms" if lat.get("p50") is not None else ""
    errors = row.summary.get("errors", 0)
    return shown + p50 + (f", {errors} errors" if errors else "")


@app.command("run")
def run_(
    suite: Annotated[
        str, typer.Argument(help="A suite file (.yaml, .jsonl), a dataset folder or split file, or 'humaneval'.")
    ],
    model: Annotated[str | None, typer.Option(help="Model to evaluate (default: the completion tier's model).")] = None,
    n: Annotated[int, typer.Option(help="Samples per case.")] = 1,
    k: Annotated[str, typer.Option(help="Comma-separated pass@k values (functional suites).")] = "1",
    temperature: Annotated[float, typer.Option(help="Sampling temperature (0: greedy).")] = 0.0,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling.")] = 1.0,
    max_tokens: Annotated[int | None, typer.Option(help="Tokens per sample (default: the serving default).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of sample 0 (sample i uses seed + i).")] = 0,
    sources: Annotated[
        str | None, typer.Option(help="Context sources for completion cases: related,similar,retrieved or 'none'.")
    ] = None,
    ablate: Annotated[
        bool, typer.Option("--ablate", help="Also run with each context source off, and in-file only.")
    ] = False,
    variant: Annotated[str | None, typer.Option(help="Prompt suites: the template variant to run.")] = None,
    repo: Annotated[
        list[Path] | None, typer.Option(help="Index this repository first (completion suites' context; repeatable).")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N cases.")] = None,
    concurrency: Annotated[int, typer.Option(help="Cases in flight at once.")] = 1,
    ray: RayAddress = None,
    ray_workers: RayWorkerCount = None,
    workers: Annotated[int | None, typer.Option(help="Sandbox workers (default: one per CPU).")] = None,
    label: Annotated[str | None, typer.Option(help="A name for the run in listings.")] = None,
    resume: Annotated[
        str | None, typer.Option(help="Resume this run (default: resume an unfinished identical run).")
    ] = None,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Start a new run even if an identical one is unfinished.")
    ] = False,
    report: Annotated[Path | None, typer.Option(help="Write Markdown/HTML/JSON reports to this folder.")] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print the run as JSON.")] = False,
) -> None:
    """Run a suite through the serving path; results are stored, resumable and reported."""
    from forgepilot.context.types import SNIPPET_SOURCES
    from forgepilot.evals.runner import EvalRunner, GenerationParams, RunConfig
    from forgepilot.evals.suites import load_suite
    from forgepilot.index.indexer import Workspace
    from forgepilot.sandbox import Sandbox

    s = settings()
    chosen = load_suite(suite).limited(limit)
    try:
        ks = tuple(int(x) for x in _csv(k)) or (1,)
    except ValueError:
        raise UserError(f"--k {k!r} is not a list of integers", hint="e.g. --k 1,10") from None
    if sources is None:
        picked: tuple[str, ...] = SNIPPET_SOURCES
    elif sources.strip() == "none":
        picked = ()
    else:
        picked = tuple(_csv(sources))
    name = model or s.assist.fast or s.default_model
    params = GenerationParams(n=n, temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed)
    configs = [RunConfig(name, params, picked, ks, variant, label)]
    if ablate:
        if chosen.kind != "completion":
            raise UserError("--ablate switches context sources: it needs a completion suite", hint="drop --ablate")
        configs += [
            RunConfig(name, params, tuple(x for x in picked if x != off), ks, variant, f"{label or 'ablation'}: -{off}")
            for off in picked
        ]
        configs.append(RunConfig(name, params, (), ks, variant, f"{label or 'ablation'}: in-file only"))
    workspace = None
    if chosen.kind == "completion":
        workspace = Workspace(s.state_dir / "index")
        if repo:
            from forgepilot.cli.index import index_paths

            index_paths(workspace, s, [str(r) for r in repo], embeddings=s.context.retrieved_vectors, quiet=False)
    store = _store()
    sandbox = Sandbox(workers=workers, limits_only=s.sandbox.limits_only) if chosen.kind == "functional" else None
    rows: list[RunRow] = []
    with stage_progress() as bar:
        for config in configs:
            stage = escape(config.label or chosen.name)

            def progress(done: int, total: int, stage: str = stage) -> None:
                bar(stage, done, total)

            fanout = None
            if ray is not None:
                from forgepilot.evals.ray_fanout import RayFanout
                from forgepilot.evals.store import evals_db

                index_dir = s.state_dir / "index" if workspace is not None else None
                where = evals_db(s.state_dir, s.database_url)
                fanout = RayFanout(ray, s, where, index_dir=index_dir, workers=ray_workers)
            runner = EvalRunner(
                s,
                store,
                workspace=workspace,
                sandbox=sandbox,
                concurrency=concurrency,
                progress=progress,
                fanout=fanout,
            )
            try:
                rows.append(run(_run_one(runner, chosen, config, resume, fresh)))
            except KeyboardInterrupt:
                raise Cancelled(
                    "evaluation interrupted; the finished cases are stored",
                    hint=f"run the same command again to resume ({len(rows)} of {len(configs)} runs finished)",
                ) from None
    if report is not None:
        from forgepilot.evals.report import write_run_report

        for row in rows:
            paths = write_run_report(row, store.results(row.id), report)
            err.print(f"report {escape(str(paths['html']))}")
    if json_:
        print_json([r.record() for r in rows] if len(rows) > 1 else rows[0].record())
        return
    for row in rows:
        out.print(f"{row.id}  {escape(row.label or row.suite)}  {escape(row.model)}  {escape(_headline(row))}")
    if ablate:
        _print_ablation(rows, store)


async def _run_one(runner: object, suite: object, config: object, resume: str | None, fresh: bool) -> RunRow:
    from forgepilot.evals.runner import EvalRunner

    assert isinstance(runner, EvalRunner)
    try:
        return await runner.run(suite, config, resume=resume, fresh=fresh)  # type: ignore[arg-type]
    finally:
        await runner.aclose()


def _print_ablation(rows: list[RunRow], store: EvalStore) -> None:
    """Each configuration against all sources, and what each source is worth: the change when it is switched
    off, and the holes it won (exact only with it) or lost (exact only without it)."""
    from forgepilot.evals.compare import case_wins

    base = rows[0].summary["metrics"] if rows[0].summary else {}
    base_results = store.results(rows[0].id)
    err.print("\ncontext ablation (exact match / edit similarity; change against all sources)")
    for row in rows:
        m = row.summary["metrics"] if row.summary else {}
        em, es = m.get("em", 0.0), m.get("es", 0.0)
        line = (
            f"  {escape(row.label or 'all sources'):<36} EM {em:.4f} ({em - base.get('em', 0.0):+.4f})"
            f"  ES {es:.4f} ({es - base.get('es', 0.0):+.4f})"
        )
        if row is not rows[0]:
            won, lost = case_wins(base_results, store.results(row.id), "em")
            line += f"  holes the source(s) won {won}, lost {lost}"
        err.print(line)


@app.command("list")
def list_(
    suite: Annotated[str | None, typer.Option(help="Only runs of this suite.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many runs.")] = 30,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Recent evaluation runs, newest first."""
    rows = _store().runs(limit=limit, suite=suite)
    if json_:
        print_json([r.record() for r in rows])
        return
    for r in rows:
        out.print(
            f"{r.id}  {r.status:<11} {escape(r.suite):<16} {escape(r.model):<32} {escape(r.label or ''):<20} "
            f"{escape(_headline(r))}"
        )


@app.command()
def show(
    run_id: Annotated[str, typer.Argument(help="A run id (or a unique prefix).")],
    report: Annotated[Path | None, typer.Option(help="Write Markdown/HTML/JSON reports to this folder.")] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print the run and its summary as JSON.")] = False,
) -> None:
    """One run: configuration, metrics overall and per slice, latency and cost."""
    from forgepilot.evals.report import render_markdown, run_sections, write_run_report

    store = _store()
    row = store.run(run_id)
    results = store.results(row.id)
    if report is not None:
        paths = write_run_report(row, results, report)
        err.print(f"report {escape(str(paths['html']))}")
    if json_:
        print_json(row.record())
        return
    out.print(render_markdown(f"Evaluation {row.id}", run_sections(row, results)), markup=False)


@app.command()
def compare(
    run_a: Annotated[str, typer.Argument(help="Run A (the baseline).")],
    run_b: Annotated[str, typer.Argument(help="Run B (the candidate).")],
    confidence: Annotated[float, typer.Option(help="Confidence of the bootstrap intervals.")] = 0.95,
    iterations: Annotated[int, typer.Option(help="Bootstrap resamples.")] = 5000,
    report: Annotated[Path | None, typer.Option(help="Write Markdown/HTML/JSON reports to this folder.")] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Paired comparison of two runs of one suite: bootstrap intervals of B - A and McNemar's test."""
    from forgepilot.evals.compare import compare_results
    from forgepilot.evals.report import comparison_sections, render_markdown, write_documents

    store = _store()
    a, b = store.run(run_a), store.run(run_b)
    if a.suite_kind != b.suite_kind:
        raise UserError(f"runs of a {a.suite_kind} and a {b.suite_kind} suite", hint="compare runs of one suite")
    if a.suite_sha256 != b.suite_sha256:
        err.print("[yellow]note:[/] the runs used different versions of the suite; only shared cases are paired")
    result = compare_results(
        a.suite_kind, store.results(a.id), store.results(b.id), iterations=iterations, confidence=confidence
    )
    sections = comparison_sections(a, b, result)
    title = f"Comparison {a.id} vs {b.id}"
    if report is not None:
        paths = write_documents(report, f"compare-{a.id}-{b.id}", title, sections, result)
        err.print(f"report {escape(str(paths['html']))}")
    if json_:
        print_json({"a": a.id, "b": b.id, **result})
        return
    out.print(render_markdown(title, sections), markup=False)


@app.command()
def export(
    run_id: Annotated[str, typer.Argument(help="A run id (or a unique prefix).")],
    output: Annotated[Path | None, typer.Option("--out", "-o", help="File to write (default: stdout).")] = None,
) -> None:
    """A run with every per-case result as JSON."""
    store = _store()
    row = store.run(run_id)
    data = {"run": row.record(), "results": store.results(row.id)}
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if output is None:
        out.print(text, markup=False, end="")
    else:
        output.write_text(text, encoding="utf-8")
        err.print(f"wrote {escape(str(output))}")
