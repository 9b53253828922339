"""The status write is a step's commit point: a step that loses its compare-and-set (or whose
write fails) has told integrations nothing, so the event stream never shows a step that did
not happen (a phantom, or a weight step repeated when the step is taken again). A step that
did commit is told even when its write's answer was lost or its replica died before
publishing: the outbox holds its events until they are out."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import msgspec
import pytest

from libs import errors, lifecycle, messages, streams
from libs.model import canary as canary_model
from services.analyzer import committing, driving, machine
from tests.services.analyzer.test_machine import seed, workload

pytestmark = pytest.mark.integration

REF = messages.CanaryRef(namespace="test", name="podinfo")


@dataclasses.dataclass
class Observed:
    """An initializing seed canary whose target and primary are ready (until ``applied``)."""

    resource_version: str = "7"
    status: canary_model.CanaryStatus = dataclasses.field(
        default_factory=lambda: canary_model.CanaryStatus(phase=canary_model.Phase.INITIALIZING)
    )

    def applied(self, status: canary_model.CanaryStatus) -> None:
        self.resource_version = str(int(self.resource_version) + 1)
        self.status = status

    async def canary(self, namespace: str, name: str) -> messages.CanaryObservation | None:
        return messages.CanaryObservation(
            namespace=namespace,
            name=name,
            uid="uid-1",
            resource_version=self.resource_version,
            generation=1,
            canary=msgspec.structs.replace(seed(), status=self.status),
        )

    async def workload(self, namespace: str, name: str) -> messages.WorkloadObservation | None:
        return workload(name)


@dataclasses.dataclass
class Writer:
    fail_with: errors.SluiceError | None = None
    written: list[canary_model.CanaryStatus] = dataclasses.field(default_factory=list)
    lands: Observed | None = None  # the server applies the write even when it fails

    async def write(
        self, canary: canary_model.Canary, resource_version: str, status: canary_model.CanaryStatus
    ) -> None:
        if self.lands is not None:
            self.lands.applied(status)
        if self.fail_with is not None:
            raise self.fail_with
        self.written.append(status)

    async def mark_invalid(
        self, ref: messages.CanaryRef, resource_version: str, message: str
    ) -> None:
        raise AssertionError("the canary is valid")


class NoMetrics:
    async def check(self, canary: canary_model.Canary) -> machine.MetricsOutcome:
        return machine.MetricsOutcome(ok=True)


async def answer_commands(nc: Any) -> None:
    async def apply(msg: Any) -> None:
        command = json.loads(msg.data)
        reply: messages.Reply = (
            messages.WeightsApplied(
                canary=REF, route="podinfo-podinfo-canary", primary_weight=100, canary_weight=0
            )
            if command["kind"] == "set_weights"
            else messages.WorkloadApplied(canary=REF, workload="podinfo-primary", replicas=1)
        )
        await msg.respond(messages.ENCODER.encode(reply))

    await nc.subscribe(messages.CMD_WORKLOAD, cb=apply)
    await nc.subscribe(messages.CMD_TRAFFIC, cb=apply)


async def test_a_timed_out_write_that_landed_is_told_once_observed(
    runtime: lifecycle.Runtime,
) -> None:
    """The API server applied the write after the analyzer stopped waiting: the next step sees
    the canary at a newer resourceVersion with exactly that status, and tells the step then."""
    nc = runtime.nc
    await answer_commands(nc)
    events: list[dict[str, Any]] = []

    async def record(msg: Any) -> None:
        events.append(json.loads(msg.data))

    await nc.subscribe("sluice.events.test.podinfo.>", cb=record)
    observed = Observed()
    writer = Writer(fail_with=errors.Timeout("status of test/podinfo: no answer"), lands=observed)
    driver = driving.Driver(runtime, observed, NoMetrics(), writer, command_timeout_s=2.0)
    with pytest.raises(errors.Timeout):
        await driver.take_step(REF, messages.now_ms())
    await nc.flush()
    assert events == []
    landed = observed.status
    writer.fail_with, writer.lands = None, None
    await driver.take_step(REF, messages.now_ms())
    await nc.flush()
    told = [e for e in events if e["kind"] == "initialized"]
    assert len(told) == 1
    assert landed.phase == canary_model.Phase.INITIALIZED


@pytest.mark.parametrize(
    "failure",
    [
        errors.Conflict("status of test/podinfo: the object has been modified"),
        errors.Unavailable("status of test/podinfo: 503 ServiceUnavailable"),
    ],
    ids=["lost-compare-and-set", "write-failed"],
)
async def test_a_step_that_does_not_commit_publishes_no_event(
    runtime: lifecycle.Runtime, failure: errors.SluiceError
) -> None:
    nc = runtime.nc
    await answer_commands(nc)
    events: list[dict[str, Any]] = []

    async def record(msg: Any) -> None:
        events.append(json.loads(msg.data))

    await nc.subscribe("sluice.events.test.podinfo.>", cb=record)

    writer = Writer(fail_with=failure)
    driver = driving.Driver(runtime, Observed(), NoMetrics(), writer, command_timeout_s=2.0)
    with pytest.raises(type(failure)):
        await driver.take_step(REF, messages.now_ms())
    await nc.flush()
    assert events == []  # nothing of the step that did not happen

    writer.fail_with = None  # taken again, it commits: now its events go out
    await driver.take_step(REF, messages.now_ms())
    await nc.flush()
    assert writer.written
    assert "initialized" in [e["kind"] for e in events]


def test_a_held_write_is_told_only_if_observed_exactly_and_then_forgotten() -> None:
    first = canary_model.CanaryStatus(phase=canary_model.Phase.INITIALIZED, canary_weight=10)
    second = canary_model.CanaryStatus(phase=canary_model.Phase.INITIALIZED, canary_weight=20)
    event = messages.Halted(
        canary=REF,
        target="podinfo",
        severity=messages.Severity.WARN,
        message="m",
        reason="metric",
        failed_checks=1,
    )
    held = committing.with_attempt(None, "7", first, ())
    held = committing.with_attempt(held, "7", second, (event,))  # taken again, same state
    assert committing.settle(held, "7", None) == committing.Settled(keep=True)  # not observed
    assert committing.settle(held, "8", second) == committing.Settled(landed=("7", (event,)))
    assert committing.settle(held, "8", first) == committing.Settled(landed=("7", ()))
    # another change landed: forgotten
    assert committing.settle(held, "8", None) == committing.Settled()
    newer = committing.with_attempt(held, "9", first, (event,))  # a new state starts afresh
    assert [c.status for c in newer.candidates] == [first]


def test_attempts_from_one_state_are_bounded() -> None:
    held = None
    for weight in range(committing.MAX_ATTEMPTS + 3):
        status = canary_model.CanaryStatus(canary_weight=weight)
        held = committing.with_attempt(held, "7", status, ())
    assert held is not None
    weights = [c.status.canary_weight for c in held.candidates]
    assert weights == list(range(3, committing.MAX_ATTEMPTS + 3))  # the newest kept


class Died(BaseException):
    """The replica is killed right after its status write landed, before it publishes."""


async def test_a_replica_that_dies_between_write_and_publish_loses_no_event(
    runtime: lifecycle.Runtime,
) -> None:
    """The outbox is shared: the replica that takes the next step tells the dead one's step,
    once, and the outbox is empty afterwards."""
    nc = runtime.nc
    await streams.declare(runtime.js, buckets=(streams.OUTBOX,))
    kv = await runtime.js.key_value(streams.OUTBOX.name)
    await answer_commands(nc)
    events: list[dict[str, Any]] = []

    async def record(msg: Any) -> None:
        events.append(json.loads(msg.data))

    await nc.subscribe("sluice.events.test.podinfo.>", cb=record)
    observed = Observed()

    class DyingWriter(Writer):
        async def write(
            self,
            canary: canary_model.Canary,
            resource_version: str,
            status: canary_model.CanaryStatus,
        ) -> None:
            observed.applied(status)
            raise Died

    dying = driving.Driver(
        runtime,
        observed,
        NoMetrics(),
        DyingWriter(),
        command_timeout_s=2.0,
        outbox=committing.KvOutbox(runtime, kv),
    )
    with pytest.raises(Died):
        await dying.take_step(REF, messages.now_ms())
    await nc.flush()
    assert events == []
    assert observed.status.phase == canary_model.Phase.INITIALIZED

    other = driving.Driver(
        runtime,
        observed,
        NoMetrics(),
        Writer(),
        command_timeout_s=2.0,
        outbox=committing.KvOutbox(runtime, kv),
    )
    await other.take_step(REF, messages.now_ms())
    await nc.flush()
    assert [e["kind"] for e in events].count("initialized") == 1
    assert await committing.KvOutbox(runtime, kv).read(REF) is None
