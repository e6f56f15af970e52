"""Comparing two runs case by case: paired bootstrap confidence intervals and McNemar's test on pass/fail.

Both tests pair the runs on the cases they share, so a difference is measured on the same problems, never on two
different samples of problems. The bootstrap resamples cases (with replacement, a fixed seed) and reports the
interval of the mean difference B - A; McNemar's exact test looks only at the discordant cases (passed in one run,
failed in the other) and asks whether they split more unevenly than a fair coin would.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from forgepilot.errors import UserError

#: Per kind: the per-case figures compared, and the one read as pass/fail for McNemar's test.
CASE_FIGURES: dict[str, tuple[str, ...]] = {
    "functional": ("pass@1",),
    "completion": ("em", "es", "id_f1"),
    "prompt": ("correct",),
}
BINARY: dict[str, str] = {"functional": "pass@1", "completion": "em", "prompt": "correct"}


@dataclass(frozen=True)
class Interval:
    mean_a: float
    mean_b: float
    diff: float  # mean of b - a over the paired cases
    low: float
    high: float
    confidence: float

    def record(self) -> dict[str, float]:
        return {
            "a": self.mean_a,
            "b": self.mean_b,
            "diff": self.diff,
            "low": self.low,
            "high": self.high,
            "confidence": self.confidence,
        }


def paired_bootstrap(
    a: Sequence[float], b: Sequence[float], *, iterations: int = 5000, confidence: float = 0.95, seed: int = 0
) -> Interval:
    """Percentile interval of mean(b - a) over ``iterations`` resamples of the paired cases."""
    if len(a) != len(b) or not a:
        raise ValueError("paired bootstrap needs two equally long, non-empty sequences")
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diffs = xb - xa
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(diffs), size=(iterations, len(diffs)))
    means = diffs[idx].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Interval(float(xa.mean()), float(xb.mean()), float(diffs.mean()), float(low), float(high), confidence)


@dataclass(frozen=True)
class McNemar:
    only_a: int  # cases A passed and B failed
    only_b: int  # cases B passed and A failed
    both: int
    neither: int
    p_value: float  # exact two-sided binomial test on the discordant cases

    def record(self) -> dict[str, float | int]:
        return {
            "only_a": self.only_a,
            "only_b": self.only_b,
            "both": self.both,
            "neither": self.neither,
            "p_value": self.p_value,
        }


def mcnemar(a: Sequence[bool], b: Sequence[bool]) -> McNemar:
    if len(a) != len(b):
        raise ValueError("McNemar's test needs paired outcomes")
    only_a = sum(1 for x, y in zip(a, b, strict=True) if x and not y)
    only_b = sum(1 for x, y in zip(a, b, strict=True) if y and not x)
    both = sum(1 for x, y in zip(a, b, strict=True) if x and y)
    neither = len(a) - only_a - only_b - both
    n = only_a + only_b
    if n == 0:
        p = 1.0
    else:
        tail = sum(math.comb(n, i) for i in range(min(only_a, only_b) + 1)) / 2**n
        p = min(1.0, 2 * tail)
    return McNemar(only_a, only_b, both, neither, p)


def case_figures(kind: str, result: dict[str, Any]) -> dict[str, float]:
    """The per-case figures of one stored result (errors score 0)."""
    if result.get("status") == "error":
        return dict.fromkeys(CASE_FIGURES[kind], 0.0)
    if kind == "functional":
        n, c = result.get("n", 0), result.get("c", 0)
        return {"pass@1": c / n if n else 0.0}
    if kind == "completion":
        m = result.get("metrics", {})
        return {k: float(m.get(k, 0.0)) for k in CASE_FIGURES[kind]}
    return {"correct": 1.0 if result.get("correct") else 0.0}


def case_wins(
    results_a: Sequence[dict[str, Any]], results_b: Sequence[dict[str, Any]], figure: str, kind: str = "completion"
) -> tuple[int, int]:
    """Cases (matched by id) where run A's ``figure`` beat run B's, and where it lost."""
    by_b = {r["case_id"]: r for r in results_b}
    won = lost = 0
    for r in results_a:
        other = by_b.get(r["case_id"])
        if other is None:
            continue
        a, b = case_figures(kind, r)[figure], case_figures(kind, other)[figure]
        won += a > b
        lost += a < b
    return won, lost


def compare_results(
    kind: str,
    results_a: Sequence[dict[str, Any]],
    results_b: Sequence[dict[str, Any]],
    *,
    iterations: int = 5000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Paired comparison of two runs' results of one suite (cases matched by id)."""
    by_a = {r["case_id"]: r for r in results_a}
    by_b = {r["case_id"]: r for r in results_b}
    shared = [cid for cid in by_a if cid in by_b]
    if not shared:
        raise UserError("the two runs share no cases", hint="compare runs of the same suite")
    fa = [case_figures(kind, by_a[c]) for c in shared]
    fb = [case_figures(kind, by_b[c]) for c in shared]
    intervals = {
        name: paired_bootstrap(
            [f[name] for f in fa], [f[name] for f in fb], iterations=iterations, confidence=confidence, seed=seed
        ).record()
        for name in CASE_FIGURES[kind]
    }
    binary = BINARY[kind]
    test = mcnemar([f[binary] >= 1.0 for f in fa], [f[binary] >= 1.0 for f in fb])
    changed = [
        {"case_id": c, "a": x[binary], "b": y[binary]}
        for c, x, y in zip(shared, fa, fb, strict=True)
        if (x[binary] >= 1.0) != (y[binary] >= 1.0)
    ]
    return {
        "kind": kind,
        "paired_cases": len(shared),
        "only_in_a": len(by_a) - len(shared),
        "only_in_b": len(by_b) - len(shared),
        "intervals": intervals,
        "mcnemar": {"figure": binary, **test.record()},
        "changed": changed,
    }
