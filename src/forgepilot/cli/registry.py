"""``forgepilot registry ls|show|lineage|export-mlflow``: what was built, measured, decided and deployed."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from forgepilot.cli._common import err, out, print_json, settings
from forgepilot.errors import UserError

if TYPE_CHECKING:
    from forgepilot.registry import Registry

app = typer.Typer(
    help="The registry of models, prompts, datasets, runs, decisions and deployments.", no_args_is_help=True
)


def _registry() -> Registry:
    from forgepilot.registry import open_registry

    s = settings()
    return open_registry(s.state_dir, s.database_url)


def _check_type(type_: str | None) -> None:
    from forgepilot.registry import ENTITY_TYPES

    if type_ is not None and type_ not in ENTITY_TYPES:
        raise UserError(f"unknown entry type {type_!r}", hint=f"one of: {', '.join(ENTITY_TYPES)}")


@app.command("ls")
def ls(
    type_: Annotated[str | None, typer.Argument(help="Only this type (model, run, decision, deployment, ...).")] = None,
    limit: Annotated[int, typer.Option(help="At most this many entries.")] = 50,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Registered entries, newest first (deployments with what they point at)."""
    _check_type(type_)
    reg = _registry()
    entities = reg.entities(type_, limit=limit)
    if json_:
        print_json([e.record() for e in entities])
        return
    if type_ in (None, "deployment"):
        for d in reg.deployments():
            t = d.target
            out.print(f"deployment  {escape(d.alias):<12} -> {escape(t.get('model', ''))} (decision {d.decision_id})")
        if type_ == "deployment":
            return
    for e in entities:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.created_at))
        out.print(f"{e.type:<10}  {e.id[:20]:<20}  {when}  {escape(e.name)}")
    if not entities:
        err.print("the registry is empty: `forgepilot gate run SPEC` records candidates, runs and decisions")


@app.command()
def show(
    type_: Annotated[str, typer.Argument(help="Entry type.")],
    id_: Annotated[str, typer.Argument(help="Entry id (a unique prefix) or name.")],
) -> None:
    """One entry as JSON, with its links in and out."""
    _check_type(type_)
    reg = _registry()
    e = reg.get(type_, id_)
    data: dict[str, Any] = e.record()
    data["links_out"] = [vars(x) for x in reg.edges_from(e.type, e.id)]
    data["links_in"] = [vars(x) for x in reg.edges_to(e.type, e.id)]
    if type_ == "deployment":
        data["history"] = reg.history(e.id)
    print_json(data)


@app.command()
def lineage(
    type_: Annotated[str, typer.Argument(help="Entry type.")],
    id_: Annotated[str, typer.Argument(help="Entry id (a unique prefix) or name.")],
    depth: Annotated[int, typer.Option(help="Levels to follow.")] = 6,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """What an entry was made from or judged on, as a tree."""
    _check_type(type_)
    tree = _registry().lineage(type_, id_, depth=depth)
    if json_:
        print_json(tree)
        return

    def show_node(node: dict[str, Any], indent: str, relation: str) -> None:
        label = f"{relation} " if relation else ""
        out.print(f"{indent}{label}{node['type']} {node['id'][:20]} {escape(node.get('name', ''))}")
        for link in node.get("links", []):
            show_node(link, indent + "  ", link["relation"])

    show_node(tree, "", "")


@app.command("export-mlflow")
def export_mlflow(
    tracking_uri: Annotated[str, typer.Option(help="MLflow tracking URI (file:///path/mlruns, http://host:5000).")],
) -> None:
    """Write evaluation runs and gate decisions (with dossiers) to MLflow (extra [mlflow])."""
    from forgepilot.registry.mlflow_export import export

    counts = export(_registry(), tracking_uri)
    out.print(json.dumps(counts))
