"""Fidelity of lists, deletion and waiting: chunked lists (``limit`` / ``continue``), foreground
deletion, ``kubectl wait``; against the real kubectl and the official client."""

from __future__ import annotations

import asyncio
import json
import pathlib
import re
from typing import Any

import aiohttp
import pytest
from kubernetes import client

from sandbox import faults
from sandbox.kube import registry
from sandbox.kube.cluster import Cluster

from .conftest import Kubectl, random_settings

pytestmark = pytest.mark.integration

HTTP = aiohttp.ClientTimeout(total=10)


def _config_maps(core: client.CoreV1Api, count: int, namespace: str = "default") -> None:
    for index in range(count):
        body = {"metadata": {"name": f"cm-{index}", "labels": {"set": "chunks"}}, "data": {}}
        core.create_namespaced_config_map(namespace, body, _request_timeout=10)


# ---------------------------------------------------------------------------- chunked lists


async def test_the_official_client_lists_in_chunks(
    cluster: Cluster, core: client.CoreV1Api
) -> None:
    def pages() -> list[Any]:
        _config_maps(core, 5)
        seen = []
        token = None
        while True:
            page = core.list_namespaced_config_map(
                "default", limit=2, _continue=token, _request_timeout=10
            )
            seen.append(page)
            token = page.metadata._continue
            if not token:
                return seen

    seen = await asyncio.to_thread(pages)
    names = [item.metadata.name for page in seen for item in page.items]
    assert names == sorted(names)
    assert [n for n in names if n.startswith("cm-")] == [f"cm-{i}" for i in range(5)]
    assert all(len(page.items) <= 2 for page in seen)
    first = seen[0].metadata
    assert first.remaining_item_count == len(names) - 2
    # every page is the list at the first page's resourceVersion
    assert {page.metadata.resource_version for page in seen} == {first.resource_version}


async def test_a_limit_with_a_selector_pages_the_matching_items(
    cluster: Cluster, core: client.CoreV1Api
) -> None:
    def pages() -> tuple[Any, Any]:
        _config_maps(core, 3)
        first = core.list_config_map_for_all_namespaces(
            label_selector="set=chunks", limit=2, _request_timeout=10
        )
        rest = core.list_config_map_for_all_namespaces(
            label_selector="set=chunks",
            limit=2,
            _continue=first.metadata._continue,
            _request_timeout=10,
        )
        return first, rest

    first, rest = await asyncio.to_thread(pages)
    assert [i.metadata.name for i in first.items] == ["cm-0", "cm-1"]
    assert first.metadata.remaining_item_count is None  # not known with a selector
    assert [i.metadata.name for i in rest.items] == ["cm-2"]
    assert rest.metadata._continue is None


async def test_kubectl_get_follows_continue_tokens(cluster: Cluster, kubectl: Kubectl) -> None:
    for index in range(5):
        await kubectl("create", "configmap", f"cm-{index}", "--from-literal=a=b")
    got = await kubectl("get", "configmaps", "--chunk-size=2", "-o", "name", "-v=6")
    names = [line for line in got.stdout.splitlines() if line.startswith("configmap/cm-")]
    assert names == [f"configmap/cm-{i}" for i in range(5)]
    requests = re.findall(r"GET \S+/configmaps\?\S+", got.stderr)
    assert len([r for r in requests if "continue=" in r]) >= 2
    assert all("limit=2" in r for r in requests)
    table = await kubectl("get", "configmaps", "--chunk-size=2")
    assert [line.split()[0] for line in table.stdout.splitlines()[1:] if "cm-" in line] == [
        f"cm-{i}" for i in range(5)
    ]


async def test_garbage_and_expired_continue_tokens_get_the_apiservers_status() -> None:
    settings = random_settings(watch_history=3, crd_dir=pathlib.Path("/nonexistent"))
    async with (
        Cluster(settings, controllers=False) as bare,
        aiohttp.ClientSession(base_url=bare.url, timeout=HTTP) as http,
    ):
        path = "/api/v1/namespaces/default/configmaps"
        for index in range(3):
            body = {"metadata": {"name": f"cm-{index}"}}
            async with http.post(path, json=body) as resp:
                assert resp.status == 201
        async with http.get(path, params={"limit": "1"}) as resp:
            token = (await resp.json())["metadata"]["continue"]
        async with http.get(path, params={"limit": "1", "continue": token}) as resp:
            assert resp.status == 200
            assert [i["metadata"]["name"] for i in (await resp.json())["items"]] == ["cm-1"]

        async with http.get(path, params={"limit": "1", "continue": "garbage"}) as resp:
            garbage = await resp.json()
        assert resp.status == 400
        assert garbage["reason"] == "BadRequest"
        assert garbage["message"].startswith("invalid continue token")

        for index in range(3, 8):  # push the token's resourceVersion out of the history
            async with http.post(path, json={"metadata": {"name": f"cm-{index}"}}) as resp:
                assert resp.status == 201
        async with http.get(path, params={"limit": "1", "continue": token}) as resp:
            expired = await resp.json()
        assert resp.status == 410
        assert expired["kind"] == "Status"
        assert expired["reason"] == "Expired"
        assert "too old to display a consistent list" in expired["message"]

        params = {"limit": "1", "continue": token, "resourceVersion": "5"}
        async with http.get(path, params=params) as resp:
            assert resp.status == 400
        async with http.get(path, params={"limit": "many"}) as resp:
            bad = await resp.json()
        assert resp.status == 400
        assert "limit" in bad["message"]


