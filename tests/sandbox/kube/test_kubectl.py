"""The real kubectl against the simulated API server."""

from __future__ import annotations

import asyncio
import json
import re
import time

import pytest
import yaml

from sandbox.kube import registry
from sandbox.kube.cluster import Cluster

from .conftest import SMALL_CRD, Kubectl

pytestmark = pytest.mark.integration

MANIFESTS = """
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  labels: {app: web, tier: config}
data:
  color: blue
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web, tier: front}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: app
        image: example/web:1.0
        env:
        - {name: MODE, value: one}
        - {name: KEEP, value: kept}
        ports:
        - {containerPort: 8080}
      - name: sidecar
        image: example/sidecar:1.0
"""

CANARY = """
apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: podinfo
  namespace: test
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  service: {port: 9898}
  analysis: {interval: %s, threshold: 5, maxWeight: 50, stepWeight: 10}
"""


def _containers(cluster: Cluster, name: str = "web") -> dict[str, dict]:
    deployment = cluster.store.get(registry.DEPLOYMENTS, "default", name)
    return {c["name"]: c for c in deployment["spec"]["template"]["spec"]["containers"]}


async def _namespace(kubectl: Kubectl, name: str) -> None:
    result = await kubectl("create", "namespace", name)
    assert f"namespace/{name} created" in result.stdout


async def test_apply_creates_then_updates_a_multi_document_file(
    cluster: Cluster, kubectl: Kubectl
) -> None:
    created = await kubectl("apply", "-f", "-", stdin=MANIFESTS)
    assert "configmap/settings created" in created.stdout
    assert "deployment.apps/web created" in created.stdout
    assert created.stderr == ""

    changed = (
        MANIFESTS.replace("example/web:1.0", "example/web:2.0")
        .replace("{name: MODE, value: one}", "{name: MODE, value: two}")
        .replace("color: blue", "color: green")
    )
    updated = await kubectl("apply", "-f", "-", stdin=changed)
    assert "configmap/settings configured" in updated.stdout
    assert "deployment.apps/web configured" in updated.stdout
    assert updated.stderr == ""

    again = await kubectl("apply", "-f", "-", stdin=changed)
    assert "deployment.apps/web unchanged" in again.stdout

    containers = _containers(cluster)
    assert containers["app"]["image"] == "example/web:2.0"
    assert containers["app"]["env"] == [
        {"name": "MODE", "value": "two"},
        {"name": "KEEP", "value": "kept"},
    ]
    assert containers["sidecar"]["image"] == "example/sidecar:1.0"
    assert cluster.store.get(registry.DEPLOYMENTS, "default", "web")["metadata"]["generation"] == 2
    assert cluster.store.get(registry.CONFIGMAPS, "default", "settings")["data"] == {
        "color": "green"
    }

    # removing a container from the file removes it from the cluster (3-way patch, $patch)
    without_sidecar = changed.replace(
        "      - name: sidecar\n        image: example/sidecar:1.0\n", ""
    )
    await kubectl("apply", "-f", "-", stdin=without_sidecar)
    assert list(_containers(cluster)) == ["app"]


