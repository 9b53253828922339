"""End to end: Flagger's tutorial objects applied with kubectl to a running sandbox stack, a real
traffic-shifter process taking commands over the stack's NATS, and the stack's gateway then
splitting real requests between primary and canary pods by the weights it set."""

from __future__ import annotations

import collections
import json
from collections.abc import Iterator

import nats
import pytest
import yaml

from libs import messages
from tests.fixtures.services import ServiceFactory
from tests.sandbox.e2e import support

from .conftest import CANARY, deployment, initialize, manifest, set_weights

pytestmark = pytest.mark.e2e

CANARY_ROUTE = "test_podinfo-podinfo-canary_method"  # <namespace>_<apisixroute>_<rule>


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[support.Stack]:
    running = support.start_stack_blocking(tmp_path_factory.mktemp("stack"))
    try:
        yield running
    finally:
        support.stop_stack_blocking(running)


def deployment_of(pod: str) -> str:
    """``podinfo-primary-<replicaset hash>-<suffix>`` → ``podinfo-primary``."""
    return pod.rsplit("-", 2)[0]


async def test_the_gateway_splits_traffic_by_the_weights_the_shifter_set(
    stack: support.Stack, service: ServiceFactory
) -> None:
    target = deployment(minReadySeconds=0)
    objects = [target, manifest("podinfo-apisixroute.yaml"), manifest("podinfo-canary.yaml")]
    await stack.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(objects))
    await stack.kubectl("rollout", "status", "deployment/podinfo", "-n", "test", "--timeout=60s")
    shifter = service(
        "traffic_shifter",
        stack.env["NATS_URL"],
        SLUICE_KUBECONFIG=stack.env["KUBECONFIG"],
        SLUICE_KUBE_REQUEST_TIMEOUT_S="5",
    )
    await shifter.ready()
    nc = await nats.connect(stack.env["NATS_URL"])

    async def send(subject: str, command: messages.CommandBase) -> messages.Reply:
        msg = await nc.request(subject, messages.ENCODER.encode(command), timeout=15)
        return messages.REPLY_DECODER.decode(msg.data)

    try:
        # initialization, retried while the primary rolls out (as the analyzer does)
        reply = await support.poll(
            lambda: send(messages.CMD_WORKLOAD, initialize()),
            lambda r: not (isinstance(r, messages.CommandFailed) and r.temporary),
            timeout=60,
            what="InitializeWorkload",
        )
        assert reply == messages.WorkloadApplied(
            canary=CANARY, workload="podinfo-primary", replicas=1
        )
        reply = await send(messages.CMD_TRAFFIC, set_weights(100, 0))
        assert isinstance(reply, messages.WeightsApplied), reply
        await stack.wait_route(
            CANARY_ROUTE, {"podinfo-primary": (100, 1), "podinfo-canary": (0, 0)}
        )

        # a new revision scaled up, then 70/30
        reply = await send(
            messages.CMD_WORKLOAD,
            messages.ScaleWorkload(canary=CANARY, workload="podinfo", replicas=1),
        )
        assert reply == messages.WorkloadApplied(canary=CANARY, workload="podinfo", replicas=1)
        await stack.kubectl(
            "rollout", "status", "deployment/podinfo", "-n", "test", "--timeout=60s"
        )
        reply = await send(messages.CMD_TRAFFIC, set_weights(70, 30))
        assert reply == messages.WeightsApplied(
            canary=CANARY, route="podinfo-podinfo-canary", primary_weight=70, canary_weight=30
        )
        await stack.wait_route(
            CANARY_ROUTE, {"podinfo-primary": (70, 1), "podinfo-canary": (30, 1)}
        )
    finally:
        await nc.close()

    counts = await support.load(
        stack.env["GATEWAY_URL"] + "/api/info", total=1000, concurrency=16, host="app.example.com"
    )
    assert {status for status, _ in counts} == {200}
    by_deployment: collections.Counter[str] = collections.Counter()
    for (_, host), n in counts.items():
        by_deployment[deployment_of(host)] += n
    assert set(by_deployment) == {"podinfo-primary", "podinfo"}, by_deployment
    share = by_deployment["podinfo"] / counts.total() * 100
    print(f"\ncanary share {share:.1f}% of {counts.total()} ({dict(by_deployment)})")
    assert abs(share - 30) <= 5

    # what kubectl sees: the generated route owned by the Canary, the user's route untouched
    route = json.loads(
        (
            await stack.kubectl(
                "get", "apisixroute", "podinfo-podinfo-canary", "-n", "test", "-o", "json"
            )
        ).stdout
    )
    assert route["metadata"]["ownerReferences"][0]["kind"] == "Canary"
    user = json.loads(
        (await stack.kubectl("get", "apisixroute", "podinfo", "-n", "test", "-o", "json")).stdout
    )
    assert user["spec"]["http"][0]["backends"] == [{"serviceName": "podinfo", "servicePort": 80}]
    assert shifter.terminate() == 0
