"""The seed tutorial end to end: Flagger's manifests applied unchanged (but for a short analysis
interval), the five services as processes on the sandbox's NATS, Kubernetes API, APISIX gateway
and Prometheus. A good revision is promoted; a faulty one is rolled back."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import yaml

from tests.fixtures.services import ServiceFactory, ServiceProcess
from tests.fixtures.sinks import Sink
from tests.sandbox.e2e import support

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

SERVICES = ("watcher", "analyzer", "traffic_shifter", "webhook_runner", "notifier")


async def start_sluice(
    stack: support.Stack, service: ServiceFactory, sink: Sink
) -> dict[str, ServiceProcess]:
    env = {
        "SLUICE_KUBECONFIG": stack.env["KUBECONFIG"],
        "SLUICE_PROMETHEUS_URL": stack.env["PROMETHEUS_URL"],
        "SLUICE_LOADTESTER_PORT": stack.env["LOADTESTER_PORT"],
        "SLUICE_MIN_INTERVAL_S": "1",
        "SLUICE_SLACK_URL": sink.url,
        "HTTP_PROXY": stack.env["HTTP_PROXY"],
        "NO_PROXY": stack.env["NO_PROXY"],
    }
    procs = {name: service(name, stack.env["NATS_URL"], **env) for name in SERVICES}
    await asyncio.gather(*(p.ready() for p in procs.values()))
    return procs


def manifests(interval: str = "2s", threshold: int = 3) -> str:
    docs = [
        yaml.safe_load((support.MANIFESTS / name).read_text())
        for name in ("podinfo-deployment.yaml", "podinfo-apisixroute.yaml", "podinfo-canary.yaml")
    ]
    canary = docs[2]
    canary["spec"]["analysis"]["interval"] = interval
    canary["spec"]["analysis"]["threshold"] = threshold
    return yaml.safe_dump_all(docs)


async def canary_status(stack: support.Stack) -> dict[str, Any]:
    out = await stack.kubectl("get", "canary", "podinfo", "-n", "test", "-o", "json")
    return dict(json.loads(out.stdout).get("status") or {})


async def wait_phase(stack: support.Stack, phase: str, timeout: float) -> dict[str, Any]:
    return await support.poll(
        lambda: canary_status(stack),
        lambda status: status.get("phase") == phase,
        timeout=timeout,
        what=f"canary phase {phase}",
        interval=0.5,
    )


async def test_the_seed_promotes_a_good_revision_and_rolls_back_a_faulty_one(
    stack: support.Stack, service: ServiceFactory, sink: Sink
) -> None:
    procs = await start_sluice(stack, service, sink)
    await stack.kubectl("apply", "-f", "-", stdin=manifests())
    await wait_phase(stack, "Initialized", timeout=60)
    apex = await stack.kubectl(
        "get", "service", "podinfo", "-n", "test", "-o", "jsonpath={.spec.selector.app}"
    )
    assert apex.stdout == "podinfo-primary"

    # a good revision
    await stack.kubectl(
        "set",
        "image",
        "deployment/podinfo",
        "podinfod=ghcr.io/stefanprodan/podinfo:6.0.1",
        "-n",
        "test",
    )
    await wait_phase(stack, "Succeeded", timeout=180)
    await support.poll(
        lambda: stack.kubectl("describe", "canary", "podinfo", "-n", "test"),
        lambda result: "Promotion completed!" in result.stdout,
        timeout=30,
        what="the promotion's Events",
    )
    primary_image = await stack.kubectl(
        "get",
        "deployment",
        "podinfo-primary",
        "-n",
        "test",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    )
    assert primary_image.stdout == "ghcr.io/stefanprodan/podinfo:6.0.1"
    described = (await stack.kubectl("describe", "canary", "podinfo", "-n", "test")).stdout
    print("\n" + described.split("Events:")[-1])
    for weight in (10, 20, 30, 40, 50):
        assert f"Advance podinfo.test canary weight {weight}" in described
    assert "Promotion completed! Scaling down podinfo.test" in described
    metrics = {m["name"]: m for m in (await canary_status(stack)).get("metrics") or []}
    assert metrics["request-success-rate"]["min"] == 99  # the last measurement, in the status
    assert metrics["request-success-rate"]["passed"] is True

    # a faulty revision: half of its answers are errors
    await stack.kubectl("set", "env", "deployment/podinfo", "SANDBOX_ERROR_RATE=0.5", "-n", "test")
    await wait_phase(stack, "Failed", timeout=180)

    async def describe() -> str:
        return (await stack.kubectl("describe", "canary", "podinfo", "-n", "test")).stdout

    # the notifier writes the step's Events right after the status: wait for the last one
    described = await support.poll(
        describe, lambda text: "Canary failed!" in text, timeout=30, what="the rollback's Events"
    )
    assert "Rolling back podinfo.test failed checks threshold reached 3" in described
    assert "Canary failed! Scaling down podinfo.test" in described
    assert "advancement success rate" in described
    assert any("Canary failed" in text or "Rolling back" in text for text in sink.texts())
    primary_env = await stack.kubectl(
        "get",
        "deployment",
        "podinfo-primary",
        "-n",
        "test",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].env}",
    )
    assert "SANDBOX_ERROR_RATE" not in primary_env.stdout  # the primary kept the good revision
    for proc in procs.values():
        assert proc.terminate() == 0
