"""The official kubernetes python client (sync, in a thread) against the simulated server."""

from __future__ import annotations

import asyncio
import json
import pathlib
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from sandbox.kube import registry
from sandbox.kube.cluster import Cluster
from sandbox.kube.config import ClusterSettings

from .conftest import SMALL_CRD, random_settings

pytestmark = pytest.mark.integration

DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web"},
    "spec": {
        "replicas": 1,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "containers": [
                    {
                        "name": "app",
                        "image": "example/web:1.0",
                        "env": [{"name": "A", "value": "1"}],
                    },
                    {"name": "sidecar", "image": "example/sidecar:1.0"},
                ]
            },
        },
    },
}


@pytest.fixture
def api_client(kubeconfig: pathlib.Path) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        yield api
    finally:
        api.close()


def _cm(name: str, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, **meta},
        "data": {"k": name},
    }


def _collect(stream: Iterator[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    events = []
    for event in stream:
        events.append(event)
        if len(events) == count:
            break
    return events


async def test_list_then_watch_and_resume_from_the_last_resource_version(
    cluster: Cluster, api_client: client.ApiClient
) -> None:
    core = client.CoreV1Api(api_client)
    for name in ("a", "b"):
        await asyncio.to_thread(core.create_namespaced_config_map, "default", _cm(name))
    listed = await asyncio.to_thread(core.list_namespaced_config_map, "default")
    assert [i.metadata.name for i in listed.items] == ["a", "b"]
    since = listed.metadata.resource_version

    first = watch.Watch()
    stream = first.stream(
        core.list_namespaced_config_map, "default", resource_version=since, timeout_seconds=10
    )
    watcher = asyncio.create_task(asyncio.to_thread(_collect, stream, 2))
    await asyncio.to_thread(core.create_namespaced_config_map, "default", _cm("c"))
    await asyncio.to_thread(core.delete_namespaced_config_map, "b", "default")
    events = await asyncio.wait_for(watcher, 10)
    first.stop()
    assert [(e["type"], e["object"].metadata.name) for e in events] == [
        ("ADDED", "c"),
        ("DELETED", "b"),
    ]
    last = events[-1]["object"].metadata.resource_version

    # changes made while nobody watches are replayed to a watch resumed from `last`
    await asyncio.to_thread(core.create_namespaced_config_map, "default", _cm("d"))
    await asyncio.to_thread(
        core.patch_namespaced_config_map, "a", "default", {"data": {"k": "changed"}}
    )
    resumed = watch.Watch()
    stream = resumed.stream(
        core.list_namespaced_config_map, "default", resource_version=last, timeout_seconds=10
    )
    events = await asyncio.wait_for(asyncio.to_thread(_collect, stream, 2), 10)
    resumed.stop()
    assert [(e["type"], e["object"].metadata.name) for e in events] == [
        ("ADDED", "d"),
        ("MODIFIED", "a"),
    ]
    assert events[1]["object"].data == {"k": "changed"}

    # without a resourceVersion a watch starts with the current objects
    fresh = watch.Watch()
    stream = fresh.stream(core.list_namespaced_config_map, "default", timeout_seconds=10)
    events = await asyncio.wait_for(asyncio.to_thread(_collect, stream, 3), 10)
    fresh.stop()
    assert sorted(e["object"].metadata.name for e in events) == ["a", "c", "d"]
    assert {e["type"] for e in events} == {"ADDED"}


@pytest.mark.parametrize("cluster_settings", [random_settings(watch_history=10)])
async def test_too_old_resource_version_is_410_gone(
    cluster: Cluster, api_client: client.ApiClient, cluster_settings: ClusterSettings
) -> None:
    core = client.CoreV1Api(api_client)
    for n in range(15):
        await asyncio.to_thread(core.create_namespaced_config_map, "default", _cm(f"cm{n}"))

    # on the wire: HTTP 200, then one ERROR event holding a 410 Expired Status
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{cluster.url}/api/v1/namespaces/default/configmaps",
            params={"watch": "1", "resourceVersion": "2"},
            timeout=aiohttp.ClientTimeout(total=10),
        ) as response,
    ):
        assert response.status == 200
        lines = [json.loads(line) async for line in response.content if line.strip()]
    assert len(lines) == 1
    assert lines[0]["type"] == "ERROR"
    assert lines[0]["object"]["code"] == 410
    assert lines[0]["object"]["reason"] == "Expired"
    assert lines[0]["object"]["message"].startswith("too old resource version: 2 (")

    # the python client retries once, then raises ApiException(410)
    stream = watch.Watch().stream(core.list_namespaced_config_map, "default", resource_version="2")
    with pytest.raises(ApiException) as raised:
        await asyncio.wait_for(asyncio.to_thread(_collect, stream, 1), 10)
    assert raised.value.status == 410


