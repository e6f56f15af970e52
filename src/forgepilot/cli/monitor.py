"""``forgepilot monitor`` (acceptance, retention, latency, drift, serving mode) and ``forgepilot audit``."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from forgepilot.cli._common import err, out, print_json, settings
from forgepilot.errors import AuditTampered, UserError

if TYPE_CHECKING:
    from forgepilot.monitor import AuditEntry, MonitorSummary

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """``90``, ``30m``, ``24h``, ``7d`` -> seconds."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not found or float(found.group(1)) <= 0:
        raise UserError(f"not a duration: {text!r}", hint="write it as 90, 30m, 24h or 7d")
    return float(found.group(1)) * _UNITS[found.group(2) or "s"]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _group(group: dict[str, str | None]) -> list[str]:
    """One cell for the whole group (a table of five key columns does not fit a terminal)."""
    return [" / ".join(escape(str(v)) if v is not None else "-" for v in group.values()) or "all"]


def _side(values: dict[str, float]) -> str:
    """A drift side in a few words: shares of categories, a rate, or percentiles."""
    if not values:
        return "-"
    if "rate" in values:
        return f"{values['rate']:.1%} of {values.get('n', 0):.0f}"
    if "p50" in values:
        return f"n={values['n']:.0f} p50={values['p50']:.0f} p95={values['p95']:.0f}"
    top = sorted(values.items(), key=lambda kv: -kv[1])[:3]
    return ", ".join(f"{escape(k)} {v:.0%}" for k, v in top) + (" ..." if len(values) > 3 else "")


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def _render(summary: MonitorSummary, by: list[str]) -> None:
    mode = summary.mode_changes[0] if summary.mode_changes else None
    state = "[red]DEGRADED[/]" if summary.degraded else "[green]normal[/]"
    out.print(f"Window {_when(summary.since)} .. {_when(summary.until)}; serving mode: {state}")
    if mode is not None:
        out.print(f"  last change {_when(mode.at)}: {escape(mode.reason)}")
    group = " / ".join(by) or "all"
    table = Table(title="Acceptance", title_justify="left")
    table.add_column(group, overflow="fold")
    for key in ["shown", "accepted", "partial", "rejected", "rate", "chars"]:
        table.add_column(key, justify="right")
    for a in summary.acceptance:
        table.add_row(
            *_group(a.group),
            str(a.shown),
            str(a.accepted),
            str(a.partially_accepted),
            str(a.rejected),
            _pct(a.acceptance_rate),
            _pct(a.char_acceptance_rate),
        )
    out.print(table)
    table = Table(title="Retention (accepted text still there)", title_justify="left")
    table.add_column(group, overflow="fold")
    for key in ["after", "checked", "retained", "rate", "share", "unknown"]:
        table.add_column(key, justify="right")
    for r in summary.retention:
        table.add_row(
            *_group(r.group),
            f"{r.after_s:g} s",
            str(r.checked),
            str(r.retained),
            _pct(r.retention_rate),
            "-" if r.mean_share is None else f"{r.mean_share:.2f}",
            str(r.unknown),
        )
    out.print(table)
    table = Table(title="Latency", title_justify="left")
    table.add_column(
        " / ".join(k for k in by if k in ("deployment", "model", "language", "mode")) or "all", overflow="fold"
    )
    for key in ["requests", "p50", "p95", "empty", "degraded"]:
        table.add_column(key, justify="right")
    for row in summary.latency:
        table.add_row(
            *_group(row.group),
            str(row.requests),
            f"{row.p50_ms:.0f} ms",
            f"{row.p95_ms:.0f} ms",
            str(row.empty),
            str(row.degraded),
        )
    out.print(table)
    drift = summary.drift
    table = Table(
        title=f"Drift (reference {drift.reference_n} completions, current {drift.current_n})", title_justify="left"
    )
    for key in ("feature", "status", "PSI", "p", "reference", "current"):
        table.add_column(key, overflow="fold")
    colours = {"alert": "red", "warn": "yellow", "ok": "green", "too_few": "dim"}
    for f in drift.features:
        table.add_row(
            f.name,
            f"[{colours[f.status]}]{f.status}[/]",
            "-" if f.psi is None else f"{f.psi:.3f}",
            "-" if f.p_value is None else f"{f.p_value:.2g}",
            _side(f.reference),
            _side(f.current),
        )
    out.print(table)
    for line in drift.alerts:
        out.print(f"[red]ALERT[/] {escape(line)}")
    for line in drift.warnings:
        out.print(f"[yellow]WARN[/] {escape(line)}")


