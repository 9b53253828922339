"""Blue/green, A/B testing, mirroring, gates that alert once per wait, Flagger's "check passed"
messages and deletion with revertOnDeletion — the pure step driven with scripted answers."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from libs.model import canary as canary_model
from services.analyzer import machine
from tests.sandbox.e2e import support
from tests.services.analyzer.test_machine import (
    NOW,
    REV1,
    REV2,
    Hook,
    Phase,
    World,
    drive,
    messages_of,
    run,
    status,
    workload,
)

AB_MATCH = [{"headers": {"x-canary": {"exact": "insider"}}}]


def canary(spec: dict[str, Any] | None = None, **analysis: Any) -> canary_model.Canary:
    obj = yaml.safe_load((support.MANIFESTS / "podinfo-canary.yaml").read_text())
    obj["spec"]["analysis"].update(analysis)
    obj["spec"].update(spec or {})
    obj["metadata"]["uid"] = "uid-1"
    return canary_model.parse_canary(obj)


def blue_green(**analysis: Any) -> canary_model.Canary:
    return canary(stepWeight=None, maxWeight=None, iterations=3, **analysis)


def run_effects(
    subject: canary_model.Canary, world: World, steps: int = 30
) -> tuple[list[machine.Effect], list[tuple[str, str]]]:
    """Like ``run``, also collecting every effect."""
    state = status(Phase.SUCCEEDED)
    effects: list[machine.Effect] = []
    seen: list[tuple[str, str]] = []
    for n in range(steps):
        done, out = drive(
            subject, state, target=workload("podinfo", REV2), world=world, now=NOW + n * 10_000
        )
        effects += done
        seen += messages_of(out)
        state = out.status
        if state.phase in (Phase.SUCCEEDED, Phase.FAILED) and n > 0:
            break
    return effects, seen


# --------------------------------------------------------------------------- blue/green


def test_blue_green_counts_iterations_then_routes_everything_to_the_canary_then_promotes() -> None:
    effects, seen = run_effects(blue_green(), World())
    assert seen == [
        ("new_revision", "New revision detected! Scaling up podinfo.test"),
        ("analysis_started", "Starting canary analysis for podinfo.test"),
        ("iteration_advanced", "Advance podinfo.test canary iteration 1/3"),
        ("iteration_advanced", "Advance podinfo.test canary iteration 2/3"),
        ("iteration_advanced", "Advance podinfo.test canary iteration 3/3"),
        ("weight_advanced", "Routing all traffic to canary"),
        ("promotion_started", "Copying podinfo.test template spec to podinfo-primary.test"),
        ("weight_advanced", "Routing all traffic to primary"),
        ("promotion_completed", "Promotion completed! Scaling down podinfo.test"),
    ]
    weights = [e for e in effects if isinstance(e, machine.SetWeights)]
    assert weights == [machine.SetWeights(0, 100), machine.SetWeights(100, 0)]
    # metrics are checked on every step after the first, as for the canary strategy
    assert effects.count(machine.CheckMetrics()) == 4


def test_blue_green_asks_for_promotion_before_routing_everything_to_the_canary() -> None:
    world = World(failing_hooks={Hook.CONFIRM_PROMOTION: "ask"})
    state = status(Phase.PROGRESSING, iterations=3, last_applied_spec=REV2)
    effects, out = drive(blue_green(), state, target=workload("podinfo", REV2), world=world)
    assert machine.SetWeights(0, 100) not in effects
    assert out.status.phase == Phase.WAITING_PROMOTION
    assert messages_of(out)[-1] == (
        "waiting_approval",
        "Halt podinfo.test advancement waiting for promotion approval ask",
    )


def test_blue_green_with_mirroring_copies_requests_to_the_canary_during_iterations() -> None:
    effects, seen = run_effects(blue_green(mirror=True, mirrorWeight=50), World())
    weights = [e for e in effects if isinstance(e, machine.SetWeights)]
    assert weights == [
        machine.SetWeights(100, 0, mirror=50),  # first iteration: mirroring starts
        machine.SetWeights(0, 100),  # everything to the canary, mirroring off
        machine.SetWeights(100, 0),
    ]
    assert ("weight_advanced", "Routing all traffic to canary") in seen


# --------------------------------------------------------------------------- A/B testing


def test_ab_testing_sends_matching_requests_to_the_canary_for_each_iteration() -> None:
    subject = canary(stepWeight=None, maxWeight=None, iterations=2, match=AB_MATCH)
    effects, seen = run_effects(subject, World())
    assert seen == [
        ("new_revision", "New revision detected! Scaling up podinfo.test"),
        ("analysis_started", "Starting canary analysis for podinfo.test"),
        ("iteration_advanced", "Advance podinfo.test canary iteration 1/2"),
        ("iteration_advanced", "Advance podinfo.test canary iteration 2/2"),
        ("promotion_started", "Copying podinfo.test template spec to podinfo-primary.test"),
        ("weight_advanced", "Routing all traffic to primary"),
        ("promotion_completed", "Promotion completed! Scaling down podinfo.test"),
    ]
    weights = [e for e in effects if isinstance(e, machine.SetWeights)]
    assert weights == [machine.SetWeights(0, 100)] * 2 + [machine.SetWeights(100, 0)]


def test_ab_testing_status_weight_stays_zero() -> None:
    subject = canary(stepWeight=None, maxWeight=None, iterations=2, match=AB_MATCH)
    state = status(Phase.PROGRESSING, iterations=1, last_applied_spec=REV2)
    _, out = drive(subject, state, target=workload("podinfo", REV2))
    assert (out.status.canary_weight, out.status.iterations) == (0, 2)


# --------------------------------------------------------------------------- canary + mirror


def test_a_mirrored_canary_takes_one_mirror_step_before_shifting_weight() -> None:
    effects, seen = run_effects(canary(mirror=True), World())
    weights = [e for e in effects if isinstance(e, machine.SetWeights)]
    assert weights[:3] == [
        machine.SetWeights(100, 0, mirror=100),
        machine.SetWeights(90, 10),
        machine.SetWeights(80, 20),
    ]
    advanced = [m for kind, m in seen if kind == "weight_advanced" and "canary weight" in m]
    assert advanced == [f"Advance podinfo.test canary weight {w}" for w in (0, 10, 20, 30, 40, 50)]
    # "Starting canary analysis" once: the mirrored step is analysed like any other
    assert [kind for kind, _ in seen].count("analysis_started") == 1


def test_no_traffic_increase_gate_while_mirrored() -> None:
    world = World(failing_hooks={Hook.CONFIRM_TRAFFIC_INCREASE: "more"})
    state = status(Phase.PROGRESSING, iterations=1, last_applied_spec=REV2)
    effects, out = drive(canary(mirror=True), state, target=workload("podinfo", REV2), world=world)
    assert machine.RunHooks(Hook.CONFIRM_TRAFFIC_INCREASE, Phase.PROGRESSING) not in effects
    assert out.status.canary_weight == 10


# --------------------------------------------------------------------------- weights


@pytest.mark.parametrize(
    ("analysis", "weights"),
    [
        ({"stepWeights": [5, 10, 20, 40], "stepWeight": None, "maxWeight": None}, [5, 10, 20, 40]),
        ({"stepWeight": 20, "maxWeight": 50}, [20, 40, 60]),
        ({"stepWeight": 50, "maxWeight": 100}, [50, 100]),
    ],
)
def test_weight_steps_then_promotion_by_step_weight_promotion(
    analysis: dict[str, Any], weights: list[int]
) -> None:
    _, seen = run_effects(canary(stepWeightPromotion=30, **analysis), World())
    advanced = [
        int(m.rsplit(" ", 1)[1]) for _, m in seen if m.startswith("Advance podinfo.test canary")
    ]
    assert advanced == weights
    primary = [int(m.rsplit(" ", 1)[1]) for _, m in seen if "primary weight" in m]
    top = weights[-1]
    assert primary == [100 - w for w in range(top - 30, 0, -30)]
    assert seen[-2:] == [
        ("weight_advanced", "Routing all traffic to primary"),
        ("promotion_completed", "Promotion completed! Scaling down podinfo.test"),
    ]


@pytest.mark.parametrize(("threshold", "available", "ready"), [(100, 1, False), (50, 1, True)])
def test_canary_ready_threshold(threshold: int, available: int, ready: bool) -> None:
    target = workload("podinfo", REV2, available_replicas=available, ready_replicas=available)
    state = status(Phase.PROGRESSING, canary_weight=10, last_applied_spec=REV2)
    _, out = drive(canary(canaryReadyThreshold=threshold), state, target=target)
    assert (out.status.canary_weight == 20) is ready


# --------------------------------------------------------------------------- gates


def test_a_closed_traffic_increase_gate_alerts_once_and_warns_every_step() -> None:
    world = World(failing_hooks={Hook.CONFIRM_TRAFFIC_INCREASE: "more"})
    state = status(Phase.PROGRESSING, canary_weight=10, last_applied_spec=REV2)
    kinds: list[str] = []
    for n in range(3):
        _, out = drive(canary(), state, target=workload("podinfo", REV2), world=world, now=NOW + n)
        kinds += [kind for kind, m in messages_of(out) if "traffic increase approval" in m]
        state = out.status
        assert state.canary_weight == 10
    assert kinds == ["waiting_approval", "halted", "halted"]
    (gate,) = [c for c in state.conditions if c.type == machine.GATE_CONDITION]
    assert (gate.status, gate.reason) == ("False", "confirm-traffic-increase")
    # open: the weight moves, the condition goes, Flagger's "check passed" is said
    world = World(passing_hooks={Hook.CONFIRM_TRAFFIC_INCREASE: ("more",)})
    _, out = drive(canary(), state, target=workload("podinfo", REV2), world=world)
    assert out.status.canary_weight == 20
    assert not [c for c in out.status.conditions if c.type == machine.GATE_CONDITION]
    assert ("webhook_passed", "Confirm-traffic-increase check more passed") in messages_of(out)


def test_a_closed_confirm_rollout_gate_waits_and_alerts_once() -> None:
    world = World(failing_hooks={Hook.CONFIRM_ROLLOUT: "approve"})
    state = status(Phase.SUCCEEDED)
    alerts = 0
    for n in range(3):
        _, out = drive(canary(), state, target=workload("podinfo", REV2), world=world, now=NOW + n)
        alerts += sum(kind == "waiting_approval" for kind, _ in messages_of(out))
        state = out.status
    assert (state.phase, alerts) == (Phase.WAITING, 1)
    world = World(passing_hooks={Hook.CONFIRM_ROLLOUT: ("approve",)})
    _, out = drive(canary(), state, target=workload("podinfo", REV2), world=world)
    assert out.status.phase == Phase.PROGRESSING
    assert messages_of(out)[0] == ("webhook_passed", "Confirm-rollout check approve passed")


def test_waiting_for_promotion_keeps_analysing_and_alerts_once() -> None:
    world = World(failing_hooks={Hook.CONFIRM_PROMOTION: "ship"})
    state = status(Phase.PROGRESSING, canary_weight=50, last_applied_spec=REV2)
    alerts = 0
    for n in range(3):
        effects, out = drive(
            canary(), state, target=workload("podinfo", REV2), world=world, now=NOW + n
        )
        assert machine.CheckMetrics() in effects  # the analysis goes on while waiting
        alerts += sum(kind == "waiting_approval" for kind, _ in messages_of(out))
        state = out.status
    assert (state.phase, alerts) == (Phase.WAITING_PROMOTION, 1)
    # a failing metric while waiting still counts and eventually rolls back
    bad = World(
        failing_hooks={Hook.CONFIRM_PROMOTION: "ship"},
        metrics=machine.MetricsOutcome(ok=False, halt="Halt podinfo.test advancement ..."),
    )
    for n in range(3):
        _, out = drive(
            canary(threshold=2), state, target=workload("podinfo", REV2), world=bad, now=NOW + n
        )
        state = out.status
    assert state.phase == Phase.FAILED
    assert not [c for c in state.conditions if c.type == machine.GATE_CONDITION]


def test_pre_and_post_rollout_hooks_that_pass_are_said() -> None:
    world = World(
        passing_hooks={Hook.PRE_ROLLOUT: ("smoke",), Hook.POST_ROLLOUT: ("tell",)},
    )
    seen = run(canary(), world)
    assert ("webhook_passed", "Pre-rollout check smoke passed") in seen
    assert ("webhook_passed", "Post-rollout check tell passed") in seen


# --------------------------------------------------------------------------- deletion


def guarded(deleting: bool = False, revert: bool = True) -> canary_model.Canary:
    obj = yaml.safe_load((support.MANIFESTS / "podinfo-canary.yaml").read_text())
    obj["spec"]["revertOnDeletion"] = revert
    obj["metadata"]["uid"] = "uid-1"
    obj["metadata"]["finalizers"] = [canary_model.FINALIZER]
    if deleting:
        obj["metadata"]["deletionTimestamp"] = "2027-01-15T08:00:00Z"
    return canary_model.parse_canary(obj)


def test_revert_on_deletion_puts_the_finalizer_on() -> None:
    subject = canary({"revertOnDeletion": True})
    effects, _ = drive(subject, status(Phase.SUCCEEDED))
    assert effects[0] == machine.SetFinalizer(True)
    effects, _ = drive(guarded(), status(Phase.SUCCEEDED))
    assert effects == []


def test_without_revert_on_deletion_the_finalizer_comes_off() -> None:
    effects, _ = drive(guarded(revert=False), status(Phase.SUCCEEDED))
    assert effects == [machine.SetFinalizer(False)]


def test_a_deleted_canary_is_reverted_then_released() -> None:
    effects, out = drive(guarded(deleting=True), status(Phase.PROGRESSING, canary_weight=30))
    assert effects == []
    assert out.status.phase == Phase.TERMINATING
    assert [m for m in messages_of(out) if m[0] == "terminating"] == [
        ("terminating", "Terminating canary podinfo.test")
    ]
    effects, out = drive(guarded(deleting=True), out.status)
    assert effects == [machine.Revert()]
    assert out.status.phase == Phase.TERMINATED
    assert [m for m in messages_of(out) if m[0] == "terminated"] == [
        ("terminated", "Terminated canary podinfo.test")
    ]
    effects, again = drive(guarded(deleting=True), out.status)
    assert effects == [machine.SetFinalizer(False)]
    assert again.events == ()


def test_a_deleted_canary_without_the_finalizer_is_left_to_kubernetes() -> None:
    obj = yaml.safe_load((support.MANIFESTS / "podinfo-canary.yaml").read_text())
    obj["metadata"]["deletionTimestamp"] = "2027-01-15T08:00:00Z"
    obj["metadata"]["finalizers"] = ["someone.else/finalizer"]
    effects, out = drive(canary_model.parse_canary(obj), status(Phase.PROGRESSING))
    assert (effects, out.events) == ([], ())


def test_a_step_on_a_new_canary_starts_with_the_unchanged_primary() -> None:
    effects, out = drive(canary(), status(Phase.INITIALIZED), target=workload("podinfo", REV1))
    assert (effects, out.events) == ([], ())


def test_a_failing_post_rollout_hook_only_warns_in_flaggers_words() -> None:
    seen = run(canary(), World(failing_hooks={Hook.POST_ROLLOUT: "tell"}))
    assert ("webhook_failed", "Post-rollout hook tell failed 403") in seen
    assert seen[-1] == ("promotion_completed", "Promotion completed! Scaling down podinfo.test")
