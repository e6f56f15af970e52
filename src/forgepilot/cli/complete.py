"""``forgepilot complete``: complete code at a cursor in a file (or stdin) with any model."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

import typer

from forgepilot.backends.base import Completion, CompletionChunk, CompletionRequest, Stopwatch, collect
from forgepilot.backends.resolve import open_backend
from forgepilot.cli._common import byte_progress, err, out, print_json, run, settings
from forgepilot.errors import UserError


def read_source(file: str) -> tuple[str, str]:
    """The text to complete and a name for it; binary or non-UTF-8 input is refused with a clear message."""
    if file == "-":
        data, label = sys.stdin.buffer.read(), "stdin"
    else:
        path = Path(file)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UserError(f"cannot read {file}: {exc.strerror or exc}") from exc
        label = file
    if b"\x00" in data:
        raise UserError(f"{label} looks binary (it contains NUL bytes)", hint="complete text files only")
    try:
        return data.decode("utf-8"), label
    except UnicodeDecodeError as exc:
        raise UserError(
            f"{label} is not UTF-8 text (byte {exc.start} is invalid)", hint="convert it to UTF-8 first"
        ) from exc


def cursor_offset(text: str, at: str | None) -> int:
    """Character offset of a 1-based ``LINE:COL`` cursor (end of text when ``at`` is None)."""
    if at is None:
        return len(text)
    try:
        line_s, col_s = at.split(":")
        line, col = int(line_s), int(col_s)
    except ValueError:
        raise UserError(f"--at {at!r} is not LINE:COL", hint="e.g. --at 12:5 (both 1-based)") from None
    lines = text.split("\n")
    if not 1 <= line <= len(lines):
        raise UserError(f"line {line} is outside the text (it has {len(lines)} lines)")
    if not 1 <= col <= len(lines[line - 1]) + 1:
        raise UserError(f"column {col} is outside line {line} (it has {len(lines[line - 1])} characters)")
    return sum(len(x) + 1 for x in lines[: line - 1]) + col - 1


def complete(
    file: Annotated[str, typer.Argument(help="The file to complete in, or - for stdin.")] = "-",
    at: Annotated[str | None, typer.Option(help="Cursor as LINE:COL, 1-based (default: end of the text).")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="provider:model (default: settings).")] = None,
    max_tokens: Annotated[int, typer.Option(min=1, help="Most tokens to generate.")] = 128,
    temperature: Annotated[float, typer.Option(min=0.0, max=2.0)] = 0.0,
    stop: Annotated[list[str] | None, typer.Option(help="Extra stop string (repeatable).")] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print text, usage, cost, timings as JSON.")] = False,
) -> None:
    """Complete code at the cursor: text before it is the prefix, text after it the suffix (fill-in-the-middle)."""
    text, _label = read_source(file)
    offset = cursor_offset(text, at)
    prefix, suffix = text[:offset], text[offset:]
    request = CompletionRequest(
        prompt=prefix,
        suffix=suffix if suffix.strip() else None,
        max_tokens=max_tokens,
        temperature=temperature,
        stop=tuple(stop or ()),
    )
    with byte_progress("preparing model") as progress:
        backend = open_backend(model, settings(), progress=progress)

    async def go() -> Completion:
        try:
            if json_ or not backend.can_stream:
                return await backend.complete(request)
            watch = Stopwatch()

            async def echo() -> AsyncIterator[CompletionChunk]:
                async for chunk in backend.stream(request):
                    if chunk.text:
                        out.out(chunk.text, end="")
                    yield chunk

            result = await collect(echo(), backend.name, watch)
            out.out("")
            return result
        finally:
            await backend.aclose()

    result = run(go())
    if json_:
        print_json(
            {
                "model": result.model,
                "text": result.text,
                "finish_reason": result.finish_reason,
                "usage": result.usage,
                "cost": result.cost,
                "timings": result.timings,
            }
        )
    elif result.finish_reason == "length":
        err.print(f"[dim](stopped at --max-tokens {max_tokens})[/]")
