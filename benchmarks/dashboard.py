"""The dashboard's page load with a million stored events (issue: the dashboard).

One million events and 50,000 completions over 30 days (the monitor benchmark's generator), a running rollout and
a gate decision; then each page of ``/ui`` is requested repeatedly through the gateway in-process, and its server
time (the gateway's own ``Server-Timing: total``) is reported as p50 / p95, with the query plans of the queries
the pages run. Goal: p95 <= 200 ms per page.

    python benchmarks/dashboard.py [--stored 1000000] [--repeats 20] [--out PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import httpx  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

PAGES = ["/ui", "/ui/deployments", "/ui/releases", "/ui/data", "/ui/index", "/ui/drift", "/ui/api/overview"]
SPEC = (
    "schema_version: 1\nname: bench\nsteps: [0.1, 1.0]\nmin_events: 100000\n"
    "guards: [{metric: error_rate, margin: 0.01}]\n"
)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))]


def seed(state: Path, stored: int) -> tuple[float, int]:
    from forgepilot.monitor import Event, MonitorStore, monitor_db
    from monitor import _write, events_for, served  # the monitor benchmark's generator

    rng = random.Random(2)
    store = MonitorStore(monitor_db(state))
    now = time.time()
    n_completions = max(1, stored // 20)
    t = time.perf_counter()
    for i in range(n_completions):
        store.record_completion(served(i, now - rng.random() * 30 * 86400, rng))
    store.flush()
    batch: list[Any] = []
    written = 0
    while written < stored:
        cid = f"c{rng.randrange(n_completions)}"
        at = now - rng.random() * 30 * 86400
        batch += [(at, e) for e in events_for(cid, rng)]
        if rng.random() < 0.2:
            retained = Event("retained", completion_id=cid, after_s=rng.choice([30.0, 120.0, 600.0]),
                             retained_share=rng.random())  # fmt: skip
            batch.append((at, retained))
        if len(batch) >= 20_000:
            written += _write(store, batch)
            batch = []
    written += _write(store, batch)
    store.close()
    return time.perf_counter() - t, written


async def measure(state: Path, repeats: int) -> dict[str, Any]:
    from forgepilot.assist import Assistant
    from forgepilot.backends.fake import FakeBackend
    from forgepilot.config import load_settings
    from forgepilot.deploy import DeploymentRouter, RolloutController, load_rollout_spec
    from forgepilot.gateway import GatewayStore, create_app
    from forgepilot.monitor import Monitoring
    from forgepilot.registry import open_registry

    settings = load_settings(state_dir=state, default_model="fake:a", gateway={"rate_limit_per_minute": 0})
    backends = {n: FakeBackend(n) for n in ("fake:a", "fake:b")}
    assistant = Assistant.open(settings, preset=backends, index=True)
    monitoring = Monitoring.open(state, settings.monitor)
    registry = open_registry(state)
    registry.set_deployment("canary", {"model": "fake:b"}, None)
    controller = RolloutController(registry, monitoring.store, monitoring.audit)
    spec = state / "rollout.yaml"
    spec.write_text(SPEC, encoding="utf-8")
    if registry.active_rollout() is None:
        controller.start(load_rollout_spec(spec), default_model="fake:a", actor="bench")
    for _ in range(3):
        controller.tick()
    known = frozenset(assistant.models.names())
    router = DeploymentRouter(registry, default_model="fake:a", known=known.__contains__)
    store = GatewayStore(state / "gateway.db")
    app = create_app(
        assistant, store=store, auth_required=False, monitoring=monitoring, router=router, controller=controller
    )
    timings: dict[str, list[float]] = {p: [] for p in PAGES}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
        for i in range(repeats + 2):
            for page in PAGES:
                r = await client.get(page)
                assert r.status_code == 200, (page, r.text[:200])
                total = float(re.search(r"total;dur=([\d.]+)", r.headers["server-timing"]).group(1))  # type: ignore[union-attr]
                if i >= 2:  # warm-up: the first reads fill SQLite's page cache
                    timings[page].append(total)
    plans = monitoring.store.query_plans()
    await assistant.aclose()
    for thing in (store, monitoring, registry):
        thing.close()
    return {
        "pages": {p: {"p50_ms": pct(v, 50), "p95_ms": pct(v, 95), "max_ms": max(v)} for p, v in timings.items()},
        "plans": plans,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stored", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--state", type=Path, default=None, help="reuse a seeded state dir")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "dashboard.json")
    args = parser.parse_args()
    console = Console()
    state = args.state or Path(tempfile.mkdtemp(prefix="fp-dash-"))
    seeded = None
    if args.state is None or not (state / "monitor.db").exists():
        seconds, written = seed(state, args.stored)
        seeded = {"events": written, "seconds": seconds}
        console.print(f"seeded {written:,} events in {seconds:.0f} s ({state})")
    result = asyncio.run(measure(state, args.repeats))
    table = Table(title=f"Dashboard server time, {args.repeats} requests per page, {args.stored:,} stored events")
    for col in ("page", "p50 ms", "p95 ms", "max ms"):
        table.add_column(col)
    for page, t in result["pages"].items():
        table.add_row(page, f"{t['p50_ms']:.1f}", f"{t['p95_ms']:.1f}", f"{t['max_ms']:.1f}")
    console.print(table)
    for name, plan in result["plans"].items():
        console.print(f"[bold]{name}[/]: " + " | ".join(plan))
    result["seeded"] = seeded
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
