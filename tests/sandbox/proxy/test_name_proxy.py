"""The name proxy against the real Kubernetes simulator, used the way HTTP_PROXY clients use it."""

from __future__ import annotations

import asyncio
import collections
import signal
import sys

import aiohttp
import pytest

from sandbox.kube.cluster import Cluster
from sandbox.proxy import NameProxy
from tests.sandbox.gateway import objects
from tests.sandbox.gateway.support import Backend, KubeApi

pytestmark = pytest.mark.integration


async def expose(kube: KubeApi, name: str, *pods: Backend) -> None:
    await kube.create(objects.service(name, "test", ports=[("http", 80, "http")]))
    await kube.create(
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": name, "namespace": "test"},
            "subsets": [
                {"addresses": [{"ip": p.ip}], "ports": [{"name": "http", "port": p.port}]}
                for p in pods
            ],
        }
    )


async def test_in_cluster_names_reach_the_endpoints(cluster: Cluster, kube: KubeApi):
    async with (
        Backend("a", ip="127.0.0.8") as a,
        Backend("b", ip="127.0.0.9") as b,
        NameProxy(kube_url=cluster.url) as proxy,
        aiohttp.ClientSession() as http,
    ):
        await expose(kube, "flagger-loadtester", a, b)
        await proxy.wait_synced()
        seen = collections.Counter()
        # The Endpoints may be listed or arrive by watch: poll until the name resolves.
        async with asyncio.timeout(10):
            while True:
                async with http.get(
                    "http://flagger-loadtester.test/ping?x=1", proxy=proxy.url
                ) as resp:
                    if resp.status == 200:
                        break
                await asyncio.sleep(0.02)  # polling the watch-fed cache
        for host in (
            "flagger-loadtester.test",
            "flagger-loadtester.test.svc",
            "flagger-loadtester.test.svc.cluster.local",
        ):
            for _ in range(4):
                async with http.post(
                    f"http://{host}/api/info?q=1", data=b"hi", proxy=proxy.url
                ) as resp:
                    assert resp.status == 200
                    body = await resp.json()
                    seen[body["backend"]] += 1
                    assert body["host"] == host
        assert seen == {"a": 6, "b": 6}  # round-robin over the ready endpoints
        last = (a.seen + b.seen)[-1]
        assert last.path_qs == "/api/info?q=1"
        assert last.body == b"hi"
        assert "Proxy-Connection" not in last.headers


async def test_direct_hosts_and_errors(cluster: Cluster, kube: KubeApi):
    async with (
        Backend("direct") as direct,
        NameProxy(kube_url=cluster.url) as proxy,
        aiohttp.ClientSession() as http,
    ):
        await proxy.wait_synced()
        async with http.get(f"http://127.0.0.1:{direct.port}/x", proxy=proxy.url) as resp:
            assert resp.status == 200
            assert (await resp.json())["backend"] == "direct"
        async with http.get("http://nope.test/", proxy=proxy.url) as resp:
            assert resp.status == 502
            assert "no service 'nope' in namespace 'test'" in await resp.text()
        await kube.create(objects.service("idle", "test"))
        async with asyncio.timeout(10):
            while True:
                async with http.get("http://idle.test/", proxy=proxy.url) as resp:
                    if resp.status == 503:
                        assert "no ready endpoints" in await resp.text()
                        break
                await asyncio.sleep(0.02)  # polling the watch-fed cache
        async with http.get(f"{proxy.url}/not-a-proxy-request") as resp:
            assert resp.status == 400


async def test_cli_prints_its_url_and_exits_on_sigterm(cluster: Cluster, tmp_path):
    kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sandbox.proxy",
        "--kubeconfig",
        str(kubeconfig),
        "--log-level",
        "WARNING",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(20):
            line = (await proc.stdout.readline()).decode().strip()
        assert line.startswith("NAME_PROXY_URL=http://127.0.0.1:"), (
            await proc.stderr.read()
        ).decode()
        url = line.partition("=")[2]
        async with aiohttp.ClientSession() as http:
            async with asyncio.timeout(10):
                while True:
                    async with http.get("http://kubernetes.default/", proxy=url) as resp:
                        if resp.status in (502, 503, 200):
                            break
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(10):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
