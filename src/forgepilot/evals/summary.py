"""A run's figures from its per-case results: quality metrics overall and per slice, latency, tokens and cost.

Errored cases count against quality (a case the model could not answer is not a pass) and are counted apart;
latency and cost come from the samples that reached the model, cached ones with the timings they had when they
were generated.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from forgepilot.evals import metrics
from forgepilot.evals.suites import AnswerSpec

#: The figure each kind is judged by first (gates default to it; reports lead with it).
HEADLINE = {"functional": "pass@1", "completion": "es", "prompt": "accuracy"}


def quality(
    kind: str, results: Sequence[dict[str, Any]], ks: Sequence[int], answer: AnswerSpec | None
) -> dict[str, Any]:
    """Quality metrics of ``results`` (all of one kind)."""
    if not results:
        return {}
    if kind == "functional":
        counts = [(r.get("n", 0), r.get("c", 0)) for r in results]
        out: dict[str, Any] = {}
        for k in ks:
            # An errored case had no sample: it counts as n samples, none passing.
            n_max = max((n for n, _ in counts), default=0)
            value = metrics.mean_pass_at_k([(n or n_max, c) for n, c in counts], k) if n_max >= k else None
            if value is not None:
                out[f"pass@{k}"] = value
        out["solved"] = sum(1 for _, c in counts if c > 0)
        return out
    if kind == "completion":
        keys = ("em", "es", "id_em", "id_f1")
        return {k: sum(r.get("metrics", {}).get(k, 0.0) for r in results) / len(results) for k in keys}
    out = {
        "accuracy": sum(1 for r in results if r.get("correct")) / len(results),
        "first_sample_accuracy": sum(1 for r in results if r.get("first_correct")) / len(results),
        "valid": sum(r.get("valid", 0.0) for r in results) / len(results),
    }
    if answer is not None and answer.type == "score":
        pairs = [(r["prediction"], r["expected"]) for r in results if r.get("prediction") is not None]
        if pairs:
            out["rmse"] = metrics.rmse([float(p) for p, _ in pairs], [float(e) for _, e in pairs])
        out["answered"] = len(pairs) / len(results)
    return out


def latency(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    samples = [s for r in results for s in r.get("samples", [])]
    if not samples:
        return {"requests": 0}
    lat = [float(s["latency_s"]) for s in samples]
    by_input: dict[str, list[float]] = defaultdict(list)
    by_output: dict[str, list[float]] = defaultdict(list)
    for s in samples:
        by_input[metrics.bucket_of(int(s.get("prompt_tokens", 0)), metrics.INPUT_BUCKETS)].append(s["latency_s"])
        by_output[metrics.bucket_of(int(s.get("completion_tokens", 0)), metrics.OUTPUT_BUCKETS)].append(s["latency_s"])
    model_s = sum(float(s.get("model_s") or 0.0) for s in samples)
    out_tokens = sum(int(s.get("completion_tokens", 0)) for s in samples)
    in_tokens = sum(int(s.get("prompt_tokens", 0)) for s in samples)
    costs = [s.get("cost_usd") for s in samples]
    known = [float(c) for c in costs if c is not None]
    first = [float(s["first_token_s"]) for s in samples if s.get("first_token_s") is not None]

    def ordered(groups: dict[str, list[float]]) -> dict[str, Any]:
        return {
            k: {"n": len(v), **metrics.percentiles(v)}
            for k, v in sorted(groups.items(), key=lambda kv: int(kv[0].split("-")[0].rstrip("+")))
        }

    return {
        "requests": len(samples),
        "cached": sum(1 for s in samples if s.get("cached")),
        "latency_s": metrics.percentiles(lat),
        "first_token_s": metrics.percentiles(first),
        "by_input_tokens": ordered(by_input),
        "by_output_tokens": ordered(by_output),
        "prompt_tokens": in_tokens,
        "completion_tokens": out_tokens,
        "tokens_per_s": out_tokens / model_s if model_s > 0 else None,
        "cost_usd": {
            "total": sum(known) if known else None,
            "per_request": sum(known) / len(known) if known else None,
            "per_1000_requests": 1000 * sum(known) / len(known) if known else None,
            "unpriced_requests": len(costs) - len(known),
        },
    }


def slices(
    kind: str, results: Sequence[dict[str, Any]], ks: Sequence[int], answer: AnswerSpec | None
) -> dict[str, dict[str, Any]]:
    """Quality per value of each slice label (language, repository, task, split, ...)."""
    groups: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in results:
        for name, value in (r.get("slices") or {}).items():
            if value:
                groups[name][str(value)].append(r)
    return {
        name: {value: {"cases": len(rs), **quality(kind, rs, ks, answer)} for value, rs in sorted(values.items())}
        for name, values in sorted(groups.items())
    }


def summarize(
    kind: str, results: Sequence[dict[str, Any]], *, ks: Sequence[int] = (1,), answer: AnswerSpec | None = None
) -> dict[str, Any]:
    errors = [r for r in results if r.get("status") == "error"]
    scored = results
    if kind == "prompt":
        # A prompt is judged on held-out examples; its own examples are reported beside them.
        heldout = [r for r in results if r.get("split", "heldout") != "shot"]
        shots = [r for r in results if r.get("split") == "shot"]
        metrics_ = quality(kind, heldout or results, ks, answer)
        if shots:
            metrics_["shots"] = quality(kind, shots, ks, answer)
    else:
        metrics_ = quality(kind, scored, ks, answer)
    return {
        "kind": kind,
        "cases": len(results),
        "errors": len(errors),
        "error_examples": [{"case_id": r["case_id"], "error": r.get("error")} for r in errors[:5]],
        "headline": HEADLINE[kind],
        "metrics": metrics_,
        "slices": slices(kind, results, ks, answer),
        "latency": latency(results),
    }
