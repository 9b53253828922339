"""The sandbox's fault switches (``sandbox.faults``): real clients see the 503, the held
request, the dropped watch and the missing metrics, and everything answers again after."""

from __future__ import annotations

import asyncio
import json
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from sandbox import faults
from sandbox.gateway.app import METRICS_PATH, Gateway
from sandbox.kube.cluster import Cluster
from tests.sandbox.kube.conftest import random_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

HTTP = aiohttp.ClientTimeout(total=10)


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    async with Cluster(random_settings(), controllers=False) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=HTTP) as session:
        yield session


async def switch(http: aiohttp.ClientSession, base: str, **body: Any) -> dict[str, Any]:
    async with http.post(base + faults.PATH, json=body) as resp:
        assert resp.status == 200, await resp.text()
        answer: dict[str, Any] = await resp.json()
    return answer


async def until_ok(probe: Any, what: str, timeout: float = 20.0) -> None:
    """Poll ``probe()`` (an awaitable factory returning a status code) until it answers 200."""
    deadline = asyncio.get_running_loop().time() + timeout
    while (code := await probe()) != 200:
        assert asyncio.get_running_loop().time() < deadline, f"{what}: still {code}"
        await asyncio.sleep(0.05)


def list_namespaces(kubeconfig: pathlib.Path) -> int:
    """The official client's list call: the HTTP status it ends with."""
    api = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        client.CoreV1Api(api).list_namespace(_request_timeout=5)
        return 200
    except ApiException as exc:
        return int(exc.status)
    finally:
        api.close()


async def test_kube_503_reaches_the_official_client_and_clears(
    cluster: Cluster, http: aiohttp.ClientSession, tmp_path: pathlib.Path
) -> None:
    kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig")
    assert await asyncio.to_thread(list_namespaces, kubeconfig) == 200
    shown = await switch(http, cluster.url, fault="kube-503", seconds=1)
    assert [a["fault"] for a in shown["active"]] == ["kube-503"]
    assert await asyncio.to_thread(list_namespaces, kubeconfig) == 503
    async with http.get(cluster.url + "/api/v1/namespaces") as resp:
        body = await resp.json()
    assert (resp.status, body["kind"], body["reason"]) == (503, "Status", "ServiceUnavailable")
    await until_ok(lambda: asyncio.to_thread(list_namespaces, kubeconfig), "the API after kube-503")
    async with http.get(cluster.url + faults.PATH) as resp:
        assert (await resp.json()) == {"active": []}


async def test_kube_503_can_be_narrowed_to_verbs_and_paths(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    await switch(
        http, cluster.url, fault="kube-503", seconds=60, verbs=["POST"], paths=["/api/v1/"]
    )
    namespace: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "narrow"},
    }
    async with http.post(cluster.url + "/api/v1/namespaces", json=namespace) as resp:
        assert resp.status == 503
    async with http.get(cluster.url + "/api/v1/namespaces") as resp:
        assert resp.status == 200  # another verb
    async with http.get(cluster.url + "/version") as resp:
        assert resp.status == 200  # another path
    headers = {faults.UNFAULTED_HEADER: "1"}
    async with http.post(
        cluster.url + "/api/v1/namespaces", json=namespace, headers=headers
    ) as resp:
        assert resp.status == 201  # an exempt observer
    await switch(http, cluster.url, fault="clear")
    namespace["metadata"]["name"] = "narrow2"
    async with http.post(cluster.url + "/api/v1/namespaces", json=namespace) as resp:
        assert resp.status == 201


async def test_kube_timeout_holds_requests_until_it_ends(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    await switch(http, cluster.url, fault="kube-timeout", seconds=2)
    with pytest.raises(TimeoutError):
        async with http.get(
            cluster.url + "/api/v1/namespaces", timeout=aiohttp.ClientTimeout(total=0.5)
        ) as resp:
            await resp.read()

    async def status() -> int:
        try:
            async with http.get(
                cluster.url + "/api/v1/namespaces", timeout=aiohttp.ClientTimeout(total=0.5)
            ) as resp:
                return resp.status
        except TimeoutError:
            return 0

    await until_ok(status, "the API after kube-timeout")


async def test_drop_watches_ends_open_streams_and_new_ones_live_on(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    url = cluster.url + "/api/v1/namespaces?watch=1"
    async with http.get(url) as first:
        assert first.status == 200
        await first.content.readline()  # the initial ADDED events are flowing
        await switch(http, cluster.url, fault="drop-watches")
        rest = await asyncio.wait_for(first.content.read(), 10)  # the stream ends
        assert first.content.at_eof()
        assert b"ERROR" not in rest
    async with http.get(url) as second:
        initial = await second.content.readline()
        assert json.loads(initial)["type"] == "ADDED"
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "after"}}
        async with http.post(cluster.url + "/api/v1/namespaces", json=namespace) as resp:
            assert resp.status == 201
        while True:
            line = await asyncio.wait_for(second.content.readline(), 10)
            assert line, "the new watch ended"
            event = json.loads(line)
            if event["object"]["metadata"]["name"] == "after":
                assert event["type"] == "ADDED"
                break


