"""What the analyzer's /metrics says about canaries (Flagger's names plus Sluice's own)."""

from __future__ import annotations

import prometheus_client as prom

from libs import messages
from services.analyzer import recording

CANARY = messages.CanaryRef(namespace="test", name="podinfo")


def sample(registry: prom.CollectorRegistry, family: str, /, **labels: str) -> float | None:
    return registry.get_sample_value(family, labels)


def test_each_metric_check_exports_its_value_beside_its_threshold_range() -> None:
    registry = prom.CollectorRegistry()
    recorder = recording.Recorder(registry, "0.1.0")
    recorder.checked(
        messages.MetricChecked(
            canary=CANARY, metric="request-duration", value=612.0, max=500.0, passed=False
        )
    )
    where = {"name": "podinfo", "namespace": "test", "metric": "request-duration"}
    assert sample(registry, "flagger_canary_metric_analysis", **where) == 612.0
    assert sample(registry, "sluice_canary_metric_threshold", **where, bound="max") == 500.0
    assert sample(registry, "sluice_canary_metric_threshold", **where, bound="min") is None
    # the range changed to a minimum only: the stale maximum goes away
    recorder.checked(
        messages.MetricChecked(
            canary=CANARY, metric="request-duration", value=None, min=1.0, passed=False
        )
    )
    assert sample(registry, "sluice_canary_metric_threshold", **where, bound="min") == 1.0
    assert sample(registry, "sluice_canary_metric_threshold", **where, bound="max") is None
    assert sample(registry, "flagger_canary_metric_analysis", **where) == 612.0  # last value
