"""The shipped RBAC is enough, and no more: the five services run under their own
ServiceAccounts with the ClusterRoles of ``deploy/kubernetes`` (the sandbox authorizes each
request as the apiserver does), a whole rollout of the tutorial's canary succeeds, a service
that tries more than its role gets the apiserver's 403, and the rendered ``dev`` overlay is
accepted by ``kubectl apply -k``."""

from __future__ import annotations

import asyncio
import os
import pathlib
import subprocess
from typing import Any

import pytest
import yaml

from sandbox.kube import config as kube_config
from tests.fixtures.services import ServiceFactory, ServiceProcess
from tests.sandbox.e2e import support
from tests.sandbox.e2e.rollouts import (
    REPO,
    SERVICES,
    initialized,
    new_image,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

DEV = REPO / "deploy" / "kubernetes" / "overlays" / "dev"
ACCOUNTS = {  # service module -> its ServiceAccount in namespace sluice
    "watcher": "watcher",
    "analyzer": "analyzer",
    "traffic_shifter": "traffic-shifter",
    "notifier": "notifier",
}
RBAC_KINDS = (
    "Namespace",
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
)


def rendered() -> list[dict[str, Any]]:
    out = subprocess.run(
        ["kubectl", "kustomize", str(DEV)], capture_output=True, text=True, timeout=60, check=True
    )
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def identity(stack: support.Stack, tmp: pathlib.Path, account: str) -> str:
    path = tmp / f"kubeconfig-{account}"
    kube_config.service_account_kubeconfig(path, stack.env["KUBE_URL"], "sluice", account)
    return str(path)


async def start_as_themselves(
    stack: support.Stack, service: ServiceFactory, tmp: pathlib.Path
) -> dict[str, ServiceProcess]:
    env = {
        "SLUICE_PROMETHEUS_URL": stack.env["PROMETHEUS_URL"],
        "SLUICE_LOADTESTER_PORT": stack.env["LOADTESTER_PORT"],
        "SLUICE_MIN_INTERVAL_S": "1",
        "HTTP_PROXY": stack.env["HTTP_PROXY"],
        "NO_PROXY": stack.env["NO_PROXY"],
    }
    procs = {}
    for module in SERVICES:
        extra = dict(env)
        if module in ACCOUNTS:  # the webhook-runner needs no Kubernetes access at all
            extra["SLUICE_KUBECONFIG"] = identity(stack, tmp, ACCOUNTS[module])
        procs[module] = service(module, stack.env["NATS_URL"], **extra)
    await asyncio.gather(*(p.ready() for p in procs.values()))
    return procs


async def test_the_services_roll_out_under_their_own_least_privilege_identities(
    stack: support.Stack, service: ServiceFactory, tmp_path: pathlib.Path
) -> None:
    roles = [doc for doc in rendered() if doc["kind"] in RBAC_KINDS]
    await stack.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(roles))
    procs = await start_as_themselves(stack, service, tmp_path)

    ns = "identities"
    await initialized(stack, ns)
    await new_image(stack, ns)
    await wait_for(stack, ns, lambda s: s.get("phase") == "Succeeded", "Succeeded", timeout=180)
    events = await stack.kubectl("get", "events", "-n", ns, "-o", "name")
    assert events.stdout.strip()  # the notifier recorded Events as itself
    for module, proc in procs.items():
        assert "forbidden" not in proc.log_text().lower(), f"{module}:\n{proc.log_text()}"

    # the watcher only lists and watches: even the read that kubectl patch starts with is
    # refused, in the apiserver's words
    watcher = identity(stack, tmp_path, "watcher")
    patched = await support.run(
        [
            "kubectl",
            "--kubeconfig",
            watcher,
            "patch",
            "deployment/podinfo-primary",
            "--type=merge",
            "--patch",
            '{"spec": {"replicas": 3}}',
            "-n",
            ns,
        ],
        {**stack.env, "KUBECONFIG": watcher, "PATH": os.environ["PATH"]},
    )
    assert patched.code == 1
    assert patched.stderr.strip() == (
        'Error from server (Forbidden): deployments.apps "podinfo-primary" is forbidden: '
        'User "system:serviceaccount:sluice:watcher" cannot get resource "deployments" '
        f'in API group "apps" in the namespace "{ns}"'
    )


async def test_the_dev_overlay_is_accepted_by_kubectl_apply_k(stack: support.Stack) -> None:
    applied = await stack.kubectl("apply", "-k", str(DEV))
    assert applied.code == 0
    kinds = {line.split("/")[0] for line in applied.stdout.splitlines()}
    for kind in (
        "customresourcedefinition.apiextensions.k8s.io",
        "clusterrole.rbac.authorization.k8s.io",
        "deployment.apps",
        "statefulset.apps",
    ):
        assert kind in kinds, applied.stdout
