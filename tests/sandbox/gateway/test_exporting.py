"""The exported text: APISIX's metric names, types, label sets and millisecond buckets."""

from __future__ import annotations

import dataclasses
import re

from sandbox.gateway import exporting

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


@dataclasses.dataclass
class Sample:
    name: str
    labels: dict[str, str]
    value: float


def observation(**overrides) -> exporting.Observation:
    values = dict(
        code=200,
        route="test_podinfo-podinfo-canary_podinfo",
        matched_uri="/*",
        matched_host="",
        node="10.0.0.1",
        latency_ms=52.5,
        upstream_latency_ms=51.0,
        request_bytes=100,
        response_bytes=300,
    )
    values.update(overrides)
    return exporting.Observation(**values)


def lines(metrics: exporting.ApisixMetrics) -> list[str]:
    return metrics.exposition().decode().splitlines()


def samples(metrics: exporting.ApisixMetrics) -> dict[str, list[Sample]]:
    """Sample lines by metric name, exactly as written (prometheus_client's own parser would
    rename counters to ``*_total``, which is what this module must not do)."""
    out: dict[str, list[Sample]] = {}
    for line in lines(metrics):
        if line.startswith("#") or not line:
            continue
        m = _SAMPLE.match(line)
        assert m, line
        labels = dict(_LABEL.findall(m.group(2) or ""))
        out.setdefault(m.group(1), []).append(Sample(m.group(1), labels, float(m.group(3))))
    return out


def test_counters_keep_apisix_names_without_total_suffix():
    m = exporting.ApisixMetrics(hostname="gw")
    m.record(observation())
    text = lines(m)
    assert "# TYPE apisix_http_status counter" in text
    assert "# TYPE apisix_bandwidth counter" in text
    assert "# TYPE apisix_http_latency histogram" in text
    assert "# TYPE apisix_http_requests_total gauge" in text
    assert "# TYPE apisix_node_info gauge" in text
    assert not any("_total counter" in line or "_created" in line for line in text)
    assert any(line.startswith("apisix_http_status{") for line in text)


def test_status_labels():
    m = exporting.ApisixMetrics(hostname="gw")
    m.record(observation(code=500, matched_host="*.example.com"))
    m.record(observation(code=500, matched_host="*.example.com"))
    (status,) = samples(m)["apisix_http_status"]
    assert status.labels == {
        "code": "500",
        "route": "test_podinfo-podinfo-canary_podinfo",
        "matched_uri": "/*",
        "matched_host": "*.example.com",
        "service": "",
        "consumer": "",
        "node": "10.0.0.1",
    }
    assert status.value == 2


def test_latency_histogram_in_milliseconds_with_apisix_buckets():
    m = exporting.ApisixMetrics(hostname="gw")
    m.record(observation(latency_ms=52.5, upstream_latency_ms=51.0))
    got = samples(m)
    request_buckets = {
        s.labels["le"]: s.value
        for s in got["apisix_http_latency_bucket"]
        if s.labels["type"] == "request"
    }
    assert list(request_buckets) == [
        "1",
        "2",
        "5",
        "10",
        "20",
        "50",
        "100",
        "200",
        "500",
        "1000",
        "2000",
        "5000",
        "10000",
        "30000",
        "60000",
        "+Inf",
    ]
    assert request_buckets["50"] == 0
    assert request_buckets["100"] == 1
    assert request_buckets["+Inf"] == 1
    types = {s.labels["type"] for s in got["apisix_http_latency_count"]}
    assert types == {"request", "upstream", "apisix"}
    sums = {s.labels["type"]: s.value for s in got["apisix_http_latency_sum"]}
    assert sums["request"] == 52.5
    assert sums["upstream"] == 51.0
    assert sums["apisix"] == 1.5
    labels = {k for s in got["apisix_http_latency_bucket"] for k in s.labels}
    assert labels == {"type", "route", "service", "consumer", "node", "le"}


def test_bucket_bound_is_inclusive():
    m = exporting.ApisixMetrics(hostname="gw")
    m.record(observation(latency_ms=50.0, upstream_latency_ms=None))
    buckets = {
        s.labels["le"]: s.value
        for s in samples(m)["apisix_http_latency_bucket"]
        if s.labels["type"] == "request"
    }
    assert buckets["20"] == 0
    assert buckets["50"] == 1


def test_no_upstream_latency_when_no_upstream_answered():
    m = exporting.ApisixMetrics(hostname="gw")
    m.record(observation(code=503, node="", upstream_latency_ms=None))
    types = {s.labels["type"] for s in samples(m)["apisix_http_latency_count"]}
    assert types == {"request", "apisix"}


def test_bandwidth_ingress_and_egress():
    m = exporting.ApisixMetrics(hostname="gw")
    m.record(observation(request_bytes=100, response_bytes=300))
    bandwidth = {s.labels["type"]: s.value for s in samples(m)["apisix_bandwidth"]}
    assert bandwidth == {"ingress": 100, "egress": 300}
    assert set(samples(m)["apisix_bandwidth"][0].labels) == {
        "type",
        "route",
        "service",
        "consumer",
        "node",
    }


def test_requests_total_gauge_and_node_info():
    m = exporting.ApisixMetrics(hostname="gw-1")
    for _ in range(3):
        m.count_request()
    got = samples(m)
    assert got["apisix_http_requests_total"][0].value == 3
    assert got["apisix_http_requests_total"][0].labels == {}
    assert got["apisix_node_info"][0].labels == {"hostname": "gw-1"}


def test_own_registry_per_instance():
    a, b = exporting.ApisixMetrics(hostname="a"), exporting.ApisixMetrics(hostname="b")
    a.record(observation())
    assert "apisix_http_status" in samples(a)
    assert "apisix_http_status" not in samples(b)
