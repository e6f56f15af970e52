"""Runtime options for completions while typing: flash attention and prompt-lookup speculative decoding.

Each option is a ``[llama]`` setting of the embedded runtime. Every option set loads its own copy of the embedded
default model, and the prompts are completed by each in turn (interleaved, the KV cache emptied before each), so the
ratios compare like with like on this machine. Prompts are fill-in-the-middle holes cut from code we did not write
(the pinned click 8.1.8 sdist, as ``benchmarks/crossfile.py`` fetches it), at a function's first body line: the model
writes a block, where prompt lookup has the most to copy. Reports per option: prompt tokens/s, generation tokens/s,
the whole completion's wall time, and how many greedy answers equal the baseline's (an option must not change them).

    python benchmarks/runtime.py [--prompts 8] [--max-tokens 64] [--out PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from forgepilot.backends import EMBEDDED_MODELS, CompletionRequest, LlamaCppBackend, ModelStore, fim_template
from forgepilot.config import LlamaSettings, load_settings

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from crossfile import fetch  # noqa: E402  (the same pinned sources)

OPTIONS: dict[str, dict[str, Any]] = {
    "baseline": {"flash_attn": False, "prompt_lookup_tokens": 0},
    "flash attention": {"flash_attn": True, "prompt_lookup_tokens": 0},
    "flash + prompt lookup 10": {"flash_attn": True, "prompt_lookup_tokens": 10},
}
_DEF = re.compile(r"(?m)^    def \w+\(.*\):\n(?:        \"\"\"[\s\S]*?\"\"\"\n)?")


def holes(count: int) -> list[tuple[str, str]]:
    """(prefix, suffix) at the first body line of methods of click, about 1,000 prompt tokens each."""
    root = fetch("pypi", "click", "8.1.8") / "src" / "click"
    out = []
    for path in sorted(root.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        for m in list(_DEF.finditer(text))[3::7]:
            cut = m.end() + 8  # after the body's indentation
            out.append((text[max(0, cut - 3000) : cut], text[cut : cut + 600]))
            if len(out) >= count:
                return out
    return out


async def trial(backend: LlamaCppBackend, prefix: str, suffix: str, max_tokens: int) -> dict[str, Any]:
    await backend.complete(CompletionRequest(prompt="x", max_tokens=1, priority="batch"))  # empty the live cache
    backend.host.states.clear()
    request = CompletionRequest(prompt=prefix, suffix=suffix, max_tokens=max_tokens, priority="batch")
    t = time.perf_counter()
    first: float | None = None
    parts = []
    usage = None
    async for chunk in backend.stream(request):
        if chunk.text and first is None:
            first = time.perf_counter() - t
        parts.append(chunk.text)
        usage = chunk.usage or usage
    total = time.perf_counter() - t
    assert usage is not None and first is not None
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "ttft_s": first,
        "total_s": total,
        "text": "".join(parts),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/runtime.json")
    args = parser.parse_args()
    settings = load_settings()
    model = EMBEDDED_MODELS["qwen2.5-coder-0.5b"]
    path = ModelStore(settings.models_dir).ensure(model)
    backends = {
        name: LlamaCppBackend(
            f"llamacpp:{name}",
            path=path,
            template=fim_template(model.family),
            settings=LlamaSettings(n_ctx=4096, **options),
        )
        for name, options in OPTIONS.items()
    }
    cases = holes(args.prompts)
    trials: dict[str, list[dict[str, Any]]] = {name: [] for name in OPTIONS}
    for prefix, suffix in cases:
        for name, backend in backends.items():
            trials[name].append(await trial(backend, prefix, suffix, args.max_tokens))
    base = trials["baseline"]
    report: dict[str, Any] = {"cpus": os.cpu_count(), "prompts": len(cases), "max_tokens": args.max_tokens}
    rows = {}
    for name, runs in trials.items():
        prompt_tps = statistics.median(r["prompt_tokens"] / r["ttft_s"] for r in runs)
        gen = [(r["completion_tokens"] - 1) / (r["total_s"] - r["ttft_s"]) for r in runs if r["completion_tokens"] > 1]
        rows[name] = {
            "options": OPTIONS[name],
            "prompt_tokens_per_s": round(prompt_tps, 1),
            "generation_tokens_per_s": round(statistics.median(gen), 1) if gen else None,
            "completion_wall_s_p50": round(statistics.median(r["total_s"] for r in runs), 3),
            "same_answer_as_baseline": sum(r["text"] == b["text"] for r, b in zip(runs, base, strict=True)),
        }
    for row in rows.values():
        row["wall_vs_baseline"] = round(row["completion_wall_s_p50"] / rows["baseline"]["completion_wall_s_p50"], 3)
    report["options"] = rows
    print(f"\n{len(cases)} FIM holes of click 8.1.8, {args.max_tokens} tokens at most, {os.cpu_count()} CPUs")
    print(f"{'option':<28}{'prompt tok/s':>13}{'gen tok/s':>11}{'wall p50 s':>12}{'vs base':>9}{'same':>6}")
    for name, row in rows.items():
        print(
            f"{name:<28}{row['prompt_tokens_per_s']:>13}{row['generation_tokens_per_s'] or '-':>11}"
            f"{row['completion_wall_s_p50']:>12}{row['wall_vs_baseline']:>9}{row['same_answer_as_baseline']:>6}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(main())