# ---------------------------------------------------------------------------- foreground deletion


def _dependent(name: str, owner: dict[str, Any], *, block: bool) -> str:
    meta = owner["metadata"]
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": name,
                "finalizers": ["test.sluice.dev/hold"],
                "ownerReferences": [
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "blockOwnerDeletion": block,
                    }
                ],
            },
        }
    )


async def _get(kubectl: Kubectl, *what: str) -> dict[str, Any]:
    got = await kubectl("get", *what, "-o", "json")
    return json.loads(got.stdout)  # type: ignore[no-any-return]


async def test_foreground_deletion_waits_for_blocking_dependents(
    cluster: Cluster, kubectl: Kubectl
) -> None:
    await kubectl("create", "configmap", "owner")
    owner = await _get(kubectl, "configmap", "owner")
    await kubectl("apply", "-f", "-", stdin=_dependent("blocking", owner, block=True))
    await kubectl("apply", "-f", "-", stdin=_dependent("loose", owner, block=False))

    await kubectl("delete", "configmap", "owner", "--cascade=foreground", "--wait=false")
    marked = (await _get(kubectl, "configmap", "owner"))["metadata"]
    assert marked["deletionTimestamp"]
    assert marked["finalizers"] == ["foregroundDeletion"]
    for name in ("blocking", "loose"):
        assert (await _get(kubectl, "configmap", name))["metadata"]["deletionTimestamp"]

    # the dependent without blockOwnerDeletion does not hold the owner
    unhold = '{"metadata":{"finalizers":null}}'
    await kubectl("patch", "configmap", "loose", "--type=merge", "-p", unhold)
    assert (await _get(kubectl, "configmap", "owner"))["metadata"]["finalizers"] == [
        "foregroundDeletion"
    ]
    await kubectl("patch", "configmap", "blocking", "--type=merge", "-p", unhold)
    await kubectl("wait", "--for=delete", "configmap/owner", "--timeout=10s")
    left = await kubectl("get", "configmaps", "-o", "name")
    assert "owner" not in left.stdout
    assert "blocking" not in left.stdout


async def test_foreground_deletion_with_other_finalizers_keeps_them(
    cluster: Cluster, kubectl: Kubectl
) -> None:
    await kubectl("create", "configmap", "owner")
    held = '{"metadata":{"finalizers":["test.sluice.dev/keep"]}}'
    await kubectl("patch", "configmap", "owner", "--type=merge", "-p", held)
    await kubectl("delete", "configmap", "owner", "--cascade=foreground", "--wait=false")
    # no dependents: the foregroundDeletion finalizer goes at once, the owner's own stays
    meta = (await _get(kubectl, "configmap", "owner"))["metadata"]
    assert meta["deletionTimestamp"]
    assert meta["finalizers"] == ["test.sluice.dev/keep"]
    await kubectl(
        "patch", "configmap", "owner", "--type=merge", "-p", '{"metadata":{"finalizers":null}}'
    )
    await kubectl("wait", "--for=delete", "configmap/owner", "--timeout=10s")


async def test_kubectl_delete_cascade_foreground_removes_a_deployment_last(
    cluster: Cluster, kubectl: Kubectl
) -> None:
    await kubectl("create", "deployment", "web", "--image=example/web:1.0", "--replicas=2")
    await kubectl("rollout", "status", "deployment/web", "--timeout=30s")
    deleted: list[str] = []
    for rtype in (registry.DEPLOYMENTS, registry.REPLICASETS, registry.PODS):
        cluster.store.add_hook(
            rtype,
            lambda event: deleted.append(event.object["kind"]) if event.type == "DELETED" else None,
        )
    await kubectl("delete", "deployment", "web", "--cascade=foreground", "--timeout=30s")
    for kind in ("deployments", "replicasets", "pods"):
        left = await kubectl("get", kind, "-o", "name")
        assert left.stdout.strip() == "", f"{kind} left: {left.stdout}"
    # dependents first: the pods, their ReplicaSet, then the Deployment
    assert deleted == ["Pod", "Pod", "ReplicaSet", "Deployment"]


