"""A simulated cluster (in this test's event loop, over HTTP) with Flagger's podinfo seed, the
traffic-shifter's Kubernetes platform talking to it, and the official client to check what it did."""

from __future__ import annotations

import asyncio
import copy
import ipaddress
import pathlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
import yaml
from kubernetes import client, config

from libs import errors, messages
from libs.adapters import kubernetes
from sandbox.kube import registry
from sandbox.kube.cluster import Cluster
from sandbox.kube.config import ClusterSettings
from services.traffic_shifter import capabilities, kube
from services.traffic_shifter.kube import objects

MANIFESTS = pathlib.Path(__file__).resolve().parents[2] / "data" / "manifests"
NS = "test"
CANARY = messages.CanaryRef(namespace=NS, name="podinfo")
DEADLINE_S = 20.0
T = TypeVar("T")


def manifest(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((MANIFESTS / name).read_text())
    return data


def deployment(**spec: Any) -> dict[str, Any]:
    """Flagger's podinfo Deployment; ``minReadySeconds`` 1 instead of 5 keeps tests quick."""
    body = manifest("podinfo-deployment.yaml")
    body["spec"]["minReadySeconds"] = 1
    body["spec"].update(spec)
    return body


def initialize(**changes: Any) -> messages.InitializeWorkload:
    fields: dict[str, Any] = {
        "canary": CANARY,
        "target": "podinfo",
        "service": "podinfo",
        "port": 80,
        "target_port": 9898,
        **changes,
    }
    return messages.InitializeWorkload(**fields)


def set_weights(primary: int, canary: int, **changes: Any) -> messages.SetWeights:
    fields: dict[str, Any] = {
        "canary": CANARY,
        "route": "podinfo",
        "service": "podinfo",
        "primary_weight": primary,
        "canary_weight": canary,
        **changes,
    }
    return messages.SetWeights(**fields)


class Official:
    """The official kubernetes client (blocking, so in a thread: the cluster runs in this
    loop); every object comes back as the API's JSON dict."""

    CUSTOM = {
        "Canary": ("flagger.app", "v1beta1", "canaries"),
        "ApisixRoute": ("apisix.apache.org", "v2", "apisixroutes"),
        "ApisixUpstream": ("apisix.apache.org", "v2", "apisixupstreams"),
    }

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.autoscaling = client.AutoscalingV2Api(api)
        self.custom = client.CustomObjectsApi(api)

    def _builtin(self, kind: str) -> tuple[Any, str]:
        return {
            "Deployment": (self.apps, "deployment"),
            "Service": (self.core, "service"),
            "ConfigMap": (self.core, "config_map"),
            "Secret": (self.core, "secret"),
            "HorizontalPodAutoscaler": (self.autoscaling, "horizontal_pod_autoscaler"),
        }[kind]

    def _get(self, kind: str, name: str) -> dict[str, Any]:
        if kind in self.CUSTOM:
            group, version, plural = self.CUSTOM[kind]
            found: dict[str, Any] = self.custom.get_namespaced_custom_object(  # type: ignore[assignment]
                group, version, NS, plural, name
            )
            return found
        api, singular = self._builtin(kind)
        obj = getattr(api, f"read_namespaced_{singular}")(name, NS)
        data: dict[str, Any] = self.api.sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]
        return data

    def _create(self, body: dict[str, Any]) -> dict[str, Any]:
        kind = body["kind"]
        if kind in self.CUSTOM:
            group, version, plural = self.CUSTOM[kind]
            created: dict[str, Any] = self.custom.create_namespaced_custom_object(  # type: ignore[assignment]
                group, version, NS, plural, body
            )
            return created
        api, singular = self._builtin(kind)
        obj = getattr(api, f"create_namespaced_{singular}")(NS, body)
        data: dict[str, Any] = self.api.sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]
        return data

    def _patch(self, kind: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        if kind in self.CUSTOM:
            group, version, plural = self.CUSTOM[kind]
            patched: dict[str, Any] = self.custom.patch_namespaced_custom_object(  # type: ignore[assignment]
                group, version, NS, plural, name, body
            )
            return patched
        api, singular = self._builtin(kind)
        obj = getattr(api, f"patch_namespaced_{singular}")(name, NS, body)
        data: dict[str, Any] = self.api.sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]
        return data

    async def get(self, kind: str, name: str) -> dict[str, Any]:
        return await asyncio.to_thread(self._get, kind, name)

    async def exists(self, kind: str, name: str) -> bool:
        try:
            await self.get(kind, name)
        except client.ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def delete_custom(self, kind: str, name: str) -> None:
        group, version, plural = self.CUSTOM[kind]
        await asyncio.to_thread(
            self.custom.delete_namespaced_custom_object, group, version, NS, plural, name
        )

    async def create(self, *bodies: dict[str, Any]) -> list[dict[str, Any]]:
        return [await asyncio.to_thread(self._create, copy.deepcopy(b)) for b in bodies]

    async def patch(self, kind: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """A strategic merge patch for built-in kinds (the client's default), merge for CRs."""
        return await asyncio.to_thread(self._patch, kind, name, body)

    async def apps_replace(self, body: dict[str, Any]) -> dict[str, Any]:
        """PUT a Deployment as read and changed."""

        def call() -> dict[str, Any]:
            obj = self.apps.replace_namespaced_deployment(body["metadata"]["name"], NS, body)  # type: ignore[arg-type]
            data: dict[str, Any] = self.api.sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]
            return data

        return await asyncio.to_thread(call)

    async def versions(self, *names: tuple[str, str]) -> dict[tuple[str, str], Any]:
        """What changes when an object is written: resourceVersion, or for kinds whose status
        the simulated controllers keep writing, the generation and the spec/metadata."""
        found = {}
        for kind, name in names:
            obj = await self.get(kind, name)
            meta = obj["metadata"]
            if kind in ("Deployment", "HorizontalPodAutoscaler"):
                found[(kind, name)] = (
                    meta.get("generation"),
                    meta.get("labels"),
                    meta.get("annotations"),
                    obj["spec"],
                )
            else:
                found[(kind, name)] = meta["resourceVersion"]
        return found


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    second = random.randint(100, 250)
    settings = ClusterSettings(
        pod_network=ipaddress.IPv4Network(f"127.{second}.0.0/17"),
        service_network=ipaddress.IPv4Network(f"127.{second}.128.0/17"),
        namespaces=("default", "kube-system", NS),
        pod_ready_delay=0.1,
        bookmark_interval=1.0,
    )
    async with Cluster(settings) as running:
        yield running
        await settled(running)


