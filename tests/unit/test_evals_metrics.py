"""Metric definitions against hand-computed values and worked examples; the paired tests of `eval compare`."""

from __future__ import annotations

import math

import pytest

from forgepilot.evals import metrics
from forgepilot.evals.compare import compare_results, mcnemar, paired_bootstrap


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (5, 2, 1, 0.4),  # 1 - C(3,1)/C(5,1) = 1 - 3/5
        (5, 2, 2, 0.7),  # 1 - C(3,2)/C(5,2) = 1 - 3/10
        (5, 2, 3, 0.9),  # 1 - C(3,3)/C(5,3) = 1 - 1/10
        (5, 2, 4, 1.0),  # n - c < k: every draw of 4 holds a correct one
        (10, 3, 5, 1 - 21 / 252),  # 1 - C(7,5)/C(10,5)
        (10, 0, 1, 0.0),
        (10, 10, 10, 1.0),
        (1, 1, 1, 1.0),
        (200, 13, 100, 1 - math.comb(187, 100) / math.comb(200, 100)),
    ],
)
def test_pass_at_k_matches_the_binomial_formula(n: int, c: int, k: int, expected: float) -> None:
    assert metrics.pass_at_k(n, c, k) == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_pass_at_k_rejects_impossible_counts() -> None:
    with pytest.raises(ValueError):
        metrics.pass_at_k(3, 4, 1)
    with pytest.raises(ValueError):
        metrics.pass_at_k(3, 1, 4)
    assert metrics.mean_pass_at_k([(5, 2), (5, 0)], 1) == pytest.approx(0.2)
    assert metrics.mean_pass_at_k([(5, 2), (1, 0)], 2) is None


def test_exact_match_and_edit_similarity_follow_crosscodeeval() -> None:
    assert metrics.exact_match("return  a +\n b", "return a + b")
    assert not metrics.exact_match("return a - b", "return a + b")
    # Levenshtein("abc", "abd") = 1 over max length 3.
    assert metrics.edit_similarity("abc", "abd") == pytest.approx(2 / 3)
    assert metrics.edit_similarity("", "") == 1.0
    assert metrics.edit_similarity("", "abc") == 0.0
    # Whitespace runs collapse before the distance: "x  = 1" is "x = 1".
    assert metrics.edit_similarity("x  = 1", "x = 1") == 1.0


def test_identifier_match_ignores_keywords_and_counts_multisets() -> None:
    assert metrics.identifiers("return self.total + len(items)") == ["total", "len", "items"]
    em, f1 = metrics.identifier_match("foo(bar, baz)", "foo(bar, qux)")
    assert (em, f1) == (False, pytest.approx(2 / 3))
    em, f1 = metrics.identifier_match("if x: return y", "if x:\n    return y")
    assert (em, f1) == (True, 1.0)
    # Same identifiers in another order: F1 1, EM no.
    assert metrics.identifier_match("a(b)", "b(a)") == (False, 1.0)


def test_accuracy_rmse_majority() -> None:
    assert metrics.accuracy(["High", "low ", None], ["high", "medium", "low"]) == pytest.approx(1 / 3)
    assert metrics.rmse([1.0, 2.0, 4.0], [1.0, 3.0, 2.0]) == pytest.approx(math.sqrt(5 / 3))
    assert metrics.majority(["B", "a", "b", None, "A"]) == "B"  # b twice, a twice: the first seen wins
    assert metrics.majority([None, " "]) is None


def test_percentiles_interpolate_like_numpy() -> None:
    import numpy as np

    values = [0.12, 0.5, 0.07, 1.3, 0.9, 0.33, 0.41]
    got = metrics.percentiles(values)
    for q in metrics.PERCENTILES:
        assert got[f"p{q}"] == pytest.approx(float(np.percentile(values, q)))
    assert got["mean"] == pytest.approx(sum(values) / len(values))


@pytest.mark.parametrize(
    ("tokens", "bucket"), [(0, "0-256"), (256, "0-256"), (257, "257-512"), (2048, "1025-2048"), (5000, "2049+")]
)
def test_token_buckets(tokens: int, bucket: str) -> None:
    assert metrics.bucket_of(tokens, metrics.INPUT_BUCKETS) == bucket


def test_mcnemar_exact_test_on_discordant_pairs() -> None:
    a = [True] * 3 + [True] * 1 + [False] * 6 + [False] * 2
    b = [True] * 3 + [False] * 1 + [True] * 6 + [False] * 2
    test = mcnemar(a, b)
    assert (test.only_a, test.only_b, test.both, test.neither) == (1, 6, 3, 2)
    # Two-sided exact binomial: 2 * (C(7,0) + C(7,1)) / 2^7 = 16/128.
    assert test.p_value == pytest.approx(0.125)
    assert mcnemar([True, False], [True, False]).p_value == 1.0


def test_paired_bootstrap_interval_covers_the_mean_difference() -> None:
    a = [0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0] * 5
    b = [1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0] * 5
    iv = paired_bootstrap(a, b, iterations=4000, seed=1)
    assert iv.diff == pytest.approx(0.3)
    assert 0.15 < iv.low < 0.3 < iv.high < 0.45
    same = paired_bootstrap(a, a)
    assert (same.low, same.high) == (0.0, 0.0)
    assert paired_bootstrap(a, b, seed=1, iterations=4000) == iv  # seeded: reproducible


def test_compare_results_pairs_cases_by_id() -> None:
    def result(case: str, passed: bool) -> dict[str, object]:
        return {"case_id": case, "status": "ok", "n": 1, "c": int(passed)}

    a = [result("p1", True), result("p2", False), result("p3", False), result("only-a", True)]
    b = [result("p3", True), result("p2", True), result("p1", True)]
    out = compare_results("functional", a, b, iterations=500)
    assert out["paired_cases"] == 3 and out["only_in_a"] == 1
    assert out["intervals"]["pass@1"]["diff"] == pytest.approx(2 / 3)
    assert out["mcnemar"]["only_b"] == 2 and out["mcnemar"]["only_a"] == 0
    assert {c["case_id"] for c in out["changed"]} == {"p2", "p3"}
