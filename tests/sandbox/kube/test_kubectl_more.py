"""The real kubectl against the simulated API server: explain, create verbs, logs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import aiohttp
import pytest
import yaml

from sandbox.kube import podlogs, registry
from sandbox.kube.cluster import Cluster

from .conftest import Kubectl

pytestmark = pytest.mark.integration

WAIT_S = 20.0  # how long a pod may take to run


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():  # noqa: ASYNC110 - the condition is a counter, not an event
        await asyncio.sleep(0.05)


async def _running_pod_ip(cluster: Cluster, name: str) -> str:
    async def poll() -> str:
        while True:
            pod = cluster.store.get(registry.PODS, "default", name)
            pod_status = pod.get("status") or {}
            if pod_status.get("phase") == "Running" and pod_status.get("podIP"):
                return str(pod_status["podIP"])
            await asyncio.sleep(0.05)

    return await asyncio.wait_for(poll(), WAIT_S)


async def test_explain_prints_the_real_schemas(cluster: Cluster, kubectl: Kubectl) -> None:
    spec = await kubectl("explain", "deployment.spec")
    assert "FIELD: spec <DeploymentSpec>" in spec.stdout
    assert "progressDeadlineSeconds\t<integer>" in spec.stdout
    assert "template\t<PodTemplateSpec> -required-" in spec.stdout

    containers = await kubectl("explain", "deployment.spec.template.spec.containers.ports")
    assert "FIELD: ports <[]ContainerPort>" in containers.stdout
    assert "containerPort\t<integer> -required-" in containers.stdout

    analysis = await kubectl("explain", "canary.spec.analysis")
    assert "KIND:       Canary" in analysis.stdout
    assert "maxWeight\t<integer>" in analysis.stdout


async def test_openapi_documents_carry_patch_strategies(cluster: Cluster, kubectl: Kubectl) -> None:
    raw = await kubectl("get", "--raw", "/openapi/v3/apis/apps/v1")
    schemas = json.loads(raw.stdout)["components"]["schemas"]
    deployment = schemas["io.k8s.api.apps.v1.Deployment"]
    assert deployment["x-kubernetes-group-version-kind"] == [
        {"group": "apps", "kind": "Deployment", "version": "v1"}
    ]
    assert deployment["properties"]["spec"]["allOf"] == [
        {"$ref": "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"}
    ]
    containers = schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert containers["x-kubernetes-patch-strategy"] == "merge"
    # every reference resolves inside the document, as kubectl needs
    refs = {
        ref.removeprefix("#/components/schemas/")
        for ref in _refs(schemas)
        if ref.startswith("#/components/schemas/")
    }
    assert refs <= set(schemas)


def _refs(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for item in node for ref in _refs(item)]
    return []


async def test_create_verbs(cluster: Cluster, kubectl: Kubectl) -> None:
    store = cluster.store
    assert "namespace/team created" in (await kubectl("create", "namespace", "team")).stdout
    created = await kubectl(
        "create", "deployment", "web", "--image=example/web:1.0", "--replicas=2", "--port=8080"
    )
    assert "deployment.apps/web created" in created.stdout
    deployment = store.get(registry.DEPLOYMENTS, "default", "web")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["selector"] == {"matchLabels": {"app": "web"}}
    template = deployment["spec"]["template"]
    assert template["metadata"]["labels"] == {"app": "web"}
    [container] = template["spec"]["containers"]
    assert container["name"] == "web"
    assert container["image"] == "example/web:1.0"
    assert container["ports"] == [{"containerPort": 8080, "protocol": "TCP"}]

    service = await kubectl("create", "service", "clusterip", "web", "--tcp=80:8080")
    assert "service/web created" in service.stdout
    spec = store.get(registry.SERVICES, "default", "web")["spec"]
    assert spec["ports"] == [{"name": "80-8080", "port": 80, "protocol": "TCP", "targetPort": 8080}]
    assert spec["selector"] == {"app": "web"}
    assert spec["type"] == "ClusterIP"
    assert spec["clusterIP"]
    await kubectl("create", "service", "clusterip", "headless", "--clusterip=None")
    assert store.get(registry.SERVICES, "default", "headless")["spec"]["clusterIP"] == "None"

    await kubectl("create", "configmap", "settings", "--from-literal=color=blue")
    assert store.get(registry.CONFIGMAPS, "default", "settings")["data"] == {"color": "blue"}
    await kubectl("create", "secret", "generic", "token", "--from-literal=key=s3cret")
    assert store.get(registry.SECRETS, "default", "token")["data"] == {"key": "czNjcmV0"}
    created = await kubectl("create", "serviceaccount", "robot", "-n", "team")
    assert "serviceaccount/robot created" in created.stdout
    ran = await kubectl("run", "shell", "--image=example/shell:1.0", "--labels=role=debug")
    assert "pod/shell created" in ran.stdout
    assert store.get(registry.PODS, "default", "shell")["metadata"]["labels"] == {"role": "debug"}


async def test_create_dry_run_piped_into_apply(cluster: Cluster, kubectl: Kubectl) -> None:
    printed = await kubectl(
        "create", "deployment", "api", "--image=example/api:1.0", "--dry-run=client", "-o", "yaml"
    )
    assert yaml.safe_load(printed.stdout)["kind"] == "Deployment"
    applied = await kubectl("apply", "-f", "-", stdin=printed.stdout)
    assert "deployment.apps/api created" in applied.stdout
    # the printed creationTimestamp: null makes kubectl send a patch again, as with a real
    # server; the server keeps the timestamp and the object's generation
    again = await kubectl("apply", "-f", "-", stdin=printed.stdout)
    assert "deployment.apps/api configured" in again.stdout
    deployment = cluster.store.get(registry.DEPLOYMENTS, "default", "api")
    assert deployment["metadata"]["generation"] == 1
    assert deployment["metadata"]["creationTimestamp"]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "example/api:1.0"


async def test_logs_tail_follow_and_errors(cluster: Cluster, kubectl: Kubectl) -> None:
    await kubectl("run", "app", "--image=example/podinfo:6.0.0", "--port=9898")
    ip = await _running_pod_ip(cluster, "app")
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for path in ("/version", "/status/503"):
            async with session.get(f"http://{ip}:9898{path}") as response:
                await response.read()

    logs = await kubectl("logs", "app")
    lines = [json.loads(line) for line in logs.stdout.splitlines()]
    assert lines[0]["msg"] == "Starting HTTP Server"
    assert [(line["uri"], line["status"]) for line in lines[1:]] == [
        ("/version", 200),
        ("/status/503", 503),
    ]
    last = await kubectl("logs", "app", "--tail=1", "--timestamps")
    stamp, _, text = last.stdout.strip().partition(" ")
    assert stamp.endswith("Z")
    assert "T" in stamp
    assert json.loads(text)["uri"] == "/status/503"

    wrong = await kubectl("logs", "app", "-c", "nope", check=False)
    assert wrong.code == 1
    assert "container nope is not valid for pod app" in wrong.stderr
    missing = await kubectl("logs", "ghost", check=False)
    assert 'pods "ghost" not found' in missing.stderr

    # -f prints the kept lines, then new ones, and ends when the container stops
    follow = asyncio.create_task(kubectl("logs", "-f", "app"))
    pod = cluster.store.get(registry.PODS, "default", "app")
    buf = podlogs.of(cluster.store).get("default", "app", "app", pod["metadata"]["uid"])
    assert buf is not None
    await asyncio.wait_for(_until(lambda: buf.followers == 1), WAIT_S)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(f"http://{ip}:9898/env") as response,
    ):
        await response.read()
    await kubectl("delete", "pod", "app", "--wait=false")
    followed = await follow
    assert '"uri":"/version"' in followed.stdout
    assert '"uri":"/env"' in followed.stdout


async def test_port_forward_says_it_is_not_simulated(cluster: Cluster, kubectl: Kubectl) -> None:
    await kubectl("run", "app", "--image=example/podinfo:6.0.0", "--port=9898")
    await _running_pod_ip(cluster, "app")
    result = await kubectl("port-forward", "pod/app", "18080:9898", check=False)
    assert result.code == 1
    assert "pods/portforward is not simulated" in result.stderr
