"""Shipping safely, measured (issue: ship safely).

1. Overhead of guards and deployment routing per completion: ``/v1/assist/complete`` through the gateway
   (in-process ASGI, a model that answers at once, a 400-line document with secrets and three open files), with
   the guards on and a champion/canary split read from the registry, vs guards off and no registry. Trials
   interleaved in one run; p50 / p95 of each and their difference. Goal: <= 2 ms at p95.
2. Requests lost during a rollback: a real gateway on a loopback socket (uvicorn), a champion and a healthy canary
   (each answering in 20 ms), 32 concurrent clients, and the rollout stopped (everyone back on the champion) a
   third of the way through. Goal: 0 requests lost.

    python benchmarks/ship.py [--trials 400] [--requests 3000] [--out PATH]
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
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import httpx  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from forgepilot.assist import Assistant  # noqa: E402
from forgepilot.backends.fake import FakeBackend  # noqa: E402
from forgepilot.config import load_settings  # noqa: E402
from forgepilot.deploy import DeploymentRouter, RolloutController, load_rollout_spec  # noqa: E402
from forgepilot.gateway import GatewayStore, create_app  # noqa: E402
from forgepilot.monitor import Monitoring  # noqa: E402
from forgepilot.registry import open_registry  # noqa: E402

SPEC = """schema_version: 1
name: bench
steps: [0.5, 1.0]
min_events: 100000
max_events: 200000
guards: [{metric: error_rate, margin: 0.01}]
"""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))]


def document() -> tuple[str, list[dict[str, str]]]:
    rng = random.Random(3)
    lines = [f"def step_{i}(value):\n    return value * {rng.randint(2, 9)} + {i}\n\n" for i in range(130)]
    secrets = 'DB_PASSWORD = "s3cr3t-passw0rd-123"\nADMIN = "ops.lead@corp-mail.io"\n'
    # The secrets sit just above the cursor, where the prompt's prefix window keeps them.
    text = "".join(lines) + secrets + "\n\ndef total(values):\n    "
    recent = [
        {"path": f"lib/mod{k}.py", "text": "".join(lines[k * 20 : k * 20 + 60]) + f'API_KEY = "key-{k}-abcdef123"\n'}
        for k in range(3)
    ]
    return text, recent


def gateway(
    state: Path,
    *,
    guards_on: bool,
    deployments: bool,
    reply: str = "sum(values)\n",
    delay_s: float = 0.0,
    poll_s: float = 1.0,
) -> tuple[Any, list[Any], RolloutController | None]:
    """A gateway over two fake models answering ``reply`` (``delay_s`` per token), guards on or off, and with
    ``deployments`` a champion and a canary at half the users in a running rollout."""
    guards = {} if guards_on else {"secrets": "off", "instructions": False, "redact_output": False}
    settings = load_settings(
        state_dir=state, default_model="fake:champion", guards=guards, gateway={"rate_limit_per_minute": 0}
    )
    backends = {n: FakeBackend(n, replies=lambda p: reply, delay_s=delay_s) for n in ("fake:champion", "fake:canary")}
    assistant = Assistant.open(settings, preset=backends, index=False)
    monitoring = Monitoring.open(state, settings.monitor)
    store = GatewayStore(state / "gateway.db")
    opened: list[Any] = [store, monitoring]
    router = controller = None
    if deployments:
        registry = open_registry(state)
        opened.append(registry)
        registry.set_deployment("champion", {"model": "fake:champion", "sources": None}, None)
        registry.set_deployment("canary", {"model": "fake:canary", "sources": None}, None)
        controller = RolloutController(registry, monitoring.store, monitoring.audit)
        spec = state / "rollout.yaml"
        spec.write_text(SPEC, encoding="utf-8")
        controller.start(load_rollout_spec(spec), default_model="fake:champion", actor="bench")
        known = frozenset(assistant.models.names())
        router = DeploymentRouter(registry, default_model="fake:champion", known=known.__contains__, poll_s=poll_s)
    app = create_app(
        assistant, store=store, auth_required=False, monitoring=monitoring, router=router, controller=controller
    )
    opened.insert(0, assistant)
    return app, opened, controller


async def bench_overhead(trials: int) -> dict[str, Any]:
    text, recent = document()
    body = {
        "text": text,
        "path": "app/calc.py",
        "cursor": {"offset": len(text)},
        "recent_files": recent,
        "cache": False,
    }
    clients = {}
    opened: list[Any] = []
    for label, on in (("on", True), ("off", False)):
        app, things, _ = gateway(Path(tempfile.mkdtemp(prefix=f"fp-ship-{label}-")), guards_on=on, deployments=on)
        opened += things
        clients[label] = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")
    times: dict[str, list[float]] = {"on": [], "off": []}
    steps: dict[str, set[str]] = {"on": set(), "off": set()}
    for i in range(trials + 20):
        for label in ("on", "off") if i % 2 else ("off", "on"):  # interleaved, alternating order
            t = time.perf_counter()
            r = await clients[label].post("/v1/assist/complete", json=body, headers={"X-ForgePilot-User": f"u{i}"})
            elapsed = time.perf_counter() - t
            assert r.status_code == 200, r.text
            steps[label].update(r.json()["why"]["postprocess"])
            if i >= 20:  # warm-up
                times[label].append(elapsed * 1000)
    for c in clients.values():
        await c.aclose()
    for thing in opened:
        closer = getattr(thing, "aclose", None)
        if closer is not None:
            await closer()
        else:
            thing.close()
    on, off = times["on"], times["off"]
    return {
        "trials": trials,
        "on": {"p50_ms": pct(on, 50), "p95_ms": pct(on, 95), "mean_ms": statistics.mean(on)},
        "off": {"p50_ms": pct(off, 50), "p95_ms": pct(off, 95), "mean_ms": statistics.mean(off)},
        "overhead_p50_ms": pct(on, 50) - pct(off, 50),
        "overhead_p95_ms": pct(on, 95) - pct(off, 95),
        "guard_steps_seen": sorted(s for s in steps["on"] if s.startswith("guard_")),
    }


def bench_rollback(requests: int, concurrency: int) -> dict[str, Any]:
    import uvicorn

    state = Path(tempfile.mkdtemp(prefix="fp-ship-rollback-"))
    # Each model answers in about 20 ms (its reply is four tokens); the routers re-read the registry every 0.2 s.
    app, opened, controller = gateway(
        state, guards_on=True, deployments=True, reply="a + b\n", delay_s=0.02 / 4, poll_s=0.2
    )
    assert controller is not None
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    body = {"text": "def add(a, b):\n    return ", "path": "m.py", "cursor": {"offset": 26}, "cache": False}
    outcomes: list[tuple[float, int, str]] = []
    stopped_at: list[float] = []

    async def run() -> None:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(requests):
            queue.put_nowait(i)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:

            async def worker() -> None:
                while not queue.empty():
                    i = queue.get_nowait()
                    if i == requests // 3 and not stopped_at:
                        # The rollback, from another thread as `forgepilot rollout stop` or a tick would do it.
                        stopped_at.append(time.monotonic())
                        await asyncio.to_thread(controller.stop, "benchmark rollback", "bench")
                    try:
                        r = await client.post(
                            "/v1/assist/complete", json=body, headers={"X-ForgePilot-User": f"user-{i % 500}"}
                        )
                        outcomes.append((time.monotonic(), r.status_code, r.json().get("deployment", "")))
                    except httpx.HTTPError as exc:
                        outcomes.append((time.monotonic(), 0, type(exc).__name__))

            await asyncio.gather(*(worker() for _ in range(concurrency)))

    t = time.perf_counter()
    asyncio.run(run())
    wall = time.perf_counter() - t
    server.should_exit = True
    thread.join(timeout=10)
    lost = [o for o in outcomes if o[1] != 200]
    cut = stopped_at[0]
    before = [o[2] for o in outcomes if o[0] < cut]
    settle = cut + 1.0  # routers re-read the registry within poll_s
    after = [o[2] for o in outcomes if o[0] > settle]
    for thing in opened[1:]:  # the stores (the assistant's models are fakes)
        thing.close()
    return {
        "requests": len(outcomes),
        "concurrency": concurrency,
        "lost": len(lost),
        "wall_s": wall,
        "canary_share_before": before.count("canary") / max(1, len(before)),
        "canary_share_after_1s": after.count("canary") / max(1, len(after)),
        "requests_after_1s": len(after),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=400)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ship.json")
    args = parser.parse_args()
    console = Console()
    overhead = asyncio.run(bench_overhead(args.trials))
    table = Table(title=f"/v1/assist/complete, {args.trials} interleaved trials (guards + deployments on vs off)")
    for col in ("", "p50 ms", "p95 ms", "mean ms"):
        table.add_column(col)
    for label in ("off", "on"):
        o = overhead[label]
        table.add_row(label, f"{o['p50_ms']:.2f}", f"{o['p95_ms']:.2f}", f"{o['mean_ms']:.2f}")
    table.add_row("overhead", f"{overhead['overhead_p50_ms']:+.2f}", f"{overhead['overhead_p95_ms']:+.2f}", "")
    console.print(table)
    console.print(f"guard steps seen with guards on: {', '.join(overhead['guard_steps_seen'])}")
    rollback = bench_rollback(args.requests, args.concurrency)
    table = Table(title=f"Rollback under {rollback['concurrency']} concurrent clients")
    for col in ("requests", "lost", "canary share before", "canary share 1 s after", "wall s"):
        table.add_column(col)
    table.add_row(
        str(rollback["requests"]),
        str(rollback["lost"]),
        f"{rollback['canary_share_before']:.1%}",
        f"{rollback['canary_share_after_1s']:.1%}",
        f"{rollback['wall_s']:.1f}",
    )
    console.print(table)
    result = {"machine": {"python": platform.python_version()}, "overhead": overhead, "rollback": rollback}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
