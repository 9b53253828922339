"""The analyzer's own load on /metrics: a step's overhead (without awaiting Prometheus and
webhooks) and how late a re-scheduled tick starts."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import prometheus_client as prom
import pytest

from libs import consuming, lifecycle, messages, streams
from libs.model import canary as canary_model
from services.analyzer import app, checking, driving, handlers, machine, recording
from tests.services.analyzer.test_metrics import SEED_CANARY

pytestmark = pytest.mark.integration

REF = messages.CanaryRef(namespace="test", name="podinfo")
PROMETHEUS_WAIT_S = 0.5


def _canary() -> canary_model.Canary:
    """A blue/green canary mid-analysis: a step checks metrics, counts an iteration, writes."""
    obj: dict[str, Any] = {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": "test", "resourceVersion": "7"},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "routeRef": {"apiVersion": "apisix.apache.org/v2", "kind": "ApisixRoute", "name": "r"},
            "service": {"port": 9898},
            "analysis": {
                "interval": "10s",
                "threshold": 5,
                "iterations": 10,
                "metrics": [{"name": "request-success-rate", "thresholdRange": {"min": 99}}],
            },
        },
        "status": {"phase": "Progressing", "iterations": 1, "lastAppliedSpec": "abc"},
    }
    return canary_model.parse_canary(obj)


def _workload(name: str) -> messages.WorkloadObservation:
    return messages.WorkloadObservation(
        namespace="test",
        name=name,
        revision="abc",
        generation=1,
        observed_generation=1,
        replicas=1,
        status_replicas=1,
        updated_replicas=1,
        ready_replicas=1,
        available_replicas=1,
    )


class Observations:
    async def canary(self, namespace: str, name: str) -> messages.CanaryObservation | None:
        return messages.CanaryObservation(
            namespace=namespace,
            name=name,
            uid="u",
            resource_version="7",
            generation=1,
            canary=_canary(),
        )

    async def workload(self, namespace: str, name: str) -> messages.WorkloadObservation | None:
        return _workload(name)


class SlowPrometheus:
    """Answers every check after PROMETHEUS_WAIT_S: time the step spends waiting, not working."""

    async def check(self, canary: canary_model.Canary) -> machine.MetricsOutcome:
        await asyncio.sleep(PROMETHEUS_WAIT_S)
        return machine.MetricsOutcome(ok=True)


class Writer:
    def __init__(self) -> None:
        self.written: list[canary_model.CanaryStatus] = []

    async def write(
        self, canary: canary_model.Canary, resource_version: str, status: canary_model.CanaryStatus
    ) -> None:
        self.written.append(status)

    async def mark_invalid(
        self, ref: messages.CanaryRef, resource_version: str, message: str
    ) -> None:
        raise AssertionError("the canary is valid")


async def test_step_overhead_leaves_out_the_wait_for_prometheus(
    runtime: lifecycle.Runtime,
) -> None:
    registry = prom.CollectorRegistry()
    recorder = recording.Recorder(registry, "0")
    writer = Writer()
    driver = driving.Driver(
        runtime,
        Observations(),
        SlowPrometheus(),
        writer,
        on_stepped=recorder.step_overhead.observe,
    )
    started = asyncio.get_running_loop().time()
    canary = await driver.take_step(REF, messages.now_ms())
    took = asyncio.get_running_loop().time() - started
    assert canary is not None
    assert canary.status is not None
    assert canary.status.iterations == 2
    assert len(writer.written) == 1
    assert took >= PROMETHEUS_WAIT_S  # the step did wait
    count = registry.get_sample_value("sluice_analyzer_step_overhead_seconds_count")
    total = registry.get_sample_value("sluice_analyzer_step_overhead_seconds_sum")
    assert count == 1
    assert total is not None
    assert 0 < total < took - PROMETHEUS_WAIT_S + 1e-6


class OneStep:
    """Takes every step at once: the canary with its interval (10 s unless told)."""

    def __init__(self, interval: str = "10s") -> None:
        self.interval = interval
        self.deliveries: list[consuming.Delivery | None] = []
        self.twice = asyncio.Event()

    async def take_step(self, ref: messages.CanaryRef, now_ms: int) -> canary_model.Canary:
        self.deliveries.append(consuming.current_delivery())
        if len(self.deliveries) >= 2:
            self.twice.set()
        canary = _canary()
        analysis = msgspec.structs.replace(canary.get_analysis(), interval=self.interval)
        spec = msgspec.structs.replace(canary.spec, analysis=analysis)
        return msgspec.structs.replace(canary, spec=spec, status=canary_model.CanaryStatus())


async def test_a_late_tick_this_replica_rescheduled_is_measured(
    runtime: lifecycle.Runtime,
) -> None:
    registry = prom.CollectorRegistry()
    recorder = recording.Recorder(registry, "0")
    analyzer = handlers.Analyzer(runtime, OneStep(), recorder=recorder)  # type: ignore[arg-type]
    tick = messages.Tick(canary=REF)

    def lateness(sample: str) -> float | None:
        return registry.get_sample_value(f"sluice_analyzer_tick_lateness_seconds_{sample}")

    assert await analyzer.on_tick(tick) == consuming.Later(10.0)
    assert lateness("count") == 0  # a tick first seen here: its due time is not known
    # back early (another wake-up): not late
    assert await analyzer.on_tick(tick) == consuming.Later(10.0)
    assert lateness("count") == 1
    assert lateness("sum") == 0
    # re-scheduled here and due 2 s ago
    analyzer._due[(REF.namespace, REF.name)] = (messages.now_ms() - 2000, None)
    await analyzer.on_tick(tick)
    assert lateness("count") == 2
    late = lateness("sum")
    assert late is not None
    assert late >= 2.0
    assert (
        registry.get_sample_value("sluice_analyzer_tick_lateness_seconds_bucket", {"le": "1.0"})
        == 1
    )


def test_the_ticks_consumer_holds_every_canary() -> None:
    assert streams.ANALYZER_TICKS.max_ack_pending == -1


def test_canaries_are_counted_per_namespace_as_they_come_and_go() -> None:
    registry = prom.CollectorRegistry()
    recorder = recording.Recorder(registry, "0")

    def canary(namespace: str, name: str) -> canary_model.Canary:
        c = _canary()
        return msgspec.structs.replace(
            c, metadata=msgspec.structs.replace(c.metadata, namespace=namespace, name=name)
        )

    for _ in range(3):  # every step of a canary observes it again: counted once
        for name in ("a", "b", "c"):
            recorder.observe(canary("one", name))
        recorder.observe(canary("two", "a"))

    def total(namespace: str) -> float | None:
        return registry.get_sample_value("flagger_canary_total", {"namespace": namespace})

    assert (total("one"), total("two")) == (3, 1)
    recorder.forget(messages.CanaryRef(namespace="one", name="b"))
    recorder.forget(messages.CanaryRef(namespace="one", name="b"))  # forgotten once
    assert (total("one"), total("two")) == (2, 1)
    recorder.observe(canary("one", "b"))
    assert total("one") == 3


def test_lateness_is_measured_only_on_the_next_delivery_of_the_same_tick() -> None:
    first = consuming.Delivery(stream_seq=5, num_delivered=3)
    assert handlers._next(first, consuming.Delivery(stream_seq=5, num_delivered=4))
    # another replica had it in between: the due time known here is stale
    assert not handlers._next(first, consuming.Delivery(stream_seq=5, num_delivered=6))
    # a new tick (a hint, a retried copy) replaced it
    assert not handlers._next(first, consuming.Delivery(stream_seq=9, num_delivered=1))
    assert not handlers._next(first, None)
    assert not handlers._next(None, first)


async def test_ticks_rescheduled_through_the_consumer_report_their_lateness(
    runtime: lifecycle.Runtime,
) -> None:
    await streams.declare(
        runtime.js, streams=(streams.TICKS, streams.DEAD), consumers=(streams.ANALYZER_TICKS,)
    )
    registry = prom.CollectorRegistry()
    recorder = recording.Recorder(registry, "0")
    driver = OneStep(interval="1s")
    analyzer = handlers.Analyzer(
        runtime,
        driver,  # type: ignore[arg-type]
        min_interval_s=0.2,
        recorder=recorder,
    )
    tick = msgspec.json.encode(messages.Tick(canary=REF))
    await runtime.js.publish(messages.tick_subject(REF.namespace, REF.name), tick, timeout=5)
    consumer = asyncio.create_task(
        consuming.consume(runtime, streams.ANALYZER_TICKS, messages.TICK_DECODER, analyzer.on_tick)
    )
    try:
        await asyncio.wait_for(driver.twice.wait(), timeout=20)
    finally:
        runtime.stopping.set()
        await consumer
    count = registry.get_sample_value("sluice_analyzer_tick_lateness_seconds_count")
    assert count is not None
    assert count >= 1
    # the handler knew which delivery of which stored tick it handled: the same one, again
    first, second = driver.deliveries[:2]
    assert first is not None
    assert second is not None
    assert second.stream_seq == first.stream_seq
    assert second.num_delivered == first.num_delivered + 1


def test_blocking_threads_must_be_at_least_one() -> None:
    with pytest.raises(ValueError, match="blocking_threads: expected at least 1 thread, got 0"):
        app.Settings(blocking_threads=0)


async def test_queries_wait_for_a_free_slot_of_their_prometheus_client() -> None:
    # nothing listens on port 9 (discard): a query fails at once, with a typed error
    checker = checking.Checker("http://127.0.0.1:9", _no_templates, None, timeout_s=2.0)
    canary = SEED_CANARY
    try:
        client = await checker._client(canary, None)
        gate = checker.gate(client)
        assert gate is checker.gate(client)
        for _ in range(checking.QUERIES_PER_CLIENT):
            await gate.acquire()
        assert gate.locked()
        waiting = asyncio.create_task(checker.check(canary))
        done, _ = await asyncio.wait({waiting}, timeout=0.3)
        assert not done  # every slot taken: the check waits instead of querying
        gate.release()
        outcome = await asyncio.wait_for(waiting, timeout=10)
        assert not outcome.ok  # it did query then (and found nobody)
    finally:
        await checker.close()


async def _no_templates(namespace: str, name: str) -> None:
    return None
