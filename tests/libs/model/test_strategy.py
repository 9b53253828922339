import itertools

import pytest

from libs.model import analysis, strategy

A = analysis.CanaryAnalysis
M = analysis.MatchCondition
S = analysis.StringMatch


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (A(step_weight=10), strategy.Strategy.CANARY),
        (A(step_weights=(10, 20)), strategy.Strategy.CANARY),
        (A(iterations=10), strategy.Strategy.BLUE_GREEN),
        (A(iterations=0, step_weight=5), strategy.Strategy.CANARY),
        (
            A(iterations=10, match=(M(headers={"x": S(exact="1")}),)),
            strategy.Strategy.AB_TESTING,
        ),
        (A(match=(M(headers={"x": S(exact="1")}),), step_weight=10), strategy.Strategy.CANARY),
    ],
)
def test_detect(spec: analysis.CanaryAnalysis, expected: strategy.Strategy) -> None:
    assert strategy.detect(spec) is expected


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (A(step_weight=10), 100),
        (A(step_weight=10, max_weight=50), 50),
        (A(step_weight=10, max_weight=0), 100),
        (A(step_weights=(1, 5, 30)), 30),
        (A(step_weights=(1, 5, 30), max_weight=90), 30),  # stepWeights win over maxWeight
        (A(step_weights=(50, 120)), 100),  # min(100, last)
    ],
)
def test_max_weight(spec: analysis.CanaryAnalysis, expected: int) -> None:
    assert strategy.max_weight(spec) == expected


def test_step_weight_every_start_weight() -> None:
    """next = min(100, w + step) for every weight and step (a step may overshoot maxWeight)."""
    for step, weight in itertools.product(range(0, 101), range(0, 101)):
        spec = A(step_weight=step, max_weight=50)
        assert strategy.step_increment(spec, weight) == step
        assert strategy.next_canary_weight(spec, weight) == min(100, weight + step)
        assert strategy.next_primary_weight(spec, weight, 100 - weight) == max(
            0, 100 - weight - step
        )


def test_step_weight_wins_over_step_weights() -> None:
    spec = A(step_weight=7, step_weights=(1, 2, 3))
    assert strategy.step_increment(spec, 0) == 7


@pytest.mark.parametrize(
    ("weight", "expected"),
    [(0, 1), (1, 2), (2, 10), (5, 10), (10, 80), (79, 80), (80, 80), (95, 95), (100, 100)],
)
def test_step_weights_move_to_next_entry(weight: int, expected: int) -> None:
    spec = A(step_weights=(1, 2, 10, 80))
    assert strategy.next_canary_weight(spec, weight) == expected


def test_step_weights_schedule_every_increasing_list() -> None:
    """For every strictly increasing list over a coarse grid, the schedule visits each entry."""
    grid = [0, 1, 5, 10, 25, 50, 80, 100, 120]
    for size in range(1, 4):
        for steps in itertools.combinations(grid, size):
            spec = A(step_weights=steps)
            expected: list[int] = []
            for step in steps:
                capped = min(100, step)
                if capped > 0 and (not expected or capped > expected[-1]):
                    expected.append(capped)
            schedule = strategy.weight_schedule(spec)
            assert schedule == expected, steps
            assert all(b > a for a, b in itertools.pairwise([0, *schedule]))


@pytest.mark.parametrize(
    ("step", "max_weight", "expected"),
    [
        (10, 50, [10, 20, 30, 40, 50]),
        (20, 50, [20, 40, 60]),  # overshoots maxWeight, as Flagger does
        (33, None, [33, 66, 99, 100]),
        (100, None, [100]),
        (0, 50, []),
    ],
)
def test_weight_schedule_step_weight(
    step: int, max_weight: int | None, expected: list[int]
) -> None:
    assert strategy.weight_schedule(A(step_weight=step, max_weight=max_weight)) == expected


def test_weight_schedule_empty_for_blue_green() -> None:
    assert strategy.weight_schedule(A(iterations=5)) == []


@pytest.mark.parametrize(
    ("promotion", "weight", "expected"),
    [(None, 50, 0), (0, 50, 0), (20, 50, 30), (20, 10, 0), (50, 100, 50), (100, 30, 0)],
)
def test_next_promotion_weight(promotion: int | None, weight: int, expected: int) -> None:
    spec = A(step_weight=10, step_weight_promotion=promotion)
    assert strategy.next_promotion_weight(spec, weight) == expected


def test_promotion_every_weight_reaches_zero() -> None:
    for step, start in itertools.product(range(1, 101), range(0, 101, 7)):
        spec = A(step_weight=10, step_weight_promotion=step)
        weight, rounds = start, 0
        while weight > 0:
            following = strategy.next_promotion_weight(spec, weight)
            assert following == max(0, weight - step)
            weight, rounds = following, rounds + 1
        assert rounds == -(-start // step)
