"""The API server over HTTP: discovery, OpenAPI, watches, CRD versions, views (no kubectl)."""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

import aiohttp
import pytest

from sandbox.kube import discovery, registry
from sandbox.kube.cluster import Cluster

from .conftest import SMALL_CRD

pytestmark = pytest.mark.integration


async def _get(http: aiohttp.ClientSession, path: str, **kwargs: Any) -> tuple[int, Any, str]:
    async with http.get(path, **kwargs) as response:
        return (
            response.status,
            await response.json(content_type=None),
            response.headers.get("Content-Type", ""),
        )


async def test_plain_and_aggregated_discovery(bare: Cluster, http: aiohttp.ClientSession) -> None:
    code, version, _ = await _get(http, "/version")
    assert (code, version["major"], version["minor"]) == (200, "1", "32")

    _, groups, _ = await _get(http, "/apis")
    assert groups["kind"] == "APIGroupList"
    assert {
        "name": "apps",
        "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
        "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"},
    } in groups["groups"]

    _, resources, _ = await _get(http, "/apis/apps/v1")
    by_name = {r["name"]: r for r in resources["resources"]}
    assert by_name["deployments"]["shortNames"] == ["deploy"]
    assert by_name["deployments"]["categories"] == ["all"]
    assert by_name["deployments/scale"]["group"] == "autoscaling"
    assert by_name["deployments/scale"]["kind"] == "Scale"
    assert by_name["deployments/status"]["kind"] == "Deployment"

    _, core, _ = await _get(http, "/api/v1")
    assert {r["name"] for r in core["resources"]} >= {"pods", "services", "namespaces", "events"}

    code, aggregated, content_type = await _get(
        http, "/apis", headers={"Accept": discovery.AGGREGATED_V2 + ",application/json"}
    )
    assert content_type == discovery.AGGREGATED_V2
    assert aggregated["kind"] == "APIGroupDiscoveryList"
    apps = next(g for g in aggregated["items"] if g["metadata"]["name"] == "apps")
    deployments = next(
        r for r in apps["versions"][0]["resources"] if r["resource"] == "deployments"
    )
    assert deployments["scope"] == "Namespaced"
    assert [s["subresource"] for s in deployments["subresources"]] == ["scale", "status"]

    _, legacy, content_type = await _get(
        http, "/api", headers={"Accept": discovery.AGGREGATED_V2BETA1}
    )
    assert content_type == discovery.AGGREGATED_V2BETA1
    assert [g["metadata"]["name"] for g in legacy["items"]] == [""]


async def test_crds_change_discovery_and_openapi(
    bare: Cluster, http: aiohttp.ClientSession
) -> None:
    code, _, _ = await _get(http, "/apis/test.sluice.dev/v1")
    assert code == 404
    async with http.post(
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=SMALL_CRD
    ) as r:
        assert r.status == 201
    code, resources, _ = await _get(http, "/apis/test.sluice.dev/v1")
    assert code == 200
    widgets = next(r for r in resources["resources"] if r["name"] == "widgets")
    assert (widgets["kind"], widgets["shortNames"], widgets["namespaced"]) == (
        "Widget",
        ["wg"],
        True,
    )
    assert "widgets/status" in {r["name"] for r in resources["resources"]}

    _, index, _ = await _get(http, "/openapi/v3")
    url = index["paths"]["apis/test.sluice.dev/v1"]["serverRelativeURL"]
    _, doc, _ = await _get(http, url)
    patch = doc["paths"]["/apis/test.sluice.dev/v1/namespaces/{namespace}/widgets/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {
        "group": "test.sluice.dev",
        "version": "v1",
        "kind": "Widget",
    }
    assert "fieldValidation" in [p["name"] for p in patch["parameters"]]
    assert "application/strategic-merge-patch+json" not in patch["requestBody"]["content"]

    _, core_doc, _ = await _get(http, index["paths"]["api/v1"]["serverRelativeURL"])
    cm_patch = core_doc["paths"]["/api/v1/namespaces/{namespace}/configmaps/{name}"]["patch"]
    assert cm_patch["x-kubernetes-group-version-kind"]["kind"] == "ConfigMap"

    async with http.delete(
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.test.sluice.dev"
    ) as r:
        assert r.status == 200
    code, _, _ = await _get(http, "/apis/test.sluice.dev/v1")
    assert code == 404
    _, index, _ = await _get(http, "/openapi/v3")
    assert "apis/test.sluice.dev/v1" not in index["paths"]


async def test_multi_version_crd_serves_one_storage(
    bare: Cluster, http: aiohttp.ClientSession
) -> None:
    crd = copy.deepcopy(SMALL_CRD)
    v2 = copy.deepcopy(crd["spec"]["versions"][0])
    v2["name"], v2["storage"] = "v2", False
    crd["spec"]["versions"].append(v2)
    async with http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd) as r:
        assert r.status == 201
    widget = {
        "apiVersion": "test.sluice.dev/v2",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": {"size": 1},
    }
    async with http.post("/apis/test.sluice.dev/v2/namespaces/default/widgets", json=widget) as r:
        assert r.status == 201
    code, got, _ = await _get(http, "/apis/test.sluice.dev/v1/namespaces/default/widgets/w")
    assert (code, got["apiVersion"]) == (200, "test.sluice.dev/v1")
    _, groups, _ = await _get(http, "/apis/test.sluice.dev")
    assert groups["preferredVersion"]["version"] == "v1"
    assert [v["version"] for v in groups["versions"]] == ["v1", "v2"]


