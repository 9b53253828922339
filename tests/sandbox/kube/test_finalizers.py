"""Deleting an object that carries finalizers, as a controller and kubectl see it: the object
stays, marked with ``deletionTimestamp``, while its status can still be written; removing the
last finalizer deletes it, lets a waiting ``kubectl delete`` return, and only then are its
dependents garbage-collected — except those another live owner still holds."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from sandbox.kube import registry
from sandbox.kube.cluster import Cluster
from sandbox.kube.store import Store

from .conftest import Kubectl

pytestmark = pytest.mark.integration

FINALIZER = "finalizer.flagger.app"
CANARY = {
    "apiVersion": "flagger.app/v1beta1",
    "kind": "Canary",
    "metadata": {"name": "podinfo", "namespace": "default", "finalizers": [FINALIZER]},
    "spec": {
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
        "service": {"port": 9898},
        "analysis": {"interval": "10s", "threshold": 5, "maxWeight": 50, "stepWeight": 10},
    },
}


def _cm(name: str, *owners: dict[str, Any], finalizers: list[str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "default"}
    if owners:
        meta["ownerReferences"] = list(owners)
    if finalizers:
        meta["finalizers"] = finalizers
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {}}


def _ref(owner: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _names(store: Store) -> list[str]:
    return sorted(o["metadata"]["name"] for o in store.list(registry.CONFIGMAPS, "default")[0])


async def _get(kubectl: Kubectl, *args: str) -> dict[str, Any] | None:
    result = await kubectl("get", *args, "-o", "json", check=False)
    if result.code != 0:
        assert "NotFound" in result.stderr, result.stderr
        return None
    found: dict[str, Any] = json.loads(result.stdout)
    return found


async def test_kubectl_delete_waits_for_the_finalizer_and_dependents_go_after_it(
    cluster: Cluster, kubectl: Kubectl
) -> None:
    canaries = cluster.registry.get("flagger.app", "canaries")
    await kubectl("apply", "-f", "-", stdin=json.dumps(CANARY))
    canary = cluster.store.get(canaries, "default", "podinfo")
    cluster.store.create(registry.CONFIGMAPS, _cm("owned", _ref(canary)))

    deleting = asyncio.create_task(kubectl("delete", "canary", "podinfo"))
    marked: dict[str, Any] | None = None
    while marked is None or "deletionTimestamp" not in marked["metadata"]:
        assert not deleting.done(), "kubectl delete returned while the finalizer is on"
        marked = await _get(kubectl, "canary", "podinfo")
        assert marked is not None
    assert marked["metadata"]["finalizers"] == [FINALIZER]
    assert _names(cluster.store) == ["owned"]  # not collected while the owner is deleting

    # a controller finishing its work: the status subresource can still be written ...
    await kubectl(
        "patch",
        "canary",
        "podinfo",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"phase": "Terminated"}}),
    )
    still = await _get(kubectl, "canary", "podinfo")
    assert still is not None
    assert still["status"]["phase"] == "Terminated"
    assert still["metadata"]["deletionTimestamp"] == marked["metadata"]["deletionTimestamp"]
    assert not deleting.done()

    # ... and removing the last finalizer deletes it; the waiting kubectl returns
    await kubectl(
        "patch",
        "canary",
        "podinfo",
        "--type=json",
        "-p",
        json.dumps([{"op": "remove", "path": "/metadata/finalizers/0"}]),
    )
    result = await asyncio.wait_for(deleting, 30)
    assert 'canary.flagger.app "podinfo" deleted' in result.stdout
    assert await _get(kubectl, "canary", "podinfo") is None
    assert _names(cluster.store) == []


async def test_a_second_delete_keeps_the_first_deletion_timestamp(cluster: Cluster) -> None:
    store = cluster.store
    store.create(registry.CONFIGMAPS, _cm("held", finalizers=["a/one", "b/two"]))
    first = store.delete(registry.CONFIGMAPS, "default", "held")
    again = store.delete(registry.CONFIGMAPS, "default", "held")
    assert again["metadata"]["deletionTimestamp"] == first["metadata"]["deletionTimestamp"]
    assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]

    # one finalizer removed: still there; the last one removed: gone
    one = store.get(registry.CONFIGMAPS, "default", "held")
    one["metadata"]["finalizers"] = ["b/two"]
    store.update(registry.CONFIGMAPS, one)
    assert _names(store) == ["held"]
    last = store.get(registry.CONFIGMAPS, "default", "held")
    last["metadata"]["finalizers"] = []
    store.update(registry.CONFIGMAPS, last)
    assert _names(store) == []


async def test_a_dependent_with_another_live_owner_is_kept_and_loses_the_dead_one(
    cluster: Cluster,
) -> None:
    store = cluster.store
    first = store.create(registry.CONFIGMAPS, _cm("first"))
    second = store.create(registry.CONFIGMAPS, _cm("second"))
    shared = _cm("shared", _ref(first), {**_ref(second), "controller": False})
    store.create(registry.CONFIGMAPS, shared)
    store.create(registry.CONFIGMAPS, _cm("only-first", _ref(first)))

    store.delete(registry.CONFIGMAPS, "default", "first")
    assert _names(store) == ["second", "shared"]
    kept = store.get(registry.CONFIGMAPS, "default", "shared")
    assert kept["metadata"]["ownerReferences"] == [{**_ref(second), "controller": False}]

    store.delete(registry.CONFIGMAPS, "default", "second")
    assert _names(store) == []
