"""ApisixUpstream and ApisixPluginConfig through the running gateway and the Kubernetes
simulator: external upstreams split with a backend, Service settings (retries, Host, chash),
shared plugins, and the status of a route naming a missing object."""

from __future__ import annotations

import collections
from typing import Any

import aiohttp
import pytest

from sandbox import kubewatch
from sandbox.gateway import Gateway, statuses, translation
from sandbox.kube.cluster import Cluster
from tests.sandbox.gateway import objects
from tests.sandbox.gateway.support import TIMEOUT, Backend, KubeApi, closed_port, run_requests

pytestmark = pytest.mark.integration

NS = "test"
Obj = dict[str, Any]
PLURALS = {"ApisixUpstream": "apisixupstreams", "ApisixPluginConfig": "apisixpluginconfigs"}


def apisix_object(kind: str, name: str, spec: Obj) -> Obj:
    return {
        "apiVersion": "apisix.apache.org/v2",
        "kind": kind,
        "metadata": {"name": name, "namespace": NS},
        "spec": spec,
    }


def _url(kube: KubeApi, obj: Obj, named: bool = False) -> str:
    url = f"{kube.base_url}/apis/apisix.apache.org/v2/namespaces/{NS}/{PLURALS[obj['kind']]}"
    return f"{url}/{obj['metadata']['name']}" if named else url


async def create(kube: KubeApi, obj: Obj) -> None:
    """Create an ApisixUpstream or ApisixPluginConfig (``KubeApi`` knows the built-in kinds)."""
    async with kube.session.post(_url(kube, obj), json=obj, timeout=TIMEOUT) as resp:
        assert resp.status == 201, await resp.text()


async def merge_patch(kube: KubeApi, obj: Obj, patch: Obj) -> None:
    async with kube.session.patch(
        _url(kube, obj, named=True),
        json=patch,
        headers={"Content-Type": "application/merge-patch+json"},
        timeout=TIMEOUT,
    ) as resp:
        assert resp.status == 200, await resp.text()


async def expose(kube: KubeApi, name: str, *addresses: tuple[str, int]) -> None:
    await kube.create(objects.service(name, NS, ports=[("http", 80, "http")]))
    await kube.create(
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": name, "namespace": NS},
            "subsets": [
                {
                    "addresses": [{"ip": ip}],
                    "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
                }
                for ip, port in addresses
            ],
        }
    )


def condition_of(gw: Gateway, name: str) -> Obj | None:
    assert gw.sync is not None
    obj = gw.sync.watcher.cache(kubewatch.APISIX_ROUTES).get((NS, name))
    return statuses.current_condition(obj) if obj is not None else None


async def wait_condition(gw: Gateway, name: str, status: str) -> Obj:
    def ready(_table: translation.RouteTable) -> bool:
        cond = condition_of(gw, name)
        return cond is not None and cond["status"] == status

    await gw.wait_synced(ready)
    cond = condition_of(gw, name)
    assert cond is not None
    return cond


async def test_external_upstream_split_with_a_backend(cluster: Cluster, kube: KubeApi):
    async with (
        Backend("app", ip="127.0.0.2") as app,
        Backend("external", ip="127.0.0.1") as external,
        Gateway(kube_url=cluster.url) as gw,
        aiohttp.ClientSession() as http,
    ):
        await expose(kube, "app", (app.ip, app.port))
        await create(
            kube,
            apisix_object(
                "ApisixUpstream",
                "httpbin",
                {"externalNodes": [{"type": "Domain", "name": "localhost", "port": external.port}]},
            ),
        )
        rule = objects.rule(
            "r",
            backends=[objects.backend("app", 80, 75)],
            upstreams=[{"name": "httpbin", "weight": 25}],
        )
        await kube.create(objects.apisix_route("mixed", [rule], NS))
        await gw.wait_weights("test_mixed_r", {"app": 75, "httpbin": 25})

        results = await run_requests(http, gw.url + "/anything", 400, concurrency=16)
        assert collections.Counter(results) == {(200, "app"): 300, (200, "external"): 100}

        async with http.get(gw.metrics_endpoint, timeout=TIMEOUT) as resp:
            text = await resp.text()
        # The Domain node is reported by the address it resolved to.
        assert 'matched_uri="/*",node="127.0.0.1",route="test_mixed_r",service=""} 100.0' in text
        assert 'matched_uri="/*",node="127.0.0.2",route="test_mixed_r",service=""} 300.0' in text


