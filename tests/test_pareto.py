"""Pareto optimality: dominated points, ties, missing values, and a brute-force cross-check."""
from __future__ import annotations

import itertools
import math
import random

import pytest

from paretune.frontier.pareto import dominates, pareto_optimal, staircase

QUALITY_UP_COST_DOWN = (True, False)


def test_dominated_points_are_not_optimal():
    points = [(0.90, 1.0), (0.80, 2.0), (0.95, 3.0), (0.85, 3.0)]
    # 0.80 at $2 loses to 0.90 at $1; 0.85 at $3 loses to 0.95 at $3 (same cost, worse quality).
    assert pareto_optimal(points, QUALITY_UP_COST_DOWN) == [True, False, True, False]


def test_identical_points_are_both_optimal():
    points = [(0.9, 1.0), (0.9, 1.0), (0.8, 1.0)]
    assert pareto_optimal(points, QUALITY_UP_COST_DOWN) == [True, True, False]


def test_equal_quality_the_cheaper_dominates_and_equal_cost_the_better():
    assert pareto_optimal([(0.9, 2.0), (0.9, 1.0)], QUALITY_UP_COST_DOWN) == [False, True]
    assert pareto_optimal([(0.8, 1.0), (0.9, 1.0)], QUALITY_UP_COST_DOWN) == [False, True]


def test_single_point_and_no_points():
    assert pareto_optimal([(0.5, 7.0)], QUALITY_UP_COST_DOWN) == [True]
    assert pareto_optimal([], QUALITY_UP_COST_DOWN) == []


def test_missing_values_take_no_part():
    points = [(0.99, None), (0.9, 1.0), (None, 0.1), (0.8, math.nan)]
    # The unknown-cost 0.99 neither counts as optimal nor knocks out 0.9 at $1.
    assert pareto_optimal(points, QUALITY_UP_COST_DOWN) == [False, True, False, False]


def test_lower_is_better_quality():
    points = [(0.10, 2.0), (0.20, 1.0), (0.30, 1.5)]  # mse: lower is better
    assert pareto_optimal(points, (False, False)) == [True, True, False]


def test_three_axes():
    points = [(0.9, 1.0, 5.0), (0.9, 1.0, 4.0), (0.95, 2.0, 9.0)]
    assert pareto_optimal(points, (True, False, False)) == [False, True, True]


def test_wrong_number_of_values_is_an_error():
    with pytest.raises(ValueError, match="expected 2"):
        pareto_optimal([(0.9, 1.0, 3.0)], QUALITY_UP_COST_DOWN)


def test_matches_the_definition_on_random_points_with_many_ties():
    rng = random.Random(0)
    for _ in range(50):
        points = [(rng.randint(0, 4), rng.randint(0, 4)) for _ in range(rng.randint(1, 12))]
        keys = [(q, -c) for q, c in points]
        expected = [not any(dominates(other, key) for other in keys) for key in keys]
        assert pareto_optimal(points, QUALITY_UP_COST_DOWN) == expected
        optimal = [k for k, ok in zip(keys, expected) if ok]
        for key, ok in zip(keys, expected):  # every dominated point is beaten by an optimal one
            assert ok or any(dominates(o, key) for o in optimal)


def test_staircase_steps_from_cheapest_to_dearest():
    line = staircase([(3.0, 0.95), (1.0, 0.90), (2.0, 0.93)])
    assert line == [(1.0, 0.90), (2.0, 0.90), (2.0, 0.93), (3.0, 0.93), (3.0, 0.95)]
    costs = [c for c, _ in line]
    assert costs == sorted(costs)
    assert all(b >= a for (_, a), (_, b) in itertools.pairwise(line))


def test_costs_within_the_tolerance_are_ties():
    # serving $/1M from two benchmarks: 0.099 vs 0.103 is noise, so the better model wins outright
    points = [(0.93, 0.103), (0.90, 0.099)]
    assert pareto_optimal(points, QUALITY_UP_COST_DOWN) == [True, True]
    assert pareto_optimal(points, QUALITY_UP_COST_DOWN, rel_tol=(0.0, 0.05)) == [True, False]


def test_a_real_cost_difference_still_counts_under_the_tolerance():
    points = [(0.93, 0.20), (0.90, 0.10)]  # half the price: both stay on the frontier
    assert pareto_optimal(points, QUALITY_UP_COST_DOWN, rel_tol=(0.0, 0.05)) == [True, True]


def test_tied_on_every_axis_within_tolerance_neither_dominates():
    points = [(0.90, 0.100), (0.90, 0.102)]
    assert pareto_optimal(points, QUALITY_UP_COST_DOWN, rel_tol=(0.0, 0.05)) == [True, True]


def test_zero_tolerance_is_the_exact_rule():
    rng = random.Random(1)
    for _ in range(30):
        points = [(rng.random(), rng.random()) for _ in range(8)]
        assert pareto_optimal(points, QUALITY_UP_COST_DOWN, rel_tol=(0.0, 0.0)) == \
            pareto_optimal(points, QUALITY_UP_COST_DOWN)
