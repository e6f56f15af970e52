"""``forgepilot rollout start|status|tick|stop``: canary rollouts judged by a sequential test."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from forgepilot.cli._common import err, out, print_json, settings

if TYPE_CHECKING:
    from forgepilot.deploy import RolloutController
    from forgepilot.registry import Registry

app = typer.Typer(
    help="Canary rollouts: share steps, guard metrics, automatic promotion or rollback.", no_args_is_help=True
)


@contextmanager
def _controller() -> Iterator[RolloutController]:
    """The rollout controller over this state's registry, monitor store and audit log, closed afterwards."""
    from forgepilot.deploy import RolloutController
    from forgepilot.monitor import AuditLog, MonitorStore, audit_db, monitor_db
    from forgepilot.registry import open_registry

    s = settings()
    registry = open_registry(s.state_dir, s.database_url)
    store = MonitorStore(monitor_db(s.state_dir, s.database_url))
    audit = AuditLog(audit_db(s.state_dir, s.database_url))
    try:
        yield RolloutController(registry, store, audit)
    finally:
        for opened in (registry, store, audit):
            opened.close()


def _show(registry: Registry, rollout_id: str, json_: bool) -> None:
    rollout = registry.rollout(rollout_id)
    decisions = registry.rollout_decisions(rollout_id)
    if json_:
        print_json({"rollout": rollout, "decisions": decisions})
        return
    out.print(
        f"{rollout.id}: {rollout.state}, step {rollout.step + 1} of {len(rollout.spec['steps'])}, canary "
        f"{escape(str(rollout.canary.get('model')))} at {rollout.share:.0%} vs champion "
        f"{escape(str(rollout.champion.get('model')))}"
    )
    for d in decisions[-10:]:
        when = time.strftime("%H:%M:%S", time.localtime(d.at))
        out.print(f"  {when}  {d.action:<11} share {d.share:.0%}  {escape(d.reason)}")
        for g in d.evidence.get("guards", []):
            out.print(
                f"      {g['metric']}: canary {g['canary']['rate']:.2%} of {g['canary']['n']} vs champion "
                f"{g['champion']['rate']:.2%} of {g['champion']['n']} -> {g['verdict']}"
            )


@app.command()
def start(spec: Annotated[Path, typer.Argument(help="A rollout spec (see examples/rollout.yaml).")]) -> None:
    """Roll out what the canary alias points at (promote a gated candidate there first) at the spec's first share;
    a serving gateway then judges it every few seconds."""
    from forgepilot.deploy import load_rollout_spec
    from forgepilot.monitor import current_actor

    loaded = load_rollout_spec(spec)
    with _controller() as controller:
        rollout = controller.start(loaded, default_model=settings().default_model, actor=current_actor())
        err.print(f"[green]started[/] {rollout.id}: canary at {rollout.share:.0%} of users")
        _show(controller.registry, rollout.id, json_=False)


@app.command()
def status(json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """The running (or last) rollout and its latest decisions with their evidence."""
    with _controller() as controller:
        rollout = controller.registry.active_rollout() or controller.registry.latest_rollout()
        if rollout is None:
            out.print("no rollout yet: forgepilot rollout start SPEC")
            return
        _show(controller.registry, rollout.id, json_)


@app.command()
def tick(json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Judge the running rollout now (a serving gateway does this every ``[deploy] tick_s``)."""
    with _controller() as controller:
        rollout = controller.tick()
        if rollout is None:
            out.print("no rollout is running")
            return
        _show(controller.registry, rollout.id, json_)


@app.command()
def stop(reason: Annotated[str, typer.Option(help="Why (written to the audit log).")] = "stopped by hand") -> None:
    """Stop the running rollout: every user back on the champion at once."""
    from forgepilot.monitor import current_actor

    with _controller() as controller:
        rollout = controller.stop(reason, current_actor())
        if rollout is None:
            out.print("no rollout is running")
            return
        err.print(f"stopped {rollout.id}: every user is on the champion")
