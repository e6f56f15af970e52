"""Shared CLI plumbing: consoles, settings, JSON output, progress bars and running coroutines."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from forgepilot.backends.embedded import ProgressFn
from forgepilot.config import Settings, load_settings

T = TypeVar("T")

#: The fan-out options of `eval run`, `dataset build` and `dataset distill`.
RayAddress = Annotated[
    str | None,
    typer.Option(
        "--ray", help="Fan the work out over a Ray cluster: 'auto' (the one `ray start` runs here) or HOST:PORT."
    ),
]
RayWorkerCount = Annotated[
    int | None, typer.Option("--ray-workers", min=1, help="Ray workers (default: one per CPU of the cluster).")
]

# Data goes to stdout; everything for people (progress, notes, errors) goes to stderr.
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def settings() -> Settings:
    return load_settings()


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "__fspath__"):
        return str(value)
    return value


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(_plain(value), indent=2, ensure_ascii=False) + "\n")


@contextmanager
def byte_progress(description: str) -> Iterator[ProgressFn]:
    """A progress bar for byte counts (assembling or hashing a model); silent when stderr is not a terminal."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    ) as progress:
        task = progress.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update
