"""``forgepilot gate run|show`` and ``forgepilot promote``: release gates, their dossiers, and deployment aliases."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from forgepilot.cli._common import err, out, print_json, run, settings
from forgepilot.errors import GateFailed

app = typer.Typer(help="Release gates: decide whether a candidate is ready, with evidence.", no_args_is_help=True)

_STYLE = {"PASS": "green", "WARN": "yellow", "FAIL": "red"}


@app.command("run")
def run_(
    spec: Annotated[Path, typer.Argument(help="The readiness spec (YAML; see examples/gate.yaml).")],
    out_dir: Annotated[
        Path | None, typer.Option("--out", "-o", help="Dossier folder (default: the state dir).")
    ] = None,
    concurrency: Annotated[int, typer.Option(help="Evaluation cases in flight at once.")] = 1,
    workers: Annotated[int | None, typer.Option(help="Sandbox workers (default: one per CPU).")] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print the decision as JSON.")] = False,
) -> None:
    """Run every check of SPEC on its candidate; exit 7 when the decision is FAIL."""
    from forgepilot.cli.index import stage_progress
    from forgepilot.evals.store import open_store
    from forgepilot.gates import load_spec, run_gate
    from forgepilot.registry import open_registry
    from forgepilot.sandbox import Sandbox

    s = settings()
    loaded = load_spec(spec)
    sandbox = Sandbox(workers=workers, limits_only=s.sandbox.limits_only)
    try:
        with stage_progress() as progress:

            def step(name: str, done: int, total: int) -> None:
                progress("checks", done, total)

            decision = run(
                run_gate(
                    loaded,
                    s,
                    open_store(s.state_dir, s.database_url),
                    open_registry(s.state_dir, s.database_url),
                    out_dir=out_dir,
                    sandbox=sandbox,
                    concurrency=concurrency,
                    progress=step,
                )
            )
    finally:
        sandbox.close()
    if json_:
        print_json(decision.record())
    else:
        for c in decision.checks:
            err.print(
                f"  [{_STYLE[c.status]}]{c.status}[/] {escape(c.name)}: {escape('; '.join(c.reasons))}",
                soft_wrap=True,
            )
        err.print(f"[{_STYLE[decision.status]}]{decision.status}[/] decision {decision.id}")
        out.print(decision.dossier.get("html", ""))
    if decision.status == "FAIL":
        raise GateFailed(
            f"gate {loaded.spec.name} decided FAIL ({len(decision.reasons)} reasons; dossier "
            f"{decision.dossier.get('markdown')})",
            hint="read the dossier, fix what failed, run the gate again",
        )


@app.command()
def show(
    decision_id: Annotated[str, typer.Argument(help="A decision id (or a unique prefix).")],
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """A stored decision: status, reasons, checks and where its dossier is."""
    from forgepilot.registry import open_registry

    s = settings()
    entity = open_registry(s.state_dir, s.database_url).get("decision", decision_id)
    if json_:
        print_json({"id": entity.id, **entity.data})
        return
    data = entity.data
    out.print(f"{entity.id}  {data['decision']}  {escape(entity.name)}")
    for check in data.get("checks", []):
        out.print(f"  {check['status']:<5} {escape(check['name'])}: {escape('; '.join(check['reasons']))}")
    for kind, path in (data.get("dossier") or {}).items():
        out.print(f"  dossier ({kind}): {escape(path)}")


@app.command()
def pin(
    alias: Annotated[str, typer.Argument(help="The deployment alias (champion, canary, ...).")],
    spec: Annotated[Path, typer.Argument(help="The readiness spec every promotion to ALIAS must pass.")],
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Pin SPEC (by the sha256 of the file) for ALIAS: `promote` then needs a PASS under exactly this spec."""
    from forgepilot.gates import load_spec, pin_spec
    from forgepilot.registry import open_registry

    s = settings()
    result = pin_spec(open_registry(s.state_dir, s.database_url), alias, load_spec(spec))
    if json_:
        print_json(result)
        return
    err.print(
        f"[green]{escape(alias)}[/] now needs a PASS under {escape(result['spec_path'])} ({result['spec_sha256'][:12]})"
    )


def promote(
    alias: Annotated[str, typer.Argument(help="The deployment alias to move (champion, canary, ...).")],
    candidate: Annotated[str, typer.Argument(help="A candidate id or model name judged by `gate run`.")],
    accept_warnings: Annotated[
        bool, typer.Option("--accept-warnings", help="Allow a candidate whose latest decision is WARN.")
    ] = False,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Point ALIAS at CANDIDATE, only when its latest decision under the spec pinned for ALIAS passed (exit 7
    otherwise; pin one with `forgepilot gate pin ALIAS SPEC`)."""
    from forgepilot.gates import promote as promote_alias
    from forgepilot.monitor import AuditLog, audit_db, current_actor
    from forgepilot.registry import open_registry

    s = settings()
    registry = open_registry(s.state_dir, s.database_url)
    result = promote_alias(registry, alias, candidate, accept_warnings=accept_warnings)
    log = AuditLog(audit_db(s.state_dir, s.database_url))
    try:
        log.append(
            "promoted",
            actor=current_actor(),
            target=alias,
            reason=f"decision {result['decision']}" + (" (warnings accepted)" if accept_warnings else ""),
            details={"target": result["target"]},
        )
    finally:
        log.close()
    if json_:
        print_json(result)
        return
    t = result["target"]
    err.print(
        f"[green]{escape(alias)}[/] -> {escape(t['model'])} (sources {escape(', '.join(t['sources']) or 'none')}; "
        f"candidate {t['candidate']}; decision {result['decision']})"
    )
