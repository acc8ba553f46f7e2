"""The statistics behind the BPTT benchmark's paired comparisons (benchmarks/bptt.py),
checked against enumeration of every sign pattern, not against the formulas they use; and
the floor its headline prices for any policy."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from benchmarks.bptt import Row, _headline, median_interval, sign_test_p_value


def enumerated_sign_test(wins: int, trials: int) -> float:
    """Share of all 2^n equally likely win/loss patterns at least as uneven as the one seen."""
    seen = abs(2 * wins - trials)
    patterns = list(itertools.product((0, 1), repeat=trials))
    return sum(abs(2 * sum(p) - trials) >= seen for p in patterns) / len(patterns)


@pytest.mark.parametrize("trials", [1, 2, 5, 8, 11])
def test_sign_test_matches_enumeration(trials):
    for wins in range(trials + 1):
        assert sign_test_p_value(wins, trials) == pytest.approx(enumerated_sign_test(wins, trials))


def enumerated_coverage(n: int, low_rank: int, high_rank: int) -> float:
    """Chance that the true median lies between the order statistics x_(low_rank) and
    x_(high_rank) (1-based): over all 2^n patterns of draws falling below or above it,
    it does when at least low_rank draws fall below and at least n + 1 - high_rank above."""
    covered = 0
    for pattern in itertools.product((0, 1), repeat=n):
        below = sum(pattern)
        covered += below >= low_rank and n - below >= n + 1 - high_rank
    return covered / 2**n


@pytest.mark.parametrize("n", [6, 7, 9, 12, 14])
def test_median_interval_is_the_narrowest_symmetric_one_with_95_percent_coverage(n):
    values = [float(v) for v in range(n)]  # x_(i) = i - 1
    low, high = median_interval(random.Random(n).sample(values, n))
    low_rank, high_rank = int(low) + 1, int(high) + 1
    assert low_rank + high_rank == n + 1  # symmetric
    assert enumerated_coverage(n, low_rank, high_rank) >= 0.95
    if low_rank < high_rank - 1:  # one rank narrower would fall short
        assert enumerated_coverage(n, low_rank + 1, high_rank - 1) < 0.95


def test_median_interval_is_unbounded_when_too_few_values():
    assert median_interval([1.0, 2.0, 3.0, 4.0, 5.0]) == (-math.inf, math.inf)
    assert median_interval([]) == (-math.inf, math.inf)


def test_headline_prices_the_floor_under_any_policy_at_five_percent():
    """T = 10 steps, a bound of 15 evaluations: 5 repeated steps at 0.1 s each (1 s for 10
    steps without grad) over full BPTT's 2 s puts every policy at 1.25x or more."""
    full = Row("full BPTT", 1.0, None, 1000, 2.0, 2.0, plan_cost=10)
    sqrt = Row("checkpoint √T (4)", None, None, 60, 2.6, 2.6, plan_cost=20)
    five = Row("MSM", 0.05, 50, 49, 2.7, 2.7, plan_cost=16, cost_lower_bound=15)
    for row in (full, sqrt, five):
        row.memory_ratio, row.timed_ratio = row.peak_bytes / 1000, row.timed_seconds / 2.0
    headline = _headline([full, sqrt, five], sqrt_peak=60, seq_len=10, no_grad_forward_seconds=1.0, pairs=[])
    assert headline["any_policy_at_5pct_min_time_ratio"] == pytest.approx(1.25)
    assert headline["msm_at_5pct_time_ratio"] == pytest.approx(1.35)