def monitor(
    window: Annotated[str, typer.Option(help="The window to report: 90, 30m, 24h, 7d.")] = "24h",
    reference: Annotated[str, typer.Option(help="The reference window before it, for drift.")] = "7d",
    by: Annotated[
        str, typer.Option(help="Group by these, comma-separated: deployment, model, language, mode, template_version.")
    ] = "deployment,model,language,mode,template_version",
    dataset: Annotated[
        Path | None, typer.Option(help="A training dataset folder (its card.json): share of inputs outside it.")
    ] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Acceptance and retention per deployment, model, language, mode and template version; latency; drift of the
    last window against the one before it; the serving mode and why."""
    from forgepilot.monitor import DomainProfile, MonitorStore, monitor_db, summarize

    s = settings()
    keys = [k.strip() for k in by.split(",") if k.strip()]
    domain = None
    if dataset is not None:
        card = (dataset if dataset.is_dir() else dataset.parent) / "card.json"
        if not card.is_file():
            raise UserError(f"{card} does not exist", hint="point --dataset at a `forgepilot dataset build` folder")
        domain = DomainProfile.from_card(json.loads(card.read_text(encoding="utf-8")))
    path = monitor_db(s.state_dir, s.database_url)
    if isinstance(path, Path) and not path.is_file():
        raise UserError(f"nothing recorded yet ({path} does not exist)", hint="serve with `forgepilot serve` first")
    store = MonitorStore(path)
    try:
        summary = summarize(
            store,
            s.monitor,
            window_s=parse_duration(window),
            reference_s=parse_duration(reference),
            by=keys,
            domain=domain,
        )
    finally:
        store.close()
    if json_:
        data: dict[str, Any] = {
            "since": summary.since,
            "until": summary.until,
            "degraded": summary.degraded,
            "mode_changes": summary.mode_changes,
            "event_counts": summary.event_counts,
            "acceptance": [
                {
                    **a.group,
                    "shown": a.shown,
                    "accepted": a.accepted,
                    "partially_accepted": a.partially_accepted,
                    "rejected": a.rejected,
                    "acceptance_rate": a.acceptance_rate,
                    "char_acceptance_rate": a.char_acceptance_rate,
                }
                for a in summary.acceptance
            ],
            "retention": [
                {
                    **r.group,
                    "after_s": r.after_s,
                    "checked": r.checked,
                    "retained": r.retained,
                    "retention_rate": r.retention_rate,
                    "mean_share": r.mean_share,
                    "unknown": r.unknown,
                }
                for r in summary.retention
            ],
            "latency": summary.latency,
            "drift": {
                "reference_n": summary.drift.reference_n,
                "current_n": summary.drift.current_n,
                "features": summary.drift.features,
                "alerts": summary.drift.alerts,
                "warnings": summary.drift.warnings,
            },
        }
        print_json(data)
        return
    _render(summary, keys)


def _entry_line(e: AuditEntry) -> str:
    reason = f" ({escape(e.reason)})" if e.reason else ""
    target = f" {escape(e.target)}" if e.target else ""
    return f"{e.seq:>5}  {_when(e.at)}  {escape(e.actor)}  {e.action}{target}{reason}"


def audit(
    verify: Annotated[bool, typer.Option("--verify", help="Check the hash chain; exit 8 when it is broken.")] = False,
    limit: Annotated[int, typer.Option(min=1, help="Show this many entries, newest first.")] = 20,
    action: Annotated[str | None, typer.Option(help="Only this action (key_created, promoted, degraded, ...).")] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The audit log: key changes, promotions, rollbacks, degraded mode, settings changes, failed authentications."""
    from forgepilot.db import redact
    from forgepilot.monitor import AuditLog, audit_db

    s = settings()
    path = audit_db(s.state_dir, s.database_url)
    log = AuditLog(path)
    try:
        verdict = log.verify() if verify else None
        entries = log.entries(limit=limit, action=action)
    finally:
        log.close()
    if json_:
        print_json({"verify": verdict, "entries": entries})
    else:
        for e in entries:
            out.print(_entry_line(e))
        if not entries:
            out.print("the audit log is empty")
    if verdict is not None:
        if not verdict.ok:
            raise AuditTampered(
                f"audit log {redact(str(path))} failed verification: {verdict.problem}",
                hint="restore it from a backup; entries from that one on cannot be trusted",
            )
        err.print(f"[green]verified[/]: {verdict.entries} entries, hash chain intact")
