"""The bus contract: subjects, tagged unions, schemas on disk."""

from __future__ import annotations

import pathlib

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from libs import errors, messages, schemas

REPO = pathlib.Path(__file__).resolve().parents[2]
CANARY = messages.CanaryRef(namespace="test", name="podinfo")


def test_subjects_are_built_from_tokens() -> None:
    assert (
        messages.event_subject("test", "podinfo", "halted") == "sluice.events.test.podinfo.halted"
    )
    assert messages.tick_subject("test", "podinfo") == "sluice.tick.test.podinfo"
    assert messages.workload_key("test", "podinfo-primary") == "test.podinfo-primary"


@pytest.mark.parametrize("bad", ["", "a.b", "a b", "a*", "a>"])
def test_a_name_that_would_break_a_subject_is_refused_as_permanent_input(bad: str) -> None:
    with pytest.raises(errors.InvalidInput, match="cannot be a subject token") as info:
        messages.event_subject("test", bad, "halted")
    assert not info.value.temporary  # retrying the same name cannot help


def test_gate_keys_name_the_switch_and_the_canary() -> None:
    assert messages.gate_key("gate", "test", "podinfo") == "gate.test.podinfo"
    assert messages.gate_key("rollback", "test", "podinfo") == "rollback.test.podinfo"
    with pytest.raises(errors.InvalidInput, match="gate kind"):
        messages.gate_key("door", "test", "podinfo")
    with pytest.raises(errors.InvalidInput, match="cannot be a subject token"):
        messages.gate_key("gate", "test", "a b")


def test_names_are_held_to_kubernetes_limits() -> None:
    # the longest names a real cluster can have still make subjects ...
    subject = messages.event_subject("n" * 63, "c" * 253, "revision_detected")
    assert len(subject) < 400
    assert messages.tick_subject("n" * 63, "c" * 253).endswith("c" * 253)
    # ... one character more is refused before anything is published, with a short message
    with pytest.raises(
        errors.InvalidInput, match=r"namespace .* is 64 characters long; expected at most 63"
    ):
        messages.tick_subject("n" * 64, "podinfo")
    with pytest.raises(
        errors.InvalidInput, match="is 5000 characters long; expected at most 253"
    ) as info:
        messages.tick_subject("test", "c" * 5000)
    assert len(str(info.value)) < 200


def test_every_event_kind_round_trips_through_the_union_decoder() -> None:
    events: list[messages.EventBase] = [
        messages.RevisionDetected(
            canary=CANARY, revision="abc", tracked_configs={"configmap/x": "1"}
        ),
        messages.PhaseChanged(
            canary=CANARY, previous=messages.Phase.INITIALIZED, phase=messages.Phase.PROGRESSING
        ),
        messages.Initialized(canary=CANARY, message="Initialization done! podinfo.test"),
        messages.NewRevision(canary=CANARY, restarted=True),
        messages.AnalysisStarted(canary=CANARY),
        messages.WeightAdvanced(canary=CANARY, canary_weight=10, primary_weight=90),
        messages.IterationAdvanced(canary=CANARY, iteration=1, iterations=10),
        messages.MetricChecked(
            canary=CANARY, metric="request-success-rate", value=None, min=99, passed=False
        ),
        messages.Halted(canary=CANARY, reason="gate", failed_checks=0, counted=False),
        messages.WaitingApproval(
            canary=CANARY, gate=messages.WebhookType.CONFIRM_PROMOTION, webhook="gate"
        ),
        messages.PromotionStarted(canary=CANARY),
        messages.PromotionCompleted(canary=CANARY, skipped_analysis=True),
        messages.RolledBack(
            canary=CANARY, reason="threshold", failed_checks=10, severity=messages.Severity.ERROR
        ),
        messages.WebhookFailed(
            canary=CANARY, webhook="post", type=messages.WebhookType.POST_ROLLOUT, error="500"
        ),
        messages.WebhookPassed(
            canary=CANARY, webhook="gate", type=messages.WebhookType.CONFIRM_ROLLOUT
        ),
        messages.Terminating(canary=CANARY),
        messages.Terminated(canary=CANARY),
        messages.GateChanged(canary=CANARY, gate="gate", open=True, by="10.0.0.7"),
        messages.ControlRequested(canary=CANARY, action="abort", by="alice", reason="oops"),
        messages.ControlApplied(
            canary=CANARY,
            action="approve",
            gate="confirm-promotion",
            by="alice",
            outcome="approved",
        ),
        messages.DeadLettered(
            canary=CANARY,
            severity=messages.Severity.WARN,
            subject="sluice.tick.test.podinfo",
            reason="exhausted",
            error="Unavailable: Prometheus is down",
            deliveries=10,
        ),
    ]
    kinds = {messages.event_kind(e) for e in events}
    assert len(kinds) == len(events)  # every class has its own tag
    assert len(events) == len(messages.Event.__args__)  # type: ignore[attr-defined]
    for event in events:
        wire = messages.ENCODER.encode(event)
        assert msgspec.json.decode(wire)["kind"] == messages.event_kind(event)
        assert messages.EVENT_DECODER.decode(wire) == event


