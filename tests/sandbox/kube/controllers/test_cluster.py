"""The controllers together over an in-process Store, with real pod apps on loopback IPs."""

from __future__ import annotations

import asyncio
import copy
import ipaddress
import re

import aiohttp
import pytest

from sandbox.kube import registry as kregistry
from sandbox.kube import store as kstore
from tests.sandbox.kube.controllers.conftest import (
    NAMESPACE,
    PODINFO_HPA,
    Cluster,
    listening,
    podinfo,
)

pytestmark = pytest.mark.integration

TIMEOUT = aiohttp.ClientTimeout(total=5)


def condition(obj: dict, ctype: str) -> dict:
    for cond in (obj.get("status") or {}).get("conditions") or ():
        if cond["type"] == ctype:
            return cond
    return {}


async def get_json(url: str) -> dict:
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session, session.get(url) as response:
        assert response.status == 200, url
        return await response.json()


def set_image(cluster: Cluster, image: str) -> None:
    deploy = cluster.deployment()
    deploy["spec"]["template"]["spec"]["containers"][0]["image"] = image
    cluster.store.update(kregistry.DEPLOYMENTS, deploy)


def scale(cluster: Cluster, replicas: int) -> None:
    deploy = cluster.deployment()
    deploy["spec"]["replicas"] = replicas
    cluster.store.update(kregistry.DEPLOYMENTS, deploy)


async def test_podinfo_deployment_becomes_ready_and_serves(cluster: Cluster) -> None:
    cluster.store.create(kregistry.DEPLOYMENTS, podinfo())
    await cluster.wait_for(cluster.rolled_out, what="podinfo rolled out")

    deploy = cluster.deployment()
    status = deploy["status"]
    assert status["observedGeneration"] == deploy["metadata"]["generation"]
    assert status["replicas"] == status["readyReplicas"] == status["availableReplicas"] == 2
    assert "unavailableReplicas" not in status  # omitempty, as a real API server
    assert condition(deploy, "Available")["status"] == "True"
    assert condition(deploy, "Available")["reason"] == "MinimumReplicasAvailable"
    assert condition(deploy, "Progressing")["reason"] == "NewReplicaSetAvailable"

    [rs] = cluster.replicasets()
    pod_hash = rs["metadata"]["labels"]["pod-template-hash"]
    assert rs["metadata"]["name"] == f"podinfo-{pod_hash}"
    assert rs["metadata"]["ownerReferences"][0]["uid"] == deploy["metadata"]["uid"]
    assert rs["metadata"]["ownerReferences"][0]["controller"] is True
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    assert rs["status"]["readyReplicas"] == rs["status"]["availableReplicas"] == 2

    pods = cluster.pods(app="podinfo")
    assert len(pods) == 2
    ips = {p["status"]["podIP"] for p in pods}
    assert len(ips) == 2
    for pod in pods:
        assert pod["metadata"]["name"].startswith(rs["metadata"]["name"] + "-")
        assert len(pod["metadata"]["name"]) == len(rs["metadata"]["name"]) + 6
        assert pod["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"]
        assert pod["spec"]["nodeName"] == "sandbox-node"
        st = pod["status"]
        assert st["phase"] == "Running"
        assert st["podIPs"] == [{"ip": st["podIP"]}]
        assert ipaddress.IPv4Address(st["podIP"]) in cluster.settings.pod_network
        assert {c["type"]: c["status"] for c in st["conditions"]} == {
            "PodScheduled": "True",
            "Initialized": "True",
            "ContainersReady": "True",
            "Ready": "True",
        }
        [cs] = st["containerStatuses"]
        assert cs["name"] == "podinfod"
        assert cs["ready"]
        assert cs["started"]
        assert cs["restartCount"] == 0
        assert "startedAt" in cs["state"]["running"]
        info = await get_json(f"http://{st['podIP']}:9898/api/info")
        assert info["version"] == "6.0.1"
        assert info["hostname"] == pod["metadata"]["name"]
        assert info["color"] == "#34577c"

    messages = [e["message"] for e in cluster.store.list(kregistry.EVENTS, NAMESPACE)[0]]
    assert f"Scaled up replica set {rs['metadata']['name']} from 0 to 2" in messages


