"""What the analyzer load figures put around real analyzer processes, and how they read them.

* Canaries as the watcher would observe them (``sluice_canaries`` / ``sluice_workloads`` KV),
  written directly: blue/green canaries in ``Progressing`` with a long run of iterations, two
  builtin APISIX metrics and no webhooks, so every step reads three observations, runs two
  Prometheus queries, publishes its events and writes the status — and, since the stand-in
  never changes the observed status, takes the same step again at its next tick.
* One aiohttp server in the benchmark's process standing in for the Kubernetes API (the
  status subresource accepts every compare-and-set) and for Prometheus (every query answers
  100); it records how long it took to answer each request.
* Reading the analyzer's ``/metrics`` text: histograms summed over replicas, their difference
  between two scrapes, and quantiles interpolated within buckets as PromQL's
  ``histogram_quantile`` does.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import pathlib
import time
from collections.abc import Sequence
from typing import Any

import msgspec
from aiohttp import web

from libs import messages
from libs.model import canary as canary_model

NAMESPACE = "bench"
REVISION = "rev-1"
ITERATIONS = 1_000_000  # never reached: the canary keeps analysing
_STATUS_PATH = f"/apis/flagger.app/v1beta1/namespaces/{NAMESPACE}/canaries/{{name}}/status"


def canary_name(index: int) -> str:
    return f"app-{index:05d}"


def canary_object(index: int, interval_s: int) -> dict[str, Any]:
    """A blue/green Canary mid-analysis (status ``Progressing``, iteration 1)."""
    name = canary_name(index)
    return {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": {"name": name, "namespace": NAMESPACE, "resourceVersion": "1"},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "service": {"port": 9898},
            "routeRef": {"apiVersion": "apisix.apache.org/v2", "kind": "ApisixRoute", "name": name},
            "analysis": {
                "interval": f"{interval_s}s",
                "threshold": 10,
                "iterations": ITERATIONS,
                "metrics": [
                    {
                        "name": "request-success-rate",
                        "thresholdRange": {"min": 99},
                        "interval": "1m",
                    },
                    {"name": "request-duration", "thresholdRange": {"max": 500}, "interval": "30s"},
                ],
            },
        },
        "status": {
            "phase": "Progressing",
            "canaryWeight": 0,
            "failedChecks": 0,
            "iterations": 1,
            "lastAppliedSpec": REVISION,
            "lastPromotedSpec": "rev-0",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
        },
    }


def canary_observation(index: int, interval_s: int) -> bytes:
    obj = canary_object(index, interval_s)
    canary = canary_model.parse_canary(obj)
    observed = messages.CanaryObservation(
        namespace=NAMESPACE,
        name=canary_name(index),
        uid=f"uid-{index}",
        resource_version="1",
        generation=1,
        canary=canary,
    )
    return msgspec.json.encode(observed)


def workload_observation(name: str) -> bytes:
    """A ready Deployment of one replica at the canary's revision."""
    observed = messages.WorkloadObservation(
        namespace=NAMESPACE,
        name=name,
        revision=REVISION,
        generation=1,
        observed_generation=1,
        replicas=1,
        status_replicas=1,
        updated_replicas=1,
        ready_replicas=1,
        available_replicas=1,
    )
    return msgspec.json.encode(observed)


def kubeconfig(path: pathlib.Path, server: str) -> pathlib.Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "bench", "cluster": {"server": server}}],
        "users": [{"name": "bench", "user": {"token": "bench"}}],
        "contexts": [{"name": "bench", "context": {"cluster": "bench", "user": "bench"}}],
        "current-context": "bench",
    }
    path.write_text(json.dumps(config))
    return path


# ----------------------------------------------------------------------------- the server


