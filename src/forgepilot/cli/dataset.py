"""``forgepilot dataset build|card|distill``: fine-tuning sets from your own repositories."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from forgepilot.cli._common import RayAddress, RayWorkerCount, err, out, print_json, settings
from forgepilot.cli.index import stage_progress
from forgepilot.errors import UserError

app = typer.Typer(help="Build fine-tuning and evaluation datasets from repositories.", no_args_is_help=True)


def _split_csv(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


@app.command()
def build(
    paths: Annotated[list[Path], typer.Argument(help="Repository folders.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("dataset"),
    model: Annotated[str | None, typer.Option(help="Serving model whose tokenizer and prompt format to use.")] = None,
    kinds: Annotated[
        str | None, typer.Option(help="Comma-separated instance kinds (default: [dataset] kinds).")
    ] = None,
    formats: Annotated[str | None, typer.Option(help="Comma-separated: instances,chat,alpaca,deepseek,fim.")] = None,
    decontaminate: Annotated[
        list[Path] | None, typer.Option(help="Evaluation suite files to decontaminate against (repeatable).")
    ] = None,
    split_by: Annotated[str | None, typer.Option(help="file or repository.")] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Ignore the journal of an interrupted build.")] = False,
    max_files: Annotated[int | None, typer.Option(help="At most this many files per repository.")] = None,
    ray: RayAddress = None,
    ray_workers: RayWorkerCount = None,
    json_: Annotated[bool, typer.Option("--json", help="Print the card as JSON.")] = False,
) -> None:
    """Build a dataset: instances through the serving context and prompts, gates, hygiene, splits, formats, card."""
    from forgepilot.datagen.formats import FORMATS
    from forgepilot.datagen.pipeline import BuildOptions, open_builder
    from forgepilot.datagen.types import KINDS

    s = settings()
    if split_by is not None:
        if split_by not in ("file", "repository"):
            raise UserError(f"--split-by {split_by!r} is not file or repository", hint="use --split-by file")
        s.dataset.split_by = split_by  # type: ignore[assignment]
    chosen_formats = _split_csv(formats) or list(FORMATS)
    bad = sorted(set(chosen_formats) - set(FORMATS))
    if bad:
        raise UserError(f"unknown formats {bad}", hint=f"choose from: {', '.join(FORMATS)}")
    chosen_kinds = _split_csv(kinds) or list(s.dataset.kinds)
    bad = sorted(set(chosen_kinds) - set(KINDS))
    if bad:
        raise UserError(f"unknown instance kinds {bad}", hint=f"choose from: {', '.join(KINDS)}")
    fanout = None
    if ray is not None:
        from forgepilot.datagen.ray_fanout import RayFileFanout

        fanout = RayFileFanout(ray, s, model, workers=ray_workers)
    with stage_progress() as progress:
        builder = open_builder(s, model, progress, fanout)
        report = builder.build(
            paths,
            BuildOptions(
                out=out_dir,
                kinds=chosen_kinds,
                formats=chosen_formats,
                suites=decontaminate or (),
                resume=not fresh,
                max_files=max_files,
            ),
        )
    if json_:
        print_json(report.card)
        return
    counts = report.counts
    err.print(
        f"[green]dataset[/] {escape(str(out_dir))}: {report.instances} instances "
        f"({', '.join(f'{k} {v}' for k, v in counts['kind'].items())}); "
        f"splits {', '.join(f'{k} {v}' for k, v in counts['split'].items())}; "
        f"{report.rejections.total()} rejected; {len(report.failures)} files failed"
        + (f"; {report.resumed_files} files resumed from the journal" if report.resumed_files else "")
    )
    for reason, n in sorted(report.rejections.by_reason.items(), key=lambda kv: -kv[1])[:12]:
        err.print(f"  rejected {n:>6}  {escape(reason)}")
    for f in report.failures[:10]:
        err.print(f"  [yellow]failed[/] {escape(f['path'])}: {escape(f['error'])}")
    out.print(str(out_dir / "README.md"))


@app.command()
def card(
    folder: Annotated[Path, typer.Argument(help="A dataset folder written by `dataset build`.")],
    json_: Annotated[bool, typer.Option("--json", help="Print JSON instead of Markdown.")] = False,
) -> None:
    """Print a dataset's card (counts, rejections, token histogram, lineage, file hashes)."""
    from forgepilot.datagen.card import render_markdown

    path = folder / "card.json"
    if not path.is_file():
        raise UserError(f"{folder} has no card.json", hint="run `forgepilot dataset build` first")
    data = json.loads(path.read_text(encoding="utf-8"))
    if json_:
        print_json(data)
    else:
        out.print(render_markdown(data), markup=False)


@app.command()
def distill(
    paths: Annotated[list[Path], typer.Argument(help="Repositories to take seed snippets from.")],
    teacher: Annotated[str | None, typer.Option(help="Teacher model (default: the large tier's model).")] = None,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("distilled"),
    seeds: Annotated[int, typer.Option(help="Seed snippets per repository.")] = 20,
    workers: Annotated[int | None, typer.Option(help="Sandbox workers.")] = None,
    suites: Annotated[
        list[Path] | None, typer.Option("--suite", help="Evaluation suites to decontaminate against (repeatable).")
    ] = None,
    ray: RayAddress = None,
    ray_workers: RayWorkerCount = None,
) -> None:
    """OSS-Instruct distillation: teacher-written problems and solutions, kept only when their tests pass."""
    from forgepilot.backends.resolve import open_backend
    from forgepilot.datagen import card as card_mod
    from forgepilot.datagen.distill import Distiller, Seed, distil_dataset, seeds_from
    from forgepilot.datagen.formats import FORMATS, write_all
    from forgepilot.datagen.pipeline import BuildReport
    from forgepilot.datagen.types import Rejections
    from forgepilot.prompts import builtin_registry
    from forgepilot.sandbox import Sandbox

    s = settings()
    backend = open_backend(teacher or s.assist.large or s.default_model, s)
    distiller = Distiller(backend, builtin_registry(), Sandbox(workers=workers, limits_only=s.sandbox.limits_only))
    rejected = Rejections()
    chosen: list[Seed] = []
    for root in paths:
        if not root.is_dir():
            raise UserError(f"{root} is not a directory", hint="pass repository folders")
        chosen += seeds_from(root.resolve(), seeds)
    with stage_progress() as progress:

        def report_progress(done: int, total: int) -> None:
            progress("distill", done, total)

        fanout = None
        if ray is not None:
            from forgepilot.datagen.ray_fanout import RaySeedFanout

            fanout = RaySeedFanout(ray, s, backend.name, max_tokens=distiller.max_tokens, workers=ray_workers)
        kept = distil_dataset(
            distiller, chosen, s.dataset, rejected, suites=suites or (), progress=report_progress, fanout=fanout
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    files = write_all(kept, out_dir, formats=[f for f in FORMATS if f != "fim"], eos="")
    report = BuildReport(out_dir, len(kept), rejected, [], files, {}, card_mod.counts(kept))
    lineage = [
        {"repository": p.resolve().name, "root": str(p.resolve()), "licence": "", "teacher": backend.name}
        for p in paths
    ]
    card_mod.write_card(out_dir, kept, report, settings=s.dataset, lineage=lineage, family=backend.name)
    err.print(
        f"[green]distilled[/] {escape(str(out_dir))}: {len(kept)} kept; "
        + ", ".join(f"{k} {v}" for k, v in sorted(rejected.by_reason.items(), key=lambda kv: -kv[1]))
    )
    out.print(str(out_dir / "README.md"))
