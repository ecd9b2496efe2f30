"""Is NEW slower than BASE? Distribution-free statistics on raw timing samples (pure Python, no torch).

* :func:`mann_whitney_u` — the rank-sum test: exact null distribution for small samples without ties,
  the normal approximation (tie and continuity corrected) otherwise.
* :func:`holm` — Holm's step-down adjustment of p-values tested together (one per cell of a diff).
* :func:`ratio_ci` — how many times longer NEW takes than BASE: the Hodges–Lehmann estimate of the
  ratio with the Moses confidence interval (unpaired samples).
* :func:`paired_ratio_ci` — the same for per-round ratios of interleaved measurements (paired).
* :func:`verdict` — asv's rule: a change is called only when it is significant AND beyond a minimum effect.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import Literal, NamedTuple, get_args

from archbench.rows import ResultRow
from archbench.timing.stats import CONFIDENCE, median, median_ci, median_ci_ranks
from archbench.units import coverage_percent, fmt_sig

EXACT_MAX_PAIRS = 400  # exact U distribution up to n1 * n2 pairs (20 x 20 samples); normal approximation above
DEFAULT_ALPHA = 0.05
DEFAULT_MIN_EFFECT = 0.05

Verdict = Literal["slower", "faster", "unchanged", "noisy"]
VERDICTS: tuple[str, ...] = get_args(Verdict)
SYMBOLS: dict[str, str] = {"slower": "▲", "faster": "▼", "unchanged": "=", "noisy": "?"}


class RatioEstimate(NamedTuple):
    """A ratio (of times: ``> 1``, NEW takes longer; of speeds in the report) with its confidence interval and
    the interval's coverage (exact for order-statistic intervals, from the normal approximation for large
    samples, a lower bound for an interval from two CIs' ends: :func:`ratio_of_rows`). The one ratio-with-CI
    type of archbench: a diff's cells, the report's relative speeds and interleaved runs' paired ratios."""

    ratio: float
    low: float
    high: float
    coverage: float

    def inverse(self) -> RatioEstimate:
        """The reciprocal ratio (a time ratio as a speed ratio), its interval's ends swapped."""
        return RatioEstimate(1 / self.ratio, 1 / self.high, 1 / self.low, self.coverage)

    def text(self, bound: bool = True) -> str:
        """``×2.50 (2.34–2.74)``; with ``bound``, the coverage is added when below that of two 95% CIs."""
        shown = f"; ≥{coverage_percent(self.coverage)}" if bound and self.coverage < CONFIDENCE**2 - 1e-12 else ""
        return f"×{fmt_sig(self.ratio)} ({fmt_sig(self.low)}–{fmt_sig(self.high)}{shown})"


def ratio_of_rows(numerator: ResultRow, denominator: ResultRow) -> RatioEstimate:
    """The ratio of two rows' medians, with the interval from their CI ends: ``[num_low / den_high, num_high /
    den_low]``. The interval holds the true ratio whenever both true medians lie in their CIs, so its coverage
    is at least the product of the two CIs' coverages (90.25% for two 95% CIs), with no assumption about the
    shape of either distribution; it is asymmetric, as a ratio of two uncertain numbers is. NaN where a stored
    figure is missing or not a positive time."""
    return RatioEstimate(_ratio(numerator.median_ms, denominator.median_ms),
                         _ratio(numerator.ci_low_ms, denominator.ci_high_ms),
                         _ratio(numerator.ci_high_ms, denominator.ci_low_ms),
                         ci_coverage(numerator) * ci_coverage(denominator))


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 and math.isfinite(denominator) else math.nan


# --------------------------------------------------------------------------------- Mann-Whitney U