async def test_stale_update_is_409_conflict(cluster: Cluster, api_client: client.ApiClient) -> None:
    core = client.CoreV1Api(api_client)
    created = await asyncio.to_thread(core.create_namespaced_config_map, "default", _cm("x"))
    created.data = {"k": "first"}
    await asyncio.to_thread(core.replace_namespaced_config_map, "x", "default", created)
    created.data = {"k": "stale"}
    with pytest.raises(ApiException) as raised:
        await asyncio.to_thread(core.replace_namespaced_config_map, "x", "default", created)
    assert raised.value.status == 409
    body = json.loads(raised.value.body)
    assert body["reason"] == "Conflict"
    assert body["details"] == {"name": "x", "kind": "configmaps"}
    assert "the object has been modified" in body["message"]


async def test_strategic_and_merge_patch_of_containers(
    cluster: Cluster, api_client: client.ApiClient
) -> None:
    apps = client.AppsV1Api(api_client)
    await asyncio.to_thread(apps.create_namespaced_deployment, "default", DEPLOYMENT)

    strategic = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "example/web:2.0",
                            "env": [{"name": "B", "value": "2"}],
                        }
                    ]
                }
            }
        }
    }
    patched = await asyncio.to_thread(apps.patch_namespaced_deployment, "web", "default", strategic)
    containers = patched.spec.template.spec.containers
    assert [(c.name, c.image) for c in containers] == [
        ("app", "example/web:2.0"),
        ("sidecar", "example/sidecar:1.0"),
    ]
    assert [(e.name, e.value) for e in containers[0].env] == [("A", "1"), ("B", "2")]
    assert patched.metadata.generation == 2

    merge = {
        "spec": {
            "template": {"spec": {"containers": [{"name": "only", "image": "example/only:1.0"}]}}
        }
    }
    patched = await asyncio.to_thread(
        apps.patch_namespaced_deployment,
        "web",
        "default",
        merge,
        _content_type="application/merge-patch+json",
    )
    assert [c.name for c in patched.spec.template.spec.containers] == ["only"]

    json_patch = [{"op": "replace", "path": "/spec/replicas", "value": 3}]
    patched = await asyncio.to_thread(
        apps.patch_namespaced_deployment, "web", "default", json_patch
    )
    assert patched.spec.replicas == 3

    scale = await asyncio.to_thread(apps.read_namespaced_deployment_scale, "web", "default")
    assert scale.spec.replicas == 3
    await asyncio.to_thread(
        apps.patch_namespaced_deployment_scale, "web", "default", {"spec": {"replicas": 4}}
    )
    stored = cluster.store.get(registry.DEPLOYMENTS, "default", "web")
    assert stored["spec"]["replicas"] == 4


async def test_status_subresource_and_generation(
    cluster: Cluster, api_client: client.ApiClient
) -> None:
    ext = client.ApiextensionsV1Api(api_client)
    await asyncio.to_thread(ext.create_custom_resource_definition, SMALL_CRD)
    crd = await asyncio.to_thread(ext.read_custom_resource_definition, "widgets.test.sluice.dev")
    conditions = {c.type: c.status for c in crd.status.conditions}
    assert conditions == {"NamesAccepted": "True", "Established": "True"}

    custom = client.CustomObjectsApi(api_client)
    args = ("test.sluice.dev", "v1", "default", "widgets")
    widget = {
        "apiVersion": "test.sluice.dev/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": {"size": 1},
        "status": {"phase": "ignored"},
    }
    created = await asyncio.to_thread(custom.create_namespaced_custom_object, *args, widget)
    assert "status" not in created  # status is written through the subresource only
    assert created["metadata"]["generation"] == 1

    # a status write ignores spec, and does not bump generation
    updated = await asyncio.to_thread(
        custom.patch_namespaced_custom_object_status,
        *args,
        "w",
        {"spec": {"size": 9}, "status": {"phase": "Ready", "observed": 1}},
    )
    assert updated["spec"]["size"] == 1
    assert updated["status"] == {"phase": "Ready", "observed": 1}
    assert updated["metadata"]["generation"] == 1

    # a main-resource write ignores status; a spec change bumps generation
    updated["spec"]["size"] = 2
    updated["status"] = {"phase": "Overwritten"}
    replaced = await asyncio.to_thread(custom.replace_namespaced_custom_object, *args, "w", updated)
    assert replaced["spec"]["size"] == 2
    assert replaced["status"]["phase"] == "Ready"
    assert replaced["metadata"]["generation"] == 2

    # metadata-only changes do not bump generation
    labelled = await asyncio.to_thread(
        custom.patch_namespaced_custom_object, *args, "w", {"metadata": {"labels": {"a": "b"}}}
    )
    assert labelled["metadata"]["generation"] == 2
    assert labelled["metadata"]["resourceVersion"] != replaced["metadata"]["resourceVersion"]

    replaced["status"] = {"phase": "Done"}
    replaced["metadata"]["resourceVersion"] = labelled["metadata"]["resourceVersion"]
    by_put = await asyncio.to_thread(
        custom.replace_namespaced_custom_object_status, *args, "w", replaced
    )
    assert by_put["status"] == {"phase": "Done"}
    assert by_put["metadata"]["generation"] == 2

    with pytest.raises(ApiException) as raised:
        await asyncio.to_thread(
            custom.patch_namespaced_custom_object, *args, "w", {"spec": {"size": 99}}
        )
    assert raised.value.status == 422
    body = json.loads(raised.value.body)
    assert body["message"] == (
        'Widget.test.sluice.dev "w" is invalid: spec.size: Invalid value: 99: '
        "spec.size in body should be less than or equal to 10"
    )
    assert body["details"]["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "field": "spec.size",
            "message": "Invalid value: 99: spec.size in body should be less than or equal to 10",
        }
    ]


