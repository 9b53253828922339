"""The traffic-shifter as a real process (``python -m services.traffic_shifter``) answering
commands over a real nats-server, acting on the simulated cluster over HTTP."""

from __future__ import annotations

import asyncio
import pathlib
import socket
import time
from typing import Any

import pytest
from nats.aio.client import Client

from libs import messages
from services.watcher import revisions
from tests.fixtures.nats import NatsServer
from tests.fixtures.services import ServiceFactory, ServiceProcess

from .conftest import CANARY, DEADLINE_S, Official, initialize, set_weights

pytestmark = pytest.mark.integration


async def request(nc: Client, subject: str, command: messages.CommandBase) -> messages.Reply:
    msg = await nc.request(subject, messages.ENCODER.encode(command), timeout=command.timeout_s)
    return messages.REPLY_DECODER.decode(msg.data)


async def until_applied(
    nc: Client, command: messages.InitializeWorkload, proc: ServiceProcess
) -> messages.Reply:
    """As the analyzer does: a temporary failure is tried again on the next step."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        reply = await request(nc, messages.CMD_WORKLOAD, command)
        if not (isinstance(reply, messages.CommandFailed) and reply.temporary):
            return reply
        if time.monotonic() > deadline:
            pytest.fail(f"still {reply}\n{proc.log_text()}")
        await asyncio.sleep(0.1)


def start(
    service: ServiceFactory, nats_server: NatsServer, kubeconfig: pathlib.Path
) -> ServiceProcess:
    return service(
        "traffic_shifter",
        nats_server.url,
        SLUICE_KUBECONFIG=str(kubeconfig),
        SLUICE_KUBE_REQUEST_TIMEOUT_S="2",
    )


async def test_commands_of_a_canary_run_through_the_process(
    nats_server: NatsServer,
    service: ServiceFactory,
    nc: Client,
    kubeconfig: pathlib.Path,
    official: Official,
    seed: dict[str, Any],
) -> None:
    proc = start(service, nats_server, kubeconfig)
    await proc.ready()
    reply = await until_applied(nc, initialize(), proc)
    assert reply == messages.WorkloadApplied(canary=CANARY, workload="podinfo-primary", replicas=1)
    assert (await official.get("Deployment", "podinfo"))["spec"]["replicas"] == 0

    reply = await request(nc, messages.CMD_TRAFFIC, set_weights(100, 0))
    assert reply == messages.WeightsApplied(
        canary=CANARY, route="podinfo-podinfo-canary", primary_weight=100, canary_weight=0
    )
    scale = messages.ScaleWorkload(canary=CANARY, workload="podinfo", replicas=1)
    reply = await request(nc, messages.CMD_WORKLOAD, scale)
    assert reply == messages.WorkloadApplied(canary=CANARY, workload="podinfo", replicas=1)
    reply = await request(nc, messages.CMD_TRAFFIC, set_weights(60, 40))
    assert isinstance(reply, messages.WeightsApplied)
    assert (reply.primary_weight, reply.canary_weight) == (60, 40)
    route = await official.get("ApisixRoute", "podinfo-podinfo-canary")
    assert [b["weight"] for b in route["spec"]["http"][0]["backends"]] == [60, 40]

    target = await official.get("Deployment", "podinfo")
    promote = messages.PromoteWorkload(
        canary=CANARY, target="podinfo", revision=revisions.template_hash(target)
    )
    reply = await request(nc, messages.CMD_WORKLOAD, promote)
    assert reply == messages.WorkloadApplied(canary=CANARY, workload="podinfo-primary", replicas=1)

    # a user route without a rule for the apex: permanent, and it says which route
    await official.patch(
        "ApisixRoute",
        "podinfo",
        {
            "spec": {
                "http": [
                    {
                        "name": "x",
                        "match": {"paths": ["/*"]},
                        "backends": [{"serviceName": "elsewhere", "servicePort": 80}],
                    }
                ]
            }
        },
    )
    reply = await request(nc, messages.CMD_TRAFFIC, set_weights(100, 0))
    assert isinstance(reply, messages.CommandFailed)
    assert reply.temporary is False
    assert (
        "ApisixRoute test/podinfo has no HTTP rule whose single backend is the Service"
        in reply.error
    )
    assert proc.terminate() == 0


async def test_an_unreachable_kubernetes_api_is_a_temporary_failure(
    nats_server: NatsServer, service: ServiceFactory, nc: Client, tmp_path: pathlib.Path
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    kubeconfig = tmp_path / "unreachable"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: x\n"
        f"clusters: [{{name: x, cluster: {{server: 'http://127.0.0.1:{port}'}}}}]\n"
        "users: [{name: x, user: {token: t}}]\n"
        "contexts: [{name: x, context: {cluster: x, user: x}}]\n"
    )
    proc = start(service, nats_server, kubeconfig)
    await proc.ready()
    for subject, command in (
        (messages.CMD_TRAFFIC, set_weights(90, 10)),
        (messages.CMD_WORKLOAD, initialize()),
        (
            messages.CMD_WORKLOAD,
            messages.ScaleWorkload(canary=CANARY, workload="podinfo", replicas=0),
        ),
    ):
        reply = await request(nc, subject, command)
        assert isinstance(reply, messages.CommandFailed), reply
        assert reply.temporary is True
        assert "reading Canary test/podinfo: cannot connect" in reply.error
    # bad input is still refused before anything is asked of Kubernetes
    reply = await request(nc, messages.CMD_TRAFFIC, set_weights(90, 20))
    assert isinstance(reply, messages.CommandFailed)
    assert (reply.temporary, reply.error) == (
        False,
        "primary_weight + canary_weight: expected 100, got 110",
    )
    assert proc.terminate() == 0
