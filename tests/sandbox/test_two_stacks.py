"""Two ``python -m sandbox up`` stacks on one machine: each picks a pod network of its own.

Without ``--pod-network`` each stack takes the first pod network no running cluster claims (a
cluster holds its node's kubelet port on the network), so both run pods that really listen; a
third stack asked for a network already in use fails at start, names the setting, and leaves
nothing running.
"""

from __future__ import annotations

import ipaddress
import pathlib

import pytest

from sandbox import control, stack
from sandbox.kube import cluster as kube_cluster
from tests.sandbox.e2e import support

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: test}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: web
          image: ghcr.io/stefanprodan/podinfo:6.0.0
          ports: [{containerPort: 9898}]
"""


async def _up(root: pathlib.Path, *extra: str) -> support.Result:
    return await support.run(
        support.sandbox_command("up", "--free-ports", *extra), support.base_env(root)
    )


async def _rolled_out_pod_ip(running: support.Stack) -> ipaddress.IPv4Address:
    await running.kubectl("apply", "-f", "-", stdin=DEPLOYMENT)
    await running.kubectl("rollout", "status", "deployment/web", "-n", "test", "--timeout=60s")
    ip = await running.kubectl(
        "get", "pods", "-n", "test", "-l", "app=web", "-o", "jsonpath={.items[0].status.podIP}"
    )
    return ipaddress.IPv4Address(ip.stdout)


@pytest.mark.e2e
async def test_two_stacks_get_pod_networks_of_their_own(tmp_path: pathlib.Path) -> None:
    roots = [tmp_path / "one", tmp_path / "two"]
    stacks: list[support.Stack] = []
    try:
        for root in roots:
            up = await _up(root)
            assert up.code == 0, f"{up.stdout}\n{up.stderr}"
            values = stack.parse_env((root / "env").read_text())
            stacks.append(support.Stack(root, support.base_env(root) | values))
        networks = [ipaddress.IPv4Network(s.env["POD_NETWORK"]) for s in stacks]
        assert networks[0] != networks[1]
        assert all(n in stack.POD_NETWORK_CANDIDATES for n in networks)
        assert all(kube_cluster.pod_network_in_use(n) for n in networks)

        for running, network in zip(stacks, networks, strict=True):
            assert await _rolled_out_pod_ip(running) in network

        # `sandbox fault pod-unready` pauses one pod's readiness for a while
        first = stacks[0]
        pod = await first.kubectl("get", "pods", "-n", "test", "-l", "app=web", "-o", "name")
        name = pod.stdout.strip().removeprefix("pod/")
        fault = await first.sandbox("fault", "pod-unready", "--for", "3s", "--pod", f"test/{name}")
        assert fault.code == 0, fault.stderr
        assert f"test/{name}" in fault.stdout
        wait = ("wait", "-n", "test", f"pod/{name}", "--timeout=30s")
        await first.kubectl(*wait, "--for=condition=Ready=false")
        await first.kubectl(*wait, "--for=condition=Ready")
        wrong = await first.sandbox("fault", "kube-503", "--for", "1s", "--pod", name)
        assert wrong.code == 2
        assert "pods: only pod-unready" in wrong.stderr

        # asked for a network another stack uses: refused before anything starts
        third = tmp_path / "three"
        refused = await _up(third, "--pod-network", str(networks[0]))
        assert refused.code == 1
        assert "SANDBOX_POD_NETWORK" in refused.stderr
        assert str(networks[0]) in refused.stderr
        assert control.State.load(stack.Layout(third)) is None
        assert not (third / "env").exists()
    finally:
        for running in stacks:
            down = await running.sandbox("down")
            assert down.code == 0, down.stderr
    assert not any(kube_cluster.pod_network_in_use(n) for n in networks)


def test_a_claimed_pod_network_cannot_be_claimed_twice() -> None:
    network = ipaddress.IPv4Network("127.41.0.0/16")
    with kube_cluster.claim_pod_network(network):
        assert kube_cluster.pod_network_in_use(network)
        with pytest.raises(kube_cluster.PodNetworkInUse, match="SANDBOX_POD_NETWORK"):
            kube_cluster.claim_pod_network(network)
    assert not kube_cluster.pod_network_in_use(network)
