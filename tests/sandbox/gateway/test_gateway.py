"""The gateway against the real Kubernetes simulator: sync, split, proxying, errors, metrics."""

from __future__ import annotations

import asyncio
import collections
import json
import sys
import time

import aiohttp
import pytest
from yarl import URL

from sandbox.gateway import Gateway
from sandbox.kube.cluster import Cluster
from tests.sandbox.gateway import objects
from tests.sandbox.gateway.conftest import start_cluster
from tests.sandbox.gateway.support import Backend, KubeApi, closed_port, run_requests

pytestmark = pytest.mark.integration

NS = "test"
SPLIT_ROUTE = "test_podinfo_podinfo"


async def expose(
    kube: KubeApi, name: str, *backends: Backend, cluster_ip: str = "10.96.0.10"
) -> None:
    """A selector-less Service (port 80 named http) and its Endpoints on the backends."""
    await kube.create(
        objects.service(name, NS, ports=[("http", 80, "http")], cluster_ip=cluster_ip)
    )
    subsets = [
        {
            "addresses": [{"ip": b.ip}],
            "ports": [{"name": "http", "port": b.port, "protocol": "TCP"}],
        }
        for b in backends
    ]
    await kube.create(
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": name, "namespace": NS},
            "subsets": subsets,
        }
    )


def split_route(primary: int, canary: int, name: str = "podinfo") -> dict:
    return objects.apisix_route(
        name,
        [
            objects.rule(
                "podinfo",
                paths=["/*"],
                backends=[
                    objects.backend("podinfo-primary", 80, primary),
                    objects.backend("podinfo-canary", 80, canary),
                ],
            )
        ],
        NS,
    )


async def test_split_70_30_over_10000_requests_then_patch(cluster: Cluster, kube: KubeApi):
    async with (
        Backend("primary", ip="127.0.0.2") as primary,
        Backend("canary", ip="127.0.0.3") as canary,
        Gateway(kube_url=cluster.url) as gw,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http,
    ):
        await expose(kube, "podinfo-primary", primary, cluster_ip="10.96.0.11")
        await expose(kube, "podinfo-canary", canary, cluster_ip="10.96.0.12")
        route = split_route(70, 30)
        await kube.create(route)
        await gw.wait_weights(SPLIT_ROUTE, {"podinfo-primary": 70, "podinfo-canary": 30})

        started = time.monotonic()
        results = await run_requests(http, gw.url + "/api/info", 10_000, concurrency=64)
        elapsed = time.monotonic() - started
        counts = collections.Counter(backend for _, backend in results)
        assert {status for status, _ in results} == {200}
        share = counts["canary"] / len(results) * 100
        print(
            f"\n70/30 split over 10000 requests: {dict(counts)}, canary {share:.2f}% in {elapsed:.1f}s"
        )
        assert 27 <= share <= 33
        assert counts["primary"] + counts["canary"] == 10_000

        # Flagger's next step: the whole backends array is replaced by a merge patch.
        await kube.merge_patch(
            route,
            {
                "spec": {
                    "http": [
                        objects.rule(
                            "podinfo",
                            paths=["/*"],
                            backends=[
                                objects.backend("podinfo-primary", 80, 0),
                                objects.backend("podinfo-canary", 80, 100),
                            ],
                        )
                    ]
                }
            },
        )
        await gw.wait_weights(SPLIT_ROUTE, {"podinfo-primary": 0, "podinfo-canary": 100})
        results = await run_requests(http, gw.url + "/", 300)
        assert collections.Counter(b for _, b in results) == {"canary": 300}

        # Metrics: node is the IP of the pod that answered, route the prefer_name name.
        async with http.get(gw.metrics_endpoint) as resp:
            text = await resp.text()
        assert (
            'apisix_http_status{code="200",consumer="",matched_host="",matched_uri="/*",'
            'node="127.0.0.3",route="test_podinfo_podinfo",service=""} 3300.0'
        ) in text
        assert 'node="127.0.0.2",route="test_podinfo_podinfo"' in text