async def test_service_apisix_upstream_retries_host_and_chash(cluster: Cluster, kube: KubeApi):
    async with (
        Backend("one", ip="127.0.0.2") as one,
        Backend("two", ip="127.0.0.3") as two,
        Gateway(kube_url=cluster.url) as gw,
        aiohttp.ClientSession() as http,
    ):
        dead = ("127.0.0.4", closed_port("127.0.0.4"))
        await expose(kube, "app", (one.ip, one.port), dead)
        settings = apisix_object(
            "ApisixUpstream",
            "app",
            {"retries": 0, "passHost": "rewrite", "upstreamHost": "internal.example.com"},
        )
        await create(kube, settings)
        await kube.create(
            objects.apisix_route("app", [objects.rule("r", backends=[objects.backend("app")])], NS)
        )
        await gw.wait_synced(
            lambda t: (r := t.get("test_app_r")) is not None and r.upstream.settings.retries == 0
        )
        # No retry: the requests that draw the dead node fail (round-robin: every other one).
        results = await run_requests(http, gw.url + "/", 10, concurrency=1)
        assert collections.Counter(s for s, _ in results) == {200: 5, 502: 5}
        assert {seen.headers["Host"] for seen in one.seen} == {"internal.example.com"}

        # One retry: the next node answers.
        await merge_patch(kube, settings, {"spec": {"retries": 1}})
        await gw.wait_synced(
            lambda t: (r := t.get("test_app_r")) is not None and r.upstream.settings.retries == 1
        )
        results = await run_requests(http, gw.url + "/", 10, concurrency=1)
        assert collections.Counter(results) == {(200, "one"): 10}

        # chash on a header: one user always lands on the same pod.
        await kube.replace(
            {
                "apiVersion": "v1",
                "kind": "Endpoints",
                "metadata": {"name": "app", "namespace": NS},
                "subsets": [
                    {
                        "addresses": [{"ip": b.ip}],
                        "ports": [{"name": "http", "port": b.port, "protocol": "TCP"}],
                    }
                    for b in (one, two)
                ],
            }
        )
        await merge_patch(
            kube,
            settings,
            {"spec": {"loadbalancer": {"type": "chash", "hashOn": "header", "key": "X-User"}}},
        )
        await gw.wait_synced(
            lambda t: (
                (r := t.get("test_app_r")) is not None
                and r.upstream.settings.type == "chash"
                and len(r.upstream.nodes) == 2
            )
        )
        picked: dict[str, set[str]] = {}
        for user in ("ann", "bob", "cid", "dan", "eve", "fay"):
            results = await run_requests(
                http, gw.url + "/", 5, concurrency=1, headers={"X-User": user}
            )
            picked[user] = {b for _, b in results}
        assert all(len(backends) == 1 for backends in picked.values()), picked
        assert set().union(*picked.values()) == {"one", "two"}


async def test_plugin_config_plugins_take_effect(cluster: Cluster, kube: KubeApi):
    async with (
        Backend("app") as app,
        Gateway(kube_url=cluster.url) as gw,
        aiohttp.ClientSession() as http,
    ):
        await expose(kube, "app", (app.ip, app.port))
        shared = apisix_object(
            "ApisixPluginConfig",
            "shared",
            {
                "plugins": [
                    {"name": "proxy-rewrite", "enable": True, "config": {"uri": "/rewritten"}},
                    {
                        "name": "limit-count",
                        "enable": True,
                        "config": {"count": 3, "time_window": 60, "rejected_code": 429},
                    },
                ]
            },
        )
        await create(kube, shared)
        rule = objects.rule("r", backends=[objects.backend("app")], plugin_config_name="shared")
        await kube.create(objects.apisix_route("shared", [rule], NS))
        await gw.wait_synced(lambda t: t.get("test_shared_r") is not None)

        results = await run_requests(http, gw.url + "/original?q=1", 5, concurrency=1)
        assert [s for s, _ in results] == [200, 200, 200, 429, 429]
        assert [seen.path_qs for seen in app.seen] == ["/rewritten?q=1"] * 3

        # A change to the ApisixPluginConfig reaches the route.
        await merge_patch(
            kube,
            shared,
            {
                "spec": {
                    "plugins": [{"name": "proxy-rewrite", "enable": True, "config": {"uri": "/v2"}}]
                }
            },
        )
        await gw.wait_synced(
            lambda t: (r := t.get("test_shared_r")) is not None and r.effects.limit is None
        )
        async with http.get(gw.url + "/original", timeout=TIMEOUT) as resp:
            assert resp.status == 200
        assert app.seen[-1].path_qs == "/v2"


async def test_missing_plugin_config_or_upstream_in_the_route_status(
    cluster: Cluster, kube: KubeApi
):
    async with (
        Backend("app") as app,
        Gateway(kube_url=cluster.url) as gw,
        aiohttp.ClientSession() as http,
    ):
        await expose(kube, "app", (app.ip, app.port))
        no_config = objects.rule("r", backends=[objects.backend("app")], plugin_config_name="nope")
        await kube.create(objects.apisix_route("configless", [no_config], NS))
        no_upstream = objects.rule("r", paths=["/ext"], upstreams=[{"name": "gone"}])
        del no_upstream["backends"]
        await kube.create(objects.apisix_route("upstreamless", [no_upstream], NS))

        cond = await wait_condition(gw, "configless", "False")
        assert cond["reason"] == statuses.REASON_ABORTED
        assert "ApisixPluginConfig test/nope not found" in cond["message"]
        cond = await wait_condition(gw, "upstreamless", "False")
        assert "ApisixUpstream test/gone not found" in cond["message"]
        async with http.get(gw.url + "/", timeout=TIMEOUT) as resp:
            assert resp.status == 404  # the rule did not reach the data plane

        # Once the ApisixPluginConfig exists the route is synced.
        await create(kube, apisix_object("ApisixPluginConfig", "nope", {"plugins": []}))
        await wait_condition(gw, "configless", "True")
        async with http.get(gw.url + "/", timeout=TIMEOUT) as resp:
            assert resp.status == 200
