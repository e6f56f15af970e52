"""The assistant's figures (issue: assistant): serving overhead, context assembly latency, gateway under load.

1. End-to-end completion through ``/v1/completions`` over HTTP (uvicorn on loopback, context off) vs a direct call
   of the same llama.cpp backend, same prompt, trials interleaved, KV cache cleared before each. Goal <= 1.05.
2. Context assembly (related + similar + retrieved within the budget, counted with Qwen's tokenizer) with 20
   recent files of 1,000 lines and the standard library indexed: p50 / p95. Goal p95 <= 15 ms.
3. Load: 32 concurrent clients, 5,000 requests, 30% cancelled mid-flight, against a gateway process serving the
   FakeBackend with a fixed latency: errors, p95 gateway overhead (latency minus the backend's), asyncio tasks and
   resident memory before and after. Goals: 0 errors, p95 overhead <= 10 ms, no growth.

    python benchmarks/assist.py [--trials 5] [--requests 5000] [--skip-model] [--out PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
# The fake backend's fixed latency (spread over its reply's tokens); a real completion takes 100 ms or more.
LOAD_LATENCY_S = float(os.environ.get("FP_BENCH_BACKEND_MS", "50")) / 1000


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


# -- 1. serving overhead on the real model ----------------------------------------------------------------------
def bench_overhead(trials: int, max_tokens: int) -> dict[str, Any]:
    import uvicorn

    from forgepilot.assist import Assistant
    from forgepilot.backends import CompletionRequest
    from forgepilot.config import load_settings
    from forgepilot.gateway import GatewayStore, create_app
    from forgepilot.monitor import Monitoring

    settings = load_settings()
    tmp = Path(tempfile.mkdtemp(prefix="fp-assist-bench-"))
    assistant = Assistant(settings, workspace=None)
    backend = assistant.models.get(settings.default_model)
    store = GatewayStore(tmp / "gateway.db")
    app = create_app(assistant, store=store, auth_required=False, monitoring=Monitoring.open(tmp, settings.monitor))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    source = (ROOT / "src/forgepilot/backends/openai_http.py").read_text(encoding="utf-8")
    prefix, suffix = source[:1500], source[1500:1800]
    body = {
        "model": backend.name,
        "prompt": prefix,
        "suffix": suffix,
        "max_tokens": max_tokens,
        "temperature": 0,
    }
    reset = backend.host.llm.reset  # type: ignore[attr-defined]

    async def direct() -> float:
        reset()
        t = time.perf_counter()
        await backend.complete(CompletionRequest(prompt=prefix, suffix=suffix, max_tokens=max_tokens, temperature=0.0))
        return time.perf_counter() - t

    async def over_http(client: httpx.AsyncClient) -> float:
        reset()
        t = time.perf_counter()
        r = await client.post("/v1/completions", json=body)
        r.raise_for_status()
        return time.perf_counter() - t

    async def run() -> tuple[list[float], list[float], int]:
        ours: list[float] = []
        raw: list[float] = []
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=300) as client:
            await direct()  # warm up: model load, threads
            await over_http(client)
            for i in range(trials):
                if i % 2 == 0:
                    raw.append(await direct())
                    ours.append(await over_http(client))
                else:
                    ours.append(await over_http(client))
                    raw.append(await direct())
            r = await client.post("/v1/completions", json=body)
            tokens = r.json()["usage"]["completion_tokens"]
        return ours, raw, tokens

    ours, raw, tokens = asyncio.run(run())
    server.should_exit = True
    thread.join(timeout=10)
    store.close()
    shutil.rmtree(tmp, ignore_errors=True)
    return {
        "model": backend.name,
        "completion_tokens": tokens,
        "http_median_s": statistics.median(ours),
        "direct_median_s": statistics.median(raw),
        "ratio": statistics.median(ours) / statistics.median(raw),
        "http_s": ours,
        "direct_s": raw,
    }


# -- 2. context assembly latency ---------------------------------------------------------------------------------
def bench_context(iterations: int) -> dict[str, Any]:
    from forgepilot.backends.fim import fim_template
    from forgepilot.backends.resolve import open_backend
    from forgepilot.config import load_settings
    from forgepilot.context import ContextBuilder, Document, OpenFile
    from forgepilot.index import Indexer, Workspace

    settings = load_settings()
    backend = open_backend(settings.default_model, settings)
    count = backend.token_counter()
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    tmp = Path(tempfile.mkdtemp(prefix="fp-context-bench-"))
    copy = tmp / "stdlib"
    shutil.copytree(
        stdlib, copy, ignore=shutil.ignore_patterns("site-packages", "__pycache__", "*.pyc", "test", "idlelib")
    )
    ws = Workspace(tmp / "ws")
    t = time.perf_counter()
    Indexer(ws, embeddings=False).index(copy)
    index_s = time.perf_counter() - t
    builder = ContextBuilder(ws, settings.context)
    # 20 recent files of exactly 1,000 lines each (longer modules cut, shorter ones repeated).
    sources = sorted(p for p in copy.glob("*.py") if p.stat().st_size > 30_000)[:20]
    recent = []
    for p in sources:
        lines = p.read_text(encoding="utf-8", errors="replace").splitlines()
        while len(lines) < 1000:
            lines = lines + lines
        recent.append(OpenFile(str(p), "\n".join(lines[:1000])))
    current = copy / "argparse.py"
    text = current.read_text(encoding="utf-8")
    rng = random.Random(7)
    # Typing sessions: the cursor jumps to a random line (a cold request), then moves one character at a time
    # along it, one request per keystroke, as an editor asks while the user types.
    starts = [m.end() for m in re.finditer(r"\n[ ]{4,}\S[^\n]{20,}", text)]
    sessions = [rng.choice(starts[50:-50]) for _ in range(iterations // 15)]
    template = fim_template("qwen2.5-coder")
    # Warm: the first request tokenises the 20 files once (cached by content afterwards, as in an editor session).
    builder.build(
        Document.at(str(current), text, offset=sessions[0]),
        template=template,
        count=count,
        max_context=4096,
        max_tokens=64,
        recent=recent,
    )
    times: list[float] = []
    jumps: list[float] = []
    per_source: dict[str, list[float]] = {}
    snippets = 0
    for start in sessions:
        line_start = text.rfind("\n", 0, start) + 1
        indent = len(text[line_start:]) - len(text[line_start:].lstrip(" "))
        for k in range(15):
            doc = Document.at(str(current), text, offset=line_start + indent + k)
            t = time.perf_counter()
            result = builder.build(doc, template=template, count=count, max_context=4096, max_tokens=64, recent=recent)
            elapsed = time.perf_counter() - t
            (jumps if k == 0 else times).append(elapsed)
            snippets += len(result.snippets)
            for key, v in result.seconds.items():
                per_source.setdefault(key, []).append(v)
    ws.close()
    shutil.rmtree(tmp, ignore_errors=True)
    return {
        "index_seconds": index_s,
        "requests": len(times) + len(jumps),
        "recent_files": len(recent),
        "p50_ms": percentile(times, 50) * 1000,
        "p95_ms": percentile(times, 95) * 1000,
        "max_ms": max(times) * 1000,
        "jump_p50_ms": percentile(jumps, 50) * 1000,
        "jump_p95_ms": percentile(jumps, 95) * 1000,
        "snippets_per_request": snippets / (len(times) + len(jumps)),
        "per_stage_p95_ms": {k: percentile(v, 95) * 1000 for k, v in per_source.items()},
    }


# -- 3. the gateway under load -----------------------------------------------------------------------------------
def serve_fake(port_file: str) -> None:
    """Run in a child process: a gateway over a FakeBackend with a fixed latency."""
    import uvicorn

    from forgepilot.assist import Assistant
    from forgepilot.backends.fake import FakeBackend, fake_tokens
    from forgepilot.config import load_settings
    from forgepilot.gateway import GatewayStore, create_app
    from forgepilot.gateway.net import listen_socket
    from forgepilot.monitor import Monitoring

    state = Path(tempfile.mkdtemp(prefix="fp-load-"))
    settings = load_settings(state_dir=state, default_model="fake:load", gateway={"rate_limit_per_minute": 0})
    reply = "a + b\n"
    backend = FakeBackend("fake:load", replies=[reply], delay_s=LOAD_LATENCY_S / len(fake_tokens(reply)))
    assistant = Assistant(settings, workspace=None, preset={"fake:load": backend})
    app = create_app(
        assistant,
        store=GatewayStore(state / "gateway.db"),
        auth_required=False,
        monitoring=Monitoring.open(state, settings.monitor),
    )
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", access_log=False, lifespan="off")
    )

    sock = listen_socket("127.0.0.1", 0)

    async def run() -> None:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            await asyncio.sleep(0.02)
        Path(port_file).write_text(str(sock.getsockname()[1]))
        await task

    asyncio.run(run())


def scrape(text: str, name: str) -> float:
    m = re.search(rf"^{name} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(m.group(1)) if m else float("nan")


def bench_load(requests: int, clients: int, cancel_share: float) -> dict[str, Any]:
    port_file = Path(tempfile.mkdtemp()) / "port"
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve-fake", str(port_file)],
        env={**os.environ, "FP_BENCH_BACKEND_MS": str(LOAD_LATENCY_S * 1000)},
    )
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists() or not port_file.read_text():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the load gateway did not start")
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port_file.read_text()}"
        return asyncio.run(_load(base, requests, clients, cancel_share))
    finally:
        proc.terminate()
        proc.wait(timeout=20)


class _Connection:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams: the load generator must cost far less CPU than
    the server it measures (httpx at 32-way concurrency saturates a core on its own and queues requests)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def send(self, path: str, payload: bytes) -> None:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            sock = self.writer.get_extra_info("socket")
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n"
        )
        self.writer.write(head.encode() + payload)
        await self.writer.drain()

    async def receive(self) -> tuple[int, dict[str, str], bytes]:
        assert self.reader is not None
        status_line = await self.reader.readline()
        headers: dict[str, str] = {}
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            k, _, v = line.decode().partition(":")
            headers[k.strip().lower()] = v.strip()
        body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return int(status_line.split()[1]), headers, body

    def abort(self) -> None:
        """Drop the connection mid-request, as a client that gave up does."""
        if self.writer is not None:
            self.writer.transport.abort()
        self.reader = self.writer = None


async def _load(base: str, requests: int, clients: int, cancel_share: float) -> dict[str, Any]:
    body = {"model": "fake:load", "prompt": "def add(a, b):\n    return ", "suffix": "\n", "max_tokens": 16}
    payload = json.dumps(body).encode()
    host, port = base.removeprefix("http://").split(":")
    rng = random.Random(11)
    plan = [rng.random() < cancel_share for _ in range(requests)]
    latencies: list[float] = []
    server_overhead: list[float] = []  # ms the gateway held a request beyond the model's time (Server-Timing)
    errors: list[str] = []
    cancelled = 0
    queue: asyncio.Queue[bool] = asyncio.Queue()
    for p in plan:
        queue.put_nowait(p)

    async def metrics() -> str:
        async with httpx.AsyncClient(base_url=base) as client:
            return (await client.get("/metrics")).text

    async def worker() -> None:
        nonlocal cancelled
        conn = _Connection(host, int(port))
        while not queue.empty():
            cancel = queue.get_nowait()
            try:
                t = time.perf_counter()
                await conn.send("/v1/completions", payload)
                if cancel:
                    # Give up while the model is generating (its latency is 20 ms).
                    await asyncio.sleep(rng.uniform(0.002, LOAD_LATENCY_S * 0.8))
                    conn.abort()
                    cancelled += 1
                    continue
                status, headers, data = await conn.receive()
                latencies.append(time.perf_counter() - t)
                if status != 200 or json.loads(data)["choices"][0]["text"] != "a + b\n":
                    errors.append(f"{status} {data[:100]!r}")
                    continue
                timing = dict(re.findall(r"(\w+);dur=([0-9.]+)", headers.get("server-timing", "")))
                server_overhead.append(float(timing["total"]) - float(timing["model"]))
            except (OSError, asyncio.IncompleteReadError, KeyError, ValueError) as exc:
                errors.append(repr(exc))
                conn.abort()
        conn.abort()

    # Warm up, then take the baseline of tasks and memory.
    warm = _Connection(host, int(port))
    for _ in range(200):
        await warm.send("/v1/completions", payload)
        await warm.receive()
    warm.abort()
    await asyncio.sleep(1.0)
    before = await metrics()
    t = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    wall = time.perf_counter() - t
    await asyncio.sleep(2.0)  # let cancelled work wind down
    after = await metrics()
    overhead = [max(0.0, x - LOAD_LATENCY_S) * 1000 for x in latencies]
    return {
        "requests": requests,
        "clients": clients,
        "cancelled_by_client": cancelled,
        "completed": len(latencies),
        "errors": len(errors),
        "error_samples": errors[:5],
        "wall_s": wall,
        "throughput_rps": requests / wall,
        "backend_latency_ms": LOAD_LATENCY_S * 1000,
        "latency_p50_ms": percentile(latencies, 50) * 1000,
        "latency_p95_ms": percentile(latencies, 95) * 1000,
        "overhead_p50_ms": percentile(server_overhead, 50),
        "overhead_p95_ms": percentile(server_overhead, 95),
        "overhead_p99_ms": percentile(server_overhead, 99),
        "client_observed_overhead_p50_ms": percentile(overhead, 50),
        "client_observed_overhead_p95_ms": percentile(overhead, 95),
        "server_cancelled": scrape(after, "forgepilot_cancelled_total"),
        "tasks_before": scrape(before, "forgepilot_asyncio_tasks"),
        "tasks_after": scrape(after, "forgepilot_asyncio_tasks"),
        "inflight_after": scrape(after, "forgepilot_inflight_requests") - 1,  # minus the scrape itself
        "rss_before_mib": scrape(before, "process_resident_memory_bytes") / 2**20,
        "rss_after_mib": scrape(after, "process_resident_memory_bytes") / 2**20,
        "open_fds_before": scrape(before, "process_open_fds"),
        "open_fds_after": scrape(after, "process_open_fds"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--context-iterations", type=int, default=300)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--cancel-share", type=float, default=0.3)
    parser.add_argument("--backend-ms", type=float, default=None, help="The fake backend's latency (default 50).")
    parser.add_argument("--skip-model", action="store_true", help="Skip the real-model overhead benchmark.")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "assist.json")
    parser.add_argument("--serve-fake", help=argparse.SUPPRESS)
    args = parser.parse_args()
    global LOAD_LATENCY_S
    if args.backend_ms is not None:
        LOAD_LATENCY_S = args.backend_ms / 1000
    if args.serve_fake:
        serve_fake(args.serve_fake)
        return 0
    console = Console()
    results: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}
    }
    console.print("[bold]load[/]: 32 clients against a fake-backend gateway ...")
    results["load"] = bench_load(args.requests, args.clients, args.cancel_share)
    console.print("[bold]context assembly[/]: indexing the standard library ...")
    results["context"] = bench_context(args.context_iterations)
    if not args.skip_model:
        console.print("[bold]serving overhead[/]: HTTP vs direct on the embedded model ...")
        results["overhead"] = bench_overhead(args.trials, args.max_tokens)

    table = Table(title="ForgePilot assistant benchmark")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("goal", justify="right")
    if "overhead" in results:
        o = results["overhead"]
        table.add_row("HTTP /v1/completions median", f"{o['http_median_s']:.3f} s", "")
        table.add_row("direct llama.cpp median", f"{o['direct_median_s']:.3f} s", "")
        table.add_row("ratio HTTP / direct", f"{o['ratio']:.3f}", "<= 1.05")
    c = results["context"]
    table.add_row("context assembly p50 (typing)", f"{c['p50_ms']:.2f} ms", "")
    table.add_row("context assembly p95 (typing)", f"{c['p95_ms']:.2f} ms", "<= 15 ms")
    table.add_row(
        "context assembly p50 / p95 (after a jump)", f"{c['jump_p50_ms']:.1f} / {c['jump_p95_ms']:.1f} ms", ""
    )
    table.add_row("snippets per request", f"{c['snippets_per_request']:.1f}", "")
    ld = results["load"]
    table.add_row("load: requests / cancelled", f"{ld['requests']} / {ld['cancelled_by_client']}", "30%")
    table.add_row("load: errors", str(ld["errors"]), "0")
    table.add_row("load: gateway overhead p50 (Server-Timing)", f"{ld['overhead_p50_ms']:.2f} ms", "")
    table.add_row("load: gateway overhead p95 (Server-Timing)", f"{ld['overhead_p95_ms']:.2f} ms", "<= 10 ms")
    table.add_row(
        "load: latency minus model p50 / p95 (client)",
        f"{ld['client_observed_overhead_p50_ms']:.1f} / {ld['client_observed_overhead_p95_ms']:.1f} ms",
        "",
    )
    table.add_row("load: cancellations seen by the server", f"{ld['server_cancelled']:.0f}", "")
    table.add_row("load: throughput", f"{ld['throughput_rps']:.0f} req/s", "")
    table.add_row(
        "load: asyncio tasks before / after", f"{ld['tasks_before']:.0f} / {ld['tasks_after']:.0f}", "no growth"
    )
    table.add_row(
        "load: RSS before / after", f"{ld['rss_before_mib']:.1f} / {ld['rss_after_mib']:.1f} MiB", "no growth"
    )
    table.add_row("load: open fds before / after", f"{ld['open_fds_before']:.0f} / {ld['open_fds_after']:.0f}", "")
    console.print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
