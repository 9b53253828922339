"""The watcher in standalone mode, as a process on a real nats-server: it follows the canaries
kept in KV (their upstreams become workload observations), answers rollout requests, and
applies a directory of canary files."""

from __future__ import annotations

import asyncio
import json
import pathlib

import aiohttp
import msgspec
import pytest
from nats.aio.client import Client
from nats.js.kv import KeyValue

from libs import messages, streams
from libs.model.documents import load_documents
from libs.standalone import applying
from libs.standalone import store as canary_store
from sandbox.gateway import app as gateway
from tests.fixtures.nats import NatsServer
from tests.fixtures.services import ServiceFactory
from tests.sandbox.e2e import support

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CANARY = """
apiVersion: sluice.dev/v1alpha1
kind: ApisixCanary
metadata:
  name: podinfo
  namespace: shop
spec:
  route: {id: podinfo}
  upstreams:
    stable: {id: podinfo-stable}
    canary: {nodes: {"127.0.0.1:9002": 1, "127.0.0.1:9003": 2}}
  revision: "6.0.0"
  analysis:
    interval: 10s
    threshold: 5
    maxWeight: 50
    stepWeight: 10
"""
REF = messages.CanaryRef(namespace="shop", name="podinfo")


async def buckets(nc: Client) -> tuple[KeyValue, KeyValue, KeyValue]:
    js = nc.jetstream()
    await streams.declare(
        js,
        streams=(streams.EVENTS,),
        buckets=(streams.CANARIES, streams.WORKLOADS, streams.TEMPLATES),
    )
    return (
        await js.key_value(streams.CANARIES.name),
        await js.key_value(streams.WORKLOADS.name),
        await js.key_value(streams.TEMPLATES.name),
    )


async def workload(kv: KeyValue, name: str) -> messages.WorkloadObservation | None:
    try:
        entry = await kv.get(messages.workload_key("shop", name))
    except Exception:
        return None
    return msgspec.json.decode(entry.value or b"null", type=messages.WorkloadObservation | None)


async def rollout(nc: Client, revision: str, name: str = "podinfo") -> messages.RolloutAnswer:
    request = messages.RolloutRequest(
        canary=messages.CanaryRef(namespace="shop", name=name), revision=revision, by="ci"
    )
    msg = await nc.request(
        messages.rollout_subject("shop", name), messages.ENCODER.encode(request), timeout=10
    )
    reply = messages.REPLY_DECODER.decode(msg.data)
    assert isinstance(reply, messages.RolloutAnswer), reply
    return reply


async def test_canaries_rollouts_and_files(
    nats_server: NatsServer, nc: Client, service: ServiceFactory, tmp_path: pathlib.Path
) -> None:
    async with gateway.Gateway(None, admin_key="admin-key") as apisix:
        await _canaries_rollouts_and_files(apisix, nats_server, nc, service, tmp_path)


