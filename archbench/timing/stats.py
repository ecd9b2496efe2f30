"""Statistics on raw samples (pure Python, no torch): quantiles, the median and its distribution-free CI.

The CI of the median is the order-statistic interval: with ``n`` sorted samples and
``B ~ Binomial(n, 1/2)``, ``[x_(k), x_(n-k+1)]`` covers the true median with probability
``1 - 2 P(B <= k-1)``; ``k`` is the largest index keeping that at or above 95%. Below 6 samples no such
``k`` exists; the interval is then the sample range (coverage ``1 - 2^(1-n)``, 94% at n=5) and never
counts as precise enough to stop early.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

NOISY_IQR_FRACTION = 0.10  # a cell is flagged noisy when IQR/median exceeds this
CONFIDENCE = 0.95

def quantile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated quantile of already sorted values (numpy's default method)."""
    if not sorted_values:
        return math.nan
    pos = (len(sorted_values) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def median(values) -> float:
    return quantile(sorted(values), 0.5)


def median_ci_ranks(n: int, confidence: float = CONFIDENCE) -> tuple[int, int, float]:
    """1-based ranks ``(lo, hi)`` of the order-statistic CI of the median and its exact coverage.

    ``lo = k`` is the largest rank with ``P(B <= k-1) <= (1-confidence)/2``, ``B ~ Binomial(n, 1/2)``;
    ``hi = n-k+1``. With too few samples for the confidence (n < 6 at 95%) the ranks are ``(1, n)``."""
    if n <= 0:
        return 0, 0, 0.0
    alpha_half = (1.0 - confidence) / 2.0
    log_pmf = -n * math.log(2.0)  # log P(B = 0), in log space: no underflow for large n
    cdf_below, k = 0.0, 0  # cdf_below = P(B <= k-1)
    while k < n and cdf_below + math.exp(log_pmf) <= alpha_half:
        cdf_below += math.exp(log_pmf)
        log_pmf += math.log(n - k) - math.log(k + 1)
        k += 1
    if k == 0:
        return 1, n, 1.0 - 2.0 * math.exp(-n * math.log(2.0))
    return k, n - k + 1, 1.0 - 2.0 * cdf_below


def median_ci(values, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """``(low, high, coverage)``: the distribution-free CI of the median of ``values``."""
    ordered = sorted(values)
    if not ordered:
        return math.nan, math.nan, 0.0
    lo, hi, coverage = median_ci_ranks(len(ordered), confidence)
    return ordered[lo - 1], ordered[hi - 1], coverage


def ci_within(values, precision: float, confidence: float = CONFIDENCE) -> bool:
    """Whether both ends of the median's CI (at full ``confidence``) lie within ``precision`` x median."""
    ordered = sorted(values)
    if not ordered:
        return False
    lo, hi, coverage = median_ci(ordered, confidence)
    if coverage < confidence:
        return False
    mid = quantile(ordered, 0.5)
    return max(mid - lo, hi - mid) <= precision * mid


@dataclass(frozen=True)
class Measurement:
    """Raw per-iteration samples of one cell (milliseconds) and what stopped the sampling.

    ``stop_reason``: ``precision`` (CI within the target), ``max_time`` (budget spent) or
    ``max_samples``. Statistics are derived from the samples, never stored separately."""

    samples_ms: tuple[float, ...]
    warmup_ms: tuple[float, ...]
    stop_reason: str
    wall_s: float  # warm-up + sampling, host wall clock
    precision: float

    @property
    def n_samples(self) -> int:
        return len(self.samples_ms)

    @property
    def median_ms(self) -> float:
        return median(self.samples_ms)

    @property
    def iqr_ms(self) -> float:
        ordered = sorted(self.samples_ms)
        return quantile(ordered, 0.75) - quantile(ordered, 0.25)

    @property
    def min_ms(self) -> float:
        return min(self.samples_ms) if self.samples_ms else math.nan

    @property
    def ci_ms(self) -> tuple[float, float]:
        low, high, _ = median_ci(self.samples_ms)
        return low, high

    @property
    def ci_coverage(self) -> float:
        return median_ci(self.samples_ms)[2]

    @property
    def noisy(self) -> bool:
        mid = self.median_ms
        return bool(mid > 0 and self.iqr_ms / mid > NOISY_IQR_FRACTION)


