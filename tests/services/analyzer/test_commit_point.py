"""The status write is a step's commit point: a step that loses its compare-and-set (or whose
write fails) has told integrations nothing, so the event stream never shows a step that did
not happen (a phantom, or a weight step repeated when the step is taken again)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import msgspec
import pytest

from libs import errors, lifecycle, messages
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


def test_an_unconfirmed_write_is_told_only_if_observed_exactly_and_then_forgotten() -> None:
    held = committing.Unconfirmed()
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
    held.remember(REF, "7", first, ())
    held.remember(REF, "7", second, (event,))  # taken again from the same state
    assert held.settle(REF, "7", None) is None  # not observed since: kept
    assert held.settle(REF, "8", second) == ("7", (event,))
    assert held.settle(REF, "9", second) is None  # told once
    held.remember(REF, "9", first, (event,))
    assert held.settle(REF, "10", second) is None  # another change landed: forgotten
    assert held.settle(REF, "11", first) is None
