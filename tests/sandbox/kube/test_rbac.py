"""RBAC end to end: least-privilege manifests applied with the stock kubectl, then a
ServiceAccount identity (stock kubectl and the official Python client) allowed or refused."""

from __future__ import annotations

import asyncio
import json
import pathlib

import aiohttp
import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from sandbox.kube.cluster import Cluster

from .conftest import Kubectl

pytestmark = pytest.mark.integration

MANIFESTS = """
apiVersion: v1
kind: Namespace
metadata: {name: sluice}
---
apiVersion: v1
kind: Namespace
metadata: {name: test}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: watcher, namespace: sluice}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "sluice:watcher", labels: {app.kubernetes.io/part-of: sluice}}
rules:
  - apiGroups: [apps]
    resources: [deployments]
    verbs: [get, list, watch]
  - apiGroups: [flagger.app]
    resources: [canaries/status]
    verbs: [patch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "sluice:watcher"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "sluice:watcher"}
subjects:
  - {kind: ServiceAccount, name: watcher, namespace: sluice}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: configmaps-reader, namespace: test}
rules:
  - apiGroups: [""]
    resources: [configmaps]
    resourceNames: [settings]
    verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: watcher-configmaps, namespace: test}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: configmaps-reader}
subjects:
  - {kind: ServiceAccount, name: watcher, namespace: sluice}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: nats, namespace: sluice}
spec:
  minAvailable: 2
  selector: {matchLabels: {app: nats}}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: nats, namespace: sluice}
spec:
  serviceName: nats
  replicas: 3
  selector: {matchLabels: {app: nats}}
  template:
    metadata: {labels: {app: nats}}
    spec:
      containers:
        - name: nats
          image: nats:2.10
          ports: [{name: client, containerPort: 4222}]
  volumeClaimTemplates:
    - metadata: {name: data}
      spec:
        accessModes: [ReadWriteOnce]
        resources: {requests: {storage: 1Gi}}
"""

WORKLOAD = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: podinfo, namespace: test}
spec:
  selector: {matchLabels: {app: podinfo}}
  template:
    metadata: {labels: {app: podinfo}}
    spec:
      containers: [{name: podinfo, image: "stefanprodan/podinfo:6.0.0"}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: test}