def mann_whitney_u(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """``(u, p)``: the Mann–Whitney U statistic of ``a`` (pairs ``a_i > b_j``, ties counted ½) and the
    two-sided p-value of "``a`` and ``b`` come from one distribution".

    Exact when ``len(a) * len(b) <=`` :data:`EXACT_MAX_PAIRS` and no value repeats: ``p = 2 min(P(U <= u),
    P(U >= u))`` (capped at 1) under the null distribution of U. Otherwise the normal approximation with
    mean ``n1 n2 / 2``, the tie-corrected variance ``n1 n2 / 12 ((n+1) - sum(t^3 - t) / (n (n-1)))`` and a
    continuity correction of ½ — scipy's ``mannwhitneyu`` (``method="exact"`` / ``"asymptotic"``)."""
    n1, n2 = len(a), len(b)
    if not n1 or not n2:
        raise ValueError("mann_whitney_u needs at least one value in each sample")
    ranks, tie_sizes = _midranks([*a, *b])
    u = sum(ranks[:n1]) - n1 * (n1 + 1) / 2
    if n1 * n2 <= EXACT_MAX_PAIRS and not tie_sizes:
        counts = _u_counts(n1, n2)
        tail = sum(counts[: int(min(u, n1 * n2 - u)) + 1]) / math.comb(n1 + n2, n1)
        return u, min(1.0, 2 * tail)
    return u, _normal_p(u, n1, n2, tie_sizes)


def _midranks(values: list[float]) -> tuple[list[float], list[int]]:
    """1-based ranks of ``values`` (tied values share their mean rank) and the sizes of the tie groups."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    tie_sizes: list[int] = []
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for index in order[start:end + 1]:
            ranks[index] = (start + end) / 2 + 1
        if end > start:
            tie_sizes.append(end - start + 1)
        start = end + 1
    return ranks, tie_sizes


def _u_counts(n1: int, n2: int) -> list[int]:
    """``counts[u]``: how many of the ``C(n1+n2, n1)`` orderings of two untied samples give ``U = u``.

    They are the coefficients of the Gaussian binomial ``prod_{i=1..n1} (1 - q^(n2+i)) / (1 - q^i)``,
    built one factor at a time (multiply, then divide as a power series) in exact integers."""
    size = n1 * n2 + 1
    counts = [1] + [0] * (size - 1)
    for i in range(1, n1 + 1):
        for k in range(size - 1, n2 + i - 1, -1):
            counts[k] -= counts[k - n2 - i]
        for k in range(i, size):
            counts[k] += counts[k - i]
    return counts


def _normal_p(u: float, n1: int, n2: int, tie_sizes: list[int]) -> float:
    n = n1 + n2
    variance = n1 * n2 / 12 * ((n + 1) - sum(t**3 - t for t in tie_sizes) / (n * (n - 1)))
    if variance <= 0:  # every value equal: no evidence of a difference
        return 1.0
    z = (max(u, n1 * n2 - u) - n1 * n2 / 2 - 0.5) / math.sqrt(variance)
    return min(1.0, math.erfc(z / math.sqrt(2)))


# ----------------------------------------------------------------------------------------- Holm


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment, in the input's order: with the ``m`` p-values sorted ascending,
    ``adjusted_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))`` (1-based). Rejecting where the adjusted
    p-value is below alpha keeps the family-wise error rate at alpha."""
    m = len(pvalues)
    adjusted = [0.0] * m
    running = 0.0
    for step, index in enumerate(sorted(range(m), key=pvalues.__getitem__)):
        running = max(running, min(1.0, (m - step) * pvalues[index]))
        adjusted[index] = running
    return adjusted


# ----------------------------------------------------------------------------------- ratio CIs


def ratio_ci(base_samples: Sequence[float], new_samples: Sequence[float], confidence: float = CONFIDENCE) -> RatioEstimate:
    """How many times longer NEW takes than BASE, from unpaired samples (all must be positive).

    On logs, ``d_ij = log new_j - log base_i`` for all ``N = n1 n2`` pairs. The estimate is the
    Hodges–Lehmann shift ``exp(median(d))`` — the median of all pairwise ratios ``new_j / base_i``. The
    interval is Moses' distribution-free CI: ``[exp d_(k), exp d_(N-k+1)]`` of the sorted differences,
    where ``k`` is the largest rank with ``P(U <= k-1) <= (1 - confidence) / 2`` under the null
    distribution of the Mann–Whitney U (exact up to :data:`EXACT_MAX_PAIRS` pairs; above, from the
    normal approximation ``k = floor(n1 n2 / 2 - z sqrt(n1 n2 (n1+n2+1) / 12) + 1/2)``). It assumes the two
    distributions differ by a factor (a shift on logs). With too few samples for the confidence (no
    such ``k``) the interval is the full range of the ratios, with its lower coverage. The order
    statistics are selected without listing all ``N`` differences (10,000 samples a side are 10^8 pairs)."""
    if not base_samples or not new_samples:
        raise ValueError("ratio_ci needs at least one sample on each side")
    if min(base_samples) <= 0 or min(new_samples) <= 0:
        raise ValueError("ratio_ci needs positive samples (times)")
    xs, ys = sorted(map(math.log, base_samples)), sorted(map(math.log, new_samples))
    n = len(xs) * len(ys)
    k, coverage = _moses_rank(len(xs), len(ys), confidence)
    middle = (_kth_difference(xs, ys, (n + 1) // 2) + _kth_difference(xs, ys, n // 2 + 1)) / 2
    return RatioEstimate(math.exp(middle), math.exp(_kth_difference(xs, ys, k)),
                         math.exp(_kth_difference(xs, ys, n - k + 1)), coverage)


def _kth_difference(xs: list[float], ys: list[float], k: int) -> float:
    """The ``k``-th smallest (1-based) of the differences ``y - x`` over all pairs of two sorted lists.

    Bisects on the value, counting the pairs at or below it in ``O(n1 + n2)``, until at most
    ``max(n1, n2)`` pairs lie in the bracket ``(lo, hi]``; those are listed and sorted. The counts use the
    very differences listed (rounding is monotone), so the result is exactly the sorted list's."""
    lo, hi = math.nextafter(ys[0] - xs[-1], -math.inf), ys[-1] - xs[0]  # no pair <= lo; all <= hi
    below = 0  # pairs <= lo
    at_most_hi = len(xs) * len(ys)
    while at_most_hi - below > max(len(xs), len(ys)):
        mid = lo + (hi - lo) / 2
        if not lo < mid < hi:  # adjacent floats: every pair in the bracket equals hi
            return hi
        count = _count_at_most(xs, ys, mid)
        if count >= k:
            hi, at_most_hi = mid, count
        else:
            lo, below = mid, count
    return sorted(_differences_between(xs, ys, lo, hi))[k - below - 1]


def _count_at_most(xs: list[float], ys: list[float], t: float) -> int:
    """How many pairs have ``y - x <= t`` (the first qualifying ``x`` only moves right as ``y`` grows)."""
    count, i, m = 0, 0, len(xs)
    for y in ys:
        while i < m and y - xs[i] > t:
            i += 1
        count += m - i
    return count


def _differences_between(xs: list[float], ys: list[float], lo: float, hi: float) -> list[float]:
    """The differences ``y - x`` with ``lo < y - x <= hi``."""
    found: list[float] = []
    first = past = 0
    for y in ys:
        while first < len(xs) and y - xs[first] > hi:
            first += 1
        while past < len(xs) and y - xs[past] > lo:
            past += 1
        found.extend(y - x for x in xs[first:past])
    return found


def _moses_rank(n1: int, n2: int, confidence: float) -> tuple[int, float]:
    """``(k, coverage)`` of the Moses interval ``[d_(k), d_(N-k+1)]`` (see :func:`ratio_ci`)."""
    alpha_half = (1 - confidence) / 2
    if n1 * n2 <= EXACT_MAX_PAIRS:
        counts, total = _u_counts(n1, n2), math.comb(n1 + n2, n1)
        below, k = 0, 0  # below = #(U <= k-1)
        while below + counts[k] <= alpha_half * total:
            below += counts[k]
            k += 1
        if k == 0:
            return 1, 1 - 2 * counts[0] / total
        return k, 1 - 2 * below / total
    mean, sd = n1 * n2 / 2, math.sqrt(n1 * n2 * (n1 + n2 + 1) / 12)
    k = max(1, math.floor(mean - NormalDist().inv_cdf(1 - alpha_half) * sd + 0.5))
    return k, 1 - 2 * NormalDist().cdf((k - 0.5 - mean) / sd)


def paired_ratio_ci(per_round_ratios: Sequence[float], confidence: float = CONFIDENCE) -> RatioEstimate:
    """The median of per-round ratios (interleaved rounds: each ratio from one round of both runs) with
    the order-statistic CI of a median (:func:`archbench.timing.stats.median_ci`: binomial ranks, exact
    coverage; the sample range below 6 rounds at 95%)."""
    if not per_round_ratios:
        raise ValueError("paired_ratio_ci needs at least one ratio")
    low, high, coverage = median_ci(per_round_ratios, confidence)
    return RatioEstimate(median(per_round_ratios), low, high, coverage)


MIN_QUIET_ROUNDS = 6  # the fewest rounds whose median CI reaches 95% coverage


def quiet_rounds(per_round_ratios: Sequence[float], loaded: Sequence[bool]) -> list[float] | None:
    """The ratios of the rounds measured without CPU pressure (all where none was loaded); ``None`` where loaded
    rounds leave fewer than :data:`MIN_QUIET_ROUNDS` quiet ones: not comparable (measured under load).

    Why drop rather than weight: a round that straddles a load change slows one model's burst and not the
    other's, so its ratio is wrong in an unknown direction, by up to the load's slowdown (2x here) — a
    contaminated minority, not noise. The load signal is measured around each burst, independently of the
    ratios, so selecting on it keeps the order-statistic CI exact for the quiet rounds' distribution. Why not
    keep loaded rounds: under a sustained load the models do not slow by one factor (benchmarks/busy_machine.py:
    ×0.94 in mostly loaded runs for a quiet ×1.10), so even paired rounds under load are biased."""
    quiet = [ratio for ratio, was_loaded in zip(per_round_ratios, loaded) if not was_loaded]
    return None if len(quiet) < min(len(per_round_ratios), MIN_QUIET_ROUNDS) else quiet


def quiet_paired_ratio(per_round_ratios: Sequence[float], loaded: Sequence[bool]) -> RatioEstimate:
    """:func:`paired_ratio_ci` of the :func:`quiet_rounds`; NaN throughout where they are ``None``."""
    quiet = quiet_rounds(per_round_ratios, loaded)
    return RatioEstimate(math.nan, math.nan, math.nan, math.nan) if quiet is None else paired_ratio_ci(quiet)


# ---------------------------------------------------------------------------------------- verdict


def verdict(low: float, high: float, p_adjusted: float | None, *, alpha: float = DEFAULT_ALPHA,
            min_effect: float = DEFAULT_MIN_EFFECT) -> Verdict:
    """asv's rule, on the CI ``[low, high]`` of the time ratio NEW / BASE and the Holm-adjusted p-value:

    * ``slower`` (▲): ``p_adjusted < alpha`` and ``low > 1 + min_effect``;
    * ``faster`` (▼): ``p_adjusted < alpha`` and ``high < 1 - min_effect``;
    * ``unchanged`` (=): ``1 - min_effect <= low`` and ``high <= 1 + min_effect`` (whatever p says: a
      significant 2% change is still within the effect that matters);
    * ``noisy`` (?): anything else — the data cannot tell a change of ``min_effect`` from none.

    ``p_adjusted=None`` (no raw samples, no test) lets the interval alone decide."""
    significant = p_adjusted is None or p_adjusted < alpha
    if significant and low > 1 + min_effect:
        return "slower"
    if significant and high < 1 - min_effect:
        return "faster"
    if 1 - min_effect <= low and high <= 1 + min_effect:
        return "unchanged"
    return "noisy"


def ci_coverage(row: ResultRow) -> float:
    """The exact coverage of the row's CI: stored since ``ci_coverage`` exists, derived from the sample
    count for older rows (the interval is always the order-statistic one of :mod:`archbench.timing.timer`)."""
    if math.isfinite(row.ci_coverage):
        return row.ci_coverage
    return median_ci_ranks(row.n_samples)[2] if row.n_samples > 0 else math.nan