async def test_request_is_proxied_faithfully(cluster: Cluster, kube: KubeApi):
    async with (
        Backend("echo") as echo,
        Gateway(kube_url=cluster.url) as gw,
        aiohttp.ClientSession() as http,
    ):
        await expose(kube, "echo", echo)
        await kube.create(
            objects.apisix_route(
                "echo",
                [
                    objects.rule(
                        "r",
                        paths=["/echo/*"],
                        backends=[objects.backend("echo", "http")],
                        match={"hosts": ["app.example.com"], "methods": ["POST"]},
                    )
                ],
                NS,
            )
        )
        await gw.wait_synced(lambda t: t.get("test_echo_r") is not None)

        async with http.post(
            URL(gw.url + "/echo/a%20b?x=1&y=%2F", encoded=True),
            data=b"payload",
            headers={
                "Host": "app.example.com:8080",
                "X-Custom": "yes",
                "Connection": "keep-alive, X-Drop",
                "X-Drop": "hop",
                "TE": "trailers",
            },
        ) as resp:
            assert resp.status == 200
            body = await resp.json()
            assert resp.headers["Server"].startswith("APISIX/")
            assert "X-Secret" not in resp.headers  # named by the backend's Connection header
        seen = echo.seen[-1]
        assert body["host"] == "app.example.com:8080"
        assert seen.method == "POST"
        assert seen.path_qs == "/echo/a%20b?x=1&y=%2F"
        assert seen.body == b"payload"
        assert seen.headers["X-Custom"] == "yes"
        assert "X-Drop" not in seen.headers
        assert "TE" not in seen.headers
        assert seen.headers["X-Forwarded-For"] == "127.0.0.1"
        assert seen.headers["X-Real-IP"] == "127.0.0.1"

        # Method or host not matching: APISIX's 404.
        async with http.get(gw.url + "/echo/x", headers={"Host": "app.example.com"}) as resp:
            assert resp.status == 404
            assert await resp.text() == '{"error_msg":"404 Route Not Found"}\n'
        async with http.post(gw.url + "/echo/x", headers={"Host": "other.example.com"}) as resp:
            assert resp.status == 404


async def test_no_endpoints_503_connect_error_502_and_their_metrics(
    cluster: Cluster, kube: KubeApi
):
    async with Gateway(kube_url=cluster.url) as gw, aiohttp.ClientSession() as http:
        await kube.create(objects.service("empty", NS, ports=[("http", 80, "http")]))
        await kube.create(objects.service("dead", NS, ports=[("http", 80, "http")]))
        await kube.create(
            {
                "apiVersion": "v1",
                "kind": "Endpoints",
                "metadata": {"name": "dead", "namespace": NS},
                "subsets": [
                    {
                        "addresses": [{"ip": "127.0.0.1"}],
                        "ports": [{"name": "http", "port": closed_port()}],
                    }
                ],
            }
        )
        await kube.create(
            objects.apisix_route(
                "errs",
                [
                    objects.rule("empty", paths=["/empty"], backends=[objects.backend("empty")]),
                    objects.rule("dead", paths=["/dead"], backends=[objects.backend("dead")]),
                ],
                NS,
            )
        )
        table = await gw.wait_synced(lambda t: len(t.routes) == 2)
        empty = table.get("test_errs_empty")
        assert empty is not None
        assert "no ready endpoints" in empty.upstream.error

        for path, status in (("/empty", 503), ("/dead", 502)):
            async with http.get(gw.url + path) as resp:
                assert resp.status == status, path
                assert "APISIX" in await resp.text()

        async with http.get(gw.metrics_endpoint) as resp:
            text = await resp.text()
        assert (
            'apisix_http_status{code="503",consumer="",matched_host="",matched_uri="/empty",node="",route="test_errs_empty",service=""} 1.0'
            in text
        )
        assert (
            'apisix_http_status{code="502",consumer="",matched_host="",matched_uri="/dead",node="127.0.0.1",route="test_errs_dead",service=""} 1.0'
            in text
        )


