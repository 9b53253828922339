"""APISIX's prometheus plugin: the metrics, names, labels and buckets the gateway exports.

As in ``apisix/plugins/prometheus/exporter.lua``:

* ``apisix_http_status`` counter ``{code, route, matched_uri, matched_host, service, consumer, node}``;
* ``apisix_http_latency`` histogram in **milliseconds** ``{type, route, service, consumer, node}``,
  ``type`` ∈ ``request`` (whole request), ``upstream`` (when an upstream answered), ``apisix``
  (request minus upstream), buckets 1 … 60000 with ``le`` written as APISIX writes them (``"1"``);
* ``apisix_bandwidth`` counter ``{type, route, service, consumer, node}``, ``type`` ∈ ``ingress`` /
  ``egress``, bytes;
* ``apisix_http_requests_total`` — a **gauge** without labels (nginx's total request count,
  every request the data plane received, routed or not);
* ``apisix_node_info`` gauge ``{hostname}``;
* ``apisix_upstream_status`` gauge ``{name, ip, port}``: 1 healthy, 0 unhealthy, per node of
  each upstream with health checks (``name`` ``/apisix/upstreams/<id>``), read from
  ``upstream_status`` at every scrape; like APISIX, a series once written stays.

``route`` is the route's name (``prefer_name: true``) or id, ``service`` and ``consumer`` are
empty (ApisixRoutes have neither), ``node`` is the IP of the upstream node that served the
request (``ctx.balancer_ip``: no port; empty when no node was picked). Only requests matched by a
route whose ``prometheus`` plugin is enabled are recorded (the plugin is route-level).

The metrics live in a ``prometheus_client`` custom collector on the exporter's own
``CollectorRegistry``. APISIX's Lua library writes counters without the OpenMetrics ``_total``
suffix (``# TYPE apisix_http_status counter`` then ``apisix_http_status{...}``) while
``prometheus_client`` always names a counter family ``<name>_total``; ``exposition()`` puts
the HELP/TYPE lines back to APISIX's names so scrapers see the same text as from APISIX.
"""

from __future__ import annotations

import bisect
import dataclasses
import socket
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

BUCKETS: tuple[float, ...] = (
    1,
    2,
    5,
    10,
    20,
    50,
    100,
    200,
    500,
    1000,
    2000,
    5000,
    10000,
    30000,
    60000,
)
_LE = (*(f"{b:g}" for b in BUCKETS), "+Inf")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
COUNTERS = ("apisix_http_status", "apisix_bandwidth")

StatusKey = tuple[
    str, str, str, str, str, str, str
]  # code, route, matched_uri, matched_host, service, consumer, node
SeriesKey = tuple[str, str, str, str, str]  # type, route, service, consumer, node


@dataclasses.dataclass
class _Histogram:
    counts: list[int] = dataclasses.field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, value)] += 1
        self.total += value


@dataclasses.dataclass(frozen=True)
class Observation:
    """One logged request, as the plugin's log phase sees it."""

    code: int
    route: str  # the route label (name with prefer_name, else id)
    matched_uri: str
    matched_host: str
    node: str  # upstream IP, "" when none was picked
    latency_ms: float
    upstream_latency_ms: float | None  # None when no upstream answered
    request_bytes: int
    response_bytes: int


class ApisixMetrics(Collector):
    def __init__(self, hostname: str | None = None) -> None:
        self.hostname = hostname if hostname is not None else socket.gethostname()
        self.status: dict[StatusKey, float] = {}
        self.latency: dict[SeriesKey, _Histogram] = {}
        self.bandwidth: dict[SeriesKey, float] = {}
        self.requests_total = 0
        # (name, ip, port, value) of every health-checked node (``health.Checkers.statuses``).
        self.upstream_status: Callable[[], Iterable[tuple[str, str, str, float]]] = tuple
        self._upstream_status: dict[tuple[str, str, str], float] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def count_request(self) -> None:
        self.requests_total += 1

    def record(self, obs: Observation) -> None:
        key: StatusKey = (
            str(obs.code),
            obs.route,
            obs.matched_uri,
            obs.matched_host,
            "",
            "",
            obs.node,
        )
        self.status[key] = self.status.get(key, 0.0) + 1
        upstream = obs.upstream_latency_ms
        apisix_ms = max(obs.latency_ms - (upstream or 0.0), 0.0)
        for kind, value in (
            ("request", obs.latency_ms),
            ("upstream", upstream),
            ("apisix", apisix_ms),
        ):
            if value is not None:
                self.latency.setdefault((kind, obs.route, "", "", obs.node), _Histogram()).observe(
                    value
                )
        for kind, size in (("ingress", obs.request_bytes), ("egress", obs.response_bytes)):
            series: SeriesKey = (kind, obs.route, "", "", obs.node)
            self.bandwidth[series] = self.bandwidth.get(series, 0.0) + size

    def collect(self) -> Iterator[Metric]:
        status = Metric("apisix_http_status", "HTTP status codes per service in APISIX", "counter")
        for (code, route, uri, host, service, consumer, node), value in self.status.items():
            status.add_sample(
                "apisix_http_status",
                {
                    "code": code,
                    "route": route,
                    "matched_uri": uri,
                    "matched_host": host,
                    "service": service,
                    "consumer": consumer,
                    "node": node,
                },
                value,
            )
        yield status

        latency = HistogramMetricFamily(
            "apisix_http_latency",
            "HTTP request latency in milliseconds per service in APISIX",
            labels=["type", "route", "service", "consumer", "node"],
        )
        for labels, hist in self.latency.items():
            cumulative, buckets = 0, []
            for le, count in zip(_LE, hist.counts, strict=True):
                cumulative += count
                buckets.append((le, float(cumulative)))
            latency.add_metric(list(labels), buckets, hist.total)
        yield latency

        bandwidth = Metric(
            "apisix_bandwidth", "Total bandwidth in bytes consumed per service in APISIX", "counter"
        )
        for (kind, route, service, consumer, node), value in self.bandwidth.items():
            bandwidth.add_sample(
                "apisix_bandwidth",
                {
                    "type": kind,
                    "route": route,
                    "service": service,
                    "consumer": consumer,
                    "node": node,
                },
                value,
            )
        yield bandwidth

        requests = GaugeMetricFamily(
            "apisix_http_requests_total", "The total number of client requests since APISIX started"
        )
        requests.add_metric([], float(self.requests_total))
        yield requests

        node_info = GaugeMetricFamily(
            "apisix_node_info", "Info of APISIX node", labels=["hostname"]
        )
        node_info.add_metric([self.hostname], 1.0)
        yield node_info

        for name, ip, port, value in self.upstream_status():
            self._upstream_status[(name, ip, port)] = value
        if self._upstream_status:
            upstream_status = GaugeMetricFamily(
                "apisix_upstream_status",
                "Upstream status from health check",
                labels=["name", "ip", "port"],
            )
            for labels, value in self._upstream_status.items():
                upstream_status.add_metric(list(labels), value)
            yield upstream_status

    def exposition(self) -> bytes:
        text = generate_latest(self.registry).decode()
        for name in COUNTERS:
            text = text.replace(f"# HELP {name}_total ", f"# HELP {name} ", 1)
            text = text.replace(f"# TYPE {name}_total counter", f"# TYPE {name} counter", 1)
        return text.encode()
