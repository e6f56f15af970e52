"""Dataset generation figures (issue: datagen) on the Python standard library.

The top-level modules of this Python's standard library (``Lib/*.py``, about 170 files, 3 MB) are copied into a
scratch repository and built into a dataset with the embedded default model's tokenizer (Qwen2.5-Coder), every
kind, every gate and every format, exactly as ``forgepilot dataset build`` does. Reported: instances per second by
type (instances of the kind / seconds drawing them), seconds per stage (index, scan, redact, parse, build, gates,
dedup, decontaminate, split, write), peak resident memory, and the rejection table.

    python benchmarks/datagen.py [--files N] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from forgepilot.config import load_settings
from forgepilot.datagen.pipeline import BuildOptions, open_builder

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=None, help="at most this many stdlib modules")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/datagen.json")
    args = parser.parse_args()

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    with tempfile.TemporaryDirectory(prefix="fp-bench-datagen-") as tmp:
        repo = Path(tmp) / "cpython-lib"
        repo.mkdir()
        modules = sorted(stdlib.glob("*.py"))[: args.files]
        for path in modules:
            shutil.copy2(path, repo / path.name)
        (repo / "LICENSE").write_text("PYTHON SOFTWARE FOUNDATION LICENSE VERSION 2\n")
        size = sum(p.stat().st_size for p in repo.glob("*.py"))
        settings = load_settings()
        settings.state_dir = Path(tmp) / "state"
        settings.state_dir.mkdir()
        (settings.state_dir / "models").symlink_to(load_settings().models_dir, target_is_directory=True)
        t = time.perf_counter()
        builder = open_builder(settings)
        load_s = time.perf_counter() - t
        t = time.perf_counter()
        report = builder.build([repo], BuildOptions(out=Path(tmp) / "out", resume=False))
        wall = time.perf_counter() - t
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kinds = report.counts["kind"]
    seconds = report.seconds
    per_kind = {}
    for kind, n in kinds.items():
        stage = "documentation" if kind in ("code_to_doc", "doc_to_code") else kind
        s = seconds.get(f"build:{stage}", 0.0)
        per_kind[kind] = {"instances": n, "seconds": round(s, 3), "per_s": round(n / s, 1) if s else None}
    result = {
        "corpus": {"path": str(stdlib), "files": len(modules), "bytes": size},
        "model_load_s": round(load_s, 2),
        "wall_s": round(wall, 2),
        "instances": report.instances,
        "instances_per_s": round(report.instances / wall, 1),
        "by_kind": per_kind,
        "stages_s": {k: round(v, 3) for k, v in sorted(seconds.items())},
        "peak_rss_mib": round(peak_mib, 1),
        "rejections": dict(sorted(report.rejections.by_reason.items(), key=lambda kv: -kv[1])),
        "failures": len(report.failures),
        "splits": report.counts["split"],
    }
    print(
        f"stdlib: {len(modules)} modules, {size / 1e6:.1f} MB -> {report.instances} instances in {wall:.1f} s "
        f"({result['instances_per_s']}/s), peak RSS {peak_mib:.0f} MiB, model load {load_s:.1f} s"
    )
    print(f"\n{'kind':<14}{'instances':>10}{'seconds':>10}{'per s':>10}")
    for kind, row in per_kind.items():
        print(f"{kind:<14}{row['instances']:>10}{row['seconds']:>10}{row['per_s'] or '-':>10}")
    print(f"\n{'stage':<22}{'seconds':>10}")
    for stage, s in result["stages_s"].items():
        print(f"{stage:<22}{s:>10}")
    print(f"\n{'rejected because':<32}{'count':>8}")
    for reason, n in result["rejections"].items():
        print(f"{reason:<32}{n:>8}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
