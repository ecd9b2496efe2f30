"""The diff's statistics on fixed numbers, each checked against a value worked out by hand (the working is
in the comments); scipy's ``mannwhitneyu`` agrees with the Mann–Whitney values (checked outside the suite,
scipy is not a dependency)."""

from __future__ import annotations

import math
import random
from statistics import NormalDist

import pytest

from archbench.results.significance import (
    holm,
    mann_whitney_u,
    paired_ratio_ci,
    ratio_ci,
    verdict,
)


def test_mann_whitney_exact_p_by_hand():
    # U of a = pairs a_i > b_j: 1.1 beats none, 2.3 and 3.5 beat 2.0, 6.2 beats 2.0, 4.1 and 5.0 -> U = 5.
    # Under the null, #(U = u) for 4 and 5 values = partitions of u into <= 4 parts each <= 5:
    # u = 0..5 -> 1, 1, 2, 3, 5, 6 (18 in all) of C(9, 4) = 126 orderings; p = 2 * 18/126.
    u, p = mann_whitney_u([1.1, 2.3, 3.5, 6.2], [2.0, 4.1, 5.0, 7.7, 8.3])
    assert u == 5
    assert p == pytest.approx(2 * 18 / 126)  # 0.2857 (scipy: 0.2857142857142857)


def test_mann_whitney_complete_separation_is_the_smallest_exact_p():
    # every a below every b: U = 0, the one ordering of C(6, 3) = 20 at each end -> p = 2/20
    assert mann_whitney_u([1, 2, 3], [4, 5, 6]) == (0, pytest.approx(0.1))
    assert mann_whitney_u([4, 5, 6], [1, 2, 3]) == (9, pytest.approx(0.1))  # U = n1 n2: the other tail
    # 20 x 20 = 400 pairs is still exact: 2 / C(40, 20)
    assert mann_whitney_u(range(20), range(20, 40))[1] == pytest.approx(2 / math.comb(40, 20))


def test_mann_whitney_with_ties_uses_the_tie_corrected_normal_approximation():
    # sorted: 1a 2a 2a 2b 3a 3b 3b 4b 5b; midranks 1, 3, 3, 3, 6, 6, 6, 8, 9; R_a = 1+3+3+6 = 13, U = 13 - 10 = 3.
    # ties of 3 and 3: sum(t^3 - t) = 48; var = 4*5/12 * (10 - 48/72) = 140/9; mean 10;
    # z = (max(3, 17) - 10 - 0.5) / sqrt(140/9) = 1.648; p = 2 (1 - Phi(z)).
    u, p = mann_whitney_u([1, 2, 2, 3], [2, 3, 3, 4, 5])
    assert u == 3
    assert p == pytest.approx(2 * (1 - NormalDist().cdf(6.5 / math.sqrt(140 / 9))))  # 0.0993 (scipy: 0.09934)


def test_mann_whitney_above_the_exact_limit_is_the_normal_approximation():
    # 21 x 20 values, completely separated: U = 0, mean 210, var = 420 * 42/12 = 1470, z = (420 - 210 - 0.5)/sqrt(1470)
    u, p = mann_whitney_u(range(21), range(100, 120))
    assert u == 0
    assert p == pytest.approx(2 * (1 - NormalDist().cdf(209.5 / math.sqrt(1470))))


def test_mann_whitney_of_identical_values_is_p_one():
    assert mann_whitney_u([5.0] * 4, [5.0] * 6) == (12, 1.0)  # every rank 5.5: U = 4*5.5 - 10 = 12 = n1 n2 / 2


def test_holm_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 -> 0.02, 0.03, 0.06, 0.04 -> running max 0.02, 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == [1.0, 1.0]  # capped at 1
    assert holm([0.01]) == [0.01]
    assert holm([]) == []


def test_ratio_ci_hodges_lehmann_and_moses_interval_by_hand():
    # base 2^0..2^4, new 2^0.5 x the same: log2 differences 0.5 + (j - i), j - i = -4..4 with multiplicities
    # 1 2 3 4 5 4 3 2 1. Sorted: -3.5, -2.5 x2, -1.5 x3, -0.5 x4, 0.5 x5 (ranks 11-15), 1.5 x4, 2.5 x3, 3.5 x2, 4.5.
    # Median (rank 13) = 0.5 -> ratio 2^0.5. 5 x 5 samples: P(U <= 2) = 4/252 <= 0.025 < P(U <= 3) = 7/252,
    # so k = 3: [d_(3), d_(23)] = [-2.5, 3.5], coverage 1 - 2 * 4/252.
    base = [2.0**i for i in range(5)]
    new = [2.0**0.5 * x for x in base]
    estimate = ratio_ci(base, new)
    assert estimate.ratio == pytest.approx(2**0.5)
    assert (estimate.low, estimate.high) == pytest.approx((2**-2.5, 2**3.5))
    assert estimate.coverage == pytest.approx(1 - 8 / 252)


def test_ratio_ci_of_a_constant_factor_is_that_factor():
    base = [10.0, 10.5, 11.0, 12.0, 10.2, 10.8]
    estimate = ratio_ci(base, [1.1 * x for x in base])
    assert estimate.ratio == pytest.approx(1.1)
    assert estimate.low < 1.1 < estimate.high


