"""The ``proxy-mirror`` plugin: APISIX's config schema in the translation, and copies of the
route's requests reaching the mirror Service's pods while clients get the route's answers."""

from __future__ import annotations

import asyncio
import collections
from typing import Any

import aiohttp
import pytest

from sandbox.gateway import Gateway, translation
from sandbox.kube.cluster import Cluster
from tests.sandbox.gateway import objects
from tests.sandbox.gateway.support import Backend, KubeApi, closed_port, run_requests
from tests.sandbox.gateway.test_gateway import expose
from tests.sandbox.gateway.test_translation import ENDPOINTS, SERVICES

NS = "test"
CANARY_HOST = "http://podinfo-canary.test.svc.cluster.local:80"
ROUTE = "test_podinfo_podinfo"


def mirrored_rule(config: Any, backend: str = "podinfo-primary") -> dict[str, Any]:
    rule = objects.rule("podinfo", backends=[objects.backend(backend, 80)])
    rule["plugins"].append({"name": "proxy-mirror", "enable": True, "config": config})
    return rule


def translate(config: Any) -> translation.RouteTable:
    route = objects.apisix_route("podinfo", [mirrored_rule(config)])
    return translation.translate([route], SERVICES, ENDPOINTS)


@pytest.mark.parametrize(
    ("host", "targets"),
    [
        # in-cluster names lead to the Service's ready endpoints, like the upstreams
        (CANARY_HOST, (("10.0.2.1", 9898), ("10.0.2.2", 9898))),
        ("http://podinfo-canary.test.svc:80", (("10.0.2.1", 9898), ("10.0.2.2", 9898))),
        ("http://podinfo-canary.test", (("10.0.2.1", 9898), ("10.0.2.2", 9898))),
        ("http://named.test.svc.cluster.local", (("10.0.3.1", 9898),)),
        # other hosts are dialled as written (port from the scheme when absent)
        ("http://127.0.0.1:8081", (("127.0.0.1", 8081),)),
        ("https://mirror.example.com", (("mirror.example.com", 443),)),
    ],
)
def test_the_mirror_host_is_resolved(host: str, targets: tuple[tuple[str, int], ...]) -> None:
    table = translate({"host": host})
    assert not table.errors, table.errors
    mirror = table.routes[0].mirror
    assert mirror is not None
    assert (mirror.targets, mirror.error, mirror.sample_ratio) == (targets, "", 1.0)
    assert table.to_json()["routes"][0]["plugins"]["proxy-mirror"] == {"host": host}


def test_a_mirror_service_without_endpoints_has_no_targets_and_says_why() -> None:
    table = translate({"host": "http://headless.test.svc.cluster.local:81"})
    mirror = table.routes[0].mirror
    assert mirror is not None
    assert mirror.targets == ()
    assert mirror.error == "service test/headless has no port 81 (ports: [80])"


def test_path_and_concat_mode() -> None:
    replace = translate({"host": CANARY_HOST, "path": "/mirror"}).routes[0].mirror
    prefix = (
        translate({"host": CANARY_HOST, "path": "/mirror", "path_concat_mode": "prefix"})
        .routes[0]
        .mirror
    )
    assert replace is not None
    assert prefix is not None
    assert replace.path_for("/api/info") == "/mirror"
    assert prefix.path_for("/api/info") == "/mirror/api/info"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "Expected host (required) - at test/podinfo: $.spec.http[0].plugins[1].config.host"),
        ({"host": 80}, "Expected a string, got 80"),
        ({"host": "podinfo-canary.test:80"}, "Expected a scheme http:// or https://"),
        ({"host": "http://podinfo-canary.test:80/api"}, "host without path"),
        ({"host": "grpc://podinfo-canary.test:80"}, "the sandbox does not mirror gRPC"),
        ({"host": CANARY_HOST, "path": "api"}, "Expected a path starting with /"),
        ({"host": CANARY_HOST, "path": "/a?b=1"}, "without ? or &"),
        ({"host": CANARY_HOST, "path_concat_mode": "append"}, "Expected replace|prefix"),
        ({"host": CANARY_HOST, "sample_ratio": 0}, "Expected a number from 1e-05 to 1, got 0"),
        ({"host": CANARY_HOST, "sample_ratio": 1.5}, "got 1.5 - at"),
        ({"host": CANARY_HOST, "sample_ratio": "0.5"}, "Expected a number, got '0.5'"),
        ({"host": CANARY_HOST, "sample_ratio": True}, "Expected a number, got True"),
    ],
)
def test_a_config_apisix_refuses_keeps_the_rule_out(config: dict[str, Any], message: str) -> None:
    table = translate(config)
    assert table.routes == ()
    assert len(table.errors) == 1
    assert message in table.errors[0]


def test_a_disabled_mirror_is_not_checked_and_does_nothing() -> None:
    rule = mirrored_rule({})
    rule["plugins"][-1]["enable"] = False
    table = translation.translate([objects.apisix_route("podinfo", [rule])], SERVICES, ENDPOINTS)
    assert not table.errors
    assert table.routes[0].mirror is None


# ---------------------------------------------------------------------- over the network


async def mirrored_gateway(
    kube: KubeApi, primary: Backend, canary: Backend, config: dict[str, Any]
) -> None:
    await expose(kube, "podinfo-primary", primary, cluster_ip="10.96.0.11")
    await expose(kube, "podinfo-canary", canary, cluster_ip="10.96.0.12")
    await kube.create(objects.apisix_route("podinfo", [mirrored_rule(config)], NS))


