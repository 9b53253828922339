"""The watcher as a real process: it sees the simulated cluster (in this test's event loop, over
HTTP) and writes observations and ``revision_detected`` events to a real JetStream."""

from __future__ import annotations

import asyncio
import copy
import ipaddress
import pathlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import nats
import pytest
import yaml
from nats.aio.client import Client
from nats.js.kv import KeyValue

from libs import messages, streams
from sandbox.kube.cluster import Cluster
from sandbox.kube.config import ClusterSettings
from tests.fixtures.nats import NatsServer
from tests.fixtures.services import ServiceFactory, ServiceProcess

pytestmark = pytest.mark.integration

MANIFESTS = pathlib.Path(__file__).resolve().parents[1] / "data" / "manifests"
DEPLOYMENTS = "/apis/apps/v1/namespaces/test/deployments"
CANARIES = "/apis/flagger.app/v1beta1/namespaces/test/canaries"
CONFIGMAPS = "/api/v1/namespaces/test/configmaps"
SUBJECT = "sluice.events.test.podinfo.revision_detected"
DEADLINE_S = 10.0


def manifest(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((MANIFESTS / name).read_text())
    return data


def cluster_settings() -> ClusterSettings:
    second = random.randint(100, 250)
    return ClusterSettings(
        pod_network=ipaddress.IPv4Network(f"127.{second}.0.0/17"),
        service_network=ipaddress.IPv4Network(f"127.{second}.128.0/17"),
        namespaces=("default", "kube-system", "test"),
        pod_ready_delay=0.1,
        bookmark_interval=1.0,
    )


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    async with Cluster(cluster_settings()) as running:
        yield running


class Api:
    """Just enough REST to drive the simulator the way kubectl would."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def _send(self, method: str, path: str, body: Any, content_type: str) -> Any:
        async with self.session.request(
            method,
            self.base + path,
            json=body,
            headers={"Content-Type": content_type},
            timeout=aiohttp.ClientTimeout(total=10),
        ) as resp:
            data = await resp.json()
            assert resp.status < 300, f"{method} {path}: {resp.status} {data}"
            return data

    async def create(self, path: str, body: Any) -> Any:
        return await self._send("POST", path, body, "application/json")

    async def patch(self, path: str, body: Any) -> Any:
        return await self._send("PATCH", path, body, "application/merge-patch+json")


@pytest.fixture
async def api(cluster: Cluster, http: aiohttp.ClientSession) -> Api:
    return Api(http, cluster.url)


@pytest.fixture
async def bus(nats_server: NatsServer) -> AsyncIterator[Client]:
    nc = await nats.connect(nats_server.url)
    try:
        yield nc
    finally:
        await nc.close()


def start_watcher(
    service: ServiceFactory, nats_server: NatsServer, cluster: Cluster, tmp_path: pathlib.Path
) -> ServiceProcess:
    kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig")
    return service(
        "watcher",
        nats_server.url,
        SLUICE_KUBECONFIG=str(kubeconfig),
        SLUICE_WATCH_NAMESPACES="test",
        SLUICE_KUBE_WATCH_TIMEOUT_S="2",
        SLUICE_KUBE_REQUEST_TIMEOUT_S="2",
        SLUICE_KUBE_BACKOFF_INITIAL_S="0.1",
        SLUICE_KUBE_BACKOFF_MAX_S="0.5",
    )


async def until(
    what: str, probe: Callable[[], Awaitable[Any]], proc: ServiceProcess | None = None
) -> Any:
    """Poll ``probe`` until it returns something truthy, within the deadline."""
    deadline = time.monotonic() + DEADLINE_S
    last: Any = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(0.05)
    pytest.fail(f"{what}: still {last!r} after {DEADLINE_S}s\n{proc.log_text() if proc else ''}")


async def observation(kv: KeyValue) -> messages.WorkloadObservation | None:
    try:
        entry = await kv.get("test.podinfo")
    except nats.js.errors.KeyNotFoundError:
        return None
    return messages.OBSERVATION_DECODER.decode(entry.value or b"")


async def test_watcher_observes_revisions_of_the_seed_canary(
    nats_server: NatsServer,
    cluster: Cluster,
    api: Api,
    bus: Client,
    service: ServiceFactory,
    tmp_path: pathlib.Path,
) -> None:
    proc = start_watcher(service, nats_server, cluster, tmp_path)
    await proc.ready()
    js = bus.jetstream()
    kv = await js.key_value(streams.WORKLOADS.name)
    events = await js.subscribe(SUBJECT, ordered_consumer=True)

    async def next_event() -> messages.RevisionDetected:
        msg = await events.next_msg(timeout=DEADLINE_S)
        event = messages.EVENT_DECODER.decode(msg.data)
        assert isinstance(event, messages.RevisionDetected)
        return event

    # the seed: Flagger's podinfo Deployment and the tutorial's Canary
    await api.create(DEPLOYMENTS, manifest("podinfo-deployment.yaml"))
    await api.create(CANARIES, manifest("podinfo-canary.yaml"))
    first = await next_event()
    assert first.canary == messages.CanaryRef(namespace="test", name="podinfo")
    assert first.target == "podinfo"
    stored = await until("observation", lambda: observation(kv), proc)
    assert stored.revision == first.revision
    assert stored.tracked_configs == {}

    # readiness comes from the Deployment status the simulated controllers write
    ready = await until(
        "ready replicas",
        lambda: _matching(kv, lambda o: o.ready_replicas == 1 and o.observed_generation >= 1),
        proc,
    )
    assert ready.revision == first.revision

    # scaling changes the observation, not the revision: no event
    await api.patch(f"{DEPLOYMENTS}/podinfo", {"spec": {"replicas": 3}})
    scaled = await until("scaled", lambda: _matching(kv, lambda o: o.replicas == 3), proc)
    assert scaled.revision == first.revision

    # a new image is a new revision
    deployment = manifest("podinfo-deployment.yaml")
    containers = copy.deepcopy(deployment["spec"]["template"]["spec"]["containers"])
    containers[0]["image"] = "ghcr.io/stefanprodan/podinfo:6.0.1"
    await api.patch(
        f"{DEPLOYMENTS}/podinfo", {"spec": {"template": {"spec": {"containers": containers}}}}
    )
    second = await next_event()
    assert second.revision != first.revision

    # a ConfigMap used through envFrom is tracked; changing its data is a new revision
    await api.create(
        CONFIGMAPS,
        {"metadata": {"name": "podinfo-config"}, "data": {"PODINFO_UI_MESSAGE": "hello"}},
    )
    containers[0]["envFrom"] = [{"configMapRef": {"name": "podinfo-config"}}]
    await api.patch(
        f"{DEPLOYMENTS}/podinfo", {"spec": {"template": {"spec": {"containers": containers}}}}
    )
    third = await next_event()
    assert third.revision not in (first.revision, second.revision)
    assert set(third.tracked_configs) == {"configmap/podinfo-config"}
    await api.patch(f"{CONFIGMAPS}/podinfo-config", {"data": {"PODINFO_UI_MESSAGE": "hello again"}})
    fourth = await next_event()
    assert fourth.revision == third.revision
    assert (
        fourth.tracked_configs["configmap/podinfo-config"]
        != (third.tracked_configs["configmap/podinfo-config"])
    )

    # an invalid canary (the CRD accepts it, Flagger's rules do not) is logged and counted
    bad = manifest("podinfo-canary.yaml")
    bad["metadata"]["name"] = "broken"
    analysis = bad["spec"]["analysis"]
    del analysis["stepWeight"]
    analysis["stepWeights"] = [30, 10]
    await api.create(CANARIES, bad)
    await proc.wait_log(r"invalid canary broken\.test .*\n.*spec\.analysis\.stepWeights\[1\]")
    await proc.wait_metric("sluice_watcher_invalid_canaries_total", lambda v: v == 1)
    assert (await proc.get("/readyz"))[0] == 200

    # nothing else was published: four revisions, in order
    with pytest.raises(nats.errors.TimeoutError):
        await events.next_msg(timeout=0.5)
    await events.unsubscribe()
    assert proc.terminate() == 0


async def _matching(
    kv: KeyValue, check: Callable[[messages.WorkloadObservation], bool]
) -> messages.WorkloadObservation | None:
    current = await observation(kv)
    return current if current is not None and check(current) else None


async def test_readyz_follows_the_kubernetes_api(
    nats_server: NatsServer,
    cluster: Cluster,
    service: ServiceFactory,
    tmp_path: pathlib.Path,
) -> None:
    proc = start_watcher(service, nats_server, cluster, tmp_path)
    await proc.ready()
    port = cluster.port
    await cluster.stop()
    body = await proc.wait_status("/readyz", 503)
    assert "Kubernetes" in body
    assert (await proc.get("/healthz"))[0] == 200
    # a cluster back on the same address: the informers list again and the watcher is ready
    revived = Cluster(cluster_settings(), port=port)
    await revived.start()
    try:
        await proc.wait_status("/readyz", 200)
    finally:
        await revived.stop()
    assert proc.terminate() == 0
