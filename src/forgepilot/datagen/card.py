"""The dataset card (``card.json`` and ``README.md`` in the output folder): what is in the set and where it came from.

Counts by kind, language and split; rejections by reason and kind; a token-length histogram; the configuration;
the template versions used; the source repositories' commits and licences; a sha256 of every output file and of
the whole set (the sorted instance ids), which is the dataset's identity in lineage records.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forgepilot import __version__
from forgepilot.config import DatasetSettings
from forgepilot.datagen.types import SCHEMA_VERSION, Instance

if TYPE_CHECKING:
    from forgepilot.datagen.pipeline import BuildReport

_BINS = (64, 128, 256, 512, 1024, 2048, 4096)


def counts(instances: Sequence[Instance]) -> dict[str, dict[str, int]]:
    return {
        "kind": dict(Counter(i.kind for i in instances).most_common()),
        "language": dict(Counter(i.language for i in instances).most_common()),
        "split": dict(Counter(i.split for i in instances).most_common()),
    }


def token_histogram(instances: Sequence[Instance]) -> dict[str, int]:
    hist = {f"<={b}": 0 for b in _BINS}
    hist[f">{_BINS[-1]}"] = 0
    for inst in instances:
        label = next((f"<={b}" for b in _BINS if inst.tokens <= b), f">{_BINS[-1]}")
        hist[label] += 1
    return hist


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_card(
    out: Path,
    instances: Sequence[Instance],
    report: BuildReport,
    *,
    settings: DatasetSettings,
    lineage: list[dict[str, Any]],
    family: str,
) -> dict[str, Any]:
    templates: dict[str, set[str]] = {}
    for inst in instances:
        for id_key, version_key in (("template_id", "template_version"), ("chat_template_id", "chat_template_version")):
            if id_key in inst.template:
                templates.setdefault(inst.template[id_key], set()).add(inst.template[version_key])
    ids = hashlib.sha256("\n".join(sorted(i.id for i in instances)).encode()).hexdigest()
    data: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "forgepilot_version": __version__,
        "dataset_sha256": ids,
        "instances": len(instances),
        "counts": counts(instances),
        "by_kind_and_split": _cross(instances),
        "rejections": {
            "total": report.rejections.total(),
            "by_reason": dict(sorted(report.rejections.by_reason.items(), key=lambda kv: -kv[1])),
            "by_kind": report.rejections.by_kind,
        },
        "failures": report.failures,
        "tokens": {
            "histogram": token_histogram(instances),
            "total": sum(i.tokens for i in instances),
            "max": max((i.tokens for i in instances), default=0),
        },
        "model_family": family,
        "config": settings.model_dump(),
        "templates": {k: sorted(v) for k, v in sorted(templates.items())},
        "sources": lineage,
        "files": {
            name: {"path": str(p.relative_to(out)), "sha256": _sha256(p)} for name, p in sorted(report.files.items())
        },
        "seconds": {k: round(v, 3) for k, v in report.seconds.items()},
    }
    (out / "card.json").write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "README.md").write_text(render_markdown(data), encoding="utf-8")
    return data


def _cross(instances: Sequence[Instance]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for inst in instances:
        row = out.setdefault(inst.kind, {})
        row[inst.split] = row.get(inst.split, 0) + 1
    return out


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(data: dict[str, Any]) -> str:
    splits = ["train", "valid", "test"]
    parts = [
        "# Dataset card",
        "",
        f"{data['instances']} instances, dataset sha256 `{data['dataset_sha256']}`, schema {data['schema_version']}, "
        f"built by forgepilot {data['forgepilot_version']} for the `{data['model_family']}` family.",
        "",
        "## Instances by kind and split",
        _table(
            ["kind", *splits, "total"],
            [[k, *(row.get(s, 0) for s in splits), sum(row.values())] for k, row in data["by_kind_and_split"].items()],
        ),
        "",
        "## By language",
        _table(["language", "instances"], list(data["counts"]["language"].items())),
        "",
        f"## Rejections ({data['rejections']['total']})",
        _table(["reason", "count"], list(data["rejections"]["by_reason"].items())),
        "",
        "## Tokens per instance (serving tokenizer)",
        _table(["bucket", "instances"], list(data["tokens"]["histogram"].items())),
        "",
        "## Lineage",
        _table(
            ["repository", "commit", "dirty", "licence"],
            [[s["repository"], s.get("commit") or "(not git)", s.get("dirty"), s["licence"]] for s in data["sources"]],
        ),
        "",
        "Templates: " + ", ".join(f"`{k}` {', '.join(v)}" for k, v in data["templates"].items()),
        "",
        "## Files",
        _table(["file", "sha256"], [[v["path"], f"`{v['sha256']}`"] for v in data["files"].values()]),
        "",
    ]
    if data["failures"]:
        parts += ["## Files that failed", *(f"- `{f['path']}`: {f['error']}" for f in data["failures"]), ""]
    return "\n".join(parts)
