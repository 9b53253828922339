"""Server-side apply with the real kubectl and the official Python client."""

from __future__ import annotations

import asyncio
import json
import pathlib
from typing import Any

import aiohttp
import pytest
import yaml
from kubernetes import client, config

from sandbox.kube import registry
from sandbox.kube.cluster import Cluster

from .conftest import Kubectl

pytestmark = pytest.mark.integration

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
  labels: {app: web, tier: front}
spec:
  replicas: %(replicas)s
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: app
        image: %(image)s
        env:
        - {name: MODE, value: one}
%(extra_env)s
"""

CANARY = """
apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: podinfo
  namespace: default
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  service: {port: 9898}
  analysis: {interval: 1m, threshold: 5, maxWeight: 50, stepWeight: %s}
"""


def _deployment(
    image: str = "example/web:1.0", replicas: int = 1, extra_env: bool = True, tier: bool = True
) -> str:
    text = DEPLOYMENT % {
        "replicas": replicas,
        "image": image,
        "extra_env": "        - {name: EXTRA, value: two}" if extra_env else "",
    }
    return text if tier else text.replace(", tier: front", "")


def _stored(cluster: Cluster, rtype: Any = registry.DEPLOYMENTS, name: str = "web") -> Any:
    return cluster.store.get(rtype, "default", name)


def _entries(obj: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {
        (e["manager"], e["operation"], e.get("subresource", "")): e
        for e in obj["metadata"].get("managedFields", [])
    }


async def test_apply_creates_updates_and_removes_fields_it_no_longer_applies(
    cluster: Cluster, kubectl: Kubectl
) -> None:
    created = await kubectl("apply", "--server-side", "-f", "-", stdin=_deployment())
    assert "deployment.apps/web serverside-applied" in created.stdout
    first = _stored(cluster)
    entry = _entries(first)[("kubectl", "Apply", "")]
    assert entry["apiVersion"] == "apps/v1"
    assert entry["fieldsType"] == "FieldsV1"
    containers = entry["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]
    assert 'k:{"name":"EXTRA"}' in containers['k:{"name":"app"}']["f:env"]

    await kubectl("apply", "--server-side", "-f", "-", stdin=_deployment(image="example/web:2.0"))
    second = _stored(cluster)
    assert second["spec"]["template"]["spec"]["containers"][0]["image"] == "example/web:2.0"
    assert second["metadata"]["generation"] == 2

    await kubectl(
        "apply", "--server-side", "-f", "-", stdin=_deployment("example/web:2.0", 1, False, False)
    )
    third = _stored(cluster)
    assert third["metadata"]["labels"] == {"app": "web"}
    env = third["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [{"name": "MODE", "value": "one"}]
    # defaults the server set stay: nobody applied them, so nobody let go of them
    assert third["spec"]["strategy"]["type"] == "RollingUpdate"

    again = await kubectl(
        "apply", "--server-side", "-f", "-", stdin=_deployment("example/web:2.0", 1, False, False)
    )
    assert "serverside-applied" in again.stdout
    assert _stored(cluster)["metadata"]["resourceVersion"] == third["metadata"]["resourceVersion"]


async def test_scale_then_apply_conflicts_until_forced(cluster: Cluster, kubectl: Kubectl) -> None:
    await kubectl("apply", "--server-side", "-f", "-", stdin=_deployment())
    await kubectl("scale", "deployment", "web", "--replicas=3")
    refused = await kubectl(
        "apply", "--server-side", "-f", "-", stdin=_deployment(replicas=1), check=False
    )
    assert refused.code != 0
    assert "Apply failed with 1 conflict" in refused.stderr
    assert ".spec.replicas" in refused.stderr
    assert 'conflict with "kubectl' in refused.stderr
    assert "--force-conflicts" in refused.stderr  # kubectl's usual conflict help
    assert _stored(cluster)["spec"]["replicas"] == 3

    # the same value is no conflict: the field is shared
    shared = await kubectl("apply", "--server-side", "-f", "-", stdin=_deployment(replicas=3))
    assert "serverside-applied" in shared.stdout

    forced = await kubectl(
        "apply", "--server-side", "--force-conflicts", "-f", "-", stdin=_deployment(replicas=1)
    )
    assert "serverside-applied" in forced.stdout
    stored = _stored(cluster)
    assert stored["spec"]["replicas"] == 1
    entries = _entries(stored)
    assert "f:replicas" in entries[("kubectl", "Apply", "")]["fieldsV1"]["f:spec"]
    assert all(
        "f:replicas" not in e["fieldsV1"].get("f:spec", {})
        for key, e in entries.items()
        if key != ("kubectl", "Apply", "")
    )


async def test_canary_apply_and_status_writes_are_separate_managers(
    cluster: Cluster, kubectl: Kubectl, kubeconfig: pathlib.Path
) -> None:
    await kubectl("apply", "--server-side", "-f", "-", stdin=CANARY % 10)
    status = {"status": {"phase": "Progressing", "canaryWeight": 10, "failedChecks": 0}}
    await asyncio.to_thread(_patch_status, kubeconfig, status, "sluice-analyzer")

    shown = await kubectl("get", "canary", "podinfo", "-o", "yaml", "--show-managed-fields")
    entries = _entries(yaml.safe_load(shown.stdout))
    assert "f:spec" in entries[("kubectl", "Apply", "")]["fieldsV1"]
    status_entry = entries[("sluice-analyzer", "Update", "status")]
    assert status_entry["subresource"] == "status"
    assert set(status_entry["fieldsV1"]) == {"f:status"}

    hidden = await kubectl("get", "canary", "podinfo", "-o", "yaml")
    assert "managedFields" not in hidden.stdout
    assert "stepWeight: 10" in hidden.stdout

    changed = await kubectl("apply", "--server-side", "-f", "-", stdin=CANARY % 20)
    assert "serverside-applied" in changed.stdout
    canary = _stored(cluster, cluster.registry.get("flagger.app", "canaries"), "podinfo")
    assert canary["spec"]["analysis"]["stepWeight"] == 20
    assert canary["status"]["phase"] == "Progressing"

    # kubectl can apply the status too: its own entry, taking the field with --force-conflicts
    status_doc = CANARY % 20 + "status: {phase: Succeeded}\n"
    args = ("apply", "--server-side", "--subresource=status", "-f", "-")
    refused = await kubectl(*args, stdin=status_doc, check=False)
    assert 'conflict with "sluice-analyzer" with subresource "status"' in refused.stderr
    await kubectl(*args, "--force-conflicts", stdin=status_doc)
    canary = _stored(cluster, cluster.registry.get("flagger.app", "canaries"), "podinfo")
    assert canary["status"]["phase"] == "Succeeded"
    assert ("kubectl", "Apply", "status") in _entries(canary)


def _patch_status(kubeconfig: pathlib.Path, body: Any, manager: str) -> Any:
    api = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        return client.CustomObjectsApi(api).patch_namespaced_custom_object_status(
            "flagger.app",
            "v1beta1",
            "default",
            "canaries",
            "podinfo",
            body,
            field_manager=manager,
            _request_timeout=10,
        )
    finally:
        api.close()


async def test_client_side_apply_then_server_side_apply_migrates(
    cluster: Cluster, kubectl: Kubectl
) -> None:
    await kubectl("apply", "-f", "-", stdin=_deployment())
    csa = _entries(_stored(cluster))
    assert ("kubectl-client-side-apply", "Update", "") in csa
    migrated = await kubectl(
        "apply", "--server-side", "-f", "-", stdin=_deployment(image="example/web:3.0")
    )
    assert "serverside-applied" in migrated.stdout
    stored = _stored(cluster)
    assert stored["spec"]["template"]["spec"]["containers"][0]["image"] == "example/web:3.0"
    # kubectl moved the client-side apply's fields to its Apply entry
    assert ("kubectl", "Apply", "") in _entries(stored)
    assert ("kubectl-client-side-apply", "Update", "") not in _entries(stored)
    # a field left out of the file now goes, as the applier owns it
    await kubectl(
        "apply", "--server-side", "-f", "-", stdin=_deployment("example/web:3.0", extra_env=False)
    )
    env = _stored(cluster)["spec"]["template"]["spec"]["containers"][0]["env"]
    assert [e["name"] for e in env] == ["MODE"]


async def test_server_dry_run_changes_nothing(cluster: Cluster, kubectl: Kubectl) -> None:
    dry = await kubectl(
        "apply", "--server-side", "--dry-run=server", "-f", "-", stdin=_deployment()
    )
    assert "serverside-applied (server dry run)" in dry.stdout
    missing = await kubectl("get", "deployment", "web", check=False)
    assert missing.code != 0
    assert "NotFound" in missing.stderr
    await kubectl("apply", "--server-side", "-f", "-", stdin=_deployment())
    before = _stored(cluster)
    await kubectl(
        "apply",
        "--server-side",
        "--dry-run=server",
        "-f",
        "-",
        stdin=_deployment(image="example/web:9.0", tier=False),
    )
    assert _stored(cluster) == before


async def test_python_client_applies_a_config_map(cluster: Cluster, core: client.CoreV1Api) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": "default"},
        "data": {"color": "blue", "size": "L"},
    }

    def apply(doc: dict[str, Any], manager: str = "x", force: bool | None = None) -> Any:
        extra = {} if force is None else {"force": force}
        return core.patch_namespaced_config_map(
            "settings",
            "default",
            doc,
            field_manager=manager,
            _content_type="application/apply-patch+yaml",
            _request_timeout=10,
            **extra,
        )

    created = await asyncio.to_thread(apply, body)
    assert created.data == {"color": "blue", "size": "L"}
    assert [(m.manager, m.operation) for m in created.metadata.managed_fields] == [("x", "Apply")]

    other = json.loads(json.dumps(body))
    other["data"] = {"color": "red"}
    with pytest.raises(client.ApiException) as refused:
        await asyncio.to_thread(apply, other, "y")
    assert refused.value.status == 409
    cause = json.loads(refused.value.body)["details"]["causes"][0]
    assert cause == {
        "type": "FieldManagerConflict",
        "message": 'conflict with "x"',
        "field": ".data.color",
    }
    taken = await asyncio.to_thread(apply, other, "y", True)
    assert taken.data == {"color": "red", "size": "L"}
    owners = {m.manager: m.fields_v1 for m in taken.metadata.managed_fields}
    assert owners == {"x": {"f:data": {"f:size": {}}}, "y": {"f:data": {"f:color": {}}}}


async def test_apply_requests_are_checked(bare: Cluster, http: aiohttp.ClientSession) -> None:
    path = "/api/v1/namespaces/default/configmaps/settings"
    doc = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}}
    headers = {"Content-Type": "application/apply-patch+yaml"}

    async def send(body: Any, query: str = "?fieldManager=me") -> tuple[int, Any]:
        async with http.patch(path + query, data=json.dumps(body), headers=headers) as response:
            return response.status, await response.json()

    code, answer = await send(doc, "")
    assert code == 400
    assert "fieldManager: Required value" in answer["message"]
    code, answer = await send({**doc, "metadata": {"name": "other"}})
    assert code == 400
    assert "does not match the name on the URL" in answer["message"]
    code, answer = await send({**doc, "kind": "Secret"})
    assert code == 400
    assert "kind" in answer["message"]
    code, answer = await send({"kind": "ConfigMap", "metadata": {"name": "settings"}})
    assert code == 400
    assert "apiVersion" in answer["message"]
    code, answer = await send({**doc, "data": {"a": "1"}}, "?fieldManager=me&dryRun=All")
    assert code == 201
    assert answer["data"] == {"a": "1"}
    code, answer = await send({**doc, "data": {"a": "1"}})
    assert code == 201
    code, answer = await send({**doc, "data": {"a": "2"}})
    assert code == 200
    assert answer["data"] == {"a": "2"}
    async with http.patch(
        path + "?force=true",
        data=json.dumps({"data": {"b": "1"}}),
        headers={"Content-Type": "application/merge-patch+json"},
    ) as response:
        assert response.status == 400
        assert "Force flag" in (await response.json())["message"]

    # a PUT by another manager takes the field it changed; clearing managedFields is honoured
    async with http.get(path) as response:
        current = await response.json()
    current["data"]["a"] = "3"
    async with http.put(path + "?fieldManager=editor", json=current) as response:
        assert response.status == 200
        owners = {
            e["manager"]: e["fieldsV1"]
            for e in (await response.json())["metadata"]["managedFields"]
        }
    assert owners == {"editor": {"f:data": {"f:a": {}}}}
    async with http.patch(
        path,
        data=json.dumps({"metadata": {"managedFields": []}}),
        headers={"Content-Type": "application/merge-patch+json"},
    ) as response:
        assert "managedFields" not in (await response.json())["metadata"]
