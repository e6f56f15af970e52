"""``forgepilot index``, ``index status``, ``search`` and ``symbols``: build and query the repository index."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, cast

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from forgepilot.cli._common import err, out, print_json, settings
from forgepilot.config import Settings
from forgepilot.errors import UserError
from forgepilot.index import Filters, Indexer, IndexReport, ScanSettings, Searcher, Workspace
from forgepilot.index.indexer import Progress as ProgressFn
from forgepilot.index.search import Mode
from forgepilot.syntax import analyze, detect_language


def workspace() -> Workspace:
    return Workspace(settings().state_dir / "index")


@contextmanager
def stage_progress() -> Iterator[ProgressFn]:
    with Progress(
        TextColumn("{task.description:>8}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=err,
        disable=not err.is_terminal,
    ) as progress:
        tasks: dict[str, TaskID] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done, total=total)

        yield update


def _status(json_: bool) -> None:
    ws = workspace()
    repos = [
        {
            "name": st.repository.name,
            "root": st.repository.root,
            "commit": st.repository.head_commit,
            "indexed_at": st.repository.indexed_at,
            "files": st.files,
            "skipped_by_reason": st.skipped_by_reason,
            "chunks": st.chunks,
            "embedded_chunks": st.embedded_chunks,
            "symbols": st.symbols,
            "problems": [vars(p) for p in st.problems],
        }
        for st in ws.store.status()
    ]
    if json_:
        print_json({"workspace": str(ws.root), "repositories": repos})
        return
    if not repos:
        out.print("nothing indexed yet: forgepilot index PATH")
    for r in repos:
        files = r["files"]
        assert isinstance(files, dict)
        out.print(
            f"[bold]{escape(str(r['name']))}[/] {escape(str(r['root']))}: {files.get('indexed', 0)} files indexed, "
            f"{r['chunks']} chunks ({r['embedded_chunks']} embedded), {r['symbols']} symbols"
        )
        skipped = r["skipped_by_reason"]
        assert isinstance(skipped, dict)
        if skipped:
            out.print("  not indexed: " + ", ".join(f"{k} {v}" for k, v in skipped.items()))
        problems = r["problems"]
        assert isinstance(problems, list)
        for p in problems[:50]:
            out.print(f"  {escape(p['path'])}: {p['status']} {p['reason'] or ''} {escape(p['detail'] or '')}")
        if len(problems) > 50:
            out.print(f"  ... and {len(problems) - 50} more (--json for all)")


def nothing_indexed(report: IndexReport) -> str | None:
    """Why a repository has no indexed file after a run, in words (None when it has some)."""
    if report.parsed or report.unchanged:
        return None
    if report.files_seen == 0:
        return "the folder holds no files (or git lists none: are they all ignored?)"
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(report.skipped.items(), key=lambda kv: -kv[1]))
    return f"all {report.files_seen} files were skipped ({reasons}); see `forgepilot index status --json`"


def index_paths(ws: Workspace, s: Settings, paths: list[str], *, embeddings: bool, quiet: bool) -> list[IndexReport]:
    """Index each folder of ``paths`` into ``ws`` with progress bars, reporting each run unless ``quiet``."""
    scan_settings = ScanSettings(max_file_bytes=s.index.max_file_bytes, max_line_chars=s.index.max_line_chars)
    if s.index.chunk_hard_max < s.index.chunk_target:
        raise UserError("index.chunk_hard_max is below index.chunk_target", hint="raise chunk_hard_max")
    reports = []
    for raw in paths:
        root = Path(raw)
        if not root.is_dir():
            raise UserError(f"{raw} is not a directory", hint="pass repository folders")
        with stage_progress() as progress:
            report = Indexer(
                ws,
                embeddings=embeddings,
                scan_settings=scan_settings,
                chunk_target=s.index.chunk_target,
                chunk_hard_max=s.index.chunk_hard_max,
                progress=progress,
            ).index(root)
        reports.append(report)
        if not quiet:
            skipped = ", ".join(f"{k} {v}" for k, v in sorted(report.skipped.items(), key=lambda kv: -kv[1]))
            err.print(
                f"[green]indexed[/] {escape(report.repository)}: {report.parsed} parsed, {report.unchanged} "
                f"unchanged, {report.deleted} removed, {report.chunks_written} chunks, {report.embedded} "
                f"embedded" + (f"; skipped {skipped}" if skipped else "")
            )
            for path, error in report.errors:
                err.print(f"  [yellow]failed[/] {escape(path)}: {escape(error)}")
            why = nothing_indexed(report)
            if why:
                err.print(f"  [yellow]nothing indexed[/] in {escape(raw)}: {escape(why)}")
    return reports


def index(
    paths: Annotated[list[str], typer.Argument(help="Repository folders to index, or the word 'status'.")],
    no_embeddings: Annotated[bool, typer.Option("--no-embeddings", help="Skip the vector stage.")] = False,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Index repositories (incremental: only changed files are re-parsed); `forgepilot index status` reports."""
    if paths == ["status"] and not Path("status").is_dir():
        _status(json_)
        return
    s = settings()
    ws = Workspace(s.state_dir / "index")
    try:
        reports = index_paths(ws, s, paths, embeddings=not no_embeddings, quiet=json_)
    finally:
        ws.close()
    if json_:
        print_json(reports)


