"""Flagger's own Prometheus metrics, with Flagger's names and labels, so dashboards and alert
rules written for Flagger keep working (``flagger_canary_*`` in the analyzer's ``/metrics``)."""

from __future__ import annotations

import collections
import contextlib

import prometheus_client as prom

from libs import messages
from libs.model import canary as canary_model
from libs.model import strategy

Phase = canary_model.Phase

STEP_OVERHEAD_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
)  # fmt: skip
TICK_LATENESS_BUCKETS = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip


def status_value(phase: Phase) -> int:
    """Flagger's ``flagger_canary_status``: 0 progressing, 2 failed, 1 anything else."""
    if phase in (
        Phase.PROGRESSING,
        Phase.WAITING,
        Phase.PROMOTING,
        Phase.FINALISING,
        Phase.WAITING_PROMOTION,
    ):
        return 0
    if phase == Phase.FAILED:
        return 2
    return 1


class Recorder:
    def __init__(self, registry: prom.CollectorRegistry, version: str) -> None:
        prom.Info("flagger", "Flagger version and mesh provider", registry=registry).info(
            {"version": version, "mesh_provider": "apisix"}
        )
        self.total = prom.Gauge(
            "flagger_canary_total", "Number of canaries", ["namespace"], registry=registry
        )
        self.status = prom.Gauge(
            "flagger_canary_status",
            "Last canary analysis result: 0 progressing, 1 done, 2 failed",
            ["name", "namespace"],
            registry=registry,
        )
        self.weight = prom.Gauge(
            "flagger_canary_weight",
            "The virtual service destination weight current value",
            ["workload", "namespace"],
            registry=registry,
        )
        self.metric = prom.Gauge(
            "flagger_canary_metric_analysis",
            "Last canary analysis result per metric",
            ["name", "namespace", "metric"],
            registry=registry,
        )
        self.threshold = prom.Gauge(
            "sluice_canary_metric_threshold",
            "A metric check's thresholdRange bound (bound: min or max), beside its last value",
            ["name", "namespace", "metric", "bound"],
            registry=registry,
        )
        self.successes = prom.Counter(
            "flagger_canary_successes",
            "Total number of canary successes",
            ["name", "namespace", "deployment_strategy", "analysis_status"],
            registry=registry,
        )
        self.failures = prom.Counter(
            "flagger_canary_failures",
            "Total number of canary failures",
            ["name", "namespace", "deployment_strategy", "analysis_status"],
            registry=registry,
        )
        self.duration = prom.Histogram(
            "flagger_canary_duration_seconds",
            "Seconds spent performing canary analysis",
            ["name", "namespace"],
            registry=registry,
        )
        self.step_overhead = prom.Histogram(
            "sluice_analyzer_step_overhead_seconds",
            "A step's own time, from reading the canary to its status written, without the "
            "time spent awaiting Prometheus queries and webhooks",
            buckets=STEP_OVERHEAD_BUCKETS,
            registry=registry,
        )
        self.tick_lateness = prom.Histogram(
            "sluice_analyzer_tick_lateness_seconds",
            "How long after it was due a tick this replica re-scheduled started its step",
            buckets=TICK_LATENESS_BUCKETS,
            registry=registry,
        )
        self._known: dict[tuple[str, str], Phase] = {}
        # canaries known per namespace, kept as they come and go: counting them on every step
        # was a pass over every canary, quadratic in the canaries (a tenth of a replica's CPU
        # at 3,000)
        self._per_namespace: collections.Counter[str] = collections.Counter()

    def observe(self, canary: canary_model.Canary) -> None:
        """After a step: the canary's phase and weights as Flagger reports them."""
        namespace, name = canary.metadata.namespace or "", canary.metadata.name or ""
        status = canary.status or canary_model.CanaryStatus()
        previous = self._known.get((namespace, name))
        self._known[(namespace, name)] = status.phase
        if previous is None:
            self._per_namespace[namespace] += 1
        if previous is not None and previous != status.phase:
            labels = {
                "name": name,
                "namespace": namespace,
                "deployment_strategy": str(strategy.detect(canary.get_analysis())),
                "analysis_status": "completed",
            }
            if status.phase == Phase.SUCCEEDED:
                self.successes.labels(**labels).inc()
            elif status.phase == Phase.FAILED:
                self.failures.labels(**labels).inc()
        self.total.labels(namespace=namespace).set(self._per_namespace[namespace])
        self.status.labels(name=name, namespace=namespace).set(status_value(status.phase))
        target = canary.spec.target_ref.name
        weight = status.canary_weight or 0
        self.weight.labels(workload=f"{target}-primary", namespace=namespace).set(100 - weight)
        self.weight.labels(workload=target, namespace=namespace).set(weight)

    def checked(self, event: messages.MetricChecked) -> None:
        labels = {
            "name": event.canary.name,
            "namespace": event.canary.namespace,
            "metric": event.metric,
        }
        if event.value is not None:
            self.metric.labels(**labels).set(event.value)
        for bound, value in (("min", event.min), ("max", event.max)):
            if value is not None:
                self.threshold.labels(**labels, bound=bound).set(value)
            else:
                with contextlib.suppress(KeyError):
                    self.threshold.remove(*labels.values(), bound)

    def forget(self, ref: messages.CanaryRef) -> None:
        if self._known.pop((ref.namespace, ref.name), None) is not None:
            self._per_namespace[ref.namespace] -= 1
            self.total.labels(namespace=ref.namespace).set(self._per_namespace[ref.namespace])
