"""How a successful analysis step moves a canary forward, per strategy (Flagger's
``runCanary``, ``runBlueGreen`` and ``runAB``).

* canary — weights: confirm-traffic-increase, then ``stepWeight``/``stepWeights`` more to the
  canary ("Advance podinfo.test canary weight 20"); at ``maxWeight``, promotion. With
  ``mirror``, one step first copies requests to the canary at weight 0 ("... canary weight 0");
  ``status.iterations`` is 1 from then on, so that step is not taken twice.
* blue/green — ``iterations`` steps with all traffic on the primary ("Advance podinfo.test
  canary iteration 2/10"; with ``mirror`` the canary gets copies meanwhile), then
  confirm-promotion, "Routing all traffic to canary" for one step, then promotion.
* A/B testing — ``iterations`` steps where requests matching ``analysis.match`` go to the
  canary and everyone else to the primary, then promotion.
"""

from __future__ import annotations

from libs import messages
from libs.model import strategy
from services.analyzer.machine import control
from services.analyzer.machine.effects import (
    Gate,
    Hook,
    HooksOutcome,
    Phase,
    Promote,
    SetWeights,
    Step,
)
from services.analyzer.machine.stepping import StepState

Strategy = strategy.Strategy


def starting(s: StepState) -> bool:
    """The first analysis step (Flagger: weight 0 and no iteration yet, nothing mirrored):
    "Starting canary analysis" and pre-rollout hooks instead of metrics."""
    return (s.ctx.status.canary_weight or 0) == 0 and (s.ctx.status.iterations or 0) == 0


def mirror_percent(s: StepState) -> int:
    """The share of requests copied to the canary while mirroring (mirrorWeight, default 100)."""
    if not s.analysis.mirror:
        return 0
    weight = s.analysis.mirror_weight
    return weight if weight is not None and weight > 0 else 100


def advance(s: StepState) -> Step:
    match strategy.detect(s.analysis):
        case Strategy.AB_TESTING:
            return (yield from _ab_testing(s))
        case Strategy.BLUE_GREEN:
            return (yield from _blue_green(s))
        case _:
            return (yield from _canary(s))


def _iteration(s: StepState) -> None:
    done = (s.ctx.status.iterations or 0) + 1
    total = s.analysis.iterations_or_zero()
    s.update(iterations=done)
    s.info(
        messages.IterationAdvanced,
        f"Advance {s.who} canary iteration {done}/{total}",
        iteration=done,
        iterations=total,
    )


def _ab_testing(s: StepState) -> Step:
    if (s.ctx.status.iterations or 0) < s.analysis.iterations_or_zero():
        yield SetWeights(0, 100)  # only for requests that match (the driver adds the match)
        _iteration(s)
        return s.outcome()
    return (yield from promote(s))


def _blue_green(s: StepState) -> Step:
    iterations = s.ctx.status.iterations or 0
    if iterations < s.analysis.iterations_or_zero():
        mirror = mirror_percent(s)
        if mirror and iterations == 0:
            yield SetWeights(100, 0, mirror=mirror)
        _iteration(s)
        return s.outcome()
    if (s.ctx.status.canary_weight or 0) < 100:
        if not (yield from promotion_gate(s)):
            return s.outcome()
        yield SetWeights(0, 100)
        s.update(canary_weight=100)
        s.info(
            messages.WeightAdvanced,
            "Routing all traffic to canary",
            canary_weight=100,
            primary_weight=0,
        )
        return s.outcome()
    return (yield from promote(s))


def _canary(s: StepState) -> Step:
    weight = s.ctx.status.canary_weight or 0
    if weight >= strategy.max_weight(s.analysis):
        return (yield from promote(s))
    mirror = mirror_percent(s)
    mirrored = bool(mirror) and weight == 0 and (s.ctx.status.iterations or 0) > 0
    if mirror and weight == 0 and not mirrored:
        yield SetWeights(100, 0, mirror=mirror)
        s.update(iterations=1)
        s.info(
            messages.WeightAdvanced,
            f"Advance {s.who} canary weight 0",
            canary_weight=0,
            primary_weight=100,
        )
        return s.outcome()
    canary_weight = strategy.next_canary_weight(s.analysis, weight)
    if canary_weight <= weight:  # no step left below maxWeight: nothing more to shift
        return (yield from promote(s))
    if not mirrored:  # Flagger asks for a traffic increase only when nothing is mirrored
        gate = yield from control.ask_gate(s, Hook.CONFIRM_TRAFFIC_INCREASE, Phase.PROGRESSING)
        if not gate.ok:
            _waiting_for_traffic_increase(s, gate)
            return s.outcome()
        s.gate_passed()
        s.passed(Hook.CONFIRM_TRAFFIC_INCREASE, gate.passed)
    primary_weight = 100 - canary_weight
    yield SetWeights(primary_weight, canary_weight)
    s.update(canary_weight=canary_weight)
    s.info(
        messages.WeightAdvanced,
        f"Advance {s.who} canary weight {canary_weight}",
        canary_weight=canary_weight,
        primary_weight=primary_weight,
    )
    return s.outcome()


def _waiting_for_traffic_increase(s: StepState, gate: HooksOutcome) -> None:
    """Flagger's warning on every step the gate stays closed; the gate alert only once."""
    message = f"Halt {s.who} advancement waiting for traffic increase approval {gate.failed}"
    if not s.wait(Hook.CONFIRM_TRAFFIC_INCREASE, gate, message):
        s.hold(message, "waiting for traffic increase approval")


def promotion_gate(s: StepState) -> Gate:
    """Flagger's confirm-promotion: closed (False), the canary waits in WaitingPromotion while
    its analysis goes on; open (True), the step goes on."""
    gate = yield from control.ask_gate(s, Hook.CONFIRM_PROMOTION, Phase.PROGRESSING)
    if not gate.ok:
        s.wait(
            Hook.CONFIRM_PROMOTION,
            gate,
            f"Halt {s.who} advancement waiting for promotion approval {gate.failed}",
        )
        s.set_phase(Phase.WAITING_PROMOTION)
        return False
    s.gate_passed()
    s.passed(Hook.CONFIRM_PROMOTION, gate.passed)
    return True


def promote(s: StepState) -> Step:
    """The confirm-promotion gate, then the target's spec copied to the primary."""
    if not (yield from promotion_gate(s)):
        return s.outcome()
    s.info(
        messages.PromotionStarted,
        f"Copying {s.who} template spec to {s.target}-primary.{s.ref.namespace}",
    )
    yield Promote()
    s.set_phase(Phase.PROMOTING)
    return s.outcome()