async def until(what: str, check: Any, timeout: float = 10.0) -> None:
    """Poll ``check`` (copies are sent in the background) until it holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        if check():
            return
        if loop.time() > deadline:
            pytest.fail(f"{what}: not reached within {timeout}s")
        await asyncio.sleep(0.02)


@pytest.mark.integration
async def test_copies_reach_the_canary_pods_and_clients_get_the_primary(
    cluster: Cluster, kube: KubeApi
) -> None:
    async with (
        Backend("primary", ip="127.0.0.2") as primary,
        Backend("canary", ip="127.0.0.3") as canary,
        Backend("canary", ip="127.0.0.4") as canary2,
        Gateway(kube_url=cluster.url) as gw,
        aiohttp.ClientSession() as http,
    ):
        await expose(kube, "podinfo-primary", primary, cluster_ip="10.96.0.11")
        await expose(kube, "podinfo-canary", canary, canary2, cluster_ip="10.96.0.12")
        await kube.create(objects.apisix_route("podinfo", [mirrored_rule({"host": CANARY_HOST})]))
        await gw.wait_synced(lambda t: (r := t.get(ROUTE)) is not None and r.mirror is not None)

        async with http.post(
            gw.url + "/api/echo?x=1&y=%20",
            data=b'{"hello": "world"}',
            headers={"Host": "app.example.com", "X-Canary": "insider", "Cookie": "a=b"},
        ) as resp:
            assert resp.status == 200
            assert (await resp.json())["backend"] == "primary"
        results = await run_requests(http, gw.url + "/api/info", 99, concurrency=8)
        assert collections.Counter(results) == {(200, "primary"): 99}

        await until("100 copies", lambda: canary.count + canary2.count == 100)
        assert primary.count == 100
        assert (canary.count, canary2.count) == (50, 50)  # spread over the endpoints
        first = next(s for s in canary.seen + canary2.seen if s.method == "POST")
        assert first.path_qs == "/api/echo?x=1&y=%20"
        assert first.body == b'{"hello": "world"}'
        assert first.headers["Host"] == "app.example.com"
        assert first.headers["X-Canary"] == "insider"
        assert first.headers["Cookie"] == "a=b"
        assert primary.seen[0].headers["X-Forwarded-For"] == first.headers["X-Forwarded-For"]

        # copies are not requests of the route: the metrics count the 100 client requests
        async with http.get(gw.metrics_endpoint) as resp:
            text = await resp.text()
        counted = [line for line in text.splitlines() if line.startswith("apisix_http_status{")]
        assert [line.rsplit(" ", 1)[1] for line in counted] == ["100.0"], counted
        assert gw.data_plane.mirrors is not None
        assert gw.data_plane.mirrors.sent == 100


@pytest.mark.integration
async def test_sample_ratio_is_honoured(cluster: Cluster, kube: KubeApi) -> None:
    async with (
        Backend("primary", ip="127.0.0.2") as primary,
        Backend("canary", ip="127.0.0.3") as canary,
        Gateway(kube_url=cluster.url) as gw,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http,
    ):
        await mirrored_gateway(kube, primary, canary, {"host": CANARY_HOST, "sample_ratio": 0.3})
        await gw.wait_synced(lambda t: (r := t.get(ROUTE)) is not None and r.mirror is not None)
        n = 2000
        results = await run_requests(http, gw.url + "/", n, concurrency=32)
        assert collections.Counter(b for _, b in results) == {"primary": n}
        mirrors = gw.data_plane.mirrors
        assert mirrors is not None
        await until("copies answered", lambda: mirrors.in_flight == 0)
        # binomial(2000, 0.3): mean 600, standard deviation 20.5; the bound is over 4 of them
        print(f"\nsample_ratio 0.3: {canary.count} of {n} requests copied")
        assert 515 <= canary.count <= 685
        assert canary.count == mirrors.sent


@pytest.mark.integration
async def test_a_slow_or_dead_mirror_does_not_touch_the_clients_answer(
    cluster: Cluster, kube: KubeApi
) -> None:
    async with (
        Backend("primary", ip="127.0.0.2") as primary,
        Backend("canary", ip="127.0.0.3", delay=1.0) as canary,
        Gateway(kube_url=cluster.url) as gw,
        aiohttp.ClientSession() as http,
    ):
        await mirrored_gateway(kube, primary, canary, {"host": CANARY_HOST})
        await gw.wait_synced(lambda t: (r := t.get(ROUTE)) is not None and r.mirror is not None)
        mirrors = gw.data_plane.mirrors
        assert mirrors is not None
        async with http.get(gw.url + "/") as resp:
            assert (resp.status, (await resp.json())["backend"]) == (200, "primary")
        # the client has its answer while the copy still waits for the slow canary
        assert mirrors.in_flight == 1
        await until("the copy answered", lambda: mirrors.sent == 1)
        assert canary.count == 1

        # a mirror host nobody listens on: the copy fails, the client does not notice
        dead = f"http://127.0.0.5:{closed_port('127.0.0.5')}"
        route = objects.apisix_route("podinfo", [mirrored_rule({"host": dead})], NS)
        await kube.merge_patch(route, {"spec": route["spec"]})
        await gw.wait_synced(
            lambda t: (
                (r := t.get(ROUTE)) is not None and r.mirror is not None and r.mirror.host == dead
            )
        )
        results = await run_requests(http, gw.url + "/", 20, concurrency=4)
        assert collections.Counter(results) == {(200, "primary"): 20}
        await until("copies failed", lambda: mirrors.failed == 20)
