"""Flagger's transitions for the canary strategy, as a table, driving the pure step with
scripted answers: no server, no clock."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import yaml

from libs import messages
from libs.model import canary as canary_model
from services.analyzer import machine
from tests.sandbox.e2e import support

Phase = canary_model.Phase
Hook = machine.Hook
NOW = 1_800_000_000_000
REV1, REV2 = "rev-one", "rev-two"


def seed(**analysis: Any) -> canary_model.Canary:
    obj = yaml.safe_load((support.MANIFESTS / "podinfo-canary.yaml").read_text())
    obj["spec"]["analysis"].update(analysis)
    obj["metadata"]["uid"] = "uid-1"
    return canary_model.parse_canary(obj)


def workload(
    name: str, revision: str = REV1, ready: bool = True, **changes: Any
) -> messages.WorkloadObservation:
    fields: dict[str, Any] = {
        "namespace": "test",
        "name": name,
        "revision": revision,
        "generation": 2,
        "observed_generation": 2,
        "replicas": 2,
        "status_replicas": 2,
        "updated_replicas": 2,
        "ready_replicas": 2 if ready else 0,
        "available_replicas": 2 if ready else 0,
        **changes,
    }
    return messages.WorkloadObservation(**fields)


def status(phase: Phase, **fields: Any) -> canary_model.CanaryStatus:
    base: dict[str, Any] = {
        "phase": phase,
        "canary_weight": 0,
        "failed_checks": 0,
        "iterations": 0,
        "last_applied_spec": REV1,
        "last_promoted_spec": REV1,
        "tracked_configs": {},
        "last_transition_time": machine.rfc3339(NOW - 1000),
    }
    base.update(fields)
    return canary_model.CanaryStatus(**base)


@dataclasses.dataclass
class World:
    """Answers to the step's effects: hooks and metrics pass unless told otherwise."""

    failing_hooks: dict[Hook, str] = dataclasses.field(default_factory=dict)
    passing_hooks: dict[Hook, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    rollback_requested: bool = False
    metrics: machine.MetricsOutcome = dataclasses.field(
        default_factory=lambda: machine.MetricsOutcome(ok=True)
    )

    def answer(self, effect: machine.Effect) -> machine.Answer:
        match effect:
            case machine.RunHooks(type=Hook.ROLLBACK):
                said_yes = ("rollback",) if self.rollback_requested else ()
                return machine.HooksOutcome(
                    ok=True, any_ok=self.rollback_requested, passed=said_yes
                )
            case machine.RunHooks(type=kind) if kind in self.failing_hooks:
                return machine.HooksOutcome(ok=False, failed=self.failing_hooks[kind], error="403")
            case machine.RunHooks(type=kind):
                return machine.HooksOutcome(ok=True, passed=self.passing_hooks.get(kind, ()))
            case machine.CheckMetrics():
                return self.metrics
            case _:
                return None


def drive(
    canary: canary_model.Canary,
    state: canary_model.CanaryStatus,
    target: messages.WorkloadObservation | None = None,
    primary: messages.WorkloadObservation | None = None,
    world: World | None = None,
    now: int = NOW,
) -> tuple[list[machine.Effect], machine.Outcome]:
    ctx = machine.Context(
        canary=canary,
        status=state,
        target=target if target is not None else workload("podinfo"),
        primary=primary if primary is not None else workload("podinfo-primary"),
        now_ms=now,
    )
    world = world or World()
    gen = machine.step(ctx)
    effects: list[machine.Effect] = []
    answer: machine.Answer = None
    try:
        while True:
            effect = gen.send(answer)
            effects.append(effect)
            answer = world.answer(effect)
    except StopIteration as stop:
        return effects, stop.value


def messages_of(outcome: machine.Outcome) -> list[tuple[str, str]]:
    return [(messages.event_kind(e), e.message) for e in outcome.events if e.message]


def promoted(outcome: machine.Outcome) -> tuple[str, str]:
    (condition,) = [c for c in outcome.status.conditions if c.type == "Promoted"]
    return condition.status, condition.reason


# --------------------------------------------------------------------------- initialization


def test_a_new_canary_initializes_and_waits_for_its_primary() -> None:
    effects, out = drive(
        seed(), canary_model.CanaryStatus(), primary=workload("podinfo-primary", ready=False)
    )
    assert effects == [machine.Initialize()]
    assert out.status.phase == Phase.INITIALIZING
    assert promoted(out) == ("Unknown", "Initializing")
    assert messages_of(out) == [
        (
            "halted",
            "podinfo-primary.test not ready: waiting for rollout to finish: "
            "0 of 2 (readyThreshold 100%) updated replicas are available",
        )
    ]


def test_initialization_completes_when_the_primary_is_ready() -> None:
    effects, out = drive(
        seed(), status(Phase.INITIALIZING, last_applied_spec=None, last_promoted_spec=None)
    )
    assert effects == [machine.Initialize(), machine.SetWeights(100, 0)]
    assert out.status.phase == Phase.INITIALIZED
    assert (out.status.last_applied_spec, out.status.last_promoted_spec) == (REV1, REV1)
    assert promoted(out) == ("True", "Initialized")
    assert messages_of(out) == [("initialized", "Initialization done! podinfo.test")]


@pytest.mark.parametrize("phase", [Phase.INITIALIZED, Phase.SUCCEEDED, Phase.FAILED])
def test_nothing_happens_without_a_new_revision(phase: Phase) -> None:
    effects, out = drive(seed(), status(phase))
    assert (effects, out.events) == ([], ())


def test_replica_changes_are_not_a_revision() -> None:
    effects, _ = drive(seed(), status(Phase.SUCCEEDED), target=workload("podinfo", replicas=5))
    assert effects == []


# --------------------------------------------------------------------------- a new revision


def test_a_new_revision_scales_the_canary_up_and_starts_progressing() -> None:
    effects, out = drive(seed(), status(Phase.SUCCEEDED), target=workload("podinfo", REV2))
    assert effects == [
        machine.RunHooks(Hook.CONFIRM_ROLLOUT, Phase.SUCCEEDED),
        machine.Scale("podinfo", 2, up=True),
    ]
    assert out.status.phase == Phase.PROGRESSING
    assert out.status.last_applied_spec == REV2
    assert messages_of(out) == [("new_revision", "New revision detected! Scaling up podinfo.test")]
    assert promoted(out) == ("Unknown", "Progressing")


def test_a_changed_tracked_config_is_a_new_revision() -> None:
    target = workload("podinfo", tracked_configs={"configmap/podinfo-config": "new"})
    _, out = drive(
        seed(),
        status(Phase.SUCCEEDED, tracked_configs={"configmap/podinfo-config": "old"}),
        target=target,
    )
    assert out.status.phase == Phase.PROGRESSING


def test_a_closed_confirm_rollout_gate_waits_and_says_so_once() -> None:
    world = World(failing_hooks={Hook.CONFIRM_ROLLOUT: "gate"})
    _, out = drive(seed(), status(Phase.SUCCEEDED), target=workload("podinfo", REV2), world=world)
    assert out.status.phase == Phase.WAITING
    assert messages_of(out) == [
        ("waiting_approval", "Halt podinfo.test advancement waiting for approval gate")
    ]
    _, again = drive(seed(), out.status, target=workload("podinfo", REV2), world=world)
    assert again.events == ()  # no second alert while it keeps waiting


# --------------------------------------------------------------------------- analysis


def test_the_first_step_starts_the_analysis_and_advances_to_the_first_weight() -> None:
    effects, out = drive(
        seed(), status(Phase.PROGRESSING, last_applied_spec=REV2), target=workload("podinfo", REV2)
    )
    assert effects == [
        machine.RunHooks(Hook.ROLLBACK, Phase.PROGRESSING),
        machine.RunHooks(Hook.PRE_ROLLOUT, Phase.PROGRESSING),
        machine.RunHooks(Hook.CONFIRM_TRAFFIC_INCREASE, Phase.PROGRESSING),
        machine.SetWeights(90, 10),
    ]
    assert messages_of(out) == [
        ("analysis_started", "Starting canary analysis for podinfo.test"),
        ("weight_advanced", "Advance podinfo.test canary weight 10"),
    ]
    assert out.status.canary_weight == 10


def test_a_step_checks_hooks_and_metrics_then_advances() -> None:
    effects, out = drive(
        seed(),
        status(Phase.PROGRESSING, canary_weight=10, last_applied_spec=REV2),
        target=workload("podinfo", REV2),
    )
    assert effects == [
        machine.RunHooks(Hook.ROLLBACK, Phase.PROGRESSING),
        machine.RunHooks(Hook.ROLLOUT, Phase.PROGRESSING),
        machine.CheckMetrics(),
        machine.RunHooks(Hook.CONFIRM_TRAFFIC_INCREASE, Phase.PROGRESSING),
        machine.SetWeights(80, 20),
    ]
    assert messages_of(out) == [("weight_advanced", "Advance podinfo.test canary weight 20")]


def test_a_failed_metric_halts_and_counts() -> None:
    halt = "Halt podinfo.test advancement success rate 69.12% < 99%"
    world = World(metrics=machine.MetricsOutcome(ok=False, halt=halt))
    effects, out = drive(
        seed(),
        status(Phase.PROGRESSING, canary_weight=20, failed_checks=2, last_applied_spec=REV2),
        target=workload("podinfo", REV2),
        world=world,
    )
    assert not any(isinstance(e, machine.SetWeights) for e in effects)
    assert messages_of(out) == [("halted", halt)]
    assert (out.status.canary_weight, out.status.failed_checks) == (20, 3)


def test_a_failed_rollout_hook_halts_before_the_metrics() -> None:
    world = World(failing_hooks={Hook.ROLLOUT: "load-test"})
    effects, out = drive(
        seed(),
        status(Phase.PROGRESSING, canary_weight=10, last_applied_spec=REV2),
        target=workload("podinfo", REV2),
        world=world,
    )
    assert machine.CheckMetrics() not in effects
    assert messages_of(out) == [
        ("halted", "Halt podinfo.test advancement external check load-test failed 403")
    ]


def test_the_failed_checks_threshold_rolls_back() -> None:
    effects, out = drive(
        seed(threshold=3),
        status(Phase.PROGRESSING, canary_weight=20, failed_checks=3, last_applied_spec=REV2),
        target=workload("podinfo", REV2),
    )
    assert effects == [
        machine.RunHooks(Hook.ROLLBACK, Phase.PROGRESSING),
        machine.SetWeights(100, 0),
        machine.Scale("podinfo", 0),
        machine.RunHooks(Hook.POST_ROLLOUT, Phase.FAILED),
    ]
    assert messages_of(out) == [
        ("rolled_back", "Rolling back podinfo.test failed checks threshold reached 3"),
        ("phase_changed", "Canary failed! Scaling down podinfo.test"),
    ]
    assert out.events[0].severity == messages.Severity.ERROR
    assert (out.status.phase, out.status.canary_weight, out.status.failed_checks) == (
        Phase.FAILED,
        0,
        0,
    )
    assert out.status.last_applied_spec == REV2  # the failed revision does not start again
    assert promoted(out) == ("False", "Failed")


def test_a_rollback_webhook_rolls_back() -> None:
    _, out = drive(
        seed(),
        status(Phase.PROGRESSING, canary_weight=20, last_applied_spec=REV2),
        target=workload("podinfo", REV2),
        world=World(rollback_requested=True),
    )
    assert messages_of(out)[:2] == [
        ("webhook_passed", "Rollback check rollback passed"),
        ("rolled_back", "Rolling back podinfo.test manual webhook invoked"),
    ]


def test_a_canary_not_ready_waits_then_rolls_back_after_the_deadline() -> None:
    target = workload("podinfo", REV2, ready=False)
    state = status(
        Phase.PROGRESSING,
        last_applied_spec=REV2,
        last_transition_time=machine.rfc3339(NOW - 30_000),
    )
    effects, out = drive(seed(), state, target=target)
    assert effects == []
    assert messages_of(out) == [
        (
            "halted",
            "podinfo.test not ready: waiting for rollout to finish: 0 of 2 "
            "(readyThreshold 100%) updated replicas are available",
        )
    ]
    assert out.status.failed_checks == 0  # waiting is not a failed check
    late = status(
        Phase.PROGRESSING,
        last_applied_spec=REV2,
        last_transition_time=machine.rfc3339(NOW - 61_000),
    )
    _, out = drive(seed(), late, target=target)
    assert out.status.phase == Phase.FAILED
    assert messages_of(out)[0][1].startswith("Rolling back podinfo.test progress deadline exceeded")


def test_a_deployment_past_its_own_progress_deadline_rolls_back_at_once() -> None:
    target = workload("podinfo", REV2, ready=False, progress_deadline_exceeded=True)
    _, out = drive(seed(), status(Phase.PROGRESSING, last_applied_spec=REV2), target=target)
    assert out.status.phase == Phase.FAILED


@pytest.mark.parametrize("phase", [Phase.PROGRESSING, Phase.WAITING_PROMOTION])
def test_a_target_deleted_mid_analysis_rolls_back_at_once(phase: Phase) -> None:
    """No waiting for the progress deadline with traffic on a canary that has no pods."""
    ctx = machine.Context(
        canary=seed(),
        status=status(phase, canary_weight=40, last_applied_spec=REV2),
        target=None,
        primary=workload("podinfo-primary"),
        now_ms=NOW,
    )
    gen = machine.step(ctx)
    effects: list[machine.Effect] = []
    answer: machine.Answer = None
    try:
        while True:
            effects.append(gen.send(answer))
            answer = World().answer(effects[-1])
    except StopIteration as stop:
        out: machine.Outcome = stop.value
    assert effects[:2] == [machine.SetWeights(100, 0), machine.Scale("podinfo", 0)]
    assert out.status.phase == Phase.FAILED
    assert out.status.canary_weight == 0
    assert messages_of(out)[0] == (
        "rolled_back",
        "Rolling back podinfo.test target Deployment podinfo.test not found: "
        "deleted during the analysis",
    )


def test_a_new_revision_mid_analysis_restarts_it() -> None:
    effects, out = drive(
        seed(),
        status(Phase.PROGRESSING, canary_weight=30, failed_checks=1, last_applied_spec=REV2),
        target=workload("podinfo", "rev-three"),
    )
    assert effects == [machine.SetWeights(100, 0), machine.Scale("podinfo", 2, up=True)]
    assert messages_of(out) == [
        ("new_revision", "New revision detected! Restarting analysis for podinfo.test")
    ]
    assert (out.status.canary_weight, out.status.failed_checks, out.status.last_applied_spec) == (
        0,
        0,
        "rev-three",
    )


# --------------------------------------------------------------------------- promotion


def test_at_the_maximum_weight_the_primary_is_promoted() -> None:
    effects, out = drive(
        seed(),
        status(Phase.PROGRESSING, canary_weight=50, last_applied_spec=REV2),
        target=workload("podinfo", REV2),
    )
    assert effects[-2:] == [
        machine.RunHooks(Hook.CONFIRM_PROMOTION, Phase.PROGRESSING),
        machine.Promote(),
    ]
    assert messages_of(out) == [
        ("promotion_started", "Copying podinfo.test template spec to podinfo-primary.test")
    ]
    assert out.status.phase == Phase.PROMOTING


def test_a_closed_promotion_gate_waits_while_the_analysis_goes_on() -> None:
    world = World(failing_hooks={Hook.CONFIRM_PROMOTION: "approve"})
    effects, out = drive(
        seed(),
        status(Phase.PROGRESSING, canary_weight=50, last_applied_spec=REV2),
        target=workload("podinfo", REV2),
        world=world,
    )
    assert machine.CheckMetrics() in effects
    assert out.status.phase == Phase.WAITING_PROMOTION
    assert messages_of(out) == [
        ("waiting_approval", "Halt podinfo.test advancement waiting for promotion approval approve")
    ]


def test_promoting_routes_everything_back_to_the_primary_then_finalising_succeeds() -> None:
    effects, out = drive(seed(), status(Phase.PROMOTING, canary_weight=50, last_applied_spec=REV2))
    assert effects == [machine.SetWeights(100, 0)]
    assert out.status.phase == Phase.FINALISING
    assert messages_of(out) == [("weight_advanced", "Routing all traffic to primary")]
    effects, out = drive(seed(), out.status)
    assert effects == [
        machine.Scale("podinfo", 0),
        machine.RunHooks(Hook.POST_ROLLOUT, Phase.SUCCEEDED),
    ]
    assert out.status.phase == Phase.SUCCEEDED
    assert out.status.last_promoted_spec == REV2
    assert messages_of(out) == [
        ("promotion_completed", "Promotion completed! Scaling down podinfo.test")
    ]
    assert promoted(out) == ("True", "Succeeded")


def test_step_weight_promotion_moves_traffic_back_in_steps() -> None:
    effects, out = drive(seed(stepWeightPromotion=20), status(Phase.PROMOTING, canary_weight=50))
    assert effects == [machine.SetWeights(70, 30)]
    assert out.status.phase == Phase.PROMOTING
    assert messages_of(out) == [("weight_advanced", "Advance podinfo.test primary weight 70")]


def test_skip_analysis_promotes_at_once() -> None:
    obj = yaml.safe_load((support.MANIFESTS / "podinfo-canary.yaml").read_text())
    obj["spec"]["skipAnalysis"] = True
    canary = canary_model.parse_canary(obj)
    effects, out = drive(
        canary, status(Phase.PROGRESSING, last_applied_spec=REV2), target=workload("podinfo", REV2)
    )
    assert effects == [
        machine.SetWeights(100, 0),
        machine.Promote(),
        machine.Scale("podinfo", 0),
    ]
    assert out.status.phase == Phase.SUCCEEDED
    assert out.status.last_promoted_spec == REV2
    assert messages_of(out)[-1] == (
        "promotion_completed",
        "Promotion completed! Canary analysis was skipped for podinfo.test",
    )


def test_a_suspended_canary_does_nothing() -> None:
    obj = yaml.safe_load((support.MANIFESTS / "podinfo-canary.yaml").read_text())
    obj["spec"]["suspend"] = True
    effects, out = drive(
        canary_model.parse_canary(obj),
        status(Phase.PROGRESSING, last_applied_spec=REV2),
        target=workload("podinfo", REV2),
    )
    assert (effects, out.events) == ([], ())


# --------------------------------------------------------------------------- whole runs


def run(canary: canary_model.Canary, world: World, steps: int = 30) -> list[tuple[str, str]]:
    """Steps from a promoted REV1 with REV2 pushed until the canary settles; every message."""
    state = status(Phase.SUCCEEDED)
    seen: list[tuple[str, str]] = []
    for n in range(steps):
        _, out = drive(
            canary, state, target=workload("podinfo", REV2), world=world, now=NOW + n * 10_000
        )
        seen += messages_of(out)
        state = out.status
        if state.phase in (Phase.SUCCEEDED, Phase.FAILED) and n > 0:
            break
    return seen


def test_the_seed_canary_promotes_in_flaggers_order() -> None:
    seen = run(seed(), World())
    assert seen == [
        ("new_revision", "New revision detected! Scaling up podinfo.test"),
        ("analysis_started", "Starting canary analysis for podinfo.test"),
        *[
            ("weight_advanced", f"Advance podinfo.test canary weight {w}")
            for w in (10, 20, 30, 40, 50)
        ],
        ("promotion_started", "Copying podinfo.test template spec to podinfo-primary.test"),
        ("weight_advanced", "Routing all traffic to primary"),
        ("promotion_completed", "Promotion completed! Scaling down podinfo.test"),
    ]


def test_a_faulty_revision_halts_until_the_threshold_and_rolls_back() -> None:
    halt = "Halt podinfo.test advancement success rate 70.00% < 99%"
    bad = World(metrics=machine.MetricsOutcome(ok=False, halt=halt))
    seen = run(seed(threshold=3), bad)
    assert seen == [
        ("new_revision", "New revision detected! Scaling up podinfo.test"),
        ("analysis_started", "Starting canary analysis for podinfo.test"),
        ("weight_advanced", "Advance podinfo.test canary weight 10"),
        ("halted", halt),
        ("halted", halt),
        ("halted", halt),
        ("rolled_back", "Rolling back podinfo.test failed checks threshold reached 3"),
        ("phase_changed", "Canary failed! Scaling down podinfo.test"),
    ]


@pytest.mark.parametrize(
    ("analysis", "weights"),
    [
        ({"stepWeight": 10, "maxWeight": 50}, [10, 20, 30, 40, 50]),
        ({"stepWeight": 30, "maxWeight": 50}, [30, 60]),  # a step may overshoot maxWeight
        ({"stepWeight": None, "stepWeights": [1, 5, 25, 50], "maxWeight": None}, [1, 5, 25, 50]),
    ],
)
def test_weight_schedules(analysis: dict[str, Any], weights: list[int]) -> None:
    seen = run(seed(**analysis), World())
    advanced = [
        int(m.rsplit(" ", 1)[1])
        for kind, m in seen
        if m.startswith("Advance podinfo.test canary weight")
    ]
    assert advanced == weights


def test_each_metrics_last_value_is_kept_in_the_status() -> None:
    ref = messages.CanaryRef(namespace="test", name="podinfo")
    checked = (
        messages.MetricChecked(
            canary=ref, metric="request-success-rate", value=97.1, min=99.0, passed=False
        ),
        messages.MetricChecked(
            canary=ref, metric="request-duration", value=None, max=500.0, passed=False
        ),
    )
    world = World(metrics=machine.MetricsOutcome(ok=False, halt="Halt ...", checked=checked))
    _, out = drive(
        seed(),
        status(Phase.PROGRESSING, canary_weight=10, last_applied_spec=REV2),
        target=workload("podinfo", REV2),
        world=world,
    )
    assert out.status.metrics == (
        canary_model.MetricStatus(name="request-success-rate", value=97.1, min=99.0, passed=False),
        canary_model.MetricStatus(name="request-duration", value=None, max=500.0, passed=False),
    )
    assert [e for e in out.events if isinstance(e, messages.MetricChecked)] == list(checked)