async def settled(cluster: Cluster) -> None:
    """Until no simulated pod is starting: the sandbox's kubelet leaks the listeners of a pod
    whose start is cancelled halfway (its worker's cleanup misses them), so the cluster must
    not stop in the middle of a rollout the test started."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        items, _ = cluster.store.list(registry.DEPLOYMENTS, NS)
        if all(_rolled_out(d) for d in items):
            return
        await asyncio.sleep(0.05)


def _rolled_out(deployment: dict[str, Any]) -> bool:
    replicas = (deployment.get("spec") or {}).get("replicas", 1)
    status = deployment.get("status") or {}
    return all(
        status.get(field, 0) == replicas
        for field in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas")
    )


@pytest.fixture
def kubeconfig(cluster: Cluster, tmp_path: pathlib.Path) -> pathlib.Path:
    return cluster.write_kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
def official(kubeconfig: pathlib.Path) -> Iterator[Official]:
    api = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    try:
        yield Official(api)
    finally:
        api.close()


@pytest.fixture
async def kube_client(kubeconfig: pathlib.Path) -> AsyncIterator[kubernetes.Kube]:
    connected = await kubernetes.Kube.connect(
        kubernetes.Config(kubeconfig=str(kubeconfig), request_timeout_s=5)
    )
    try:
        yield connected
    finally:
        await connected.close()


@pytest.fixture
def platform(kube_client: kubernetes.Kube) -> capabilities.Platform:
    return kube.platform(kube_client, objects.Options())


@pytest.fixture
async def seed(official: Official) -> dict[str, Any]:
    """Flagger's tutorial objects: the podinfo Deployment, ApisixRoute and Canary."""
    _, _, canary = await official.create(
        deployment(),
        manifest("podinfo-apisixroute.yaml"),
        manifest("podinfo-canary.yaml"),
    )
    return canary


async def until(what: str, probe: Callable[[], Awaitable[T]], check: Callable[[T], bool]) -> T:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        value = await probe()
        if check(value):
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: still {value!r} after {DEADLINE_S}s")
        await asyncio.sleep(0.05)


async def initialized(
    platform: capabilities.Platform, command: messages.InitializeWorkload | None = None
) -> messages.WorkloadApplied:
    """InitializeWorkload retried the way the analyzer retries it while the primary rolls out."""
    command = command or initialize()
    deadline = time.monotonic() + DEADLINE_S
    while True:
        try:
            return await platform.workloads.initialize(command)
        except errors.TemporaryError as exc:
            if time.monotonic() > deadline:
                pytest.fail(f"InitializeWorkload still failing after {DEADLINE_S}s: {exc}")
            await asyncio.sleep(0.1)
