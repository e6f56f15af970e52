"""``forgepilot suggest`` and ``forgepilot task``: the assistant's serving path from the command line.

``suggest`` is what an editor gets (repository context, completion mode, post-processing, the *why*);
``task`` runs a chat task (explain, tests, review, commit, refactor, document, ask) on a file, a diff or a question.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from forgepilot.cli._common import err, out, print_json, run, settings
from forgepilot.cli.complete import cursor_offset, read_source
from forgepilot.errors import UserError

_DIFF_TASKS = ("review", "commit")


def suggest(
    file: Annotated[str, typer.Argument(help="The file to complete in, or - for stdin.")],
    at: Annotated[str | None, typer.Option(help="Cursor as LINE:COL, 1-based (default: end of the text).")] = None,
    mode: Annotated[str | None, typer.Option(help="inline, in-block or after-block (default: inferred).")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="provider:model (default: the fast tier).")] = None,
    context: Annotated[bool, typer.Option("--context/--no-context", help="Use repository context.")] = True,
    json_: Annotated[bool, typer.Option("--json", help="Print the completion and its why as JSON.")] = False,
) -> None:
    """Complete at the cursor the way editors are served: with context, a mode and post-processing."""
    from forgepilot.assist import MODES, Assistant, CompletionInput
    from forgepilot.context import Document

    if mode is not None and mode not in MODES:
        raise UserError(f"unknown mode {mode!r}", hint=f"one of: {', '.join(MODES)}")
    text, label = read_source(file)
    path = str(Path(file).resolve()) if file != "-" else "stdin"
    doc = Document.at(path, text, offset=cursor_offset(text, at))
    assistant = Assistant.open(settings())

    async def go() -> Any:
        try:
            return await assistant.completions.complete(
                CompletionInput(document=doc, mode=mode, model=model, context=context)
            )
        finally:
            await assistant.aclose()

    result = run(go())
    if json_:
        print_json({"model": result.model, "text": result.text, "why": result.why(), "usage": result.usage})
        return
    out.out(result.text)
    if result.reason:
        err.print(f"[dim](nothing to insert: {result.reason})[/]")


def task(
    name: Annotated[str, typer.Argument(help="explain, tests, review, commit, refactor, document or ask.")],
    file: Annotated[
        str | None, typer.Argument(help="Code (or a diff for review/commit) from a file, or - for stdin.")
    ] = None,
    question: Annotated[str | None, typer.Option("--question", "-q", help="The question (ask).")] = None,
    instruction: Annotated[str | None, typer.Option(help="What to change (refactor).")] = None,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="provider:model (default: the task's tier).")
    ] = None,
    max_tokens: Annotated[int | None, typer.Option(min=1, help="Most tokens to generate.")] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Run a chat task; `git diff | forgepilot task commit -` writes a commit message."""
    from forgepilot.assist import Assistant, TaskInput

    text, path = ("", "")
    if file is not None:
        text, _ = read_source(file)
        path = str(Path(file).resolve()) if file != "-" else ""
    inp = TaskInput(
        code="" if name in _DIFF_TASKS else text,
        diff=text if name in _DIFF_TASKS else "",
        path=path,
        question=question or "",
        instruction=instruction or "",
        model=model,
        max_tokens=max_tokens,
    )
    assistant = Assistant.open(settings())

    async def go() -> Any:
        try:
            return await assistant.tasks.run(name, inp)
        finally:
            await assistant.aclose()

    result = run(go())
    if json_:
        print_json(result)
        return
    out.out(result.text)
    for c in result.citations:
        err.print(f"[dim]cites {c['path']}:{c['line']} ({'in the sources' if c['valid'] else 'NOT in the sources'})[/]")