class StandIn:
    """Kubernetes status writes and Prometheus queries, answered at once."""

    def __init__(self) -> None:
        self.writes = 0
        self.queries = 0
        self.handling_s: list[float] = []  # time to answer each request, inside the handler
        self.prometheus_delay_s = 0.0  # > 0: queries answer after this, as a busy Prometheus
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("PATCH", _STATUS_PATH, self._patch)
        app.router.add_route("*", "/api/v1/query", self._query)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _patch(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        body = await request.json()
        name = request.match_info["name"]
        answer = {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "metadata": {"name": name, "namespace": NAMESPACE, "resourceVersion": "1"},
            "status": body.get("status") or {},
        }
        self.writes += 1
        response = web.json_response(answer)
        self.handling_s.append(time.perf_counter() - started)
        return response

    async def _query(self, request: web.Request) -> web.Response:
        if self.prometheus_delay_s > 0:
            await asyncio.sleep(self.prometheus_delay_s)
        started = time.perf_counter()
        if request.method == "POST":
            await request.post()
        self.queries += 1
        answer = {
            "status": "success",
            "data": {
                "resultType": "vector",
                "result": [{"metric": {}, "value": [time.time(), "100"]}],
            },
        }
        response = web.json_response(answer)
        self.handling_s.append(time.perf_counter() - started)
        return response


# ----------------------------------------------------------------------------- /metrics


@dataclasses.dataclass(frozen=True)
class Histogram:
    """Cumulative bucket counts (``le`` ascending, the last one +Inf), their sum and count."""

    buckets: tuple[tuple[float, float], ...]
    sum: float
    count: float

    def __sub__(self, other: Histogram) -> Histogram:
        if [le for le, _ in self.buckets] != [le for le, _ in other.buckets]:
            raise ValueError("histogram difference: expected the same buckets on both sides")
        return Histogram(
            buckets=tuple(
                (le, a - b) for (le, a), (_, b) in zip(self.buckets, other.buckets, strict=True)
            ),
            sum=self.sum - other.sum,
            count=self.count - other.count,
        )

    def quantile(self, q: float) -> float:
        """PromQL's ``histogram_quantile``: linear within the bucket that holds rank q·count
        (the lowest bucket starts at 0; a rank in the +Inf bucket is the highest finite bound)."""
        if not 0 <= q <= 1:
            raise ValueError(f"quantile q: expected 0 <= q <= 1, got {q}")
        if self.count <= 0 or not self.buckets:
            return math.nan
        rank = q * self.count
        lower_le, lower_count = 0.0, 0.0
        for le, cumulative in self.buckets:
            if cumulative >= rank:
                if math.isinf(le):
                    return lower_le
                width = cumulative - lower_count
                share = (rank - lower_count) / width if width > 0 else 1.0
                return lower_le + (le - lower_le) * share
            lower_le, lower_count = le, cumulative
        return lower_le


def parse_histogram(text: str, name: str) -> Histogram:
    """The histogram ``name`` of a ``/metrics`` text, every label set summed bucket by bucket."""
    buckets: dict[float, float] = {}
    total = count = 0.0
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        sample, _, value = line.rpartition(" ")
        sample_name, _, labels = sample.partition("{")
        if sample_name == f"{name}_bucket":
            le = _label(labels, "le")
            bound = math.inf if le == "+Inf" else float(le)
            buckets[bound] = buckets.get(bound, 0.0) + float(value)
        elif sample_name == f"{name}_sum":
            total += float(value)
        elif sample_name == f"{name}_count":
            count += float(value)
    if not buckets:
        raise ValueError(f"/metrics: expected the histogram {name}, found no bucket of it")
    return Histogram(buckets=tuple(sorted(buckets.items())), sum=total, count=count)


def merge(histograms: Sequence[Histogram]) -> Histogram:
    """Several replicas' histograms as one."""
    first, *rest = histograms
    buckets = dict(first.buckets)
    for other in rest:
        if set(buckets) != {le for le, _ in other.buckets}:
            raise ValueError("histogram merge: expected the same buckets in every replica")
        for le, value in other.buckets:
            buckets[le] += value
    return Histogram(
        buckets=tuple(sorted(buckets.items())),
        sum=sum(h.sum for h in histograms),
        count=sum(h.count for h in histograms),
    )


def _label(labels: str, key: str) -> str:
    for part in labels.rstrip("}").split(","):
        name, _, value = part.partition("=")
        if name == key:
            return value.strip('"')
    raise ValueError(f"/metrics: expected a {key} label in {{{labels}")