data: {a: "1"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: private, namespace: test}
data: {b: "2"}
"""

FORBIDDEN_PATCH = (
    'deployments.apps "podinfo" is forbidden: User "system:serviceaccount:sluice:watcher" '
    'cannot patch resource "deployments" in API group "apps" in the namespace "test"'
)


@pytest.fixture
async def applied(kubectl: Kubectl) -> None:
    created = await kubectl("apply", "-f", "-", stdin=MANIFESTS)
    for line in (
        "clusterrole.rbac.authorization.k8s.io/sluice:watcher created",
        "clusterrolebinding.rbac.authorization.k8s.io/sluice:watcher created",
        "role.rbac.authorization.k8s.io/configmaps-reader created",
        "rolebinding.rbac.authorization.k8s.io/watcher-configmaps created",
        "poddisruptionbudget.policy/nats created",
        "statefulset.apps/nats created",
    ):
        assert line in created.stdout
    await kubectl("apply", "-f", "-", stdin=WORKLOAD)


@pytest.fixture
def sa_kubeconfig(cluster: Cluster, tmp_path: pathlib.Path) -> pathlib.Path:
    return cluster.service_account_kubeconfig(tmp_path / "watcher.kubeconfig", "sluice", "watcher")


async def test_manifests_apply_and_reapply_unchanged(kubectl: Kubectl, applied: None) -> None:
    again = await kubectl("apply", "-f", "-", stdin=MANIFESTS)
    assert "statefulset.apps/nats unchanged" in again.stdout
    assert "clusterrole.rbac.authorization.k8s.io/sluice:watcher unchanged" in again.stdout
    role = json.loads((await kubectl("get", "clusterrole", "sluice:watcher", "-o", "json")).stdout)
    assert role["rules"][1]["resources"] == ["canaries/status"]
    sts = json.loads((await kubectl("get", "sts", "nats", "-n", "sluice", "-o", "json")).stdout)
    assert sts["spec"]["replicas"] == 3
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    pdb = await kubectl("get", "pdb", "-n", "sluice")
    assert "nats" in pdb.stdout
    changed = MANIFESTS.replace("minAvailable: 2", "minAvailable: 1")
    assert (
        "poddisruptionbudget.policy/nats configured"
        in (await kubectl("apply", "-f", "-", stdin=changed)).stdout
    )
    await kubectl("delete", "rolebinding", "watcher-configmaps", "-n", "test")
    listed = await kubectl("get", "rolebindings", "-A")
    assert "watcher-configmaps" not in listed.stdout


async def test_service_account_kubectl_is_allowed_and_refused_as_its_roles_say(
    kubectl: Kubectl, applied: None, sa_kubeconfig: pathlib.Path
) -> None:
    def as_watcher(*args: str, check: bool = True):  # type: ignore[no-untyped-def]
        return kubectl("--kubeconfig", str(sa_kubeconfig), *args, check=check)

    listed = await as_watcher("get", "deployments", "-n", "test")
    assert "podinfo" in listed.stdout
    await as_watcher("get", "deployment", "podinfo", "-n", "test", "-o", "name")

    pods = await as_watcher("get", "pods", "-n", "test", check=False)
    assert pods.code != 0
    assert (
        'pods is forbidden: User "system:serviceaccount:sluice:watcher" cannot list resource '
        '"pods" in API group "" in the namespace "test"' in pods.stderr
    )
    scaled = await as_watcher(
        "scale", "deployment", "podinfo", "--replicas=2", "-n", "test", check=False
    )
    assert scaled.code != 0
    assert 'cannot patch resource "deployments/scale" in API group "apps"' in scaled.stderr

    # resourceNames: the one ConfigMap the Role names, not the other, and no list
    await as_watcher("get", "configmap", "settings", "-n", "test")
    private = await as_watcher("get", "configmap", "private", "-n", "test", check=False)
    assert 'configmaps "private" is forbidden' in private.stderr
    assert (await as_watcher("get", "configmaps", "-n", "test", check=False)).code != 0

    # a Role grants nothing outside its namespace; the ClusterRole works in every namespace
    assert (
        await as_watcher("get", "configmap", "settings", "-n", "default", check=False)
    ).code != 0
    await as_watcher("get", "deployments", "-A")

    can = await as_watcher("auth", "can-i", "list", "deployments", "-n", "test", check=False)
    assert can.stdout.strip() == "yes"
    cannot = await as_watcher("auth", "can-i", "patch", "deployments", "-n", "test", check=False)
    assert cannot.stdout.strip() == "no"
    assert (
        await as_watcher(
            "auth", "can-i", "patch", "canaries.flagger.app", "--subresource=status", check=False
        )
    ).stdout.strip() == "yes"
    admin = await kubectl("auth", "can-i", "delete", "nodes")
    assert admin.stdout.strip() == "yes"


async def test_python_client_gets_403_with_the_real_status(
    applied: None, sa_kubeconfig: pathlib.Path
) -> None:
    def run() -> tuple[list[str], ApiException]:
        api = config.new_client_from_config(config_file=str(sa_kubeconfig))
        try:
            apps = client.AppsV1Api(api)
            names = [d.metadata.name for d in apps.list_namespaced_deployment("test").items]
            try:
                apps.patch_namespaced_deployment("podinfo", "test", {"spec": {"replicas": 3}})
            except ApiException as exc:
                return names, exc
            raise AssertionError("the patch was allowed")
        finally:
            api.close()

    names, exc = await asyncio.to_thread(run)
    assert names == ["podinfo"]
    assert exc.status == 403
    assert json.loads(exc.body) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": FORBIDDEN_PATCH,
        "reason": "Forbidden",
        "details": {"name": "podinfo", "group": "apps", "kind": "deployments"},
        "code": 403,
    }


async def test_a_malformed_service_account_token_is_401(cluster: Cluster) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{cluster.url}/api/v1/namespaces",
            headers={"Authorization": "Bearer sandbox-sa:nobody"},
        ) as response,
    ):
        assert response.status == 401
        body = await response.json()
    assert body["reason"] == "Unauthorized"


async def test_sandbox_cli_writes_a_service_account_kubeconfig(
    cluster: Cluster, kubectl: Kubectl, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sandbox.__main__ import main

    cluster.write_kubeconfig(tmp_path / "kubeconfig")  # what `python -m sandbox up` writes
    assert main(["--dir", str(tmp_path), "kubeconfig", "--service-account", "sluice:watcher"]) == 0
    written = pathlib.Path(capsys.readouterr().out.strip())
    assert written == tmp_path / "kubeconfig-sluice-watcher"
    refused = await kubectl("--kubeconfig", str(written), "get", "pods", check=False)
    assert 'User "system:serviceaccount:sluice:watcher" cannot list resource "pods"' in (
        refused.stderr
    )
    assert main(["--dir", str(tmp_path), "kubeconfig", "--service-account", "nope"]) == 2


async def test_kubectl_create_of_rbac_kinds_protobuf_bodies(
    kubectl: Kubectl, cluster: Cluster, tmp_path: pathlib.Path
) -> None:
    await kubectl("create", "namespace", "test")
    await kubectl("create", "serviceaccount", "bot", "-n", "test")
    await kubectl(
        "create", "role", "pod-reader", "-n", "test", "--verb=get,list", "--resource=pods"
    )
    await kubectl(
        "create",
        "rolebinding",
        "bot-pods",
        "-n",
        "test",
        "--role=pod-reader",
        "--serviceaccount=test:bot",
    )
    await kubectl(
        "create",
        "clusterrole",
        "ns-reader",
        "--verb=get",
        "--resource=namespaces",
        "--resource-name=test",
    )
    await kubectl(
        "create",
        "clusterrolebinding",
        "bot-ns",
        "--clusterrole=ns-reader",
        "--serviceaccount=test:bot",
    )
    role = json.loads(
        (await kubectl("get", "role", "pod-reader", "-n", "test", "-o", "json")).stdout
    )
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]
    binding = json.loads(
        (await kubectl("get", "clusterrolebinding", "bot-ns", "-o", "json")).stdout
    )
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "ns-reader",
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "bot", "namespace": "test"}]

    bot = cluster.service_account_kubeconfig(tmp_path / "bot", "test", "bot")
    await kubectl("--kubeconfig", str(bot), "get", "pods", "-n", "test")
    await kubectl("--kubeconfig", str(bot), "get", "namespace", "test")
    refused = await kubectl("--kubeconfig", str(bot), "get", "namespace", "default", check=False)
    assert 'namespaces "default" is forbidden' in refused.stderr
    # as the real server: a namespace's own namespace is itself
    assert 'cannot get resource "namespaces" in API group "" in the namespace "default"' in (
        refused.stderr
    )
    listed = await kubectl("--kubeconfig", str(bot), "get", "namespaces", check=False)
    assert 'cannot list resource "namespaces" in API group "" at the cluster scope' in (
        listed.stderr
    )
