"""The monitor's figures (issue: watch it run).

1. Event ingestion: client events recorded through ``MonitorStore.record_events`` (durable commit per call, as
   ``/v1/events`` acknowledges them) from concurrent producers on one event loop, with retention checks off, then
   on (a ``RetentionTracker`` following thousands of accepts in 2,000-line documents, its fuzzy matches running on
   the same loop and its events written to the same store). Same run, same events: events/s and the ratio.
2. Aggregation over 1,000,000 stored events (30 days, 50,000 completions): acceptance by deployment / model /
   language / mode / template version, retention per checkpoint, latency percentiles and the drift report, for the
   last day and for all of it: p50 / p95 of repeated runs, with SQLite's query plans.

    python benchmarks/monitor.py [--events 20000] [--stored 1000000] [--repeats 20] [--out PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
LANGUAGES = ["python", "typescript", "javascript", "go", "java"]
MODES = ["inline", "in_block", "after_block"]
MODELS = ["llamacpp:qwen2.5-coder-0.5b", "llamacpp:qwen2.5-coder-1.5b"]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))]


def served(i: int, at: float, rng: random.Random) -> Any:
    from forgepilot.monitor import ServedCompletion

    return ServedCompletion(
        id=f"c{i}",
        served_at=at,
        deployment=rng.choice(["champion", "canary"]),
        model=rng.choice(MODELS),
        mode=rng.choice(MODES),
        language=rng.choice(LANGUAGES),
        template_id="complete",
        template_version=rng.choice(["3", "4"]),
        prompt_tokens=int(rng.gauss(900, 200)),
        completion_tokens=rng.randint(1, 60),
        latency_ms=rng.lognormvariate(6.5, 0.5),
        output_chars=rng.randint(0, 200),
        empty_reason=None if rng.random() > 0.1 else "repeats_suffix",
        sources=tuple(s for s in ("related", "imports", "similar") if rng.random() < 0.5),
    )


def events_for(cid: str, rng: random.Random) -> list[Any]:
    from forgepilot.monitor import Event

    out = [Event("shown", completion_id=cid, shown_chars=rng.randint(5, 200), client_time=time.time())]
    roll = rng.random()
    if roll < 0.3:
        out.append(Event("accepted", completion_id=cid, accepted_chars=rng.randint(5, 200)))
    elif roll < 0.4:
        out.append(Event("partially_accepted", completion_id=cid, accepted_chars=rng.randint(1, 50)))
    else:
        out.append(Event("rejected", completion_id=cid))
    return out


# -- 1. ingestion with retention on and off -----------------------------------------------------------------
async def ingest(store: Any, events: list[Any], producers: int, tracker: Any | None, accepts: list[Any]) -> float:
    queue: asyncio.Queue[Any] = asyncio.Queue()
    for e in events:
        queue.put_nowait(e)
    if tracker is not None:
        for a in accepts:
            tracker.track(a)

    async def producer() -> None:
        while not queue.empty():
            event = queue.get_nowait()
            await asyncio.to_thread(store.record_events, [event])

    t = time.perf_counter()
    await asyncio.gather(*(producer() for _ in range(producers)))
    return time.perf_counter() - t


def bench_ingestion(n_events: int, accepts: int, producers: int) -> dict[str, Any]:
    from forgepilot.monitor import Accepted, MonitorStore, RetentionTracker

    rng = random.Random(1)
    lines = [f"    value_{i} = compute(value_{i - 1}, {i})  # step {i}\n" for i in range(2000)]
    document = "def run():\n" + "".join(lines)
    documents = {f"file:///doc{d}.py": document for d in range(50)}
    results: dict[str, Any] = {}
    for label in ("off", "on", "off2", "on2"):  # interleaved twice: the machine's noise hits both
        tmp = Path(tempfile.mkdtemp(prefix="fp-monitor-ingest-"))
        store = MonitorStore(tmp / "monitor.db")
        for i in range(1000):
            store.record_completion(served(i, time.time(), rng))
        store.flush()
        events = [e for i in range(n_events // 2) for e in events_for(f"c{i % 1000}", rng)][:n_events]
        tracker = None
        if label.startswith("on"):

            async def emit(event: Any, store: Any = store) -> None:
                await asyncio.to_thread(store.record_events, [event])

            # Checkpoints spread over the run, so that checks and ingestion overlap all the way through.
            tracker = RetentionTracker(documents.get, emit, checkpoints_s=(0.2, 1.0, 2.0))
        now = time.monotonic()
        accepted = [
            Accepted(
                f"accept-{i}",
                f"file:///doc{i % 50}.py",
                lines[(i * 7) % 2000].strip() if i % 3 else "something else entirely = 1",
                11 + sum(len(x) for x in lines[: (i * 7) % 2000]),
                now + rng.random(),
            )
            for i in range(accepts)
        ]

        async def run(
            tracker: Any = tracker, accepted: list[Any] = accepted, events: list[Any] = events, store: Any = store
        ) -> float:
            seconds = await ingest(store, events, producers, tracker, accepted)
            if tracker is not None:
                await tracker.aclose()
            return seconds

        seconds = asyncio.run(run())
        key = label.rstrip("2")
        checks = tracker.checks_done if tracker is not None else 0
        results.setdefault(key, []).append(
            {
                "seconds": seconds,
                "events_per_s": len(events) / seconds,
                "retention_checks": checks,
                # Each check writes a retained event to the same store: all the writes it absorbed.
                "all_writes_per_s": (len(events) + checks) / seconds,
            }
        )
        store.close()
    summary = {
        k: {
            "events_per_s": statistics.median(r["events_per_s"] for r in v),
            "all_writes_per_s": statistics.median(r["all_writes_per_s"] for r in v),
            "retention_checks": sum(r["retention_checks"] for r in v) // len(v),
            "runs": v,
        }
        for k, v in results.items()
    }
    summary["ratio_on_off"] = summary["on"]["events_per_s"] / summary["off"]["events_per_s"]
    summary["events"] = n_events
    summary["accepts_tracked"] = accepts
    summary["producers"] = producers
    return summary


# -- 2. aggregation over a million events -----------------------------------------------------------------
def bench_aggregation(stored: int, repeats: int) -> dict[str, Any]:
    from forgepilot.config import MonitorSettings
    from forgepilot.monitor import Event, MonitorStore, compare

    rng = random.Random(2)
    tmp = Path(tempfile.mkdtemp(prefix="fp-monitor-agg-"))
    store = MonitorStore(tmp / "monitor.db")
    now = time.time()
    days = 30
    n_completions = max(1, stored // 20)
    t = time.perf_counter()
    for i in range(n_completions):
        store.record_completion(served(i, now - rng.random() * days * 86400, rng))
    store.flush()
    batch: list[Any] = []
    written = 0
    while written < stored:
        cid = f"c{rng.randrange(n_completions)}"
        at = now - rng.random() * days * 86400
        for e in events_for(cid, rng):
            batch.append((at, e))
        if rng.random() < 0.2:
            batch.append(
                (
                    at,
                    Event(
                        "retained",
                        completion_id=cid,
                        after_s=rng.choice([30.0, 120.0, 600.0]),
                        retained_share=rng.random(),
                    ),
                )
            )
        if len(batch) >= 20_000:
            written += _write(store, batch)
            batch = []
    written += _write(store, batch)
    load_s = time.perf_counter() - t
    settings = MonitorSettings()
    queries = {
        "acceptance_day": lambda: store.acceptance(now - 86400, now),
        "acceptance_all": lambda: store.acceptance(0, now + 1),
        "retention_day": lambda: store.retention(now - 86400, now),
        "retention_all": lambda: store.retention(0, now + 1),
        "latency_day": lambda: store.latency(now - 86400, now),
        "drift_day_vs_week": lambda: compare(
            store.window(now - 8 * 86400, now - 86400), store.window(now - 86400, now), settings
        ),
    }
    timings: dict[str, Any] = {}
    for name, query in queries.items():
        seconds = []
        for _ in range(repeats):
            t = time.perf_counter()
            query()
            seconds.append(time.perf_counter() - t)
        timings[name] = {"p50_ms": pct(seconds, 50) * 1000, "p95_ms": pct(seconds, 95) * 1000}
    plans = store.query_plans()
    size = (tmp / "monitor.db").stat().st_size
    store.close()
    return {
        "stored_events": written,
        "completions": n_completions,
        "load_s": load_s,
        "db_mib": size / 2**20,
        "queries": timings,
        "plans": plans,
    }


def _write(store: Any, batch: list[tuple[float, Any]]) -> int:
    # Events arrive over 30 days: write each day's share with its own receipt time, in bulk.
    by_time: dict[int, list[Any]] = {}
    for at, e in batch:
        by_time.setdefault(int(at // 3600), []).append(e)
    for hour, events in by_time.items():
        store.record_events(events, now=hour * 3600.0 + 1800.0)
    return len(batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--accepts", type=int, default=3_000)
    parser.add_argument("--producers", type=int, default=8)
    parser.add_argument("--stored", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "monitor.json")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    console = Console()

    ingestion = bench_ingestion(args.events, args.accepts, args.producers)
    table = Table(title="Event ingestion (each call durable before it returns; group commit; one event loop)")
    for col in ("retention checks", "client events/s", "checks done", "all writes/s", "ratio (client events)"):
        table.add_column(col)
    off, on = ingestion["off"], ingestion["on"]
    table.add_row("off", f"{off['events_per_s']:.0f}", "0", f"{off['all_writes_per_s']:.0f}", "1.00")
    table.add_row(
        "on",
        f"{on['events_per_s']:.0f}",
        str(on["retention_checks"]),
        f"{on['all_writes_per_s']:.0f}",
        f"{ingestion['ratio_on_off']:.2f}",
    )
    console.print(table)

    aggregation = bench_aggregation(args.stored, args.repeats)
    table = Table(
        title=f"Aggregation over {aggregation['stored_events']:,} events, {aggregation['completions']:,} completions "
        f"({aggregation['db_mib']:.0f} MiB, loaded in {aggregation['load_s']:.0f} s)"
    )
    for col in ("query", "p50 ms", "p95 ms"):
        table.add_column(col)
    for name, t in aggregation["queries"].items():
        table.add_row(name, f"{t['p50_ms']:.1f}", f"{t['p95_ms']:.1f}")
    console.print(table)
    for name, plan in aggregation["plans"].items():
        console.print(f"[bold]{name}[/]: " + " | ".join(plan))

    result = {
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()},
        "ingestion": ingestion,
        "aggregation": aggregation,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
