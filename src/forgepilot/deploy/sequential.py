"""The sequential test a rollout step runs: is the canary worse than the champion, or shown not worse?

A rollout looks at its numbers again and again while traffic flows, and a fixed-sample p-value read at every look
would find a difference that is not there sooner or later. This is a group-sequential design with alpha spending
(Lan and DeMets): each step has ``LOOKS`` planned looks at information fractions 1/LOOKS, 2/LOOKS, ... of its
``max_events``, and the O'Brien-Fleming-type spending function alpha(t) = 2 - 2 Phi(z_{1-a/2} / sqrt(t)) gives each
look its share of the error rate. A look's boundary is the normal quantile of that share (Bonferroni over the looks,
so the whole step's error stays under alpha however the looks fall). Early looks need overwhelming evidence; a
canary that is clearly broken is still caught at the first.

Every guard is a rate, compared as a difference of two proportions (a z statistic, scipy's normal distribution):
- harm: the canary is worse than the champion (H0: not worse) -> roll back at once;
- non-inferiority: the canary is worse by less than the guard's margin (H0: worse by the margin or more) -> when
  every guard shows it, the step passes.
The error rate is split evenly over the guards and the two questions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from scipy.stats import norm

LOOKS = 10
Verdict = Literal["harm", "non_inferior", "undecided"]


def spent(alpha: float, t: float) -> float:
    """Error rate spent by information fraction ``t`` (O'Brien-Fleming-type spending; alpha at t = 1)."""
    if t <= 0:
        return 0.0
    return float(2.0 - 2.0 * norm.cdf(norm.ppf(1.0 - alpha / 2.0) / math.sqrt(min(t, 1.0))))


def look_boundary(alpha: float, look: int, looks: int = LOOKS) -> float:
    """The z a test must exceed at planned look ``look`` (1-based) to reject at error rate ``alpha`` overall."""
    share = spent(alpha, look / looks) - spent(alpha, (look - 1) / looks)
    return float(norm.isf(max(share, 1e-300)))


@dataclass(frozen=True)
class Rates:
    hits: int
    n: int

    @property
    def rate(self) -> float:
        return self.hits / self.n if self.n else 0.0


@dataclass(frozen=True)
class GuardResult:
    metric: str
    verdict: Verdict
    #: How much worse the canary is (positive: worse), as a share.
    worse_by: float
    margin: float
    z_harm: float
    z_non_inferior: float
    boundary: float
    champion: Rates
    canary: Rates
    #: Standard error of ``worse_by``: worse_by +- boundary x se is the look's confidence interval.
    se: float = 0.0

    def record(self) -> dict[str, object]:
        return {
            "metric": self.metric,
            "verdict": self.verdict,
            "worse_by": round(self.worse_by, 5),
            "margin": self.margin,
            "z_harm": round(self.z_harm, 3),
            "z_non_inferior": round(self.z_non_inferior, 3),
            "boundary": round(self.boundary, 3),
            "se": round(self.se, 6),
            "champion": {"hits": self.champion.hits, "n": self.champion.n, "rate": round(self.champion.rate, 5)},
            "canary": {"hits": self.canary.hits, "n": self.canary.n, "rate": round(self.canary.rate, 5)},
        }


def judge(
    metric: str,
    champion: Rates,
    canary: Rates,
    *,
    margin: float,
    lower_is_better: bool,
    boundary: float,
) -> GuardResult:
    """One guard at one look."""
    # Half a pseudo-event on each side keeps the standard error above zero when a rate is 0 or 1 (Agresti-Caffo).
    p_c = (canary.hits + 0.5) / (canary.n + 1.0)
    p_h = (champion.hits + 0.5) / (champion.n + 1.0)
    se = math.sqrt(p_c * (1 - p_c) / (canary.n + 1.0) + p_h * (1 - p_h) / (champion.n + 1.0))
    worse_by = (p_c - p_h) if lower_is_better else (p_h - p_c)
    z_harm = worse_by / se
    z_non_inferior = (margin - worse_by) / se
    verdict: Verdict = "undecided"
    if z_harm > boundary:
        verdict = "harm"
    elif z_non_inferior > boundary:
        verdict = "non_inferior"
    return GuardResult(metric, verdict, worse_by, margin, z_harm, z_non_inferior, boundary, champion, canary, se)