async def test_owner_references_are_garbage_collected(
    cluster: Cluster, api_client: client.ApiClient
) -> None:
    core = client.CoreV1Api(api_client)
    owner = await asyncio.to_thread(core.create_namespaced_config_map, "default", _cm("owner"))
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
    await asyncio.to_thread(
        core.create_namespaced_config_map, "default", _cm("dependent", ownerReferences=[ref])
    )
    await asyncio.to_thread(
        core.create_namespaced_config_map, "default", _cm("orphan", ownerReferences=[ref])
    )
    await asyncio.to_thread(core.delete_namespaced_config_map, "owner", "default")
    names = [
        i.metadata.name
        for i in (await asyncio.to_thread(core.list_namespaced_config_map, "default")).items
    ]
    assert names == []

    owner = await asyncio.to_thread(core.create_namespaced_config_map, "default", _cm("owner2"))
    ref["uid"], ref["name"] = owner.metadata.uid, "owner2"
    await asyncio.to_thread(
        core.create_namespaced_config_map, "default", _cm("kept", ownerReferences=[ref])
    )
    await asyncio.to_thread(
        core.delete_namespaced_config_map, "owner2", "default", propagation_policy="Orphan"
    )
    kept = await asyncio.to_thread(core.read_namespaced_config_map, "kept", "default")
    assert kept.metadata.owner_references is None


async def test_finalizers_delay_deletion(cluster: Cluster, api_client: client.ApiClient) -> None:
    core = client.CoreV1Api(api_client)
    await asyncio.to_thread(
        core.create_namespaced_config_map, "default", _cm("held", finalizers=["test/hold"])
    )
    answer = await asyncio.to_thread(
        core.delete_namespaced_config_map_with_http_info, "held", "default"
    )
    assert answer[1] == 200  # the object stays, with its deletionTimestamp: 200, as the apiserver
    held = await asyncio.to_thread(core.read_namespaced_config_map, "held", "default")
    assert held.metadata.deletion_timestamp is not None
    assert held.metadata.finalizers == ["test/hold"]

    await asyncio.to_thread(
        core.patch_namespaced_config_map,
        "held",
        "default",
        {"metadata": {"finalizers": None}},
        _content_type="application/merge-patch+json",
    )
    with pytest.raises(ApiException) as raised:
        await asyncio.to_thread(core.read_namespaced_config_map, "held", "default")
    assert raised.value.status == 404


async def test_errors_are_status_objects(cluster: Cluster) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{cluster.url}/api/v1/namespaces/default/configmaps",
            data=b"{not json",
            headers={"Content-Type": "application/json"},
        ) as response:
            body = await response.json()
        assert response.status == 400
        assert body["kind"] == "Status"
        assert body["reason"] == "BadRequest"
        assert "not valid JSON" in body["message"]

        async with session.post(
            f"{cluster.url}/api/v1/namespaces/nowhere/configmaps",
            json=_cm("x"),
        ) as response:
            body = await response.json()
        assert response.status == 404
        assert body["message"] == 'namespaces "nowhere" not found'
        assert body["details"] == {"name": "nowhere", "kind": "namespaces"}

        async with session.get(
            f"{cluster.url}/apis/apps/v1/namespaces/default/deployments/none"
        ) as response:
            body = await response.json()
        assert response.status == 404
        assert body["message"] == 'deployments.apps "none" not found'
        assert body["details"] == {"name": "none", "group": "apps", "kind": "deployments"}

        async with session.get(
            f"{cluster.url}/api/v1/configmaps", params={"labelSelector": "a in (b"}
        ) as response:
            assert response.status == 400

        async with session.patch(
            f"{cluster.url}/apis/apps/v1/namespaces/default/deployments/x",
            data=b"{}",
            headers={"Content-Type": "application/apply-patch+yaml"},
        ) as response:
            body = await response.json()
        assert response.status == 400  # server-side apply needs a fieldManager
        assert "fieldManager: Required value" in body["message"]
