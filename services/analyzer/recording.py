"""Flagger's own Prometheus metrics, with Flagger's names and labels, so dashboards and alert
rules written for Flagger keep working (``flagger_canary_*`` in the analyzer's ``/metrics``)."""

from __future__ import annotations

import contextlib

import prometheus_client as prom

from libs import messages
from libs.model import canary as canary_model
from libs.model import strategy

Phase = canary_model.Phase


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
        self._known: dict[tuple[str, str], Phase] = {}

    def observe(self, canary: canary_model.Canary) -> None:
        """After a step: the canary's phase and weights as Flagger reports them."""
        namespace, name = canary.metadata.namespace or "", canary.metadata.name or ""
        status = canary.status or canary_model.CanaryStatus()
        previous = self._known.get((namespace, name))
        self._known[(namespace, name)] = status.phase
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
        self.total.labels(namespace=namespace).set(
            sum(1 for ns, _ in self._known if ns == namespace)
        )
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
        self._known.pop((ref.namespace, ref.name), None)