async def test_watch_bookmarks_timeout_and_selectors(
    bare: Cluster, http: aiohttp.ClientSession
) -> None:
    bare.store.create(
        registry.CONFIGMAPS,
        {"metadata": {"name": "a", "namespace": "default", "labels": {"x": "1"}}},
    )
    bare.store.create(registry.CONFIGMAPS, {"metadata": {"name": "b", "namespace": "default"}})
    params = {
        "watch": "true",
        "allowWatchBookmarks": "true",
        "timeoutSeconds": "1",
        "labelSelector": "x=1",
    }
    lines = []
    async with http.get("/api/v1/namespaces/default/configmaps", params=params) as response:
        assert response.headers["Content-Type"].startswith("application/json")
        async for raw in response.content:
            lines.append(json.loads(raw))
    assert lines[0]["type"] == "ADDED"
    assert lines[0]["object"]["metadata"]["name"] == "a"
    bookmarks = [line for line in lines if line["type"] == "BOOKMARK"]
    assert bookmarks, lines
    assert bookmarks[0]["object"] == {
        "kind": "ConfigMap",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": str(bare.store.resource_version)},
    }
    assert all(line["object"]["metadata"].get("name") != "b" for line in lines)


async def test_table_watch_and_field_selector(bare: Cluster, http: aiohttp.ClientSession) -> None:
    headers = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"}
    params = {
        "watch": "1",
        "fieldSelector": "metadata.name=wanted",
        "resourceVersion": str(bare.store.resource_version),
    }
    async with http.get(
        "/api/v1/namespaces/default/configmaps", params=params, headers=headers
    ) as response:
        for name in ("other", "wanted"):
            bare.store.create(
                registry.CONFIGMAPS,
                {"metadata": {"name": name, "namespace": "default"}, "data": {"k": "v"}},
            )
        line = json.loads(await asyncio.wait_for(response.content.readline(), 5))
    assert line["type"] == "ADDED"
    assert line["object"]["kind"] == "Table"
    assert line["object"]["rows"][0]["cells"][:2] == ["wanted", 1]


async def test_events_k8s_io_view_over_http(bare: Cluster, http: aiohttp.ClientSession) -> None:
    event = {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": "e", "namespace": "default"},
        "regarding": {"kind": "Canary", "name": "podinfo", "namespace": "default"},
        "note": "hello",
        "reason": "Synced",
        "type": "Normal",
        "reportingController": "sluice",
        "reportingInstance": "sluice-0",
        "action": "Sync",
        "eventTime": "2026-01-01T00:00:00.000000Z",
    }
    async with http.post("/apis/events.k8s.io/v1/namespaces/default/events", json=event) as r:
        assert r.status == 201
        assert (await r.json())["note"] == "hello"
    code, core, _ = await _get(
        http,
        "/api/v1/namespaces/default/events",
        params={"fieldSelector": "involvedObject.kind=Canary,involvedObject.name=podinfo"},
    )
    assert code == 200
    assert [(e["message"], e["reason"]) for e in core["items"]] == [("hello", "Synced")]


async def test_dry_run_delete_collection_and_precondition(
    bare: Cluster, http: aiohttp.ClientSession
) -> None:
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "dry", "labels": {"g": "1"}},
    }
    async with http.post(
        "/api/v1/namespaces/default/configmaps", json=cm, params={"dryRun": "All"}
    ) as r:
        assert r.status == 201
    assert bare.store.list(registry.CONFIGMAPS, "default")[0] == []
    for name in ("a", "b", "c"):
        labels = {"g": "1"} if name != "c" else {}
        bare.store.create(
            registry.CONFIGMAPS,
            {"metadata": {"name": name, "namespace": "default", "labels": labels}},
        )
    async with http.delete(
        "/api/v1/namespaces/default/configmaps", params={"labelSelector": "g=1"}
    ) as r:
        body = await r.json()
        assert [i["metadata"]["name"] for i in body["items"]] == ["a", "b"]
    async with http.delete(
        "/api/v1/namespaces/default/configmaps/c", json={"preconditions": {"uid": "wrong"}}
    ) as r:
        assert r.status == 409
    async with http.delete(
        "/api/v1/namespaces/default/configmaps/c",
        json={"kind": "DeleteOptions", "propagationPolicy": "Foreground"},
    ) as r:
        body = await r.json()
        assert (r.status, body["status"], body["details"]["name"]) == (200, "Success", "c")


async def test_namespaced_paths_and_errors(bare: Cluster, http: aiohttp.ClientSession) -> None:
    code, body, _ = await _get(http, "/api/v1/namespaces/default/namespaces")
    assert code == 404
    assert body["kind"] == "Status"
    code, body, _ = await _get(http, "/api/v1/namespaces/default")
    assert (code, body["status"]["phase"]) == (200, "Active")
    code, body, _ = await _get(http, "/api/v1/namespaces/default/status")
    assert (code, body["kind"]) == (200, "Namespace")
    code, body, _ = await _get(http, "/apis/nope/v1/things")
    assert (code, body["reason"]) == (404, "NotFound")
    async with http.put(
        "/api/v1/namespaces/default/configmaps/x", json={"metadata": {"name": "y"}}
    ) as r:
        assert r.status == 400
    async with http.patch(
        "/api/v1/namespaces/default/configmaps/x",
        data=b"{}",
        headers={"Content-Type": "text/plain"},
    ) as r:
        assert r.status == 415
    async with http.post(
        "/api/v1/namespaces/default/configmaps",
        data=b"a: [",
        headers={"Content-Type": "application/yaml"},
    ) as r:
        body = await r.json()
        assert r.status == 400
        assert "not valid YAML" in body["message"]
