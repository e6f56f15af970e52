"""Backend overhead: ForgePilot's llama.cpp backend vs raw ``llama_cpp.Llama`` calls, same prompt and parameters.

Measures prompt tokens/s, generation tokens/s and time to first token on the embedded default model, with trials
interleaved (raw, ours, ours, raw, ...) and the KV cache cleared before each, so both sides evaluate the whole
prompt. Prints a table and writes JSON (default ``benchmarks/results/backend.json``). Goal: ours / raw >= 0.97.

    python benchmarks/backend.py [--trials 5] [--max-tokens 64] [--threads N] [--out PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from forgepilot.backends import EMBEDDED_MODELS, CompletionRequest, LlamaCppBackend, ModelStore, fim_template
from forgepilot.backends.llamacpp import default_threads, import_llama_cpp
from forgepilot.config import LlamaSettings, load_settings

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Trial:
    prompt_tokens: int
    completion_tokens: int
    ttft_s: float
    total_s: float

    @property
    def prompt_tps(self) -> float:
        return self.prompt_tokens / self.ttft_s

    @property
    def gen_tps(self) -> float:
        # Tokens after the first, over the time after the first: pure generation speed.
        return (self.completion_tokens - 1) / (self.total_s - self.ttft_s)


def bench_prompt() -> str:
    """About 500 tokens of real code: the start of this package's HTTP backend."""
    text = (ROOT / "src/forgepilot/backends/openai_http.py").read_text(encoding="utf-8")
    return text[:2000]


def raw_trial(llm: Any, tokens: list[int], max_tokens: int) -> Trial:
    llm.reset()
    start = time.perf_counter()
    ttft: float | None = None
    n = 0
    for chunk in llm.create_completion(prompt=tokens, max_tokens=max_tokens, temperature=0.0, stream=True):
        if chunk["choices"][0]["text"]:
            ttft = ttft or time.perf_counter() - start
            n += 1
    total = time.perf_counter() - start
    # The raw stream has no usage; each chunk with text is one token here (ASCII code, no held-back stop text).
    return Trial(len(tokens), n, ttft or total, total)


async def ours_trial(backend: LlamaCppBackend, request: CompletionRequest) -> Trial:
    backend.host.llm.reset()
    result = await backend.complete(request)
    assert result.timings.first_token_s is not None
    return Trial(
        result.usage.prompt_tokens, result.usage.completion_tokens, result.timings.first_token_s, result.timings.total_s
    )


def summarize(trials: list[Trial]) -> dict[str, float]:
    return {
        "prompt_tokens": trials[0].prompt_tokens,
        "completion_tokens": statistics.median(t.completion_tokens for t in trials),
        "prompt_tok_s": statistics.median(t.prompt_tps for t in trials),
        "gen_tok_s": statistics.median(t.gen_tps for t in trials),
        "ttft_s": statistics.median(t.ttft_s for t in trials),
    }


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: all CPUs)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/backend.json")
    args = parser.parse_args()

    threads = args.threads or default_threads()  # the same on both sides
    model = EMBEDDED_MODELS["qwen2.5-coder-0.5b"]
    path = ModelStore(load_settings().models_dir).ensure(model)
    llama_settings = LlamaSettings(n_ctx=2048, n_threads=threads)
    ours = LlamaCppBackend(model.name, path=path, template=fim_template(model.family), settings=llama_settings)
    llama_cpp = import_llama_cpp()
    raw = llama_cpp.Llama(model_path=str(path), n_ctx=2048, n_threads=threads, n_batch=512, verbose=False)

    request = CompletionRequest(prompt=bench_prompt(), max_tokens=args.max_tokens, temperature=0.0)
    tokens = ours.prompt_tokens(request)
    # Warm both (page in the weights, allocate buffers) before measuring.
    raw_trial(raw, tokens, 4)
    await ours_trial(ours, CompletionRequest(prompt=request.prompt, max_tokens=4))

    raw_trials: list[Trial] = []
    our_trials: list[Trial] = []
    for i in range(args.trials):
        order = ("raw", "ours") if i % 2 == 0 else ("ours", "raw")
        for side in order:
            if side == "raw":
                raw_trials.append(raw_trial(raw, tokens, args.max_tokens))
            else:
                our_trials.append(await ours_trial(ours, request))

    r, o = summarize(raw_trials), summarize(our_trials)
    ratios = {
        "prompt_tok_s": o["prompt_tok_s"] / r["prompt_tok_s"],
        "gen_tok_s": o["gen_tok_s"] / r["gen_tok_s"],
        # Lower is better for latency, so the ratio is raw / ours: >= 0.97 means at most ~3% slower.
        "ttft": r["ttft_s"] / o["ttft_s"],
    }
    table = Table(title=f"backend overhead: {model.title}, {args.trials} trials, median")
    for col in ("metric", "raw llama_cpp", "forgepilot", "ratio (goal >= 0.97)"):
        table.add_column(col, justify="right" if col != "metric" else "left")
    table.add_row(
        "prompt tokens/s", f"{r['prompt_tok_s']:.1f}", f"{o['prompt_tok_s']:.1f}", f"{ratios['prompt_tok_s']:.3f}"
    )
    table.add_row("generation tokens/s", f"{r['gen_tok_s']:.1f}", f"{o['gen_tok_s']:.1f}", f"{ratios['gen_tok_s']:.3f}")
    table.add_row("time to first token (s)", f"{r['ttft_s']:.3f}", f"{o['ttft_s']:.3f}", f"{ratios['ttft']:.3f}")
    Console().print(table)
    print(
        f"prompt {r['prompt_tokens']:.0f} tokens; generated {o['completion_tokens']:.0f} (ours) / "
        f"{r['completion_tokens']:.0f} (raw) tokens"
    )

    report = {
        "benchmark": "backend",
        "model": model.name,
        "trials": args.trials,
        "max_tokens": args.max_tokens,
        "threads": threads,
        "raw": r,
        "ours": o,
        "ratios": ratios,
        "goal": 0.97,
        "passed": all(v >= 0.97 for v in ratios.values()),
        "raw_trials": [asdict(t) for t in raw_trials],
        "our_trials": [asdict(t) for t in our_trials],
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "llama_cpp_python": llama_cpp.__version__,
            "system_info": llama_cpp.llama_print_system_info().decode(errors="replace").strip(),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(f"wrote {args.out}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