async def test_get_prints_tables_and_formats(cluster: Cluster, kubectl: Kubectl) -> None:
    await kubectl("apply", "-f", "-", stdin=MANIFESTS)
    await _namespace(kubectl, "other")
    await kubectl("create", "configmap", "elsewhere", "-n", "other", "--from-literal=a=b")

    table = (await kubectl("get", "deployments")).stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert table[1].split()[0] == "web"
    assert table[1].split()[1].endswith("/2")

    wide = (await kubectl("get", "deployment", "web", "-o", "wide")).stdout.splitlines()
    assert wide[0].split()[-3:] == ["CONTAINERS", "IMAGES", "SELECTOR"]
    assert "app,sidecar" in wide[1]
    assert "example/web:1.0,example/sidecar:1.0" in wide[1]
    assert wide[1].split()[-1] == "app=web"

    as_yaml = yaml.safe_load((await kubectl("get", "configmap", "settings", "-o", "yaml")).stdout)
    assert as_yaml["data"] == {"color": "blue"}
    assert as_yaml["metadata"]["resourceVersion"]
    as_json = json.loads((await kubectl("get", "configmaps", "-o", "json")).stdout)
    assert as_json["kind"] == "List"
    assert [i["metadata"]["name"] for i in as_json["items"]] == ["settings"]

    cms = (await kubectl("get", "cm")).stdout.splitlines()
    assert cms[0].split() == ["NAME", "DATA", "AGE"]
    assert cms[1].split()[:2] == ["settings", "1"]

    by_label = await kubectl("get", "cm,deploy", "-l", "tier in (front,back),app=web", "-o", "name")
    assert by_label.stdout.split() == ["deployment.apps/web"]
    not_in = await kubectl("get", "cm,deploy", "-l", "tier notin (front),!missing", "-o", "name")
    assert not_in.stdout.split() == ["configmap/settings"]
    exists = await kubectl("get", "cm", "-A", "-l", "app", "-o", "name")
    assert exists.stdout.split() == ["configmap/settings"]

    everywhere = (await kubectl("get", "configmaps", "-A")).stdout.splitlines()
    assert everywhere[0].split() == ["NAMESPACE", "NAME", "DATA", "AGE"]
    rows = {tuple(line.split()[:2]) for line in everywhere[1:]}
    assert {("default", "settings"), ("other", "elsewhere")} <= rows

    namespaces = (await kubectl("get", "namespaces")).stdout
    assert "other" in namespaces
    assert "Active" in namespaces

    missing = await kubectl("get", "configmap", "nope", check=False)
    assert missing.code == 1
    assert 'configmaps "nope" not found' in missing.stderr


async def test_get_watch_streams_changes(cluster: Cluster, kubectl: Kubectl) -> None:
    await kubectl("create", "configmap", "first", "--from-literal=a=1")
    proc = await asyncio.create_subprocess_exec(
        kubectl.binary,
        "get",
        "configmaps",
        "-w",  # type: ignore[attr-defined]
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=kubectl.env,  # type: ignore[attr-defined]
    )
    assert proc.stdout is not None
    try:
        header = await asyncio.wait_for(proc.stdout.readline(), 10)
        assert header.decode().split() == ["NAME", "DATA", "AGE"]
        first = await asyncio.wait_for(proc.stdout.readline(), 10)
        assert first.decode().split()[:2] == ["first", "1"]
        cluster.store.create(
            registry.CONFIGMAPS,
            {"metadata": {"name": "second", "namespace": "default"}, "data": {"a": "1", "b": "2"}},
        )
        second = await asyncio.wait_for(proc.stdout.readline(), 10)
        assert second.decode().split()[:2] == ["second", "2"]
    finally:
        proc.kill()
        await proc.wait()


async def test_describe_deployment(cluster: Cluster, kubectl: Kubectl) -> None:
    await kubectl("apply", "-f", "-", stdin=MANIFESTS)
    await kubectl("rollout", "status", "deployment/web", "--timeout=20s")
    described = (await kubectl("describe", "deployment", "web")).stdout
    lines = [" ".join(line.split()) for line in described.splitlines()]
    assert "Name: web" in lines
    assert "Selector: app=web" in lines
    assert "Replicas: 2 desired | 2 updated | 2 total | 2 available | 0 unavailable" in lines
    assert "StrategyType: RollingUpdate" in lines
    assert "RollingUpdateStrategy: 25% max unavailable, 25% max surge" in lines
    assert "Image: example/web:1.0" in lines
    assert "MODE: one" in lines
    assert "Available True MinimumReplicasAvailable" in lines
    assert "Progressing True NewReplicaSetAvailable" in lines
    new_rs = next(line for line in lines if line.startswith("NewReplicaSet:"))
    assert re.fullmatch(r"NewReplicaSet: web-[a-z0-9]+ \(2/2 replicas created\)", new_rs), new_rs
    rs_name = new_rs.split()[1]
    assert any(
        re.fullmatch(
            rf"Normal ScalingReplicaSet \S+ deployment-controller Scaled up replica set "
            rf"{rs_name} from 0 to 2",
            line,
        )
        for line in lines
    ), described


