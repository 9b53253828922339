"""The gateway as apisix-ingress-controller: ApisixRoute status conditions and the rejection of
an ApisixRoute whose backend Service is missing, against the real Kubernetes simulator."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from sandbox import kubewatch
from sandbox.gateway import Gateway, statuses, translation
from sandbox.kube.cluster import Cluster
from tests.sandbox.gateway import objects
from tests.sandbox.gateway.support import Backend, KubeApi

pytestmark = pytest.mark.integration

NS = "test"
Obj = dict[str, Any]


async def expose(kube: KubeApi, name: str, backend: Backend) -> None:
    await kube.create(objects.service(name, NS, ports=[("http", 80, "http")]))
    await kube.create(
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": name, "namespace": NS},
            "subsets": [
                {
                    "addresses": [{"ip": backend.ip}],
                    "ports": [{"name": "http", "port": backend.port, "protocol": "TCP"}],
                }
            ],
        }
    )


def live(gw: Gateway, name: str) -> Obj | None:
    assert gw.sync is not None
    return gw.sync.watcher.cache(kubewatch.APISIX_ROUTES).get((NS, name))


def condition_of(gw: Gateway, name: str) -> Obj | None:
    obj = live(gw, name)
    return statuses.current_condition(obj) if obj is not None else None


async def wait_condition(gw: Gateway, name: str, status: str, generation: int = 1) -> Obj:
    def ready(_table: translation.RouteTable) -> bool:
        cond = condition_of(gw, name)
        return (
            cond is not None
            and cond["status"] == status
            and cond["observedGeneration"] == generation
        )

    await gw.wait_synced(ready)
    cond = condition_of(gw, name)
    assert cond is not None
    return cond


async def test_synced_apisixroute_gets_a_true_condition_once(cluster: Cluster, kube: KubeApi):
    async with Backend("app") as app, Gateway(kube_url=cluster.url) as gw:
        await expose(kube, "app", app)
        await kube.create(
            objects.apisix_route("first", [objects.rule(backends=[objects.backend("app")])], NS)
        )
        cond = await wait_condition(gw, "first", "True")
        assert cond["type"] == "ResourcesAvailable"
        assert cond["reason"] == "ResourcesSynced"
        assert cond["lastTransitionTime"].endswith("Z")
        first = live(gw, "first")
        assert first is not None
        version = first["metadata"]["resourceVersion"]

        # A second ApisixRoute's status is written by the same (sequential) writer: once it is
        # in place, the first one's write did not start a loop of writes.
        await kube.create(
            objects.apisix_route(
                "second", [objects.rule(paths=["/b"], backends=[objects.backend("app")])], NS
            )
        )
        await wait_condition(gw, "second", "True")
        assert gw.sync is not None
        assert gw.sync.status_writer.writes == 2
        first = live(gw, "first")
        assert first is not None
        assert first["metadata"]["resourceVersion"] == version


async def test_missing_backend_service_rejects_the_apisixroute_until_it_exists(
    cluster: Cluster, kube: KubeApi
):
    async with (
        Backend("app") as app,
        Backend("canary") as canary,
        Gateway(kube_url=cluster.url) as gw,
        aiohttp.ClientSession() as http,
    ):
        await expose(kube, "app", app)
        ar = objects.apisix_route(
            "split",
            [
                objects.rule("plain", paths=["/plain"], backends=[objects.backend("app")]),
                objects.rule(
                    "split",
                    paths=["/split"],
                    backends=[objects.backend("app"), objects.backend("app-canary", weight=0)],
                ),
            ],
            NS,
        )
        await kube.create(ar)
        cond = await wait_condition(gw, "split", "False")
        assert cond["reason"] == "ResourceSyncAborted"
        assert "service test/app-canary not found" in cond["message"]
        assert "$.spec.http[1].backends[1].serviceName" in cond["message"]
        assert gw.table.routes == ()
        async with http.get(gw.url + "/plain", timeout=aiohttp.ClientTimeout(total=10)) as resp:
            assert resp.status == 404  # no rule of the ApisixRoute reached the data plane
        since = cond["lastTransitionTime"]

        await expose(kube, "app-canary", canary)
        cond = await wait_condition(gw, "split", "True")
        assert cond["reason"] == "ResourcesSynced"
        assert gw.table.names() == {"test_split_plain", "test_split_split"}
        async with http.get(gw.url + "/plain", timeout=aiohttp.ClientTimeout(total=10)) as resp:
            assert resp.status == 200
        assert cond["lastTransitionTime"] >= since


async def test_untranslatable_rule_gives_false_with_the_reason_and_new_generation(
    cluster: Cluster, kube: KubeApi
):
    async with Backend("app") as app, Gateway(kube_url=cluster.url) as gw:
        await expose(kube, "app", app)
        created = await kube.create(
            objects.apisix_route("r", [objects.rule(backends=[objects.backend("app")])], NS)
        )
        await wait_condition(gw, "r", "True")
        bad = objects.rule(
            "bad", backends=[objects.backend("app")], match={"remoteAddrs": ["not-an-ip"]}
        )
        await kube.merge_patch(
            created,
            {"spec": {"http": [objects.rule(backends=[objects.backend("app")]), bad]}},
        )
        cond = await wait_condition(gw, "r", "False", generation=2)
        assert "Expected an IP or CIDR, got 'not-an-ip'" in cond["message"]
        assert "$.spec.http[1].match.remoteAddrs[0]" in cond["message"]
        # Only a missing backend rejects the whole ApisixRoute; the good rule keeps serving.
        assert gw.table.names() == {"test_r_podinfo"}


# -- plugins with an effect -------------------------------------------------------------------

SERVICES = objects.by_key(objects.service("podinfo"))
ENDPOINTS = objects.by_key(objects.endpoints("podinfo", addresses=["10.0.0.1"]))


def with_plugin(name: str, config: Any) -> Obj:
    return objects.apisix_route(
        "r",
        [objects.rule(plugins=[{"name": name, "enable": True, "config": config}])],
    )


@pytest.mark.parametrize(
    ("name", "config", "error"),
    [
        ("proxy-rewrite", {"uri": "api"}, "Expected a path starting with '/'"),
        ("proxy-rewrite", {"regex_uri": ["^/a"]}, "an even number of strings"),
        ("proxy-rewrite", {"regex_uri": ["(", "/x"]}, "Expected a regular expression"),
        ("proxy-rewrite", {"headers": {"set": {"X-A": True}}}, "config.headers.set.X-A"),
        ("proxy-rewrite", {"headers": {"set": {}, "other": 1}}, "Expected only set|add|remove"),
        ("limit-count", {"time_window": 60}, "Expected an integer > 0, got None"),
        ("limit-count", {"count": 0, "time_window": 60}, ".count"),
        ("limit-count", {"count": 1, "time_window": "60"}, ".time_window"),
        ("limit-count", {"count": 1, "time_window": 60, "rejected_code": 100}, "200 to 599"),
        ("limit-count", {"count": 1, "time_window": 60, "policy": "redis"}, "policy local"),
    ],
)
def test_bad_plugin_config_makes_the_rule_untranslatable(name: str, config: Obj, error: str):
    table = translation.translate([with_plugin(name, config)], SERVICES, ENDPOINTS)
    assert table.routes == ()
    assert len(table.errors) == 1
    assert error in table.errors[0]
    assert "$.spec.http[0].plugins[0].config" in table.errors[0]


def test_plugin_configs_parsed_with_apisix_defaults():
    table = translation.translate(
        [with_plugin("limit-count", {"count": 2, "time_window": 60})], SERVICES, ENDPOINTS
    )
    (route,) = table.routes
    limit = route.effects.limit
    assert limit is not None
    assert (limit.rejected_code, limit.key_type, limit.key) == (503, "var", "remote_addr")

    table = translation.translate(
        [with_plugin("proxy-rewrite", {"regex_uri": ["^/api/(.*)", "/v2/$1"]})],
        SERVICES,
        ENDPOINTS,
    )
    rewrite = table.routes[0].effects.rewrite
    assert rewrite is not None
    assert rewrite.path_qs("/api/users", "a=1") == "/v2/users?a=1"
    assert rewrite.path_qs("/other", "") == "/other"


async def test_proxy_rewrite_and_limit_count_act_on_requests(cluster: Cluster, kube: KubeApi):
    timeout = aiohttp.ClientTimeout(total=10)
    async with (
        Backend("app") as app,
        Gateway(kube_url=cluster.url) as gw,
        aiohttp.ClientSession() as http,
    ):
        await expose(kube, "app", app)
        rewrite = {
            "name": "proxy-rewrite",
            "enable": True,
            "config": {
                "regex_uri": ["^/api/(.*)", "/internal/$1"],
                "host": "app.internal",
                "headers": {"set": {"X-Via": "gateway"}, "remove": ["X-Drop"]},
            },
        }
        limit = {
            "name": "limit-count",
            "enable": True,
            "config": {"count": 2, "time_window": 3600, "rejected_code": 429},
        }
        await kube.create(
            objects.apisix_route(
                "plugins",
                [
                    objects.rule(
                        "rewrite",
                        paths=["/api/*"],
                        backends=[objects.backend("app")],
                        plugins=[rewrite],
                    ),
                    objects.rule(
                        "limited",
                        paths=["/limited"],
                        backends=[objects.backend("app")],
                        plugins=[limit],
                    ),
                ],
                NS,
            )
        )
        await gw.wait_synced(lambda t: len(t.routes) == 2)

        async with http.get(
            gw.url + "/api/users?page=2", headers={"X-Drop": "1"}, timeout=timeout
        ) as resp:
            assert resp.status == 200
        seen = app.seen[-1]
        assert seen.path_qs == "/internal/users?page=2"
        assert seen.headers["Host"] == "app.internal"
        assert seen.headers["X-Via"] == "gateway"
        assert "X-Drop" not in seen.headers

        codes = []
        for _ in range(3):
            async with http.get(gw.url + "/limited", timeout=timeout) as resp:
                codes.append((resp.status, resp.headers.get("X-RateLimit-Remaining")))
        assert codes == [(200, "1"), (200, "0"), (429, "0")]
