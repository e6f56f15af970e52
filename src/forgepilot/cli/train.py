"""``forgepilot train``: fine-tune a base model on a dataset, export it for llama.cpp, register it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from forgepilot.cli._common import err, out, print_json, settings


def train(
    dataset: Annotated[Path, typer.Argument(help="A `forgepilot dataset build` (or `dataset distill`) folder.")],
    base: Annotated[
        str, typer.Option(help="Base model: an embedded one (llamacpp:qwen2.5-coder-0.5b), a .gguf file or a folder.")
    ] = "llamacpp:qwen2.5-coder-0.5b",
    method: Annotated[str, typer.Option(help="auto (seed 003's rule), lora or sft.")] = "auto",
    mix: Annotated[
        list[str] | None, typer.Option(help="Another dataset making up a share of the data: DIR:SHARE (repeatable).")
    ] = None,
    name: Annotated[str | None, typer.Option("--out", help="Name of the trained model (llamacpp:NAME).")] = None,
    tokenizer_gguf: Annotated[
        Path | None, typer.Option(help="For a transformers-folder base: a GGUF with its tokenizer, for export.")
    ] = None,
    allow_template_mismatch: Annotated[
        bool, typer.Option(help="Train a dataset rendered with other prompt template versions than serving's.")
    ] = False,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many optimiser steps.")] = None,
    family: Annotated[
        str | None, typer.Option(help="FIM family of a base that is not embedded, if the dataset card has none.")
    ] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print the run report as JSON.")] = False,
) -> None:
    """Fine-tune (LoRA or full SFT) on your own code, export to GGUF (float16, Q4_K_M, Q8_0, LoRA adapter), check
    the conversion, and register the model so `serve`, `eval run`, `gate run` and `promote` accept it.

    Interrupted (Ctrl-C) or failed runs keep their checkpoints: the same command resumes.
    """
    from forgepilot.train import Mix, TrainRequest, run_training

    s = settings()
    request = TrainRequest(
        dataset=dataset,
        base=base,
        name=name or f"{dataset.resolve().name}-{method}",
        method=method,
        mixes=tuple(Mix.parse(m) for m in mix or ()),
        tokenizer_gguf=tokenizer_gguf,
        allow_template_mismatch=allow_template_mismatch,
        max_steps=max_steps,
        family=family,
    )
    report = run_training(request, s, echo=lambda line: err.print(escape(line)))
    if json_:
        print_json(report)
        return
    for c in report.checks:
        verdict = "[green]ok[/]" if c.passed else "[red]FAIL[/]"
        limit = f" (limit {c.limit})" if c.limit is not None else ""
        err.print(f"  {escape(c.file)}: KL {c.kl_mean:.5f}{limit}, top-1 agreement {c.top1_agreement:.3f} {verdict}")
    err.print(f"[green]trained[/] {escape(report.name)} ({report.choice.rule})")
    for served in report.served_as:
        out.print(served)
