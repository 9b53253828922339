"""Flagger's builtin APISIX queries, run by a real Prometheus scraping the gateway every second.

The templates are Flagger's (pkg/metrics/observers/apisix.go, via the reference notes) with the
tutorial's values: namespace=test, route=podinfo, target=podinfo. The canary ApisixRoute is the
one Flagger generates: ``podinfo-podinfo-canary`` with the rule ``podinfo`` sending weight 100
to ``podinfo-canary``, whose pods answer 500 to 3 requests in 10 after 50 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import math

import aiohttp
import pytest

from libs.model import templates
from sandbox.gateway import Gateway
from sandbox.kube.cluster import Cluster
from tests.sandbox.gateway import objects
from tests.sandbox.gateway.support import Backend, KubeApi

pytestmark = pytest.mark.integration

SUCCESS_RATE = templates.APISIX_BUILTIN_QUERIES["request-success-rate"]
DURATION = templates.APISIX_BUILTIN_QUERIES["request-duration"]


def render(template: str, interval: str) -> str:
    """Fill a builtin query for the seed canary (test/podinfo) the way the analyzer does."""
    values = {"namespace": "test", "route": "podinfo", "target": "podinfo", "interval": interval}
    return templates.render_query(template, values)


async def load(url: str, stop: asyncio.Event, concurrency: int = 8) -> None:
    """Steady traffic until ``stop`` is set (like the loadtester's ``hey``)."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

        async def worker() -> None:
            while not stop.is_set():
                async with http.get(url, headers={"Host": "app.example.com"}) as resp:
                    await resp.read()

        async with asyncio.TaskGroup() as tg:
            for _ in range(concurrency):
                tg.create_task(worker())


async def test_flagger_builtin_queries_see_the_canary(
    cluster: Cluster, kube: KubeApi, prometheus_factory
):
    async with (
        Backend("primary", ip="127.0.0.6") as primary,
        Backend("canary", ip="127.0.0.7", delay=0.05, fail_every=(3, 10)) as canary,
        Gateway(kube_url=cluster.url) as gw,
    ):
        for name, pod in (("podinfo-primary", primary), ("podinfo-canary", canary)):
            await kube.create(objects.service(name, "test", ports=[("http", 80, 9898)]))
            await kube.create(
                {
                    "apiVersion": "v1",
                    "kind": "Endpoints",
                    "metadata": {"name": name, "namespace": "test"},
                    "subsets": [
                        {
                            "addresses": [{"ip": pod.ip}],
                            "ports": [{"name": "http", "port": pod.port}],
                        }
                    ],
                }
            )
        await kube.create(
            objects.apisix_route(
                "podinfo-podinfo-canary",
                [
                    objects.rule(
                        "podinfo",
                        paths=["/*"],
                        priority=10000,
                        match={"hosts": ["app.example.com"]},
                        backends=[
                            objects.backend("podinfo-primary", 80, 0),
                            objects.backend("podinfo-canary", 80, 100),
                        ],
                    )
                ],
                "test",
            )
        )
        await gw.wait_weights(
            "test_podinfo-podinfo-canary_podinfo", {"podinfo-primary": 0, "podinfo-canary": 100}
        )

        prom = prometheus_factory([gw.metrics_target], metrics_path="/apisix/prometheus/metrics")
        stop = asyncio.Event()
        traffic = asyncio.create_task(load(gw.url + "/api/info", stop))
        try:
            # Enough scraped data for stable rates: at least 4 scrapes of the canary's counters
            # and some hundreds of requests (deadlines, not sleeps).
            await prom.wait_for(
                'count_over_time(apisix_http_status{route="test_podinfo-podinfo-canary_podinfo",code="200"}[1m])',
                lambda v: v is not None and v >= 4,
                timeout=30,
            )
            await prom.wait_for(
                'sum(apisix_http_status{route="test_podinfo-podinfo-canary_podinfo"})',
                lambda v: v is not None and v >= 600,
                timeout=30,
            )
            success = await prom.wait_for(render(SUCCESS_RATE, "1m"))
            p99 = await prom.wait_for(render(DURATION, "30s"))
            success_30s = await prom.aquery(render(SUCCESS_RATE, "30s"))
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await traffic
        print(
            f"\nrequest-success-rate[1m]={success:.2f} [30s]={success_30s:.2f} request-duration p99={p99:.1f} ms"
        )
        assert success is not None
        assert 65 <= success <= 75
        assert success_30s is not None
        assert 65 <= success_30s <= 75
        assert p99 is not None
        assert not math.isnan(p99)
        # every request takes >= 50 ms, so p99 lies above 50; one bucket of slack (200) for
        # scheduler jitter on a loaded 2-core machine (see tests/sandbox/e2e/test_metrics_chain.py)
        assert 50 < p99 <= 200
        assert primary.count == 0

        # The label set a dashboard or Flagger sees, as scraped.
        up = await prom.aquery('up{job="sandbox"}')
        assert up == 1
        nodes = await prom.aquery(
            'count(apisix_http_status{node="127.0.0.7",matched_host="app.example.com",matched_uri="/*",service="",consumer=""})'
        )
        assert nodes == 2  # code 200 and code 500
