"""Metric definitions of the evaluation harness, each a small pure function checked against worked examples.

- ``pass_at_k``: the unbiased estimator of Chen et al. (2021), ``1 - C(n-c, k) / C(n, k)``.
- ``exact_match``, ``edit_similarity``, ``identifier_match``: the CrossCodeEval definitions (Ding et al., 2023):
  code compared with whitespace runs collapsed; edit similarity is ``1 - Levenshtein / max(len)``; identifiers are
  the lexical identifiers of the text, keywords excluded, compared as an ordered list (EM) and as a multiset (F1).
- ``accuracy``, ``rmse``: prompt evaluations (labels and scores).
- ``percentiles``, ``bucket_of``: latency by input and output token bucket.
"""

from __future__ import annotations

import keyword
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence

from rapidfuzz.distance import Levenshtein

PERCENTILES: tuple[int, ...] = (50, 75, 90, 95, 99)
#: Upper bounds of the token buckets latency is reported by (the last bucket is open-ended).
INPUT_BUCKETS: tuple[int, ...] = (256, 512, 1024, 2048)
OUTPUT_BUCKETS: tuple[int, ...] = (16, 64, 256)

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WS = re.compile(r"\s+")
# Keywords of the languages we evaluate, so "identifiers" are names the model had to get right.
_KEYWORDS = (
    frozenset(keyword.kwlist)
    | frozenset(keyword.softkwlist)
    | frozenset(
        "abstract boolean break byte case catch char class const continue default do double else enum extends final "
        "finally float for goto if implements import instanceof int interface long native new package private "
        "protected public return short static super switch synchronized this throw throws transient try void "
        "volatile while var let function typeof undefined null true false func go defer chan map struct type range "
        "select fallthrough fn mut impl trait pub use mod crate self Self where async await dyn loop match ref "
        "string number any unknown never readonly declare namespace module export from of".split()
    )
)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of ``k`` samples drawn from ``n`` (``c`` correct) passes."""
    if not 0 <= c <= n:
        raise ValueError(f"correct samples {c} outside 0..{n}")
    if k < 1 or k > n:
        raise ValueError(f"k={k} needs 1 <= k <= n={n}")
    if n - c < k:
        return 1.0
    # The product form avoids huge binomials: C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i).
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def mean_pass_at_k(counts: Iterable[tuple[int, int]], k: int) -> float | None:
    """Mean pass@k over problems given as (n, c); None when some problem has fewer than ``k`` samples."""
    values = []
    for n, c in counts:
        if n < k:
            return None
        values.append(pass_at_k(n, c, k))
    return sum(values) / len(values) if values else None


def normalize_code(text: str) -> str:
    """Whitespace runs collapsed to one space and the ends stripped (CrossCodeEval's comparison form)."""
    return _WS.sub(" ", text).strip()


def exact_match(prediction: str, target: str) -> bool:
    return normalize_code(prediction) == normalize_code(target)


def edit_similarity(prediction: str, target: str) -> float:
    """``1 - Levenshtein(p, t) / max(|p|, |t|)`` on the normalized texts; 1.0 for two empty texts."""
    p, t = normalize_code(prediction), normalize_code(target)
    if not p and not t:
        return 1.0
    return 1.0 - Levenshtein.distance(p, t) / max(len(p), len(t))


def identifiers(text: str) -> list[str]:
    return [m for m in _IDENT.findall(text) if m not in _KEYWORDS]


def identifier_match(prediction: str, target: str) -> tuple[bool, float]:
    """Identifier exact match (same identifiers in the same order) and F1 over identifier multisets."""
    p, t = identifiers(prediction), identifiers(target)
    em = p == t
    if not p and not t:
        return em, 1.0
    common = sum((Counter(p) & Counter(t)).values())
    if common == 0:
        return em, 0.0
    precision, recall = common / len(p), common / len(t)
    return em, 2 * precision * recall / (precision + recall)


def accuracy(predictions: Sequence[str | None], labels: Sequence[str]) -> float:
    """Share of predictions equal to their label (case and surrounding space ignored; None counts as wrong)."""
    if len(predictions) != len(labels):
        raise ValueError("predictions and labels differ in length")
    if not labels:
        return 0.0
    right = sum(1 for p, y in zip(predictions, labels, strict=True) if p is not None and same_label(p, y))
    return right / len(labels)


def same_label(prediction: str, label: str) -> bool:
    return prediction.strip().casefold() == label.strip().casefold()


def rmse(predictions: Sequence[float], targets: Sequence[float]) -> float:
    if len(predictions) != len(targets) or not targets:
        raise ValueError("rmse needs equally long, non-empty sequences")
    return math.sqrt(sum((p - t) ** 2 for p, t in zip(predictions, targets, strict=True)) / len(targets))


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile with linear interpolation between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def percentiles(values: Sequence[float], qs: Sequence[int] = PERCENTILES) -> dict[str, float]:
    if not values:
        return {}
    out = {f"p{q}": percentile(values, q) for q in qs}
    out["mean"] = sum(values) / len(values)
    return out


def bucket_of(tokens: int, bounds: Sequence[int]) -> str:
    """The label of the token bucket holding ``tokens``: ``0-256``, ``257-512``, ..., ``2049+``."""
    low = 0
    for bound in bounds:
        if tokens <= bound:
            return f"{low}-{bound}"
        low = bound + 1
    return f"{low}+"


def majority(values: Sequence[str | None]) -> str | None:
    """The most common answer (case-folded), first seen winning ties; None when no sample gave an answer."""
    answered = [v.strip() for v in values if v is not None and v.strip()]
    if not answered:
        return None
    counts = Counter(v.casefold() for v in answered)
    best = max(counts.values())
    return next(v for v in answered if counts[v.casefold()] == best)
