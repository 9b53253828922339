"""What a load test run measured (``Report``), how it is collected, and its Prometheus metrics.

Latencies are kept compactly: an ``array('d')`` of 8 bytes per response, holding every
response's latency up to ``MAX_SAMPLES`` (1,000,000, the same cap as hey's; 8 MB) and past
that a uniform random sample of the whole run (reservoir sampling, "algorithm R"), so memory
stays bounded whatever the duration: a 1 h run at 2,000 req/s (7.2 M responses) keeps 8 MB of
latencies, not 58 MB. Counts, sums, the fastest and the slowest are exact over every response;
percentiles and the histogram come from the sample, exact when there were at most
``MAX_SAMPLES`` responses. The request phases (dial, DNS, wait, read) keep only their sum,
fastest and slowest, which is what the summary shows.

As in hey, only requests that got a response count as responses (latencies, status codes,
bytes); requests that failed (refused, timed out, reset) count only in ``errors``, by message.
"""

from __future__ import annotations

import dataclasses
import math
import random
from array import array
from collections.abc import Mapping

import prometheus_client as prom

MAX_SAMPLES = 1_000_000
MAX_ERROR_KINDS = 100  # distinct error messages kept; more are counted under OTHER_ERRORS
OTHER_ERRORS = "(other errors)"

# request duration buckets: 1 ms .. 20 s (hey's default timeout)
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20)


@dataclasses.dataclass(frozen=True, slots=True)
class Phase:
    """Average, fastest and slowest of one phase of the requests that got a response."""

    average_s: float
    fastest_s: float
    slowest_s: float


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    """The outcome of one run.

    ``latencies`` holds response latencies in seconds, in no particular order: all of them
    when ``responses <= max_samples``, otherwise a uniform sample (``sampled`` is true).
    """

    total_s: float  # wall time from the start to the last response (or to the stop)
    requests: int  # requests that ended: responses + errors
    responses: int
    latencies: array[float]
    latency_sum_s: float
    fastest_s: float  # 0 when there was no response
    slowest_s: float
    dial: Phase  # "DNS+dialup": new connections only (0 for a reused one), DNS included
    dns: Phase  # "DNS-lookup": 0 for an IP address or a cached name
    wait: Phase  # "resp wait": from the connection to the response headers (writing included)
    read: Phase  # "resp read": reading the body
    status_codes: Mapping[int, int]
    errors: Mapping[str, int]
    bytes_total: int  # response body bytes read (decompressed when compression is on)
    stopped: bool = False  # ended early by the caller's stop event
    sampled: bool = False
    notes: tuple[str, ...] = ()

    @property
    def average_s(self) -> float:
        """Mean latency of the responses (NaN without any, as hey prints it)."""
        return self.latency_sum_s / self.responses if self.responses else math.nan

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.total_s if self.total_s > 0 else 0.0

    @property
    def bytes_per_response(self) -> int:
        return self.bytes_total // self.responses if self.responses else 0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


class _PhaseTotals:
    __slots__ = ("fastest", "slowest", "total")

    def __init__(self) -> None:
        self.total = 0.0
        self.fastest = math.inf
        self.slowest = 0.0

    def add(self, value: float) -> None:
        self.total += value
        if value < self.fastest:
            self.fastest = value
        if value > self.slowest:
            self.slowest = value

    def phase(self, count: int) -> Phase:
        if not count:
            return Phase(math.nan, 0.0, 0.0)
        return Phase(self.total / count, self.fastest, self.slowest)


class Recorder:
    """Collects one run's outcomes; cheap per response (no allocation but the array's growth)."""

    def __init__(self, max_samples: int = MAX_SAMPLES, *, seed: int | None = None) -> None:
        if max_samples < 1:
            raise ValueError(f"max_samples: expected 1 or more, got {max_samples}")
        self.max_samples = max_samples
        self.latencies: array[float] = array("d")
        self.responses = 0
        self.latency_sum = 0.0
        self.fastest = math.inf
        self.slowest = 0.0
        self.dial = _PhaseTotals()
        self.dns = _PhaseTotals()
        self.wait = _PhaseTotals()
        self.read = _PhaseTotals()
        self.status_codes: dict[int, int] = {}
        self.errors: dict[str, int] = {}
        self.error_count = 0
        self.bytes_total = 0
        self._random = random.Random(seed)

    def response(
        self,
        latency: float,
        dial: float,
        dns: float,
        wait: float,
        read: float,
        status: int,
        size: int,
    ) -> None:
        self.responses += 1
        self.latency_sum += latency
        if latency < self.fastest:
            self.fastest = latency
        if latency > self.slowest:
            self.slowest = latency
        if self.responses <= self.max_samples:
            self.latencies.append(latency)
        else:  # keep each of the n latencies seen so far with probability max_samples / n
            slot = self._random.randrange(self.responses)
            if slot < self.max_samples:
                self.latencies[slot] = latency
        self.dial.add(dial)
        self.dns.add(dns)
        self.wait.add(wait)
        self.read.add(read)
        codes = self.status_codes
        codes[status] = codes.get(status, 0) + 1
        self.bytes_total += size

    def error(self, message: str) -> None:
        self.error_count += 1
        errors = self.errors
        if message not in errors and len(errors) >= MAX_ERROR_KINDS:
            message = OTHER_ERRORS
        errors[message] = errors.get(message, 0) + 1

    def report(self, total_s: float, *, stopped: bool, notes: tuple[str, ...] = ()) -> Report:
        count = self.responses
        return Report(
            total_s=total_s,
            requests=count + self.error_count,
            responses=count,
            latencies=self.latencies,
            latency_sum_s=self.latency_sum,
            fastest_s=self.fastest if count else 0.0,
            slowest_s=self.slowest,
            dial=self.dial.phase(count),
            dns=self.dns.phase(count),
            wait=self.wait.phase(count),
            read=self.read.phase(count),
            status_codes=dict(sorted(self.status_codes.items())),
            errors=dict(sorted(self.errors.items())),
            bytes_total=self.bytes_total,
            stopped=stopped,
            sampled=count > self.max_samples,
            notes=notes,
        )


class Metrics:
    """The load generator's Prometheus metrics, registered once into a service's registry.

    - ``sluice_loadtest_requests_total{canary,code}``: requests that ended, ``code`` the HTTP
      status or ``error`` (refused, timed out, reset, ...);
    - ``sluice_loadtest_request_duration_seconds{canary}``: latency of the responses;
    - ``sluice_loadtest_runs_total{canary,result}``: runs that ended, ``result`` one of
      ``completed`` (sent all it should), ``stopped`` (the stop event), ``failed`` (it could not
      start or broke, e.g. ``-D`` refused) and ``cancelled`` (its task was cancelled);
    - ``sluice_loadtest_running{canary}``: runs in progress.
    """

    def __init__(self, registry: prom.CollectorRegistry) -> None:
        self.requests = prom.Counter(
            "sluice_loadtest_requests_total",
            "Load test requests that ended, by HTTP status code or 'error'",
            ["canary", "code"],
            registry=registry,
        )
        self.duration = prom.Histogram(
            "sluice_loadtest_request_duration_seconds",
            "Latency of load test requests that got a response",
            ["canary"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.runs = prom.Counter(
            "sluice_loadtest_runs_total",
            "Load test runs that ended, by result (completed, stopped, failed, cancelled)",
            ["canary", "result"],
            registry=registry,
        )
        self.running = prom.Gauge(
            "sluice_loadtest_running",
            "Load test runs in progress",
            ["canary"],
            registry=registry,
        )