async def test_sync_follows_endpoints_deletes_and_disabled_prometheus(
    cluster: Cluster, kube: KubeApi
):
    async with (
        Backend("a", ip="127.0.0.4") as a,
        Backend("b", ip="127.0.0.5") as b,
        Gateway(kube_url=cluster.url) as gw,
        aiohttp.ClientSession() as http,
    ):
        await expose(kube, "app", a)
        route = objects.apisix_route(
            "app", [objects.rule("r", prometheus=False, backends=[objects.backend("app")])], NS
        )
        await kube.create(route)
        await gw.wait_synced(lambda t: t.get("test_app_r") is not None)

        # Scale out: a second ready address; round-robin then alternates between the pods.
        await kube.replace(
            {
                "apiVersion": "v1",
                "kind": "Endpoints",
                "metadata": {"name": "app", "namespace": NS},
                "subsets": [
                    {"addresses": [{"ip": a.ip}], "ports": [{"name": "http", "port": a.port}]},
                    {"addresses": [{"ip": b.ip}], "ports": [{"name": "http", "port": b.port}]},
                ],
            }
        )
        await gw.wait_synced(lambda t: len(t.routes) == 1 and len(t.routes[0].upstream.nodes) == 2)
        results = await run_requests(http, gw.url + "/", 100, concurrency=4)
        assert collections.Counter(b for _, b in results) == {"a": 50, "b": 50}

        # The prometheus plugin is not on this route: nothing recorded for it.
        async with http.get(gw.metrics_endpoint) as resp:
            text = await resp.text()
        assert "test_app_r" not in text
        assert "apisix_http_requests_total 100.0" in text

        # The debug endpoint shows the table.
        async with http.get(gw.metrics_url + "/sandbox/routes") as resp:
            routes = await resp.json()
        assert routes["synced"] is True
        assert [r["name"] for r in routes["routes"]] == ["test_app_r"]
        assert {n["host"] for n in routes["routes"][0]["upstreams"][0]["nodes"]} == {a.ip, b.ip}

        await kube.delete(route)
        await gw.wait_synced(lambda t: not t.routes)
        async with http.get(gw.url + "/") as resp:
            assert resp.status == 404


async def test_service_granularity_dials_endpoints_reports_cluster_ip(
    cluster: Cluster, kube: KubeApi
):
    async with (
        Backend("svc") as pod,
        Gateway(kube_url=cluster.url) as gw,
        aiohttp.ClientSession() as http,
    ):
        await expose(kube, "svc", pod, cluster_ip="10.96.7.7")
        await kube.create(
            objects.apisix_route(
                "svc",
                [
                    objects.rule(
                        "r", backends=[objects.backend("svc", 80, resolveGranularity="service")]
                    )
                ],
                NS,
            )
        )
        live = await gw.wait_synced(lambda t: t.get("test_svc_r") is not None)
        cluster_ip = live.routes[0].upstream.nodes[0].host
        async with http.get(gw.url + "/x") as resp:
            assert resp.status == 200
            assert (await resp.json())["backend"] == "svc"
        async with http.get(gw.metrics_endpoint) as resp:
            assert f'node="{cluster_ip}",route="test_svc_r"' in await resp.text()


async def test_follows_the_cluster_across_an_api_server_restart(kube: KubeApi, cluster: Cluster):
    """Watches dropped by a restart (and connections refused meanwhile) are retried; changes
    made after the restart still reach the route table."""
    async with Backend("x") as pod, Gateway(kube_url=cluster.url) as gw:
        await expose(kube, "x", pod)
        route = objects.apisix_route("x", [objects.rule("r", backends=[objects.backend("x")])], NS)
        await kube.create(route)
        await gw.wait_synced(lambda t: t.get("test_x_r") is not None)
        await cluster.stop()
        await start_cluster(cluster)  # same store, same port
        await kube.delete(route)
        await gw.wait_synced(lambda t: t.get("test_x_r") is None, timeout=20)
        assert gw.sync.watcher.running()


async def test_cli_prints_urls_and_exits_cleanly_on_sigterm(
    cluster: Cluster, kube: KubeApi, tmp_path
):
    kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sandbox.gateway",
        "--kubeconfig",
        str(kubeconfig),
        "--log-level",
        "WARNING",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        urls = {}
        async with asyncio.timeout(20):
            while len(urls) < 3:
                line = (await proc.stdout.readline()).decode().strip()
                assert line, (await proc.stderr.read()).decode()
                key, _, value = line.partition("=")
                urls[key] = value
        async with aiohttp.ClientSession() as http:
            async with asyncio.timeout(10):
                while True:
                    async with http.get(urls["GATEWAY_ROUTES_URL"]) as resp:
                        if (await resp.json())["synced"]:
                            break
                    await asyncio.sleep(0.05)  # polling the process under test
            async with http.get(urls["GATEWAY_URL"] + "/nothing") as resp:
                assert resp.status == 404
            async with http.get(urls["GATEWAY_METRICS_URL"]) as resp:
                assert "apisix_node_info" in await resp.text()
        proc.terminate()
        async with asyncio.timeout(10):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_routes_json_is_json_serialisable():
    route = objects.apisix_route("r", [objects.rule()])
    from sandbox.gateway import translation

    table = translation.translate([route], objects.by_key(objects.service("podinfo")), {})
    assert json.loads(json.dumps(table.to_json()))["routes"][0]["name"] == "test_r_podinfo"
