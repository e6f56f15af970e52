"""Team scale on existing engines (issue: PostgreSQL stores, Ray fan-out, several gateways), in one run:

1. Event ingestion: 32 concurrent writers, each acknowledging single events through ``MonitorStore.record_events``
   (a durable commit per call, as ``/v1/events`` does), into SQLite (WAL, synchronous=FULL) and into PostgreSQL
   (fsync on, started here), with one store object ("one gateway") and with two ("two gateways" on PostgreSQL).
   Events/s and PostgreSQL / SQLite.
2. Evaluation fan-out: one functional suite on the embedded Gemma 270M model, local (one case at a time) and on a
   local Ray head with 2 workers: wall times and speed-up; then Ray's own cost with the fake model (answers cost
   nothing) at two suite sizes, split into start-up (workers and their models) and cost per case.
3. Routing across model servers: requests of one token to one `llama_cpp.server` directly, and to a pool of two
   (least outstanding requests, health probes on): p50 / mean per request and the difference.

    python benchmarks/scale.py [--writers 32] [--events 4000] [--cases 24] [--requests 60] [--out PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


# -- 1. event ingestion ------------------------------------------------------------------------------------------
def ingest(stores: list[Any], writers: int, events: int) -> float:
    """Events/s when ``writers`` threads (spread over ``stores``) each record their share one event per call."""
    from forgepilot.monitor import Event

    per = events // writers
    barrier = threading.Barrier(writers + 1)

    def write(n: int) -> None:
        store = stores[n % len(stores)]
        barrier.wait()
        for _ in range(per):
            store.record_events([Event(type="shown", shown_chars=12, model="m", language="python")])

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    return per * writers / (time.perf_counter() - started)


def bench_ingestion(writers: int, events: int, tmp: Path) -> dict[str, Any]:
    from tests.helpers.postgres import database, start_server

    from forgepilot.monitor import MonitorStore

    sqlite = MonitorStore(tmp / "monitor.db")
    sqlite_rate = ingest([sqlite], writers, events)
    sqlite.close()
    base = Path(tempfile.mkdtemp(prefix="fp-pg-bench-"))
    server = start_server(base, fsync=True)
    try:
        with database(server.url) as url:
            one = MonitorStore(url)
            pg_rate = ingest([one], writers, events)
            two = MonitorStore(url)
            pg_two_rate = ingest([one, two], writers, events)
            counted = one.event_counts().get("shown", 0)
            one.close()
            two.close()
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
    return {
        "writers": writers,
        "events": events,
        "sqlite_events_per_s": round(sqlite_rate),
        "postgres_events_per_s": round(pg_rate),
        "postgres_two_gateways_events_per_s": round(pg_two_rate),
        "postgres_over_sqlite": round(pg_rate / sqlite_rate, 2),
        "postgres_events_stored": counted,
    }


# -- 2. evaluation fan-out ----------------------------------------------------------------------------------------
def suite_text(cases: int) -> str:
    ops = [("add", "a + b"), ("sub", "a - b"), ("mul", "a * b"), ("floordiv", "a // b"), ("mod", "a % b")]
    lines = ["schema_version: 1", "name: arith", "kind: functional", "cases:"]
    for i in range(cases):
        name, expr = ops[i % len(ops)]
        lines += [
            f"  - id: {name}_{i}",
            "    prompt: |",
            f"      def {name}_{i}(a, b):",
            f'          """Return {expr}."""',
            "    tests: |",
            f"      assert {name}_{i}(7, 2) == {eval(expr, {'a': 7, 'b': 2})}",
        ]
    return "\n".join(lines) + "\n"


def eval_wall(settings: Any, suite: Path, model: str, fanout: Any = None) -> float:
    from forgepilot.evals import EvalRunner, GenerationParams, RunConfig, load_suite
    from forgepilot.evals.store import EvalStore
    from forgepilot.sandbox import Sandbox

    store = EvalStore(settings.state_dir / "evals.db")
    sandbox = Sandbox(workers=1)
    runner = EvalRunner(settings, store, sandbox=sandbox, fanout=fanout)

    async def go() -> None:
        try:
            await runner.run(load_suite(str(suite)), RunConfig(model, GenerationParams(max_tokens=32)), fresh=True)
        finally:
            await runner.aclose()

    started = time.perf_counter()
    asyncio.run(go())
    wall = time.perf_counter() - started
    store.close()
    sandbox.close()
    return wall


def bench_fanout(cases: int, tmp: Path) -> dict[str, Any]:
    from tests.helpers.postgres import free_port

    from forgepilot.backends import EMBEDDED_MODELS, ModelStore
    from forgepilot.config import default_state_dir, load_settings
    from forgepilot.evals.ray_fanout import RayFanout

    gemma = ModelStore(default_state_dir() / "models").ensure(EMBEDDED_MODELS["gemma-3-270m"])
    suite = tmp / "arith.yaml"
    suite.write_text(suite_text(cases), encoding="utf-8")
    big = tmp / "arith-big.yaml"  # with the fake model, two sizes split Ray's start-up from its cost per case
    big.write_text(suite_text(cases * 5), encoding="utf-8")
    models = {
        "llamacpp:gemma": {"family": "gemma3", "path": str(gemma)},
        "fake:coder": {"family": "qwen2.5-coder", "provider": "fake"},
    }

    def settings(name: str) -> Any:
        return load_settings(state_dir=tmp / name, models=models, llama={"n_ctx": 1024, "n_threads": 1})

    ray_bin = str(Path(sys.executable).parent / "ray")
    temp = Path(tempfile.mkdtemp(prefix="fp-ray-bench-"))
    port = free_port()
    subprocess.run(
        [ray_bin, "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
         "--disable-usage-stats", f"--temp-dir={temp}"],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    address = f"127.0.0.1:{port}"
    try:
        walls: dict[str, float] = {}
        for model, path, tag in (
            ("llamacpp:gemma", suite, "gemma"),
            ("fake:coder", suite, "fake"),
            ("fake:coder", big, "fake-big"),
        ):
            local = settings(f"local-{tag}")
            walls[f"{tag} local"] = eval_wall(local, path, model)
            fanned = settings(f"ray-{tag}")
            fanout = RayFanout(address, fanned, fanned.state_dir / "evals.db", workers=2)
            walls[f"{tag} ray"] = eval_wall(fanned, path, model, fanout)
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        subprocess.run([ray_bin, "stop", "--force"], capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)

    def slope(kind: str) -> float:  # seconds per extra case, from the two fake-model suite sizes
        return (walls[f"fake-big {kind}"] - walls[f"fake {kind}"]) / (4 * cases)

    ray_per_case, local_per_case = slope("ray"), slope("local")
    return {
        "cases": cases,
        "ray_workers": 2,
        "gemma_local_s": round(walls["gemma local"], 2),
        "gemma_ray_s": round(walls["gemma ray"], 2),
        "gemma_speedup": round(walls["gemma local"] / walls["gemma ray"], 2),
        "fake_cases": [cases, cases * 5],
        "fake_local_s": [round(walls["fake local"], 2), round(walls["fake-big local"], 2)],
        "fake_ray_s": [round(walls["fake ray"], 2), round(walls["fake-big ray"], 2)],
        "local_per_case_ms": round(local_per_case * 1000, 1),
        "ray_per_case_ms": round(ray_per_case * 1000, 1),
        # Worker time Ray adds to each case (two workers run side by side): its cost per case, beyond the case.
        "ray_overhead_per_case_ms": round((2 * ray_per_case - local_per_case) * 1000, 1),
        "ray_startup_s": round(walls["fake ray"] - cases * ray_per_case, 2),
    }


# -- 3. routing across model servers -----------------------------------------------------------------------------
def bench_routing(requests: int, tmp: Path) -> dict[str, Any]:
    from tests.integration.conftest import LlamaServer

    from forgepilot.backends import EMBEDDED_MODELS, CompletionRequest, ModelStore, open_backend
    from forgepilot.config import default_state_dir, load_settings

    gemma = ModelStore(default_state_dir() / "models").ensure(EMBEDDED_MODELS["gemma-3-270m"])
    servers = [LlamaServer(gemma, "gemma", tmp, n_ctx=512) for _ in range(2)]
    try:

        def backend(urls: list[str]) -> Any:
            cfg = {"family": "gemma3", "model": "gemma", "base_urls": urls}
            return open_backend("llama-cpp-python:gemma", load_settings(models={"llama-cpp-python:gemma": cfg}))

        request = CompletionRequest(prompt="def add(a, b):\n    return", max_tokens=1, temperature=0.0)

        async def timed(b: Any) -> list[float]:
            out = []
            try:
                await b.complete(request)  # warm: connection and the server's prompt cache
                for _ in range(requests):
                    t = time.perf_counter()
                    await b.complete(request)
                    out.append((time.perf_counter() - t) * 1000)
            finally:
                await b.aclose()
            return out

        direct = asyncio.run(timed(backend([servers[0].base_url])))
        pooled = asyncio.run(timed(backend([s.base_url for s in servers])))
    finally:
        for s in servers:
            s.stop()
    return {
        "requests": requests,
        "direct_p50_ms": round(statistics.median(direct), 2),
        "pool_p50_ms": round(statistics.median(pooled), 2),
        "direct_mean_ms": round(statistics.fmean(direct), 2),
        "pool_mean_ms": round(statistics.fmean(pooled), 2),
        "routing_overhead_ms": round(statistics.median(pooled) - statistics.median(direct), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writers", type=int, default=32)
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--cases", type=int, default=24)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "scale.json")
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        os.chmod(tmp, 0o755)
        ingestion = bench_ingestion(args.writers, args.events, tmp)
        fanout = bench_fanout(args.cases, tmp)
        routing = bench_routing(args.requests, tmp)
    table = Table(title="team scale (same run)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for section, figures in (("ingestion", ingestion), ("eval fan-out", fanout), ("routing", routing)):
        for key, value in figures.items():
            table.add_row(f"{section}: {key}", str(value))
    console.print(table)
    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "ingestion": ingestion,
        "eval_fanout": fanout,
        "routing": routing,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
