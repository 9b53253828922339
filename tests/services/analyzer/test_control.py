"""Control requests against the pure machine: which fit which phase (and what the refusal
says), what the status records, and how the next step carries each one out."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from libs import errors, messages
from libs.model import canary as canary_model
from services.analyzer import controlling, handlers, machine, state
from services.analyzer.machine import control
from tests.services.analyzer.test_machine import (
    NOW,
    REV1,
    REV2,
    World,
    drive,
    messages_of,
    seed,
    status,
    workload,
)

Phase = canary_model.Phase
Hook = machine.Hook
REF = messages.CanaryRef(namespace="test", name="podinfo")


def request(
    action: str, gate: str = "", by: str = "alice", reason: str = ""
) -> messages.ControlRequest:
    return messages.ControlRequest(canary=REF, action=action, gate=gate, by=by, reason=reason)  # type: ignore[arg-type]


def with_status(current: canary_model.CanaryStatus, **analysis: Any) -> canary_model.Canary:
    return msgspec.structs.replace(seed(**analysis), status=current)


def waiting(
    gate: Hook, phase: Phase = Phase.WAITING_PROMOTION, **fields: Any
) -> canary_model.CanaryStatus:
    condition = canary_model.Condition(
        type=machine.GATE_CONDITION, status="False", reason=str(gate), message="waiting"
    )
    return status(phase, conditions=(condition,), **fields)


def admitted(
    current: canary_model.CanaryStatus, req: messages.ControlRequest, **analysis: Any
) -> canary_model.CanaryStatus:
    decision = control.admit(with_status(current, **analysis), req, NOW)
    assert decision.accepted, decision.message
    assert decision.status is not None
    return decision.status


def refusal(current: canary_model.CanaryStatus, req: messages.ControlRequest) -> str:
    decision = control.admit(with_status(current), req, NOW)
    assert not decision.accepted
    return decision.message


# --------------------------------------------------------------------------- admission

FITS = {
    "promote": {Phase.PROGRESSING, Phase.WAITING_PROMOTION},
    "abort": {Phase.PROGRESSING, Phase.WAITING_PROMOTION, Phase.WAITING},
    "retry": {Phase.FAILED},
    "pause": set(Phase) - {Phase.TERMINATING, Phase.TERMINATED},
}


@pytest.mark.parametrize("action", sorted(FITS))
@pytest.mark.parametrize("phase", list(Phase))
def test_which_phases_each_request_fits(action: str, phase: Phase) -> None:
    decision = control.admit(with_status(status(phase)), request(action), NOW)
    assert decision.accepted == (phase in FITS[action]), decision.message
    assert "podinfo.test" in decision.message


@pytest.mark.parametrize(
    ("phase", "action", "said"),
    [
        (Phase.SUCCEEDED, "abort", "podinfo.test is Succeeded; nothing to abort"),
        (Phase.FAILED, "abort", "podinfo.test is Failed; nothing to abort"),
        (
            Phase.PROMOTING,
            "abort",
            "podinfo.test is Promoting: the primary already runs the new revision; too late to abort",
        ),
        (Phase.SUCCEEDED, "promote", "podinfo.test is Succeeded; no analysis to promote"),
        (Phase.FAILED, "promote", "podinfo.test is Failed; retry it to analyse the revision again"),
        (
            Phase.WAITING,
            "promote",
            "podinfo.test is Waiting at confirm-rollout; approve it to start the analysis",
        ),
        (Phase.FINALISING, "promote", "podinfo.test is already Finalising"),
        (
            Phase.PROGRESSING,
            "retry",
            "podinfo.test is Progressing; only a Failed canary can be retried",
        ),
        (Phase.PROGRESSING, "resume", "podinfo.test is not paused; nothing to resume"),
        (
            Phase.PROGRESSING,
            "approve",
            "podinfo.test is not waiting at any gate; nothing to approve",
        ),
        (Phase.UNSET, "abort", "podinfo.test is not initialized; nothing to abort"),
        (Phase.TERMINATING, "pause", "podinfo.test is being deleted; nothing to pause"),
    ],
)
def test_refusals_say_why(phase: Phase, action: str, said: str) -> None:
    assert refusal(status(phase), request(action)) == said


def test_accepted_requests_are_recorded_with_who_and_why() -> None:
    after = admitted(status(Phase.PROGRESSING), request("abort", reason="errors in checkout"))
    assert after.control == canary_model.ControlRecord(
        action="abort",
        by="alice",
        reason="errors in checkout",
        requested_at=machine.rfc3339(NOW),
    )
    assert after.control.pending
    decision = control.admit(with_status(status(Phase.PROGRESSING)), request("abort"), NOW)
    assert (
        decision.message
        == "abort of podinfo.test requested by alice: rolling back with its next step"
    )


def test_one_request_is_pending_at_a_time_and_abort_replaces_it() -> None:
    first = admitted(status(Phase.PROGRESSING), request("promote", by="bob"))
    said = refusal(first, request("promote"))
    assert said.startswith("podinfo.test already has a pending promote requested by bob at ")
    assert said.endswith("; wait for it, or abort")
    decision = control.admit(with_status(first), request("abort"), NOW)
    assert decision.accepted
    assert "(replacing the pending promote)" in decision.message
    assert decision.status is not None
    assert decision.status.control is not None
    assert decision.status.control.action == "abort"


def test_pause_and_resume_are_a_condition_that_says_who() -> None:
    paused = admitted(status(Phase.PROGRESSING), request("pause", reason="investigating"))
    held = control.paused(paused)
    assert held is not None
    assert held.message == f"Paused by alice at {machine.rfc3339(NOW)}: investigating"
    assert paused.control is None  # pause is not a pending request
    assert refusal(paused, request("pause")).startswith(
        "podinfo.test is already paused (Paused by alice"
    )
    resumed = admitted(paused, request("resume", by="bob"))
    assert control.paused(resumed) is None
    (condition,) = [c for c in resumed.conditions if c.type == "Paused"]
    assert (condition.status, condition.reason) == ("False", "Resumed")
    assert condition.message is not None
    assert condition.message.startswith("Resumed by bob")


def test_spec_suspend_is_said_to_be_the_spec() -> None:
    suspended = msgspec.structs.replace(
        seed(), spec=msgspec.structs.replace(seed().spec, suspend=True)
    )
    canary = msgspec.structs.replace(suspended, status=status(Phase.PROGRESSING))
    assert control.admit(canary, request("pause"), NOW).message == (
        "podinfo.test is already suspended by its spec (spec.suspend: true)"
    )
    assert control.admit(canary, request("abort"), NOW).message == (
        "podinfo.test is suspended by its spec (spec.suspend: true); set it to false first"
    )


def test_a_gate_is_named_by_type_by_webhook_name_or_not_at_all() -> None:
    hooks = [
        {"name": "ask-the-team", "type": "confirm-promotion", "url": "http://gate/"},
        {"name": "load", "type": "rollout", "url": "http://load/"},
    ]
    current = waiting(Hook.CONFIRM_PROMOTION)
    for gate in ("confirm-promotion", "ask-the-team", ""):
        decision = control.admit(
            with_status(current, webhooks=hooks), request("approve", gate=gate), NOW
        )
        assert decision.accepted, decision.message
        assert decision.gate == "confirm-promotion"
    wrong = control.admit(
        with_status(current, webhooks=hooks), request("approve", gate="nope"), NOW
    )
    assert (
        wrong.message
        == "podinfo.test has no gate named 'nope' (its gates: ask-the-team); nothing to approve"
    )
    other = control.admit(with_status(current), request("approve", gate="confirm-rollout"), NOW)
    assert other.message == "podinfo.test waits at confirm-promotion, not confirm-rollout"
    not_a_gate = control.admit(with_status(current), request("reject", gate="rollout"), NOW)
    assert not_a_gate.message.startswith("rollout is not a gate; expected one of confirm-rollout")


def test_the_requested_event_says_who_asked() -> None:
    canary = with_status(status(Phase.PROGRESSING))
    req = request("abort", reason="errors in checkout")
    event = control.requested_event(canary, req, control.admit(canary, req, NOW), NOW)
    assert event.message == "Abort of podinfo.test requested by alice: errors in checkout"
    assert (event.by, event.action, event.severity) == ("alice", "abort", messages.Severity.WARN)
    pause = request("pause")
    assert control.requested_event(
        canary, pause, control.admit(canary, pause, NOW), NOW
    ).message == ("Paused podinfo.test by alice")


# --------------------------------------------------------------------------- carried out


def test_abort_rolls_back_on_the_next_step_and_records_the_outcome() -> None:
    current = admitted(
        status(Phase.PROGRESSING, canary_weight=20, last_applied_spec=REV2), request("abort")
    )
    effects, out = drive(seed(), current, target=workload("podinfo", REV2))
    assert effects == [
        machine.SetWeights(100, 0),
        machine.Scale("podinfo", 0),
        machine.RunHooks(Hook.POST_ROLLOUT, Phase.FAILED),
    ]
    assert machine.CheckMetrics() not in effects
    assert out.status.phase == Phase.FAILED
    assert out.status.control is not None
    assert out.status.control.outcome == "rolled back"
    assert out.status.control.handled_at == machine.rfc3339(NOW)
    assert messages_of(out) == [
        ("rolled_back", "Rolling back podinfo.test aborted by alice"),
        ("phase_changed", "Canary failed! Scaling down podinfo.test"),
    ]
    assert next(messages.event_kind(e) for e in out.events) == "control_applied"
    # done: the next step does nothing more
    _again_effects, again = drive(seed(), out.status, target=workload("podinfo", REV2))
    assert again.status.phase == Phase.FAILED
    assert again.events == ()


def test_abort_at_confirm_rollout_fails_the_revision_for_good() -> None:
    current = admitted(waiting(Hook.CONFIRM_ROLLOUT, Phase.WAITING), request("abort"))
    world = World(failing_hooks={Hook.CONFIRM_ROLLOUT: "gate"})
    _, out = drive(seed(), current, target=workload("podinfo", REV2), world=world)
    assert out.status.phase == Phase.FAILED
    assert out.status.last_applied_spec == REV2
    assert not any(c.type == machine.GATE_CONDITION for c in out.status.conditions)
    effects, again = drive(seed(), out.status, target=workload("podinfo", REV2), world=world)
    assert effects == []
    assert again.status.phase == Phase.FAILED


def test_promote_skips_the_analysis_and_a_waiting_gate() -> None:
    current = admitted(
        waiting(Hook.CONFIRM_PROMOTION, canary_weight=30, last_applied_spec=REV2),
        request("promote"),
    )
    effects, out = drive(seed(), current, target=workload("podinfo", REV2))
    assert effects == [machine.Promote()]
    assert out.status.phase == Phase.PROMOTING
    assert not any(c.type == machine.GATE_CONDITION for c in out.status.conditions)
    assert messages_of(out) == [
        (
            "control_applied",
            "Skipping the rest of the analysis of podinfo.test",
        ),
        ("promotion_started", "Copying podinfo.test template spec to podinfo-primary.test"),
    ]
    # then Flagger's promotion as usual
    effects, out = drive(seed(), out.status, target=workload("podinfo", REV2))
    assert effects == [machine.SetWeights(100, 0)]
    assert out.status.phase == Phase.FINALISING


def test_a_request_the_canary_outgrew_is_dropped_and_said() -> None:
    current = admitted(status(Phase.PROGRESSING, last_applied_spec=REV2), request("promote"))
    # a failed-checks rollback committed first
    failed = msgspec.structs.replace(current, phase=Phase.FAILED)
    effects, out = drive(seed(), failed, target=workload("podinfo", REV2))
    assert effects == []
    assert out.status.control is not None
    assert out.status.control.outcome == (
        "dropped: podinfo.test is Failed; retry it to analyse the revision again"
    )
    assert messages_of(out) == [
        (
            "control_applied",
            "Promote of podinfo.test requested by alice dropped: podinfo.test is Failed; "
            "retry it to analyse the revision again",
        )
    ]


def test_a_paused_canary_takes_no_step_until_resumed() -> None:
    current = status(Phase.PROGRESSING, canary_weight=10, last_applied_spec=REV2)
    paused = admitted(current, request("pause"))
    effects, out = drive(seed(), paused, target=workload("podinfo", REV2))
    assert effects == []
    assert out.events == ()
    # a new revision waits too
    effects, _ = drive(seed(), paused, target=workload("podinfo", "rev-three"))
    assert effects == []
    resumed = admitted(paused, request("resume"))
    effects, out = drive(seed(), resumed, target=workload("podinfo", REV2))
    assert machine.CheckMetrics() in effects
    assert out.status.canary_weight == 20


def test_abort_works_while_paused() -> None:
    paused = admitted(
        status(Phase.PROGRESSING, canary_weight=10, last_applied_spec=REV2), request("pause")
    )
    aborting = admitted(paused, request("abort"))
    _, out = drive(seed(), aborting, target=workload("podinfo", REV2))
    assert out.status.phase == Phase.FAILED


def test_retry_analyses_the_failed_revision_again() -> None:
    failed = status(Phase.FAILED, last_applied_spec=REV2)
    nothing, _ = drive(seed(), failed, target=workload("podinfo", REV2))
    assert nothing == []  # a Failed revision is not analysed again by itself
    current = admitted(failed, request("retry"))
    effects, out = drive(seed(), current, target=workload("podinfo", REV2))
    assert effects == [
        machine.RunHooks(Hook.CONFIRM_ROLLOUT, Phase.FAILED),
        machine.Scale("podinfo", 2, up=True),
    ]
    assert out.status.phase == Phase.PROGRESSING
    assert out.status.last_applied_spec == REV2
    assert messages_of(out)[0] == (
        "control_applied",
        "Analysing podinfo.test again",
    )


def test_a_retry_held_at_confirm_rollout_is_not_forgotten() -> None:
    current = admitted(status(Phase.FAILED, last_applied_spec=REV2), request("retry"))
    closed = World(failing_hooks={Hook.CONFIRM_ROLLOUT: "gate"})
    _, out = drive(seed(), current, target=workload("podinfo", REV2), world=closed)
    assert out.status.phase == Phase.WAITING
    _, out = drive(seed(), out.status, target=workload("podinfo", REV2))
    assert out.status.phase == Phase.PROGRESSING


@pytest.mark.parametrize(
    ("gate", "phase", "fields", "expected"),
    [
        (Hook.CONFIRM_PROMOTION, Phase.WAITING_PROMOTION, {"canary_weight": 50}, Phase.PROMOTING),
        (Hook.CONFIRM_ROLLOUT, Phase.WAITING, {}, Phase.PROGRESSING),
        (
            Hook.CONFIRM_TRAFFIC_INCREASE,
            Phase.PROGRESSING,
            {"canary_weight": 10},
            Phase.PROGRESSING,
        ),
    ],
)
def test_approve_opens_the_gate_once_without_asking_its_webhook(
    gate: Hook, phase: Phase, fields: dict[str, Any], expected: Phase
) -> None:
    last = REV1 if gate == Hook.CONFIRM_ROLLOUT else REV2
    current = admitted(waiting(gate, phase, last_applied_spec=last, **fields), request("approve"))
    closed = World(failing_hooks={gate: "gate"})
    effects, out = drive(seed(), current, target=workload("podinfo", REV2), world=closed)
    assert machine.RunHooks(gate, phase) not in effects
    assert machine.RunHooks(gate, Phase.PROGRESSING) not in effects
    assert out.status.phase == expected
    assert out.status.control is not None
    assert out.status.control.outcome == "approved"
    assert not any(c.type == machine.GATE_CONDITION for c in out.status.conditions)
    assert ("control_applied", f"{control.PASSED_PREFIX[gate]} approved by alice") in messages_of(
        out
    )
    if gate == Hook.CONFIRM_TRAFFIC_INCREASE:
        assert out.status.canary_weight == 20
        # the next increase asks the gate again
        _, after = drive(seed(), out.status, target=workload("podinfo", REV2), world=closed)
        assert after.status.canary_weight == 20


def test_an_approval_waits_for_a_step_that_reaches_its_gate() -> None:
    current = admitted(
        waiting(Hook.CONFIRM_PROMOTION, canary_weight=50, last_applied_spec=REV2),
        request("approve"),
    )
    bad = World(metrics=machine.MetricsOutcome(ok=False, halt="Halt podinfo.test advancement ..."))
    _, out = drive(seed(), current, target=workload("podinfo", REV2), world=bad)
    assert out.status.control is not None
    assert out.status.control.pending
    _, out = drive(seed(), out.status, target=workload("podinfo", REV2))
    assert out.status.phase == Phase.PROMOTING


def test_reject_rolls_back_saying_which_gate() -> None:
    current = admitted(
        waiting(Hook.CONFIRM_PROMOTION, canary_weight=50, last_applied_spec=REV2),
        request("reject", by="carol"),
    )
    _, out = drive(seed(), current, target=workload("podinfo", REV2))
    assert out.status.phase == Phase.FAILED
    assert (
        "rolled_back",
        "Rolling back podinfo.test confirm-promotion rejected by carol",
    ) in messages_of(out)


# --------------------------------------------------------------------------- the adapters' pure parts


def test_a_status_write_removes_what_the_new_status_no_longer_has() -> None:
    old = {
        "phase": "Failed",
        "lastAppliedSpec": "a",
        "control": {"action": "retry", "handledAt": "t"},
    }
    new = {"phase": "Progressing", "control": {"action": "abort"}}
    assert state.merge_patch(old, new) == {
        "phase": "Progressing",
        "control": {"action": "abort", "handledAt": None},
        "lastAppliedSpec": None,
    }
    assert state.merge_patch({"conditions": [1, 2]}, {"conditions": [3]}) == {"conditions": [3]}


def test_a_request_must_name_the_canary_of_its_subject() -> None:
    req = request("abort")
    controlling.verify("sluice.control.test.podinfo.abort", req)
    with pytest.raises(
        errors.InvalidInput, match=r"must be sent to sluice\.control\.test\.podinfo\.abort"
    ):
        controlling.verify("sluice.control.other.podinfo.abort", req)
    with pytest.raises(errors.InvalidInput):
        controlling.verify("sluice.control.test.podinfo.promote", req)


async def test_steps_and_requests_of_one_canary_take_turns() -> None:
    locks = handlers.CanaryLocks()
    order: list[str] = []
    other = messages.CanaryRef(namespace="test", name="other")

    async def step(name: str, ref: messages.CanaryRef, hold: asyncio.Event) -> None:
        async with locks.hold(ref):
            order.append(f"{name} in")
            await hold.wait()
            order.append(f"{name} out")

    first_may_end = asyncio.Event()
    first = asyncio.create_task(step("first", REF, first_may_end))
    await asyncio.sleep(0)
    second = asyncio.create_task(step("second", REF, asyncio.Event()))
    elsewhere = asyncio.create_task(step("elsewhere", other, asyncio.Event()))
    await asyncio.sleep(0.01)
    assert order == ["first in", "elsewhere in"]  # another canary does not wait
    async with locks.hold(REF, timeout_s=0.01) as got:
        assert got is False  # a request does not wait for a long step forever
    first_may_end.set()
    await first
    await asyncio.sleep(0.01)
    assert order[-2:] == ["first out", "second in"]
    second.cancel()
    elsewhere.cancel()
    await asyncio.gather(second, elsewhere, return_exceptions=True)
    assert len(locks) == 0  # nothing kept for canaries nobody is stepping
