"""The statistics behind the BPTT benchmark's paired comparisons (benchmarks/bptt.py),
checked against enumeration of every sign pattern, not against the formulas they use."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from benchmarks.bptt import median_interval, sign_test_p_value


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
