"""The analyzer load figures' pure helpers: reading histograms from /metrics text, their
differences and quantiles, and the canaries they put in KV."""

from __future__ import annotations

import math

import msgspec
import pytest

from benchmarks import analyzer_figures, analyzer_standins
from libs import messages

METRICS = """\
# HELP sluice_analyzer_step_overhead_seconds A step's own time
# TYPE sluice_analyzer_step_overhead_seconds histogram
sluice_analyzer_step_overhead_seconds_bucket{le="0.001"} 10.0
sluice_analyzer_step_overhead_seconds_bucket{le="0.002"} 60.0
sluice_analyzer_step_overhead_seconds_bucket{le="0.005"} 100.0
sluice_analyzer_step_overhead_seconds_bucket{le="+Inf"} 100.0
sluice_analyzer_step_overhead_seconds_count 100.0
sluice_analyzer_step_overhead_seconds_sum 0.2
sluice_analyzer_step_overhead_seconds_created 1.7e9
"""


def test_a_histogram_is_read_from_metrics_text() -> None:
    hist = analyzer_standins.parse_histogram(METRICS, "sluice_analyzer_step_overhead_seconds")
    assert hist.buckets == ((0.001, 10.0), (0.002, 60.0), (0.005, 100.0), (math.inf, 100.0))
    assert (hist.count, hist.sum) == (100.0, 0.2)


def test_a_missing_histogram_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="expected the histogram nope"):
        analyzer_standins.parse_histogram(METRICS, "nope")


def test_quantiles_interpolate_within_buckets_as_promql_does() -> None:
    hist = analyzer_standins.parse_histogram(METRICS, "sluice_analyzer_step_overhead_seconds")
    assert hist.quantile(0.05) == pytest.approx(0.0005)  # first bucket starts at 0
    assert hist.quantile(0.5) == pytest.approx(0.001 + 0.001 * 40 / 50)
    assert hist.quantile(0.99) == pytest.approx(0.002 + 0.003 * 39 / 40)
    with pytest.raises(ValueError, match="0 <= q <= 1"):
        hist.quantile(99)


def test_a_rank_in_the_infinite_bucket_is_the_highest_finite_bound() -> None:
    hist = analyzer_standins.Histogram(buckets=((1.0, 1.0), (math.inf, 10.0)), sum=50.0, count=10.0)
    assert hist.quantile(0.99) == 1.0


def test_two_scrapes_differ_bucket_by_bucket_and_replicas_add_up() -> None:
    early = analyzer_standins.Histogram(buckets=((1.0, 2.0), (math.inf, 3.0)), sum=4.0, count=3.0)
    late = analyzer_standins.Histogram(buckets=((1.0, 5.0), (math.inf, 9.0)), sum=10.0, count=9.0)
    window = late - early
    assert window == analyzer_standins.Histogram(
        buckets=((1.0, 3.0), (math.inf, 6.0)), sum=6.0, count=6.0
    )
    both = analyzer_standins.merge([window, window])
    assert both.buckets == ((1.0, 6.0), (math.inf, 12.0))
    assert both.count == 12.0
    assert math.isnan(analyzer_standins.Histogram(buckets=(), sum=0, count=0).quantile(0.5))
    other = analyzer_standins.Histogram(buckets=((2.0, 1.0), (math.inf, 1.0)), sum=1, count=1)
    with pytest.raises(ValueError, match="same buckets"):
        _ = late - other


def test_the_canaries_are_valid_and_mid_analysis() -> None:
    observed = msgspec.json.decode(
        analyzer_standins.canary_observation(7, 10), type=messages.CanaryObservation
    )
    assert observed.canary is not None
    assert observed.canary.status is not None
    assert observed.name == "app-00007"
    assert observed.canary.status.phase == "Progressing"
    assert observed.canary.get_analysis().interval == "10s"
    workload = msgspec.json.decode(
        analyzer_standins.workload_observation("app-00007"), type=messages.WorkloadObservation
    )
    assert workload.revision == observed.canary.status.last_applied_spec


def _stage(canaries: int, steps: float, late_s: float) -> analyzer_figures.Stage:
    lateness = analyzer_standins.Histogram(
        buckets=((late_s, steps), (math.inf, steps)), sum=0.0, count=steps
    )
    return analyzer_figures.Stage(
        canaries=canaries,
        replicas=1,
        window_s=10.0,
        steps=[steps],
        overhead=lateness,
        lateness=lateness,
        cpu_percent=[50.0],
        rss_mb=[80.0],
    )


def test_a_load_is_held_when_every_canary_steps_each_interval_in_time() -> None:
    assert analyzer_figures._keeps_up(_stage(1000, 1000, 0.5))
    assert not analyzer_figures._keeps_up(_stage(1500, 1000, 0.5))  # a third never stepped
    assert not analyzer_figures._keeps_up(_stage(1000, 1000, 2.5))  # stepped, but late