async def _canaries_rollouts_and_files(
    apisix: gateway.Gateway,
    nats_server: NatsServer,
    nc: Client,
    service: ServiceFactory,
    tmp_path: pathlib.Path,
) -> None:
    # the stable upstream, given by id: its nodes come from the Admin API
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
        http.put(
            f"{apisix.admin_url}/apisix/admin/upstreams/podinfo-stable",
            json={"nodes": {"127.0.0.11:9001": 1}},
            headers={"X-API-KEY": "admin-key"},
        ) as resp,
    ):
        assert resp.status in (200, 201), await resp.text()
    key_file = tmp_path / "admin-key"
    key_file.write_text("admin-key\n")
    canaries, workloads, templates_kv = await buckets(nc)
    detected: list[messages.RevisionDetected] = []

    async def on_event(msg: object) -> None:
        event = messages.EVENT_DECODER.decode(msg.data)  # type: ignore[attr-defined]
        if isinstance(event, messages.RevisionDetected):
            detected.append(event)

    await nc.subscribe("sluice.events.shop.>", cb=on_event)
    files = tmp_path / "canaries"
    files.mkdir()
    watcher = service(
        "watcher",
        nats_server.url,
        SLUICE_MODE="standalone",
        SLUICE_CANARIES_DIR=str(files),
        SLUICE_APISIX_ADMIN_URL=apisix.admin_url,
        SLUICE_APISIX_ADMIN_KEY_FILE=str(key_file),
    )
    await watcher.ready()

    await applying.apply(load_documents(CANARY, "podinfo.yaml"), canaries, templates_kv)
    target = await support.poll(
        lambda: workload(workloads, "podinfo"), lambda w: w is not None, timeout=20, what="target"
    )
    assert target is not None
    assert (target.revision, target.kind, target.nodes) == (
        "6.0.0",
        "ApisixUpstream",
        ["127.0.0.1:9002", "127.0.0.1:9003"],
    )
    assert target.available_replicas == target.replicas == 1  # the user's instances: ready
    primary = await support.poll(
        lambda: workload(workloads, "podinfo-primary"),
        lambda w: w is not None,
        timeout=20,
        what="primary",
    )
    assert primary is not None
    assert primary.nodes == ["127.0.0.11:9001"]
    await support.poll(
        lambda: asyncio.sleep(0, detected), lambda d: len(d) >= 1, timeout=10, what="a hint"
    )

    answer = await rollout(nc, "6.0.1")
    assert answer.accepted, answer.message
    assert answer.message == "rolling out 6.0.1 to podinfo.shop"
    target = await workload(workloads, "podinfo")
    assert target is not None
    assert target.revision == "6.0.1"
    await support.poll(
        lambda: asyncio.sleep(0, detected),
        lambda d: any(e.revision == "6.0.1" for e in d),
        timeout=10,
        what="revision_detected 6.0.1",
    )
    again = await rollout(nc, "6.0.1")
    assert not again.accepted
    assert "already the revision of podinfo.shop" in again.message
    unknown = await rollout(nc, "1", name="nothing")
    assert (unknown.accepted, unknown.message) == (False, "canary nothing.shop not found")

    # a file in the canaries directory is applied; a bad one is logged and skipped
    (files / "other.yaml").write_text(CANARY.replace("name: podinfo\n", "name: other\n"))
    (files / "bad.yaml").write_text(
        CANARY.replace("name: podinfo\n", "name: bad\n").replace(
            "stepWeight: 10", "stepWeight: 300"
        )
    )
    store = canary_store.CanaryStore(canaries)
    await support.poll(
        lambda: store.get("shop", "other"), lambda o: o is not None, timeout=20, what="file applied"
    )
    await watcher.wait_log("spec.analysis.stepWeight", timeout=20)
    assert await store.get("shop", "bad") is None

    # deleting the canary forgets its upstreams
    assert await store.delete(REF) == "deleted"
    await support.poll(
        lambda: workload(workloads, "podinfo"), lambda w: w is None, timeout=20, what="forgotten"
    )


async def test_ci_starts_a_rollout_through_the_webhook_runner(
    nats_server: NatsServer, nc: Client, service: ServiceFactory
) -> None:
    """``POST /rollouts/<ns>/<name>`` on the loadtester port: the watcher's answer as HTTP."""
    canaries, _, templates_kv = await buckets(nc)
    await applying.apply(load_documents(CANARY, "podinfo.yaml"), canaries, templates_kv)
    watcher = service("watcher", nats_server.url, SLUICE_MODE="standalone")
    runner = service("webhook_runner", nats_server.url)
    await watcher.ready()
    await runner.ready()
    url = (await runner.wait_log(r"loadtester API listening on (http://[\d.]+:\d+)")).group(1)

    async def post(path: str, body: bytes) -> tuple[int, str]:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http,
            http.post(url + path, data=body) as resp,
        ):
            return resp.status, await resp.text()

    status, text = await post("/rollouts/shop/podinfo", b'{"revision": "6.0.1", "by": "ci"}')
    assert status == 202, text
    assert json.loads(text) == {
        "accepted": True,
        "message": "rolling out 6.0.1 to podinfo.shop",
        "revision": "6.0.1",
    }
    status, text = await post("/rollouts/shop/podinfo", b'{"revision": "6.0.1"}')
    assert status == 409
    assert "already the revision" in json.loads(text)["message"]
    status, text = await post("/rollouts/shop/nothing", b'{"revision": "1"}')
    assert (status, json.loads(text)["message"]) == (404, "canary nothing.shop not found")
    status, text = await post("/rollouts/shop/podinfo", b'{"version": "6.0.2"}')
    assert status == 400
    assert 'expected a body like {"revision": "v2"}' in text
