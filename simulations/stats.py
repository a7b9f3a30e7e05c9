"""Confidence intervals for what many seeded runs measured.

Probabilities get the Wilson score interval: unlike mean ± z·SE it stays inside [0, 1]
and is not zero-width when no run lost anything (0 of 500 runs still means "below about
0.6 %", not "never"). Everything else is mean ± z·SE.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist


@dataclass(frozen=True, slots=True)
class Estimate:
    """A point estimate with its confidence interval."""

    value: float
    low: float
    high: float

    def contains(self, x: float) -> bool:
        return self.low <= x <= self.high

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high}


def z_value(confidence: float) -> float:
    """Two-sided normal quantile: 1.96 for 0.95, 2.58 for 0.99."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be within (0, 1), got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson(successes: int, trials: int, confidence: float = 0.95) -> Estimate:
    """Wilson score interval for a binomial proportion."""
    if trials <= 0 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 ≤ successes ≤ trials and trials > 0: {successes}/{trials}")
    z = z_value(confidence)
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return Estimate(p, low, high)


def mean_interval(
    values: Sequence[float], confidence: float = 0.95, *, nonnegative: bool = False
) -> Estimate:
    """Mean ± z·SE (sample standard deviation); a single value has a zero-width interval.

    ``nonnegative`` clips the lower end at 0 for quantities that cannot be negative
    (a heavy tail of rare long losses can otherwise push mean − z·SE below zero).
    """
    if not values:
        raise ValueError("no values")
    mean = math.fsum(values) / len(values)
    if len(values) < 2:
        return Estimate(mean, mean, mean)
    var = math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1)
    half = z_value(confidence) * math.sqrt(var / len(values))
    return Estimate(mean, max(0.0, mean - half) if nonnegative else mean - half, mean + half)