def search(
    query: Annotated[str, typer.Argument(help="Words, identifiers or a question.")],
    repo: Annotated[list[str] | None, typer.Option(help="Only these repositories (name or root).")] = None,
    lang: Annotated[str | None, typer.Option(help="Only this language (python, go, ...).")] = None,
    kind: Annotated[str | None, typer.Option(help="Only chunks defining this kind (function, class, ...).")] = None,
    mode: Annotated[str, typer.Option(help="hybrid, lexical, vector, symbol or path.")] = "hybrid",
    limit: Annotated[int, typer.Option(min=1, max=200)] = 10,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Search indexed code: lexical BM25, embeddings and symbol names fused by reciprocal rank."""
    ws = workspace()
    searcher = Searcher(ws)
    filters = Filters(tuple(repo or ()), lang, kind)
    if mode == "path":
        matches = searcher.paths(query, limit, filters)
        if json_:
            print_json([{"repository": r, "path": p, "score": s} for r, p, s in matches])
        else:
            for r, p, s in matches:
                out.print(f"{s:5.1f}  {escape(r)}:{escape(p)}")
        return
    if mode not in ("hybrid", "lexical", "vector", "symbol"):
        raise UserError(f"unknown search mode {mode!r}", hint="use hybrid, lexical, vector, symbol or path")
    has_vectors = ws.store.has_vectors()
    hits = searcher.search(query, limit, filters, mode=cast(Mode, mode), vectors=has_vectors)
    if json_:
        print_json(hits)
        return
    if not hits:
        out.print("no results")
    for h in hits:
        sources = " ".join(f"{k}#{v}" for k, v in h.ranks.items())
        out.print(f"[bold]{escape(h.path)}:{h.start_line}-{h.end_line}[/] [dim]{escape(h.repository)} {sources}[/]")
        preview = h.text.strip().splitlines()[:4]
        for line in preview:
            out.print("    " + escape(line[:110]))


def symbols(
    file: Annotated[Path, typer.Argument(help="A source file.")],
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The definitions in a file (parsed now, no index needed), with kinds, signatures and spans."""
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {file}: {exc.strerror or exc}") from exc
    language = detect_language(file, data[:128])
    if language is None or language.grammar is None:
        raise UserError(
            f"{file}: no parser for this file type",
            hint="supported: python, java, kotlin, js, ts, go, rust, c, c++, c#",
        )
    result = analyze(data, language)
    if json_:
        print_json({"file": str(file), "language": language.name, "symbols": result.symbols, "imports": result.imports})
        return
    table = Table("lines", "kind", "name", "signature", box=None)
    for s in result.symbols:
        table.add_row(f"{s.start_line}-{s.end_line}", s.kind, escape(s.qualified_name), escape(s.signature[:80]))
    out.print(table)