def test_commands_and_replies_round_trip() -> None:
    commands: list[messages.CommandBase] = [
        messages.SetWeights(
            canary=CANARY,
            route="podinfo",
            service="podinfo",
            primary_weight=90,
            canary_weight=10,
            match=[
                [
                    messages.MatchCondition(
                        scope="header", name="x-canary", op="exact", value="insider"
                    )
                ]
            ],
            mirror_percent=50,
        ),
        messages.InitializeWorkload(
            canary=CANARY, target="podinfo", service="podinfo", port=80, target_port="http"
        ),
        messages.ScaleWorkload(canary=CANARY, workload="podinfo", replicas=0),
        messages.ScaleWorkload(canary=CANARY, workload="podinfo", replicas=1, scale_up=True),
        messages.SetFinalizer(canary=CANARY, present=True),
        messages.RevertCanary(canary=CANARY, target="podinfo", service="podinfo"),
        messages.PromoteWorkload(canary=CANARY, target="podinfo", revision="abc"),
    ]
    for command in commands:
        wire = messages.ENCODER.encode(command)
        decoder = (
            messages.TRAFFIC_DECODER
            if isinstance(command, messages.SetWeights)
            else messages.WORKLOAD_DECODER
        )
        assert decoder.decode(wire) == command
    replies: list[messages.ReplyBase] = [
        messages.WeightsApplied(
            canary=CANARY, route="podinfo-podinfo-canary", primary_weight=90, canary_weight=10
        ),
        messages.WorkloadApplied(canary=CANARY, workload="podinfo", replicas=2),
        messages.WebhookResult(
            canary=CANARY, webhook="w", type=messages.WebhookType.ROLLOUT, ok=True, status_code=200
        ),
        messages.CommandFailed(error="invalid command: x", temporary=False),
    ]
    for reply in replies:
        assert messages.REPLY_DECODER.decode(messages.ENCODER.encode(reply)) == reply


def test_unknown_fields_from_newer_replicas_are_ignored() -> None:
    wire = b'{"kind":"halted","canary":{"namespace":"a","name":"b"},"reason":"r","failed_checks":1,"future_field":[1]}'
    event = messages.EVENT_DECODER.decode(wire)
    assert isinstance(event, messages.Halted)


def test_a_wrong_type_names_the_field() -> None:
    with pytest.raises(msgspec.ValidationError, match=r"\$\.failed_checks"):
        messages.EVENT_DECODER.decode(
            b'{"kind":"halted","canary":{"namespace":"a","name":"b"},"reason":"r","failed_checks":"x"}'
        )


@given(
    canary_weight=st.integers(0, 100),
    name=st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True),
)
def test_weight_events_round_trip(canary_weight: int, name: str) -> None:
    event = messages.WeightAdvanced(
        canary=messages.CanaryRef(namespace="ns", name=name),
        canary_weight=canary_weight,
        primary_weight=100 - canary_weight,
    )
    assert messages.EVENT_DECODER.decode(messages.ENCODER.encode(event)) == event


def test_committed_json_schemas_match_the_code() -> None:
    directory = REPO / "docs" / "events"
    expected = schemas.render()
    on_disk = {p.name: p.read_bytes() for p in directory.glob("*.schema.json")}
    assert sorted(on_disk) == sorted(expected), "run `make schemas` and commit docs/events/"
    for name, body in expected.items():
        assert on_disk[name] == body, f"{name} is stale: run `make schemas` and commit docs/events/"