# ---------------------------------------------------------------------------- kubectl wait

WAIT_DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: podinfo, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: podinfo}}
  template:
    metadata: {labels: {app: podinfo}}
    spec:
      containers: [{name: app, image: example/podinfo:1.0, ports: [{containerPort: 9898}]}]
"""

WAIT_CANARY = """
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: podinfo, namespace: default}
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  service: {port: 9898}
  analysis: {interval: 1m, threshold: 5, maxWeight: 50, stepWeight: 10}
"""


async def test_kubectl_wait_for_conditions_and_delete(cluster: Cluster, kubectl: Kubectl) -> None:
    await kubectl("apply", "-f", "-", stdin=WAIT_DEPLOYMENT + "---\n" + WAIT_CANARY)
    available = await kubectl(
        "wait", "--for=condition=Available", "deployment/podinfo", "--timeout=30s"
    )
    assert "deployment.apps/podinfo condition met" in available.stdout
    ready = await kubectl(
        "wait", "--for=condition=Ready", "pod", "-l", "app=podinfo", "--timeout=30s"
    )
    assert "condition met" in ready.stdout

    promoted = asyncio.create_task(
        kubectl("wait", "--for=condition=Promoted", "canary/podinfo", "--timeout=30s")
    )
    condition = {
        "type": "Promoted",
        "status": "True",
        "reason": "Succeeded",
        "message": "Canary analysis completed successfully, promotion finished.",
    }
    status = json.dumps({"status": {"phase": "Succeeded", "conditions": [condition]}})
    await kubectl(
        "patch", "canary", "podinfo", "--subresource=status", "--type=merge", "-p", status
    )
    assert "canary.flagger.app/podinfo condition met" in (await promoted).stdout

    timed_out = await kubectl(
        "wait", "--for=condition=Missing", "canary/podinfo", "--timeout=1s", check=False
    )
    assert timed_out.code != 0
    assert "timed out" in timed_out.stderr

    gone = asyncio.create_task(kubectl("wait", "--for=delete", "canary/podinfo", "--timeout=30s"))
    await kubectl("delete", "canary", "podinfo", "--wait=false")
    assert (await gone).code == 0


# ---------------------------------------------------------------------------- pod-unready fault


async def test_the_pod_unready_fault_pauses_one_pods_readiness(
    cluster: Cluster, kubectl: Kubectl
) -> None:
    await kubectl("apply", "-f", "-", stdin=WAIT_DEPLOYMENT)
    await kubectl("wait", "--for=condition=Available", "deployment/podinfo", "--timeout=30s")
    pod = (await kubectl("get", "pods", "-l", "app=podinfo", "-o", "name")).stdout.strip()
    name = pod.removeprefix("pod/")

    body = {"fault": "pod-unready", "seconds": 3, "pods": [f"default/{name}"]}
    answer = await asyncio.to_thread(faults.send, cluster.url, body)
    assert answer["active"][0]["pods"] == [f"default/{name}"]
    await kubectl("wait", "--for=condition=Ready=false", pod, "--timeout=10s")
    events = await kubectl("get", "events", "--field-selector", f"involvedObject.name={name}")
    assert "readiness paused by the sandbox fault pod-unready" in events.stdout
    # the window ends: the next probe passes again
    await kubectl("wait", "--for=condition=Ready", pod, "--timeout=30s")


def test_a_pod_unready_request_names_its_pods() -> None:
    with pytest.raises(faults.FaultError, match=r"^pods: expected at least one"):
        faults.parse({"fault": "pod-unready", "seconds": 1}, faults.KUBE_FAULTS)
    with pytest.raises(faults.FaultError, match=r"^pods: expected a list of namespace/name"):
        faults.parse({"fault": "pod-unready", "seconds": 1, "pods": ["web"]}, faults.KUBE_FAULTS)
    with pytest.raises(faults.FaultError, match=r"^pods: only pod-unready"):
        faults.parse({"fault": "kube-503", "seconds": 1, "pods": ["a/b"]}, faults.KUBE_FAULTS)
    with pytest.raises(faults.FaultError, match=r"^seconds"):
        faults.parse({"fault": "pod-unready", "pods": ["a/b"]}, faults.KUBE_FAULTS)
