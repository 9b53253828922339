"""How a run's outcomes are kept: bounded latencies, bounded error kinds, the metrics' names."""

from __future__ import annotations

import math

import prometheus_client as prom
import pytest

from services.webhook_runner.hey import recording


def test_every_latency_is_kept_up_to_the_cap() -> None:
    recorder = recording.Recorder(max_samples=100)
    for i in range(100):
        recorder.response(i / 1000, 0.0, 0.0, 0.0, 0.0, 200, 1)
    report = recorder.report(1.0, stopped=False)
    assert sorted(report.latencies) == [i / 1000 for i in range(100)]
    assert not report.sampled


def test_past_the_cap_a_uniform_sample_is_kept_and_totals_stay_exact() -> None:
    recorder = recording.Recorder(max_samples=1000, seed=7)
    n = 100_000
    for i in range(n):
        recorder.response(float(i), 0.0, 0.0, 0.0, 0.0, 200 if i % 2 else 500, 3)
    report = recorder.report(10.0, stopped=False)
    assert report.sampled
    assert len(report.latencies) == 1000  # 8 kB, whatever n is
    assert report.responses == report.requests == n
    assert (report.fastest_s, report.slowest_s) == (0.0, float(n - 1))
    assert report.latency_sum_s == sum(range(n))
    assert report.status_codes == {200: n // 2, 500: n // 2}
    assert report.bytes_total == 3 * n
    # a uniform sample of 0..n-1: its mean is near n/2 and it reaches both ends
    assert abs(sum(report.latencies) / 1000 - n / 2) < n * 0.05
    assert min(report.latencies) < n * 0.01
    assert max(report.latencies) > n * 0.99


def test_error_kinds_are_bounded() -> None:
    recorder = recording.Recorder()
    for i in range(recording.MAX_ERROR_KINDS + 10):
        recorder.error(f"error {i}")
    recorder.error("error 0")
    report = recorder.report(1.0, stopped=False)
    assert len(report.errors) == recording.MAX_ERROR_KINDS + 1
    assert report.errors[recording.OTHER_ERRORS] == 10
    assert report.errors["error 0"] == 2
    assert report.error_count == report.requests == recording.MAX_ERROR_KINDS + 11


def test_a_report_without_responses() -> None:
    report = recording.Recorder().report(0.0, stopped=True)
    assert math.isnan(report.average_s)
    assert (report.requests_per_s, report.bytes_per_response, report.fastest_s) == (0.0, 0, 0.0)
    assert math.isnan(report.dial.average_s)
    assert report.stopped


def test_phases_average_over_responses() -> None:
    recorder = recording.Recorder()
    recorder.response(0.3, 0.1, 0.05, 0.15, 0.05, 200, 0)
    recorder.response(0.1, 0.0, 0.0, 0.09, 0.01, 200, 0)
    report = recorder.report(1.0, stopped=False)
    assert report.dial == recording.Phase(0.05, 0.0, 0.1)
    assert (report.wait.fastest_s, report.wait.slowest_s) == (0.09, 0.15)
    assert report.wait.average_s == pytest.approx(0.12)


def test_max_samples_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_samples"):
        recording.Recorder(max_samples=0)


def test_metric_names_and_labels() -> None:
    registry = prom.CollectorRegistry()
    metrics = recording.Metrics(registry)
    metrics.requests.labels("podinfo.test", "200").inc()
    metrics.duration.labels("podinfo.test").observe(0.01)
    metrics.runs.labels("podinfo.test", "completed").inc()
    metrics.running.labels("podinfo.test").set(0)
    names = {
        m.name: (m.type, sorted({k for s in m.samples for k in s.labels}))
        for m in registry.collect()
    }
    assert names == {
        "sluice_loadtest_requests": ("counter", ["canary", "code"]),
        "sluice_loadtest_request_duration_seconds": ("histogram", ["canary", "le"]),
        "sluice_loadtest_runs": ("counter", ["canary", "result"]),
        "sluice_loadtest_running": ("gauge", ["canary"]),
    }