async def test_image_change_rolls_out_a_new_replicaset(cluster: Cluster) -> None:
    cluster.store.create(kregistry.DEPLOYMENTS, podinfo())
    await cluster.wait_for(cluster.rolled_out, what="first rollout")
    [old_rs] = cluster.replicasets()
    old_ips = {p["status"]["podIP"] for p in cluster.pods()}

    set_image(cluster, "ghcr.io/stefanprodan/podinfo:6.0.2")
    await cluster.wait_for(cluster.rolled_out, what="second rollout")

    deploy = cluster.deployment()
    assert deploy["status"]["observedGeneration"] == deploy["metadata"]["generation"] == 2
    rss = {rs["metadata"]["name"]: rs for rs in cluster.replicasets()}
    assert len(rss) == 2
    assert rss[old_rs["metadata"]["name"]]["spec"]["replicas"] == 0
    [new_name] = set(rss) - {old_rs["metadata"]["name"]}
    assert rss[new_name]["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"

    await cluster.wait_for(lambda: len(cluster.pods()) == 2, what="old pods gone")
    pods = cluster.pods()
    assert all(p["metadata"]["ownerReferences"][0]["name"] == new_name for p in pods)
    for pod in pods:
        info = await get_json(f"http://{pod['status']['podIP']}:9898/api/info")
        assert info["version"] == "6.0.2"
    gone = old_ips - {p["status"]["podIP"] for p in pods}
    await cluster.wait_for(
        lambda: not any(listening(ip, 9898) for ip in gone), what="old apps stop"
    )

    messages = {e["message"] for e in cluster.store.list(kregistry.EVENTS, NAMESPACE)[0]}
    old_name = old_rs["metadata"]["name"]
    assert any(
        re.fullmatch(rf"Scaled down replica set {old_name} from [12] to 0", m) for m in messages
    ), messages
    # never below replicas - maxUnavailable available, never above replicas + maxSurge pods:
    # checked by the controller arithmetic tests (test_rollout)


async def test_deployment_carries_the_revision_annotation(cluster: Cluster) -> None:
    cluster.store.create(kregistry.DEPLOYMENTS, podinfo(replicas=1))
    await cluster.wait_for(cluster.rolled_out, what="rollout")
    annotations = cluster.deployment()["metadata"].get("annotations") or {}
    assert annotations.get("deployment.kubernetes.io/revision") == "1"
    set_image(cluster, "ghcr.io/stefanprodan/podinfo:6.0.2")
    await cluster.wait_for(cluster.rolled_out, what="second rollout")
    annotations = cluster.deployment()["metadata"].get("annotations") or {}
    assert annotations.get("deployment.kubernetes.io/revision") == "2"


async def test_scale_to_zero_removes_pods_and_apps(cluster: Cluster) -> None:
    cluster.store.create(kregistry.DEPLOYMENTS, podinfo())
    await cluster.wait_for(cluster.rolled_out, what="rollout")
    ips = [p["status"]["podIP"] for p in cluster.pods()]
    assert all(listening(ip, 9898) for ip in ips)

    scale(cluster, 0)
    await cluster.wait_for(lambda: not cluster.pods(), what="pods deleted")
    await cluster.wait_for(lambda: not any(listening(ip, 9898) for ip in ips), what="apps stopped")
    await cluster.wait_for(cluster.rolled_out, what="status at 0")
    status = cluster.deployment()["status"]
    assert "replicas" not in status
    assert "availableReplicas" not in status
    assert condition(cluster.deployment(), "Available")["status"] == "True"

    scale(cluster, 3)
    await cluster.wait_for(cluster.rolled_out, what="scaled back up")
    assert len(cluster.pods()) == 3
    assert len(cluster.replicasets()) == 1


async def test_never_ready_pods_exceed_the_progress_deadline(cluster: Cluster) -> None:
    deploy = podinfo(progressDeadlineSeconds=2, env=[{"name": "SANDBOX_NEVER_READY", "value": "1"}])
    cluster.store.create(kregistry.DEPLOYMENTS, deploy)

    def timed_out() -> bool:
        return (
            condition(cluster.deployment(), "Progressing").get("reason")
            == "ProgressDeadlineExceeded"
        )

    await cluster.wait_for(timed_out, timeout=10, what="ProgressDeadlineExceeded")
    deploy = cluster.deployment()
    progressing = condition(deploy, "Progressing")
    assert progressing["status"] == "False"
    assert "has timed out progressing" in progressing["message"]
    assert condition(deploy, "Available")["status"] == "False"
    assert condition(deploy, "Available")["reason"] == "MinimumReplicasUnavailable"
    assert deploy["status"].get("readyReplicas", 0) == 0
    assert deploy["status"]["unavailableReplicas"] == 2
    for pod in cluster.pods():
        assert pod["status"]["phase"] == "Running"
        assert condition(pod, "Ready")["status"] == "False"
        assert condition(pod, "Ready")["reason"] == "ContainersNotReady"
    reasons = {e["reason"] for e in cluster.store.list(kregistry.EVENTS, NAMESPACE)[0]}
    assert "Unhealthy" in reasons

    # a fixed template rolls out again and clears the deadline condition
    fixed = cluster.deployment()
    fixed["spec"]["template"]["spec"]["containers"][0]["env"] = []
    cluster.store.update(kregistry.DEPLOYMENTS, fixed)
    await cluster.wait_for(cluster.rolled_out, what="fixed rollout")
    assert condition(cluster.deployment(), "Progressing")["reason"] == "NewReplicaSetAvailable"


async def test_error_rate_makes_about_half_the_requests_fail(cluster: Cluster) -> None:
    deploy = podinfo(replicas=1, env=[{"name": "SANDBOX_ERROR_RATE", "value": "0.5"}])
    cluster.store.create(kregistry.DEPLOYMENTS, deploy)
    await cluster.wait_for(cluster.rolled_out, what="rollout")
    [pod] = cluster.pods()
    base = f"http://{pod['status']['podIP']}:9898"
    codes: list[int] = []
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:

        async def hit(path: str) -> int:
            async with session.get(base + path) as response:
                await response.read()
                return response.status

        for _ in range(8):
            codes += await asyncio.gather(*(hit("/api/info") for _ in range(50)))
        probes = await asyncio.gather(*(hit("/readyz") for _ in range(50)))
    failures = codes.count(500)
    assert len(codes) == 400
    assert set(codes) <= {200, 500}
    assert 150 <= failures <= 250  # binomial(400, 0.5): mean 200, sd 10
    assert set(probes) == {200}  # probes are never faulted


async def test_service_gets_endpoints_and_cluster_ip(cluster: Cluster) -> None:
    service = {
        "metadata": {"name": "podinfo", "namespace": NAMESPACE, "labels": {"app": "podinfo"}},
        "spec": {
            "type": "ClusterIP",
            "selector": {"app": "podinfo"},
            "ports": [{"name": "http", "port": 9898, "protocol": "TCP", "targetPort": "http"}],
        },
    }
    manual = {
        "metadata": {"name": "external", "namespace": NAMESPACE},
        "spec": {"ports": [{"port": 80}]},
    }
    manual_ep = {
        "metadata": {"name": "external", "namespace": NAMESPACE},
        "subsets": [{"addresses": [{"ip": "10.1.2.3"}], "ports": [{"port": 80}]}],
    }
    cluster.store.create(kregistry.SERVICES, service)
    cluster.store.create(kregistry.SERVICES, manual)
    cluster.store.create(kregistry.ENDPOINTS, manual_ep)
    cluster.store.create(kregistry.DEPLOYMENTS, podinfo())
    await cluster.wait_for(cluster.rolled_out, what="rollout")

    def endpoints() -> dict:
        return cluster.store.get(kregistry.ENDPOINTS, NAMESPACE, "podinfo")

    def two_ready() -> bool:
        subsets = endpoints().get("subsets") or []
        return len(subsets) == 1 and len(subsets[0].get("addresses", [])) == 2

    await cluster.wait_for(two_ready, what="two ready endpoints")
    [subset] = endpoints()["subsets"]
    pods = {p["status"]["podIP"]: p for p in cluster.pods()}
    assert {a["ip"] for a in subset["addresses"]} == set(pods)
    for address in subset["addresses"]:
        assert address["targetRef"]["kind"] == "Pod"
        assert address["targetRef"]["name"] == pods[address["ip"]]["metadata"]["name"]
    assert subset["ports"] == [{"port": 9898, "protocol": "TCP", "name": "http"}]
    assert "notReadyAddresses" not in subset

    svc = cluster.store.get(kregistry.SERVICES, NAMESPACE, "podinfo")
    assert ipaddress.IPv4Address(svc["spec"]["clusterIP"]) in cluster.settings.service_network
    assert svc["spec"]["clusterIPs"] == [svc["spec"]["clusterIP"]]
    assert (
        cluster.store.get(kregistry.ENDPOINTS, NAMESPACE, "external")["subsets"]
        == manual_ep["subsets"]
    )

    # a never-ready rollout's pods show up as notReadyAddresses
    deploy = cluster.deployment()
    deploy["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "SANDBOX_NEVER_READY", "value": "true"}
    ]
    cluster.store.update(kregistry.DEPLOYMENTS, deploy)
    await cluster.wait_for(
        lambda: (endpoints().get("subsets") or [{}])[0].get("notReadyAddresses"),
        what="not-ready addresses",
    )

    cluster.store.delete(kregistry.SERVICES, NAMESPACE, "podinfo")
    await cluster.wait_for(
        lambda: (
            not cluster.store.list(
                kregistry.ENDPOINTS,
                NAMESPACE,
                field_selector=lambda o: o["metadata"]["name"] == "podinfo",
            )[0]
        ),
        what="endpoints deleted with the service",
    )


async def test_deleting_a_deployment_removes_replicasets_pods_and_apps(cluster: Cluster) -> None:
    cluster.store.create(kregistry.DEPLOYMENTS, podinfo())
    await cluster.wait_for(cluster.rolled_out, what="rollout")
    ips = [p["status"]["podIP"] for p in cluster.pods()]

    cluster.store.delete(kregistry.DEPLOYMENTS, NAMESPACE, "podinfo")
    assert not cluster.replicasets()
    assert not cluster.pods()
    await cluster.wait_for(lambda: not any(listening(ip, 9898) for ip in ips), what="apps stopped")


async def test_hpa_keeps_the_target_within_bounds(cluster: Cluster) -> None:
    cluster.store.create(kregistry.DEPLOYMENTS, podinfo(replicas=1))
    cluster.store.create(kregistry.HPAS, copy.deepcopy(PODINFO_HPA))

    def hpa() -> dict:
        return cluster.store.get(kregistry.HPAS, NAMESPACE, "podinfo")

    await cluster.wait_for(
        lambda: cluster.deployment()["spec"]["replicas"] == 2, what="scaled to min"
    )
    await cluster.wait_for(cluster.rolled_out, what="rollout at 2")
    await cluster.wait_for(
        lambda: hpa().get("status", {}).get("currentReplicas") == 2, what="hpa status"
    )
    status = hpa()["status"]
    assert status["desiredReplicas"] == 2
    assert "lastScaleTime" in status
    assert condition(hpa(), "AbleToScale")["status"] == "True"

    scale(cluster, 9)
    await cluster.wait_for(
        lambda: cluster.deployment()["spec"]["replicas"] == 4, what="scaled to max"
    )

    scale(cluster, 0)  # Flagger scales a canary to zero: the HPA must leave it there
    await cluster.wait_for(
        lambda: condition(hpa(), "ScalingActive").get("reason") == "ScalingDisabled",
        what="disabled",
    )
    assert cluster.deployment()["spec"]["replicas"] == 0
    assert hpa()["status"]["desiredReplicas"] == 0


async def test_min_ready_seconds_delays_availability(cluster: Cluster) -> None:
    cluster.store.create(kregistry.DEPLOYMENTS, podinfo(replicas=1, minReadySeconds=2))
    await cluster.wait_for(
        lambda: cluster.deployment().get("status", {}).get("readyReplicas") == 1, what="ready"
    )
    status = cluster.deployment()["status"]
    assert "availableReplicas" not in status  # ready, not yet available for 2 s
    assert status["unavailableReplicas"] == 1
    await cluster.wait_for(cluster.rolled_out, timeout=5, what="available after minReadySeconds")


async def test_paused_deployment_does_not_roll_out(cluster: Cluster) -> None:
    cluster.store.create(kregistry.DEPLOYMENTS, podinfo(replicas=1))
    await cluster.wait_for(cluster.rolled_out, what="rollout")
    deploy = cluster.deployment()
    deploy["spec"]["paused"] = True
    cluster.store.update(kregistry.DEPLOYMENTS, deploy)
    await cluster.wait_for(
        lambda: condition(cluster.deployment(), "Progressing").get("reason") == "DeploymentPaused",
        what="paused",
    )
    set_image(cluster, "ghcr.io/stefanprodan/podinfo:6.0.3")
    await cluster.wait_for(
        lambda: (
            cluster.deployment()["status"].get("observedGeneration")
            == cluster.deployment()["metadata"]["generation"]
        ),
        what="observed",
    )
    assert len(cluster.replicasets()) == 1

    deploy = cluster.deployment()
    deploy["spec"]["paused"] = False
    cluster.store.update(kregistry.DEPLOYMENTS, deploy)
    await cluster.wait_for(lambda: len(cluster.replicasets()) == 2, what="rollout after resume")
    await cluster.wait_for(cluster.rolled_out, what="resumed rollout done")


async def test_pod_created_without_node_is_bound_and_run(cluster: Cluster) -> None:
    pod = {
        "metadata": {"name": "solo", "namespace": NAMESPACE, "labels": {"run": "solo"}},
        "spec": {"containers": [{"name": "app", "image": "ghcr.io/stefanprodan/podinfo:6.1.0"}]},
    }
    cluster.store.create(kregistry.PODS, pod)

    def ready() -> dict | None:
        current = cluster.store.get(kregistry.PODS, NAMESPACE, "solo")
        return current if condition(current, "Ready").get("status") == "True" else None

    current = await cluster.wait_for(ready, what="solo pod ready")
    assert current["spec"]["nodeName"] == "sandbox-node"
    info = await get_json(f"http://{current['status']['podIP']}:9898/version")
    assert info["version"] == "6.1.0"
    cluster.store.delete(kregistry.PODS, NAMESPACE, "solo")
    with pytest.raises(kstore.NotFound):
        cluster.store.get(kregistry.PODS, NAMESPACE, "solo")
    await cluster.wait_for(
        lambda: not listening(current["status"]["podIP"], 9898), what="solo app stops"
    )


async def test_cancelling_run_all_leaves_nothing_listening(cluster: Cluster) -> None:
    cluster.store.create(kregistry.DEPLOYMENTS, podinfo(replicas=3))
    await cluster.wait_for(cluster.rolled_out, what="rollout")
    ports = [(p["status"]["podIP"], port) for p in cluster.pods() for port in (9898, 9797, 9999)]
    assert all(listening(*address) for address in ports)

    await cluster.stop()

    assert not [address for address in ports if listening(*address)]
    leaked = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
    assert not leaked


async def test_recreate_strategy_replaces_all_pods(cluster: Cluster) -> None:
    cluster.store.create(kregistry.DEPLOYMENTS, podinfo(strategy={"type": "Recreate"}))
    await cluster.wait_for(cluster.rolled_out, what="rollout")
    old = {p["metadata"]["name"] for p in cluster.pods()}
    set_image(cluster, "ghcr.io/stefanprodan/podinfo:6.0.2")
    await cluster.wait_for(cluster.rolled_out, what="recreated")
    pods = cluster.pods()
    assert len(pods) == 2
    assert not old & {p["metadata"]["name"] for p in pods}
    for pod in pods:
        info = await get_json(f"http://{pod['status']['podIP']}:9898/api/info")
        assert info["version"] == "6.0.2"
