"""Which deployment strategy an analysis describes, and the pure weight-step arithmetic.

Mirrors Flagger's scheduler: a canary step adds ``nextStepWeight`` to the canary weight
(capped at 100, so a step may overshoot maxWeight); promotion moves weight back to the
primary in one step or by ``stepWeightPromotion``.
"""

from __future__ import annotations

import enum

from libs.model import analysis


class Strategy(enum.StrEnum):
    """The deployment strategy of a Canary."""

    CANARY = "canary"
    BLUE_GREEN = "blue-green"
    AB_TESTING = "ab-testing"


def detect(spec: analysis.CanaryAnalysis) -> Strategy:
    """A/B testing (match + iterations), blue/green (iterations > 0), else canary (weights)."""
    iterations = spec.iterations_or_zero()
    if spec.match and iterations > 0:
        return Strategy.AB_TESTING
    if iterations > 0:
        return Strategy.BLUE_GREEN
    return Strategy.CANARY


def max_weight(spec: analysis.CanaryAnalysis) -> int:
    """The canary weight at which promotion starts.

    With stepWeights: min(100, last step); else maxWeight when > 0; else 100.
    """
    if spec.step_weights:
        return min(100, spec.step_weights[-1])
    if spec.max_weight is not None and spec.max_weight > 0:
        return spec.max_weight
    return analysis.DEFAULT_MAX_WEIGHT


def step_increment(spec: analysis.CanaryAnalysis, canary_weight: int) -> int:
    """How much one canary step adds to ``canary_weight`` (Flagger's ``nextStepWeight``).

    stepWeight wins when set (> 0) or when there are no stepWeights; with stepWeights the
    weight moves to the next entry above the current one, 0 past the last.
    """
    step = spec.step_weight or 0
    steps = spec.step_weights or ()
    if step > 0 or not steps:
        return step
    for index in range(len(steps) - 1, -1, -1):
        if steps[index] <= canary_weight:
            if index + 1 < len(steps):
                return steps[index + 1] - canary_weight
            return 0
    return steps[0] - canary_weight


def next_canary_weight(spec: analysis.CanaryAnalysis, canary_weight: int) -> int:
    """The canary weight after one successful step, at most 100."""
    return max(0, min(100, canary_weight + step_increment(spec, canary_weight)))


def next_primary_weight(
    spec: analysis.CanaryAnalysis, canary_weight: int, primary_weight: int
) -> int:
    """The primary weight after one successful step, at least 0."""
    return max(0, min(100, primary_weight - step_increment(spec, canary_weight)))


def next_promotion_weight(spec: analysis.CanaryAnalysis, canary_weight: int) -> int:
    """The canary weight after one promotion step: 0 at once, or down by stepWeightPromotion."""
    step = spec.step_weight_promotion or 0
    if step <= 0:
        return 0
    return max(0, canary_weight - step)


def weight_schedule(spec: analysis.CanaryAnalysis) -> list[int]:
    """The canary weights of a run that never halts, from the first step to promotion.

    Empty for blue/green and A/B testing. Stops when a step makes no progress.
    """
    if detect(spec) is not Strategy.CANARY:
        return []
    weights: list[int] = []
    weight, limit = 0, max_weight(spec)
    while weight < limit:
        following = next_canary_weight(spec, weight)
        if following <= weight:
            break
        weights.append(following)
        weight = following
    return weights