async def test_canary_columns_describe_events_and_schema(
    cluster: Cluster, kubectl: Kubectl
) -> None:
    if cluster.registry.get("flagger.app", "canaries") is None:
        pytest.fail(f"the Canary CRD was not installed from {cluster.settings.crd_dir}")
    await _namespace(kubectl, "test")
    rejected = await kubectl("apply", "-f", "-", stdin=CANARY % '"10"', check=False)
    assert rejected.code == 1
    # kubectl words a 422 with causes as "The <Kind> <name> is invalid: <causes>", as with a
    # real server (whose message is 'Canary.flagger.app "podinfo" is invalid: ...')
    assert (
        'The Canary "podinfo" is invalid: spec.analysis.interval: Invalid value: "10": '
        "spec.analysis.interval in body should match '^[0-9]+(m|s)'" in rejected.stderr
    )
    await kubectl("apply", "-f", "-", stdin=CANARY % "10s")

    canary = cluster.store.get(cluster.registry.get("flagger.app", "canaries"), "test", "podinfo")
    canary["status"] = {
        "phase": "Progressing",
        "canaryWeight": 10,
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }
    cluster.store.update(
        cluster.registry.get("flagger.app", "canaries"), canary, subresource="status"
    )

    table = (await kubectl("get", "canaries", "-n", "test")).stdout.splitlines()
    assert table[0].split() == ["NAME", "STATUS", "WEIGHT", "LASTTRANSITIONTIME"]
    assert table[1].split() == ["podinfo", "Progressing", "10", "2026-01-01T00:00:00Z"]
    wide = (await kubectl("get", "canary", "podinfo", "-n", "test", "-o", "wide")).stdout
    assert "INTERVAL" in wide.splitlines()[0]
    assert "10s" in wide.splitlines()[1]

    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "podinfo.1", "namespace": "test"},
        "involvedObject": {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "name": "podinfo",
            "namespace": "test",
            "uid": canary["metadata"]["uid"],
        },
        "reason": "Synced",
        "message": "Advance podinfo.test canary weight 10",
        "type": "Normal",
        "source": {"component": "flagger"},
        "count": 1,
        "firstTimestamp": "2026-01-01T00:00:00Z",
        "lastTimestamp": "2026-01-01T00:00:00Z",
    }
    await kubectl("create", "-f", "-", stdin=json.dumps(event))
    described = (await kubectl("describe", "canary/podinfo", "-n", "test")).stdout
    events_section = described.split("Events:", 1)[1]
    assert "Synced" in events_section
    assert "Advance podinfo.test canary weight 10" in events_section

    listed = (await kubectl("get", "events", "-n", "test")).stdout.splitlines()
    assert listed[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert "canary/podinfo" in listed[1]
    assert "Synced" in listed[1]


async def test_custom_resource_rejected_by_its_schema(cluster: Cluster, kubectl: Kubectl) -> None:
    await kubectl("apply", "-f", "-", stdin=json.dumps(SMALL_CRD))
    widget = "apiVersion: test.sluice.dev/v1\nkind: Widget\nmetadata: {name: w}\nspec: {size: %s}\n"
    too_small = await kubectl("apply", "-f", "-", stdin=widget % "0", check=False)
    assert too_small.code == 1
    assert (
        'The Widget "w" is invalid: spec.size: Invalid value: 0: spec.size in body '
        "should be greater than or equal to 1" in too_small.stderr
    )
    unknown = await kubectl("apply", "-f", "-", stdin=widget % "3, bogus: 1", check=False)
    assert unknown.code == 1
    assert 'unknown field "spec.bogus"' in unknown.stderr
    await kubectl("apply", "-f", "-", stdin=widget % "3")
    table = (await kubectl("get", "widgets")).stdout.splitlines()
    assert table[0].split() == ["NAME", "SIZE", "PHASE"]
    assert table[1].split() == ["w", "3"]  # an empty Phase is left blank
    got = json.loads((await kubectl("get", "wg", "w", "-o", "json")).stdout)
    assert got["spec"] == {"size": 3, "color": "red"}  # defaulted

    merged = await kubectl("patch", "widget", "w", "--type", "merge", "-p", '{"spec":{"size":5}}')
    assert "widget.test.sluice.dev/w patched" in merged.stdout
    strategic = await kubectl("patch", "widget", "w", "-p", '{"spec":{"size":6}}', check=False)
    assert strategic.code == 1
    assert (
        "415" in strategic.stderr
        or "unknown format" in strategic.stderr
        or "strategic" in strategic.stderr
    )

    await kubectl("delete", "crd", "widgets.test.sluice.dev")
    assert cluster.registry.get("test.sluice.dev", "widgets") is None
    gone = await kubectl("get", "widgets", check=False)
    assert gone.code == 1


async def test_set_image_set_env_scale_and_patches(cluster: Cluster, kubectl: Kubectl) -> None:
    await kubectl("apply", "-f", "-", stdin=MANIFESTS)
    await kubectl("set", "image", "deployment/web", "app=example/web:3.0")
    assert _containers(cluster)["app"]["image"] == "example/web:3.0"
    assert _containers(cluster)["sidecar"]["image"] == "example/sidecar:1.0"

    await kubectl("set", "env", "deployment/web", "-c", "app", "MODE=three", "NEW=yes")
    assert _containers(cluster)["app"]["env"] == [
        {"name": "MODE", "value": "three"},
        {"name": "KEEP", "value": "kept"},
        {"name": "NEW", "value": "yes"},
    ]
    await kubectl("set", "env", "deployment/web", "-c", "app", "KEEP-")
    assert [e["name"] for e in _containers(cluster)["app"]["env"]] == ["MODE", "NEW"]

    scaled = await kubectl("scale", "deployment/web", "--replicas=5")
    assert "deployment.apps/web scaled" in scaled.stdout
    assert cluster.store.get(registry.DEPLOYMENTS, "default", "web")["spec"]["replicas"] == 5

    await kubectl(
        "patch",
        "deployment",
        "web",
        "-p",
        '{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"example/sidecar:2.0"}]}}}}',
    )
    assert _containers(cluster)["sidecar"]["image"] == "example/sidecar:2.0"
    assert list(_containers(cluster)) == ["app", "sidecar"]

    await kubectl(
        "patch",
        "deployment",
        "web",
        "--type",
        "merge",
        "-p",
        '{"metadata":{"labels":{"tier":null,"patched":"merge"}}}',
    )
    labels = cluster.store.get(registry.DEPLOYMENTS, "default", "web")["metadata"]["labels"]
    assert labels == {"app": "web", "patched": "merge"}

    await kubectl(
        "patch",
        "deployment",
        "web",
        "--type",
        "json",
        "-p",
        '[{"op":"replace","path":"/spec/replicas","value":1},'
        '{"op":"remove","path":"/spec/template/spec/containers/1"}]',
    )
    deployment = cluster.store.get(registry.DEPLOYMENTS, "default", "web")
    assert deployment["spec"]["replicas"] == 1
    assert list(_containers(cluster)) == ["app"]

    failed = await kubectl(
        "patch",
        "deployment",
        "web",
        "--type",
        "json",
        "-p",
        '[{"op":"test","path":"/spec/replicas","value":7}]',
        check=False,
    )
    assert failed.code == 1


async def test_delete_and_namespaces(cluster: Cluster, kubectl: Kubectl) -> None:
    await _namespace(kubectl, "doomed")
    await kubectl("create", "configmap", "a", "-n", "doomed", "--from-literal=x=y")
    deleted = await kubectl("delete", "configmap", "a", "-n", "doomed")
    assert 'configmap "a" deleted' in deleted.stdout
    await kubectl("create", "configmap", "b", "-n", "doomed", "--from-literal=x=y")
    await kubectl("delete", "namespace", "doomed")
    assert cluster.store.namespace_phase("doomed") is None
    assert cluster.store.list(registry.CONFIGMAPS, "doomed")[0] == []
    missing_ns = await kubectl("create", "configmap", "c", "-n", "doomed", check=False)
    assert missing_ns.code == 1
    assert 'namespaces "doomed" not found' in missing_ns.stderr

    await kubectl("create", "configmap", "one", "--from-literal=x=y")
    await kubectl("label", "configmap", "one", "batch=1")
    await kubectl("create", "configmap", "two", "--from-literal=x=y")
    await kubectl("delete", "configmaps", "-l", "batch=1")
    names = [o["metadata"]["name"] for o in cluster.store.list(registry.CONFIGMAPS, "default")[0]]
    assert names == ["two"]


async def test_rollout_status_waits_for_the_deployment(cluster: Cluster, kubectl: Kubectl) -> None:
    assert cluster.has_controllers, "the cluster fixture runs without its controllers"
    await kubectl("apply", "-f", "-", stdin=MANIFESTS)
    started = time.monotonic()
    result = await kubectl("rollout", "status", "deployment/web", "--timeout=25s")
    assert 'deployment "web" successfully rolled out' in result.stdout
    assert time.monotonic() - started < 25