def test_ratio_ci_large_samples_take_ranks_from_the_normal_approximation():
    # 30 x 30 = 900 pairs: k = floor(450 - 1.95996 * sqrt(900 * 61 / 12) + 0.5) = floor(317.93) = 317
    base = [100 + 3 * i for i in range(30)]
    new = [1.2 * x for x in base]
    differences = sorted(math.log(y) - math.log(x) for y in new for x in base)
    estimate = ratio_ci(base, new)
    assert estimate.ratio == pytest.approx(1.2)  # the differences are symmetric around log 1.2
    assert estimate.low == pytest.approx(math.exp(differences[317 - 1]))
    assert estimate.high == pytest.approx(math.exp(differences[900 - 317]))
    assert estimate.coverage == pytest.approx(1 - 2 * NormalDist().cdf((317 - 0.5 - 450) / math.sqrt(4575)))


@pytest.mark.parametrize("quantum", [None, 1.0])  # 1.0: times rounded to whole ms, so many ratios are equal
def test_ratio_ci_selects_the_same_order_statistics_as_sorting_every_pair(quantum):
    """300 x 300 samples: the selection (bisection on the value, never listing the 90,000 differences at
    once) must return exactly the order statistics of the fully sorted list."""
    rng = random.Random(7)
    base = [100 * math.exp(rng.gauss(0, 0.05)) for _ in range(300)]
    new = [104 * math.exp(rng.gauss(0, 0.05)) for _ in range(300)]
    if quantum:
        base, new = [round(x / quantum) * quantum for x in base], [round(x / quantum) * quantum for x in new]
    logs_base = [math.log(x) for x in base]
    differences = sorted(math.log(y) - x for y in new for x in logs_base)
    k = math.floor(45_000 - NormalDist().inv_cdf(0.975) * math.sqrt(90_000 * 601 / 12) + 0.5)
    estimate = ratio_ci(base, new)
    assert estimate.ratio == math.exp((differences[44_999] + differences[45_000]) / 2)
    assert (estimate.low, estimate.high) == (math.exp(differences[k - 1]), math.exp(differences[90_000 - k]))


def test_ratio_ci_with_too_few_samples_is_the_full_range():
    # 2 x 2: P(U = 0) = 1/6 > 0.025, no rank qualifies: the interval is all ratios, coverage 1 - 2/6
    estimate = ratio_ci([1.0, 2.0], [3.0, 4.0])
    assert (estimate.low, estimate.high) == pytest.approx((1.5, 4.0))
    assert estimate.coverage == pytest.approx(2 / 3)


def test_ratio_ci_refuses_non_positive_times():
    with pytest.raises(ValueError, match="positive"):
        ratio_ci([1.0, 0.0], [1.0, 2.0])


def test_paired_ratio_ci_by_hand():
    # sorted: 0.98 1.01 1.02 1.04 1.05 1.07 1.09 1.10 1.12 1.20; median (1.05 + 1.07)/2 = 1.06.
    # n = 10: P(B <= 1) = 11/1024 <= 0.025 < P(B <= 2) = 56/1024 -> ranks 2 and 9: [1.01, 1.12],
    # coverage 1 - 2 * 11/1024 = 0.9785.
    ratios = [1.10, 1.05, 0.98, 1.20, 1.02, 1.07, 1.12, 1.01, 1.09, 1.04]
    estimate = paired_ratio_ci(ratios)
    assert estimate.ratio == pytest.approx(1.06)
    assert (estimate.low, estimate.high) == (1.01, 1.12)
    assert estimate.coverage == pytest.approx(1 - 22 / 1024)


def test_paired_ratio_ci_below_six_rounds_is_the_range():
    estimate = paired_ratio_ci([1.3, 1.1, 1.2, 1.25, 1.15])
    assert (estimate.ratio, estimate.low, estimate.high) == (1.2, 1.1, 1.3)
    assert estimate.coverage == pytest.approx(1 - 2 / 32)  # 93.75%


@pytest.mark.parametrize("low, high, p, expected", [
    (1.06, 1.14, 0.001, "slower"),      # significant, CI wholly above +5%
    (0.86, 0.94, 0.001, "faster"),      # significant, CI wholly below -5%
    (1.06, 1.14, 0.2, "noisy"),         # beyond the effect, but not significant after Holm
    (1.04, 1.14, 0.001, "noisy"),       # significant, but the CI reaches inside ±5%
    (1.01, 1.03, 0.001, "unchanged"),   # significant and tiny: within ±5% is unchanged
    (0.95, 1.05, 0.9, "unchanged"),     # the bounds themselves are within
    (0.80, 1.30, 0.9, "noisy"),         # cannot tell
    (1.06, 1.14, None, "slower"),       # no test (rows without samples): the interval decides
    (1.04, 1.14, None, "noisy"),
])
def test_verdict_is_asvs_rule(low, high, p, expected):
    assert verdict(low, high, p) == expected


def test_verdict_thresholds_are_parameters():
    assert verdict(1.06, 1.14, 0.001, min_effect=0.2) == "unchanged"
    assert verdict(1.06, 1.14, 0.03, alpha=0.01) == "noisy"
