"""Drift: has what users send, or what the assistant answers, moved away from a reference?

A reference window (e.g. last week) is compared with the current one (e.g. the last day), feature by feature:
inputs (language mix, prompt tokens, context sources used, share outside the training domain) and outputs (answer
length, why answers were empty, acceptance). Each feature gets a population stability index (PSI, the industry's
measure of a distribution shift: 0.1 worth a look, 0.25 a real shift) and a significance test from scipy
(chi-square for categories and rates, two-sample Kolmogorov-Smirnov for numbers). An alert needs both: a large
shift (PSI) that is also unlikely to be chance (p-value), so that small windows do not cry wolf.

``DomainProfile`` is the training domain (from a dataset card): the release gate's out-of-domain check and the live
monitor both flag inputs through ``DomainProfile.reasons``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats
from scipy.special import rel_entr

from forgepilot.config import MonitorSettings
from forgepilot.monitor.store import WindowSample

DriftStatus = Literal["ok", "warn", "alert", "too_few"]
_EPS = 1e-4  # floor for empty bins: PSI is infinite otherwise


@dataclass(frozen=True)
class DomainProfile:
    """What a model was trained on: its languages and its longest instance (prompt tokens)."""

    languages: frozenset[str]
    longest_tokens: int

    @classmethod
    def from_card(cls, card: Mapping[str, Any]) -> DomainProfile:
        """From a dataset card (``card.json`` of ``forgepilot dataset build``)."""
        languages = frozenset(card.get("counts", {}).get("language", {}))
        return cls(languages, int(card.get("tokens", {}).get("max") or 0))

    def reasons(self, language: str | None, tokens: int, length_factor: float = 2.0) -> list[str]:
        """Why an input is outside this domain (empty when it is inside)."""
        why = []
        if language and self.languages and language not in self.languages:
            why.append(f"language {language} absent from training data")
        if self.longest_tokens and tokens > length_factor * self.longest_tokens:
            why.append(
                f"{tokens} prompt tokens > {length_factor:g} x the longest training instance ({self.longest_tokens})"
            )
        return why


@dataclass(frozen=True)
class FeatureDrift:
    name: str
    test: str
    status: DriftStatus
    psi: float | None
    p_value: float | None
    reference: dict[str, float] = field(default_factory=dict)
    current: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class DriftReport:
    reference_n: int
    current_n: int
    features: list[FeatureDrift]

    @property
    def alerts(self) -> list[str]:
        return [_describe(f) for f in self.features if f.status == "alert"]

    @property
    def warnings(self) -> list[str]:
        return [_describe(f) for f in self.features if f.status == "warn"]


def _describe(f: FeatureDrift) -> str:
    p = f"p = {f.p_value:.2g}" if f.p_value is not None else "no test"
    return f"{f.name}: PSI {f.psi:.3f} ({f.test}, {p})"


def psi(reference: ArrayLike, current: ArrayLike) -> float:
    """Population stability index of two histograms over the same bins (counts or shares)."""
    p = np.asarray(reference, dtype=float)
    q = np.asarray(current, dtype=float)
    p = np.maximum(p / p.sum(), _EPS)
    q = np.maximum(q / q.sum(), _EPS)
    # PSI = sum((q - p) ln(q / p)) = KL(q || p) + KL(p || q).
    return float(np.sum(rel_entr(q, p) + rel_entr(p, q)))


def _status(psi_value: float, p_value: float | None, settings: MonitorSettings) -> DriftStatus:
    significant = p_value is not None and p_value < settings.drift_p_value
    if psi_value >= settings.psi_alert and significant:
        return "alert"
    if psi_value >= settings.psi_warn and (significant or p_value is None):
        return "warn"
    return "ok"


def _shares(counts: Mapping[str, int]) -> dict[str, float]:
    total = sum(counts.values())
    return {k: round(v / total, 4) for k, v in sorted(counts.items())} if total else {}


def categorical(name: str, reference: Sequence[str], current: Sequence[str], settings: MonitorSettings) -> FeatureDrift:
    ref, cur = Counter(reference), Counter(current)
    if min(len(reference), len(current)) < settings.drift_min_samples:
        return FeatureDrift(name, "chi-square", "too_few", None, None, _shares(ref), _shares(cur))
    keys = sorted(set(ref) | set(cur))
    table = np.array([[ref[k] for k in keys], [cur[k] for k in keys]])
    p_value = float(stats.chi2_contingency(table).pvalue) if len(keys) > 1 else 1.0
    value = psi(table[0], table[1])
    return FeatureDrift(
        name, "chi-square", _status(value, p_value, settings), round(value, 4), p_value, _shares(ref), _shares(cur)
    )


def numeric(name: str, reference: Sequence[float], current: Sequence[float], settings: MonitorSettings) -> FeatureDrift:
    def summary(values: ArrayLike) -> dict[str, float]:
        a = np.asarray(values, dtype=float)
        if not a.size:
            return {}
        return {"n": float(len(a)), "p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95))}

    if min(len(reference), len(current)) < settings.drift_min_samples:
        return FeatureDrift(name, "Kolmogorov-Smirnov", "too_few", None, None, summary(reference), summary(current))
    ref = np.asarray(reference, dtype=float)
    cur = np.asarray(current, dtype=float)
    # Bins are the reference's deciles, so each holds a tenth of it; open at both ends for values never seen.
    inner = np.unique(np.percentile(ref, np.linspace(10, 90, 9)))
    edges = np.concatenate(([-np.inf], inner, [np.inf]))
    value = psi(np.histogram(ref, edges)[0], np.histogram(cur, edges)[0])
    p_value = float(stats.ks_2samp(ref, cur).pvalue)
    return FeatureDrift(
        name,
        "Kolmogorov-Smirnov",
        _status(value, p_value, settings),
        round(value, 4),
        p_value,
        summary(ref),
        summary(cur),
    )


def rate(name: str, ref_hits: int, ref_n: int, cur_hits: int, cur_n: int, settings: MonitorSettings) -> FeatureDrift:
    ref_share = {"rate": round(ref_hits / ref_n, 4), "n": float(ref_n)} if ref_n else {}
    cur_share = {"rate": round(cur_hits / cur_n, 4), "n": float(cur_n)} if cur_n else {}
    if min(ref_n, cur_n) < settings.drift_min_samples:
        return FeatureDrift(name, "chi-square", "too_few", None, None, ref_share, cur_share)
    table = np.array([[ref_hits, ref_n - ref_hits], [cur_hits, cur_n - cur_hits]])
    degenerate = (table.sum(axis=0) == 0).any()
    p_value = 1.0 if degenerate else float(stats.chi2_contingency(table).pvalue)
    value = psi(table[0], table[1])
    return FeatureDrift(
        name, "chi-square", _status(value, p_value, settings), round(value, 4), p_value, ref_share, cur_share
    )


def compare(
    reference: WindowSample,
    current: WindowSample,
    settings: MonitorSettings,
    *,
    domain: DomainProfile | None = None,
    length_factor: float = 2.0,
) -> DriftReport:
    """Every feature of ``current`` against ``reference``."""

    def sources(sample: WindowSample) -> list[str]:
        return [s for used in sample.sources for s in (used or ("none",))]

    features = [
        categorical("language", reference.languages, current.languages, settings),
        numeric("prompt_tokens", reference.prompt_tokens, current.prompt_tokens, settings),
        categorical("context_sources", sources(reference), sources(current), settings),
        numeric("output_chars", reference.output_chars, current.output_chars, settings),
        categorical("empty_reason", reference.empty_reasons, current.empty_reasons, settings),
        rate("acceptance", reference.accepted, reference.shown, current.accepted, current.shown, settings),
    ]
    if domain is not None:

        def outside(sample: WindowSample) -> int:
            pairs = zip(sample.languages, sample.prompt_tokens, strict=True)
            return sum(1 for lang, tokens in pairs if domain.reasons(lang, tokens, length_factor))

        features.append(
            rate(
                "out_of_domain",
                outside(reference),
                len(reference.languages),
                outside(current),
                len(current.languages),
                settings,
            )
        )
    return DriftReport(len(reference.languages), len(current.languages), features)
