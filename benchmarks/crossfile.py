"""Cross-file completion: does repository context help on real code we did not write? (issue: completions that help)

Repositories are pinned releases from PyPI (sdists) and npm (package tarballs), fetched once through the package
registries into ``~/.cache/forgepilot/bench``. ``dataset build --kinds crossfile_line,crossfile_api`` cuts the
CrossCodeEval-style holes (a line, or a call, that starts at a name defined in another file of the same package);
every split is used (nothing here is trained on). A stable hash picks ``--holes`` holes per language. Each set runs
through the serving path (``eval run``) with all context sources, in-file only, and each source switched off:

- exact match, edit similarity and identifier exact match per configuration, with the relative EM gain of context
  over in-file only (goal >= +25%) and the holes context made better / worse;
- each source's contribution: the change when it is switched off, and the holes it won or lost.

    python benchmarks/crossfile.py [--holes 100] [--languages python,javascript] [--model M] [--no-ablate]
                                   [--label NAME] [--out PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("FORGEPILOT_BENCH_CACHE", Path.home() / ".cache" / "forgepilot" / "bench"))
#: (registry, name, version) per language: packages whose modules import each other, none of them ours.
REPOS: dict[str, list[tuple[str, str, str]]] = {
    "python": [
        ("pypi", "click", "8.1.8"),
        ("pypi", "flask", "3.1.0"),
        ("pypi", "httpx", "0.28.1"),
        ("pypi", "rich", "13.9.4"),
    ],
    "javascript": [("npm", "express", "4.22.3"), ("npm", "koa", "3.3.0"), ("npm", "mocha", "12.0.3")],
}


def fetch(registry: str, name: str, version: str) -> Path:
    """The unpacked release, fetched once through its package registry."""
    target = CACHE / "src" / f"{name}-{version}"
    if target.is_dir():
        return target
    downloads = CACHE / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    if registry == "pypi":
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:", "--no-deps",
             f"{name}=={version}", "-d", str(downloads)],
            check=True,
        )  # fmt: skip
        archive = next(downloads.glob(f"{name}-{version}.tar.gz"))
    else:
        subprocess.run(["npm", "pack", "--silent", f"{name}@{version}"], cwd=downloads, check=True, capture_output=True)
        archive = downloads / f"{name}-{version}.tgz"
    unpack = CACHE / "src" / f".{name}-{version}"
    shutil.rmtree(unpack, ignore_errors=True)
    with tarfile.open(archive) as tar:
        tar.extractall(unpack, filter="data")
    (inner,) = list(unpack.iterdir())
    inner.rename(target)
    unpack.rmdir()
    return target


def hole_key(case: Any) -> str:
    """A hole's identity from where it is and what it holds: the same across code versions (an instance id also
    hashes its rendered prompt, which changes with the context engine), so before / after runs share their holes."""
    where = (case.input["repository"], case.input["path"], len(case.input["prefix"]), case.slices.get("task"))
    return hashlib.sha256(json.dumps([*where, case.expected]).encode()).hexdigest()[:20]


def holes_for(language: str, count: int, work: Path, builder: Any, rebuild: bool) -> tuple[Any, list[dict[str, Any]]]:
    """The suite of ``count`` holes of ``language`` (a stable-hash sample), cut and indexed by ``builder`` once
    into ``work`` (later runs reuse the holes and the index: the same holes whatever the serving settings)."""
    from forgepilot.datagen.pipeline import BuildOptions
    from forgepilot.evals.suites import Suite, load_suite

    roots = [fetch(*repo) for repo in REPOS[language]]
    out = work / f"dataset-{language}"
    if rebuild or not (out / "card.json").is_file():  # pinned releases: what was built and indexed stays valid
        builder.build(roots, BuildOptions(out=out, kinds=("crossfile_line", "crossfile_api"), resume=False))
    full = load_suite(out)
    ranked = sorted(full.cases, key=hole_key)[:count]
    sha = hashlib.sha256(("".join(c.id for c in ranked)).encode()).hexdigest()
    suite = Suite(f"crossfile-{language}", "completion", ranked, full.source, sha, "cross-file holes")
    built = Counter(str(c.input["repository"]) for c in full.cases)
    sampled = Counter(str(c.input["repository"]) for c in ranked)
    repos = [
        {"name": f"{n}-{v}", "registry": r, "holes_built": built[f"{n}-{v}"], "holes_sampled": sampled[f"{n}-{v}"]}
        for r, n, v in REPOS[language]
    ]
    return suite, repos


def run_suite(settings: Any, workspace: Any, suite: Any, config: Any, store: Any) -> tuple[Any, float]:
    """A fresh ``EvalRunner`` run of ``suite`` under ``config`` (a ``RunConfig``): the finished run, its wall time."""
    from forgepilot.evals.runner import EvalRunner

    runner = EvalRunner(settings, store, workspace=workspace)

    async def go() -> Any:
        try:
            return await runner.run(suite, config, fresh=True)
        finally:
            await runner.aclose()

    t = time.perf_counter()
    row = asyncio.run(go())
    return row, time.perf_counter() - t


def run_config(
    settings: Any, workspace: Any, suite: Any, model: str, sources: tuple[str, ...], store: Any
) -> dict[str, Any]:
    from forgepilot.evals.runner import RunConfig

    row, wall = run_suite(settings, workspace, suite, RunConfig(model, sources=sources), store)
    key_of = {c.id: hole_key(c) for c in suite.cases}
    results = store.results(row.id)
    m = (row.summary or {}).get("metrics", {})
    lat = (row.summary or {}).get("latency", {}).get("latency_s", {})
    return {
        "sources": list(sources),
        "em": round(m.get("em", 0.0), 4),
        "es": round(m.get("es", 0.0), 4),
        "id_em": round(m.get("id_em", 0.0), 4),
        "wall_s": round(wall, 1),
        "latency_p50_s": lat.get("p50"),
        "errors": (row.summary or {}).get("errors"),
        "cases": {
            key_of[r["case_id"]]: {
                "em": (r.get("metrics") or {}).get("em"),
                "es": r["score"],
                "answer": (r.get("samples") or [{}])[0].get("text"),
                "sources": (r.get("samples") or [{}])[0].get("sources"),
            }
            for r in results
        },
    }


def compare(a: dict[str, Any], b: dict[str, Any]) -> dict[str, int]:
    """Holes where ``a`` beat ``b`` on exact match, and where it lost."""
    better = sum(1 for k, x in a["cases"].items() if (x["em"] or 0) > (b["cases"].get(k, {}).get("em") or 0))
    worse = sum(1 for k, x in a["cases"].items() if (x["em"] or 0) < (b["cases"].get(k, {}).get("em") or 0))
    return {"better": better, "worse": worse}


def apply_settings(settings: Any, assignments: list[str]) -> Any:
    """A copy of ``settings`` with ``SECTION.KEY=VALUE`` assignments (JSON values) applied."""
    settings = settings.model_copy(deep=True)
    for assignment in assignments:
        key, _, value = assignment.partition("=")
        section, _, name = key.strip().partition(".")
        part = getattr(settings, section)
        setattr(settings, section, part.model_copy(update={name: json.loads(value)}))
    return settings


def parse_variant(text: str) -> tuple[str, list[str]]:
    """``LABEL`` or ``LABEL=SECTION.KEY=VALUE;SECTION.KEY=VALUE``."""
    label, _, rest = text.partition("=")
    return label, [a for a in rest.split(";") if a.strip()] if rest else []


def run_variant(
    settings: Any, workspace: Any, suite: Any, model: str, store: Any, sources: tuple[str, ...], args: Any
) -> dict[str, Any]:
    """All sources, in-file only and each source switched off, under one set of settings."""
    configs: dict[str, tuple[str, ...]] = {"all sources": sources}
    if not args.context_only:
        configs["in-file only"] = ()
    if not args.no_ablate:
        configs |= {f"without {s}": tuple(x for x in sources if x != s) for s in sources}
    runs = {label: run_config(settings, workspace, suite, model, srcs, store) for label, srcs in configs.items()}
    base, none = runs["all sources"], runs.get("in-file only")
    return {
        "relative_em_gain": round((base["em"] - none["em"]) / none["em"], 4) if none and none["em"] else None,
        "es_gain": round(base["es"] - none["es"], 4) if none else None,
        "context_vs_in_file": compare(base, none) if none else None,
        "sources": {
            s: {
                "em_change_when_off": round(runs[f"without {s}"]["em"] - base["em"], 4),
                "es_change_when_off": round(runs[f"without {s}"]["es"] - base["es"], 4),
                "holes_it_won": compare(base, runs[f"without {s}"])["better"],
                "holes_it_lost": compare(base, runs[f"without {s}"])["worse"],
            }
            for s in sources
            if f"without {s}" in runs
        },
        "runs": runs,
    }


def print_variant(label: str, entry: dict[str, Any]) -> None:
    print(f"  variant {label}")
    print(f"  {'configuration':<22}{'EM':>8}{'ES':>8}{'id EM':>8}{'p50 s':>8}{'wall s':>8}")
    for name, r in entry["runs"].items():
        p50 = f"{r['latency_p50_s']:.2f}" if r["latency_p50_s"] is not None else "-"
        print(f"  {name:<22}{r['em']:>8}{r['es']:>8}{r['id_em']:>8}{p50:>8}{r['wall_s']:>8}")
    cmp = entry["context_vs_in_file"]
    if cmp is not None:
        print(
            f"  context over in-file: relative EM {entry['relative_em_gain']} (goal >= +0.25), "
            f"ES {entry['es_gain']:+}; {cmp['better']} holes better, {cmp['worse']} worse"
        )
    for s, c in entry["sources"].items():
        print(
            f"    {s:<10} off: EM {c['em_change_when_off']:+.4f}, ES {c['es_change_when_off']:+.4f}; "
            f"won {c['holes_it_won']}, lost {c['holes_it_lost']}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--holes", type=int, default=100)
    parser.add_argument("--languages", default="python,javascript")
    parser.add_argument("--model", default=None)
    parser.add_argument("--no-ablate", action="store_true")
    parser.add_argument("--context-only", action="store_true", help="only the all-sources run (for experiments)")
    parser.add_argument("--sources", default="", help="the context sources of 'all sources' (default: every one)")
    parser.add_argument("--label", default="")
    parser.add_argument(
        "--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
        help="a setting for every run, e.g. context.related_max=3 (JSON values; repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--variant", action="append", default=[], metavar="LABEL[=SECTION.KEY=VALUE;...]",
        help="settings compared on the same holes, each run with and without context (repeatable)",
    )  # fmt: skip
    parser.add_argument("--work", type=Path, default=CACHE / "crossfile-work", help="holes and index, kept")
    parser.add_argument("--rebuild", action="store_true", help="cut the holes and index the sources again")
    parser.add_argument(
        "--generations", type=Path, default=None,
        help="an evaluation store kept across runs: a prompt the model answered before (the exact request, same "
        "model) is answered from it, with the latency it had then (default: a new store per run)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/crossfile.json")
    args = parser.parse_args()

    import tempfile

    from forgepilot.config import load_settings
    from forgepilot.context.types import SNIPPET_SOURCES as SOURCES
    from forgepilot.datagen.pipeline import open_builder
    from forgepilot.evals.store import EvalStore

    result: dict[str, Any] = {"label": args.label, "cpus": os.cpu_count(), "settings": args.set, "languages": {}}
    variants = [parse_variant(v) for v in args.variant] or [("default", [])]
    result["variants"] = {label: assignments for label, assignments in variants}
    base = load_settings()
    models_dir = base.models_dir
    work = args.work
    (work / "fp").mkdir(parents=True, exist_ok=True)
    if not (work / "fp" / "models").exists():
        (work / "fp" / "models").symlink_to(models_dir, target_is_directory=True)
    base.state_dir = work / "fp"
    base = apply_settings(base, args.set)
    model = args.model or base.assist.fast or base.default_model
    result["model"] = model
    with tempfile.TemporaryDirectory(prefix="fp-bench-crossfile-") as tmp:
        store = EvalStore(args.generations or Path(tmp) / "evals.db")
        # The holes are cut once with the default settings: every variant is judged on the same ones.
        builder = open_builder(load_settings().model_copy(update={"state_dir": work / "fp"}), model)
        workspace = builder.workspace
        for language in [x for x in args.languages.split(",") if x]:
            suite, repos = holes_for(language, args.holes, work, builder, args.rebuild)
            sources = tuple(x for x in args.sources.split(",") if x) if args.sources else SOURCES
            entry: dict[str, Any] = {
                "repositories": repos,
                "holes": len(suite.cases),
                "kinds": {
                    k: sum(1 for c in suite.cases if c.slices.get("task") == k)
                    for k in ("crossfile_line", "crossfile_api")
                },
                "variants": {},
                "targets": {
                    hole_key(c): {"target": c.expected, "path": c.input["path"], "repository": c.input["repository"]}
                    for c in suite.cases
                },
            }
            print(f"\n{language}: {entry['holes']} cross-file holes from " + ", ".join(r["name"] for r in repos))
            for label, assignments in variants:
                settings = apply_settings(base, assignments)
                entry["variants"][label] = run_variant(settings, workspace, suite, model, store, sources, args)
                print_variant(label, entry["variants"][label])
                args.out.parent.mkdir(parents=True, exist_ok=True)
                result["languages"][language] = entry
                args.out.write_text(json.dumps(result, indent=1) + "\n")  # what is done so far survives a stop
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
