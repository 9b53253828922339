"""Fixtures: an in-process simulated cluster (Store + Registry + controllers) per test."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import ipaddress
import random
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from sandbox.kube import config as kconfig
from sandbox.kube import registry as kregistry
from sandbox.kube import store as kstore
from sandbox.kube.controllers import ControllerSettings, run_all

NAMESPACE = "test"

# Flagger's kustomize/podinfo deployment (fluxcd/flagger), image 6.0.1, replicas from its HPA's
# minReplicas (2). minReadySeconds is 0 instead of 5 so the suites stay fast; one test checks
# that minReadySeconds is honoured.
PODINFO: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "podinfo", "namespace": NAMESPACE, "labels": {"app": "podinfo"}},
    "spec": {
        "replicas": 2,
        "minReadySeconds": 0,
        "revisionHistoryLimit": 5,
        "progressDeadlineSeconds": 60,
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
        "selector": {"matchLabels": {"app": "podinfo"}},
        "template": {
            "metadata": {
                "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9797"},
                "labels": {"app": "podinfo"},
            },
            "spec": {
                "containers": [
                    {
                        "name": "podinfod",
                        "image": "ghcr.io/stefanprodan/podinfo:6.0.1",
                        "imagePullPolicy": "IfNotPresent",
                        "ports": [
                            {"name": "http", "containerPort": 9898, "protocol": "TCP"},
                            {"name": "http-metrics", "containerPort": 9797, "protocol": "TCP"},
                            {"name": "grpc", "containerPort": 9999, "protocol": "TCP"},
                        ],
                        "command": [
                            "./podinfo",
                            "--port=9898",
                            "--port-metrics=9797",
                            "--grpc-port=9999",
                            "--grpc-service-name=podinfo",
                            "--level=info",
                            "--random-delay=false",
                            "--random-error=false",
                        ],
                        "env": [{"name": "PODINFO_UI_COLOR", "value": "#34577c"}],
                        "livenessProbe": {
                            "exec": {
                                "command": ["podcli", "check", "http", "localhost:9898/healthz"]
                            },
                            "initialDelaySeconds": 5,
                            "timeoutSeconds": 5,
                        },
                        "readinessProbe": {
                            "exec": {
                                "command": ["podcli", "check", "http", "localhost:9898/readyz"]
                            },
                            "initialDelaySeconds": 5,
                            "timeoutSeconds": 5,
                        },
                        "resources": {
                            "limits": {"cpu": "2000m", "memory": "512Mi"},
                            "requests": {"cpu": "100m", "memory": "64Mi"},
                        },
                    }
                ]
            },
        },
    },
}

PODINFO_HPA: dict[str, Any] = {
    "apiVersion": "autoscaling/v2",
    "kind": "HorizontalPodAutoscaler",
    "metadata": {"name": "podinfo", "namespace": NAMESPACE},
    "spec": {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
        "minReplicas": 2,
        "maxReplicas": 4,
        "metrics": [
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 99},
                },
            }
        ],
    },
}


def podinfo(**changes: Any) -> dict[str, Any]:
    """A copy of the podinfo Deployment; ``env=[...]``, ``image=...``, spec fields by name."""
    obj = copy.deepcopy(PODINFO)
    container = obj["spec"]["template"]["spec"]["containers"][0]
    for key, value in changes.items():
        if key in ("env", "image", "args"):
            container[key] = value
        else:
            obj["spec"][key] = value
    return obj


@dataclasses.dataclass
class Cluster:
    store: kstore.Store
    registry: kregistry.Registry
    settings: kconfig.ClusterSettings
    task: asyncio.Task[None]

    async def stop(self) -> None:
        """Cancel run_all and wait for it to finish."""
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

    async def wait_for(
        self, predicate: Callable[[], Any], *, timeout: float = 15.0, what: str = "condition"
    ) -> Any:
        """Await until ``predicate()`` is truthy (returns it); fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = predicate()
            except kstore.NotFound:
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout}s waiting for {what}")
            await asyncio.sleep(0.05)

    def deployment(self, name: str = "podinfo") -> dict[str, Any]:
        return self.store.get(kregistry.DEPLOYMENTS, NAMESPACE, name)

    def pods(self, **labels: str) -> list[dict[str, Any]]:
        items = self.store.list(kregistry.PODS, NAMESPACE)[0]
        return [
            p
            for p in items
            if all(p["metadata"].get("labels", {}).get(k) == v for k, v in labels.items())
        ]

    def replicasets(self) -> list[dict[str, Any]]:
        return self.store.list(kregistry.REPLICASETS, NAMESPACE)[0]

    def rolled_out(self, name: str = "podinfo") -> bool:
        """``kubectl rollout status`` would say "successfully rolled out"."""
        d = self.deployment(name)
        st = d.get("status") or {}
        if d["metadata"]["generation"] > st.get("observedGeneration", 0):
            return False
        want = d["spec"].get("replicas", 1)
        return (
            st.get("updatedReplicas", 0) >= want
            and st.get("replicas", 0) <= st.get("updatedReplicas", 0)
            and st.get("availableReplicas", 0) >= st.get("updatedReplicas", 0)
        )


def listening(ip: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((ip, port)) == 0


@pytest.fixture
def pod_network() -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(f"127.{random.randint(100, 250)}.0.0/16")


@pytest.fixture
async def cluster(pod_network: ipaddress.IPv4Network) -> AsyncIterator[Cluster]:
    store = kstore.Store()
    registry = kregistry.Registry()
    for rtype in kregistry.BUILTIN:
        store.register(rtype)
    x = pod_network.network_address.packed[1]
    service_net = ipaddress.IPv4Network(f"127.{x - 1 if x > 100 else x + 1}.0.0/16")
    settings = kconfig.ClusterSettings(
        pod_network=pod_network, service_network=service_net, pod_ready_delay=0.2
    )
    task = asyncio.create_task(
        run_all(
            store, registry, settings, controller_settings=ControllerSettings(probe_period_s=0.2)
        ),
        name="run_all",
    )
    cluster = Cluster(store, registry, settings, task)
    try:
        yield cluster
    finally:
        ips = [
            p["status"]["podIP"]
            for p in store.list(kregistry.PODS)[0]
            if (p.get("status") or {}).get("podIP")
        ]
        await cluster.stop()
        assert not [ip for ip in ips if listening(ip, 9898)], (
            "pod apps still listening after run_all"
        )
        leaked = [
            t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()
        ]
        assert not leaked, f"tasks left behind: {leaked}"
