"""ApisixUpstream health checks through the running gateway and the Kubernetes simulator: a pod
whose health path fails is skipped and reported down by ``apisix_upstream_status``, and comes
back once healthy; a bad ``healthCheck`` refuses the route with the field path."""

from __future__ import annotations

import collections
import socket

import aiohttp
import pytest
from aiohttp import web

from sandbox.gateway import Gateway, statuses, upstreams
from sandbox.kube.cluster import Cluster
from tests.sandbox.gateway import objects
from tests.sandbox.gateway.support import TIMEOUT, KubeApi, run_requests
from tests.sandbox.gateway.test_upstream_routes import (
    apisix_object,
    create,
    expose,
    wait_condition,
)

pytestmark = pytest.mark.integration

NS = "test"
HEALTH_CHECK = {
    "active": {
        "httpPath": "/healthz",
        "healthy": {"interval": "1s", "successes": 1},
        "unhealthy": {"interval": "1s", "httpFailures": 1},
    }
}


class Pod:
    """A pod stand-in: ``/healthz`` answers ``health`` (set by the test), anything else 200
    with ``X-Backend: <name>``."""

    def __init__(self, name: str, ip: str) -> None:
        self.name, self.ip, self.port = name, ip, 0
        self.health = 200
        self._runner: web.ServerRunner | None = None

    async def _handle(self, request: web.BaseRequest) -> web.Response:
        if request.path == "/healthz":
            return web.Response(status=self.health)
        return web.json_response({"backend": self.name}, headers={"X-Backend": self.name})

    async def __aenter__(self) -> Pod:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((self.ip, 0))
        sock.listen(64)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        self._runner = web.ServerRunner(web.Server(self._handle), shutdown_timeout=1)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def node_up(gw: Gateway, pod: Pod) -> bool | None:
    """The checker's view of ``pod`` (None while no checker knows it)."""
    for _name, ip, port, value in gw.data_plane.health.statuses():
        if (ip, port) == (pod.ip, str(pod.port)):
            return value == 1.0
    return None


async def test_unhealthy_pod_is_skipped_and_comes_back(cluster: Cluster, kube: KubeApi):
    async with (
        Pod("one", "127.0.0.2") as one,
        Pod("two", "127.0.0.3") as two,
        Gateway(kube_url=cluster.url) as gw,
        aiohttp.ClientSession() as http,
    ):
        await expose(kube, "app", (one.ip, one.port), (two.ip, two.port))
        await create(kube, apisix_object("ApisixUpstream", "app", {"healthCheck": HEALTH_CHECK}))
        await kube.create(
            objects.apisix_route("app", [objects.rule("r", backends=[objects.backend("app")])], NS)
        )
        table = await gw.wait_synced(
            lambda t: (
                (r := t.get("test_app_r")) is not None
                and r.upstream.settings.checks is not None
                and len(r.upstream.nodes) == 2
            )
        )
        route = table.get("test_app_r")
        assert route is not None
        name = f"/apisix/upstreams/{upstreams.gen_id(route.upstream.name)}"
        health = gw.data_plane.health
        await health.wait(lambda: node_up(gw, two) is True, timeout=10)

        two.health = 503
        await health.wait(lambda: node_up(gw, two) is False, timeout=10)
        results = await run_requests(http, gw.url + "/", 10, concurrency=1)
        assert collections.Counter(results) == {(200, "one"): 10}
        async with http.get(gw.metrics_endpoint, timeout=TIMEOUT) as resp:
            text = await resp.text()
        assert "# HELP apisix_upstream_status Upstream status from health check" in text
        assert "# TYPE apisix_upstream_status gauge" in text
        down = f'apisix_upstream_status{{ip="{two.ip}",name="{name}",port="{two.port}"}} 0.0'
        up = f'apisix_upstream_status{{ip="{one.ip}",name="{name}",port="{one.port}"}} 1.0'
        assert down in text
        assert up in text

        # Every node down: APISIX uses them all.
        one.health = 503
        await health.wait(lambda: node_up(gw, one) is False, timeout=10)
        results = await run_requests(http, gw.url + "/", 10, concurrency=1)
        assert collections.Counter(results) == {(200, "one"): 5, (200, "two"): 5}

        one.health = two.health = 200
        await health.wait(lambda: node_up(gw, one) is True and node_up(gw, two) is True, 10)
        results = await run_requests(http, gw.url + "/", 10, concurrency=1)
        assert collections.Counter(results) == {(200, "one"): 5, (200, "two"): 5}
        async with http.get(gw.metrics_endpoint, timeout=TIMEOUT) as resp:
            text = await resp.text()
        assert down.removesuffix("0.0") + "1.0" in text


async def test_passive_without_active_refuses_the_route(cluster: Cluster, kube: KubeApi):
    async with Pod("one", "127.0.0.2") as one, Gateway(kube_url=cluster.url) as gw:
        await expose(kube, "app", (one.ip, one.port))
        await create(kube, apisix_object("ApisixUpstream", "app", {"healthCheck": {"passive": {}}}))
        await kube.create(
            objects.apisix_route("app", [objects.rule("r", backends=[objects.backend("app")])], NS)
        )
        cond = await wait_condition(gw, "app", "False")
        assert cond["reason"] == statuses.REASON_ABORTED
        assert "$.spec.healthCheck.active" in cond["message"]
        assert not list(gw.data_plane.health.statuses())