async def test_drop_watches_for_a_while_cuts_every_watch_opened_meanwhile(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    url = cluster.url + "/api/v1/namespaces?watch=1"
    answer = await switch(http, cluster.url, fault="drop-watches", seconds=3)
    assert [a["fault"] for a in answer["active"]] == ["drop-watches"]
    async with http.get(url) as during:
        assert during.status == 200
        first = json.loads(await during.content.readline())
        assert first["type"] == "ADDED"  # it starts as every watch does ...
        await asyncio.wait_for(during.content.read(), 10)  # ... and is cut
        assert during.content.at_eof()

    async def window_over() -> int:
        async with http.get(cluster.url + faults.PATH) as resp:
            return 200 if not (await resp.json())["active"] else 503

    await until_ok(window_over, "the drop-watches window")
    async with http.get(url) as after:
        await after.content.readline()
        await asyncio.sleep(faults.DROP_AFTER_S + 0.5)  # longer than a cut watch lives
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "later"}}
        async with http.post(cluster.url + "/api/v1/namespaces", json=namespace) as resp:
            assert resp.status == 201
        while True:
            line = await asyncio.wait_for(after.content.readline(), 10)
            assert line, "a watch opened after the window was cut"
            if json.loads(line)["object"]["metadata"]["name"] == "later":
                break


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"fault": "kube-404"}, "fault: expected one of kube-503"),
        ({"fault": "kube-503"}, "seconds: expected a number"),
        ({"fault": "kube-503", "seconds": -1}, "seconds: expected more than 0"),
        ({"fault": "drop-watches", "seconds": "1m"}, "seconds: expected a number"),
        ({"fault": "kube-503", "seconds": 1, "verbs": ["FETCH"]}, "verbs: expected a list"),
        ({"fault": "kube-503", "seconds": 1, "paths": ["api"]}, "paths: expected a list"),
        ({"fault": "clear", "for": 1}, "for: unknown field"),
        ([], "body: expected a JSON object"),
    ],
)
async def test_a_bad_fault_request_names_the_field(cluster: Cluster, body: Any, field: str) -> None:
    with pytest.raises(faults.FaultError, match=field):
        await asyncio.to_thread(faults.send, cluster.url, body)


async def test_metrics_gone_fails_the_scrape_until_it_ends(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    async with Gateway(kube_url=cluster.url) as gateway:
        await gateway.wait_synced()

        async def scrape() -> int:
            async with http.get(gateway.metrics_url + METRICS_PATH) as resp:
                await resp.read()
                return resp.status

        assert await scrape() == 200
        shown = await asyncio.to_thread(
            faults.send, gateway.metrics_url, {"fault": "metrics-gone", "seconds": 1}
        )
        assert shown["active"][0]["fault"] == "metrics-gone"
        assert await scrape() == 503
        await until_ok(scrape, "the metrics after metrics-gone")
        with pytest.raises(faults.FaultError, match="fault: expected one of metrics-gone"):
            await asyncio.to_thread(faults.send, gateway.metrics_url, {"fault": "kube-503"})


def test_the_fault_command_reads_durations_and_needs_a_stack(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sandbox import __main__ as sandbox_main

    assert sandbox_main._duration("10s") == 10.0
    assert sandbox_main._duration("500ms") == 0.5
    assert sandbox_main._duration("2m") == 120.0
    with pytest.raises(SystemExit):
        sandbox_main.parse_args(["fault", "kube-503", "--for", "soon"])
    assert "expected a duration like 10s or 500ms" in capsys.readouterr().err
    code = sandbox_main.main(["--dir", str(tmp_path), "fault", "kube-503", "--for", "10s"])
    assert code == 1
    assert "is the sandbox up?" in capsys.readouterr().err
