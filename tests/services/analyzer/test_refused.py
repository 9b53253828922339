"""A command the platform refuses for good (an ApisixRoute without the rule to copy, a target
gone) is told on the canary — a Warning event and the ``Valid`` condition — once per error,
and the tick comes back later instead of being dead-lettered, so fixed objects resume."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import msgspec
import pytest

from libs import consuming, lifecycle, messages
from libs.model import canary as canary_model
from services.analyzer import driving, handlers, machine
from tests.services.analyzer.test_machine import seed, workload

pytestmark = pytest.mark.integration

REF = messages.CanaryRef(namespace="test", name="podinfo")
ROUTE_ERROR = (
    "ApisixRoute test/podinfo has no HTTP rule whose single backend is the Service 'podinfo'"
)


@dataclasses.dataclass
class Observed:
    """The watcher's observations, as the analyzer reads them (an initialized seed canary)."""

    generation: int = 1

    async def canary(self, namespace: str, name: str) -> messages.CanaryObservation | None:
        current = canary_model.CanaryStatus(phase=canary_model.Phase.INITIALIZING)
        return messages.CanaryObservation(
            namespace=namespace,
            name=name,
            uid="uid-1",
            resource_version="7",
            generation=self.generation,
            canary=msgspec.structs.replace(seed(), status=current),
        )

    async def workload(self, namespace: str, name: str) -> messages.WorkloadObservation | None:
        return workload(name)


@dataclasses.dataclass
class Writer:
    invalid: list[str] = dataclasses.field(default_factory=list)

    async def write(
        self, canary: canary_model.Canary, resource_version: str, status: canary_model.CanaryStatus
    ) -> None:
        raise AssertionError("a refused step commits nothing")

    async def mark_invalid(
        self, ref: messages.CanaryRef, resource_version: str, message: str
    ) -> None:
        self.invalid.append(message)


class NoMetrics:
    async def check(self, canary: canary_model.Canary) -> machine.MetricsOutcome:
        raise AssertionError("no metric is checked before the route exists")


async def test_a_refused_command_is_told_once_and_retried_later(
    runtime: lifecycle.Runtime,
) -> None:
    nc = runtime.nc

    async def refuse(msg: Any) -> None:
        command = json.loads(msg.data)
        error = ROUTE_ERROR if command["kind"] == "set_weights" else ""
        reply: messages.Reply = (
            messages.CommandFailed(canary=REF, error=error, temporary=False)
            if error
            else messages.WorkloadApplied(canary=REF, workload="podinfo-primary", replicas=1)
        )
        await msg.respond(messages.ENCODER.encode(reply))

    events: list[dict[str, Any]] = []
    told = asyncio.Event()

    async def record(msg: Any) -> None:
        events.append(json.loads(msg.data))
        told.set()

    await nc.subscribe(messages.CMD_WORKLOAD, cb=refuse)
    await nc.subscribe(messages.CMD_TRAFFIC, cb=refuse)
    await nc.subscribe("sluice.events.test.podinfo.>", cb=record)
    observed, writer = Observed(), Writer()
    driver = driving.Driver(runtime, observed, NoMetrics(), writer, command_timeout_s=2.0)
    analyzer = handlers.Analyzer(runtime, driver, min_interval_s=1.0)

    for _ in range(2):
        later = await analyzer.on_tick(messages.Tick(canary=REF))
        assert later == consuming.Later(handlers.INVALID_RETRY_S)
    await asyncio.wait_for(told.wait(), 5)
    await nc.flush()

    said = f"SetWeights failed: {ROUTE_ERROR}"
    assert writer.invalid == [said]  # told once for the same spec and error
    assert [(e["kind"], e["severity"], e["message"]) for e in events] == [
        ("halted", "warn", f"Canary podinfo.test cannot proceed: {said}")
    ]
    # a new spec version is told again
    observed.generation = 2
    await analyzer.on_tick(messages.Tick(canary=REF))
    assert writer.invalid == [said, said]
