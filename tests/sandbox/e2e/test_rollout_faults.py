"""Rollouts under faults, each canary in a namespace of its own on one sandbox stack, with the
five services as processes and a short analysis interval: a killed analyzer (alone, or one of
two) neither skips nor repeats a step; a revision change mid-analysis restarts it; a canary
that never becomes ready is rolled back at its progress deadline; and every event a plain
subscriber sees is valid against its JSON Schema in docs/events/."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from nats.aio.client import Client

from tests.fixtures.services import ServiceFactory
from tests.sandbox.e2e import support
from tests.sandbox.e2e.rollouts import (
    initialized,
    manifests,
    new_image,
    record,
    start,
    valid,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


async def test_a_killed_analyzer_neither_skips_nor_repeats_a_step(
    stack: support.Stack, service: ServiceFactory, stack_nc: Client
) -> None:
    procs = await start(stack, service)
    recorder = await record(stack_nc, "kill")
    await initialized(stack, "kill")
    await new_image(stack, "kill")
    await wait_for(stack, "kill", lambda s: (s.get("canaryWeight") or 0) >= 20, "weight 20")
    procs["analyzer"][0].kill()
    replacement = service("analyzer", stack.env["NATS_URL"], **procs["analyzer"][0].env)
    await replacement.ready()
    await wait_for(stack, "kill", lambda s: s.get("phase") == "Succeeded", "Succeeded")
    assert recorder.weights() == [10, 20, 30, 40, 50]
    assert len(recorder.messages("promotion_completed")) == 1
    valid(recorder.events)


async def test_two_analyzers_share_the_work_and_one_may_die(
    stack: support.Stack, service: ServiceFactory, stack_nc: Client
) -> None:
    procs = await start(stack, service, analyzers=2)
    recorder = await record(stack_nc, "pair")
    await initialized(stack, "pair")
    await new_image(stack, "pair")
    await wait_for(stack, "pair", lambda s: (s.get("canaryWeight") or 0) >= 10, "weight 10")
    procs["analyzer"][1].kill()
    await wait_for(stack, "pair", lambda s: s.get("phase") == "Succeeded", "Succeeded")
    assert recorder.weights() == [10, 20, 30, 40, 50]
    valid(recorder.events)


async def test_a_new_revision_mid_analysis_restarts_it(
    stack: support.Stack, service: ServiceFactory, stack_nc: Client
) -> None:
    await start(stack, service)
    recorder = await record(stack_nc, "restart")
    await initialized(stack, "restart")
    await new_image(stack, "restart", "6.0.1")
    await wait_for(stack, "restart", lambda s: (s.get("canaryWeight") or 0) >= 20, "weight 20")
    await new_image(stack, "restart", "6.0.2")
    await wait_for(stack, "restart", lambda s: s.get("phase") == "Succeeded", "Succeeded")
    assert "New revision detected! Restarting analysis for podinfo.restart" in recorder.messages(
        "new_revision"
    )
    primary = await stack.kubectl(
        "get",
        "deployment",
        "podinfo-primary",
        "-n",
        "restart",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    )
    assert primary.stdout == "ghcr.io/stefanprodan/podinfo:6.0.2"
    valid(recorder.events)


async def test_a_canary_that_never_becomes_ready_is_rolled_back(
    stack: support.Stack, service: ServiceFactory, stack_nc: Client
) -> None:
    await start(stack, service)
    recorder = await record(stack_nc, "stuck")
    await initialized(stack, "stuck", progressDeadlineSeconds=5)
    await stack.kubectl(
        "set", "env", "deployment/podinfo", "SANDBOX_NEVER_READY=true", "-n", "stuck"
    )
    await wait_for(stack, "stuck", lambda s: s.get("phase") == "Failed", "Failed")
    rolled_back = recorder.messages("rolled_back")
    assert rolled_back
    assert rolled_back[0].startswith("Rolling back podinfo.stuck progress deadline exceeded")
    assert "Canary failed! Scaling down podinfo.stuck" in recorder.messages("phase_changed")
    valid(recorder.events)


async def test_an_invalid_canary_is_told_what_is_wrong(
    stack: support.Stack, service: ServiceFactory, stack_nc: Client
) -> None:
    """The CRD accepts a canary without routeRef; Sluice's validation names what it needs."""
    await start(stack, service)
    recorder = await record(stack_nc, "invalid")
    docs = list(yaml.safe_load_all(manifests("invalid")))
    del docs[3]["spec"]["routeRef"]
    await stack.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(docs))

    async def told() -> list[str]:
        return [m for m in recorder.messages("halted") if "is invalid" in m]

    seen = await support.poll(told, bool, timeout=60, what="the invalid-canary warning")
    assert seen[0] == (
        "Canary podinfo.invalid is invalid: podinfo (Canary, invalid): spec.routeRef: required "
        "field missing (provider apisix needs the ApisixRoute to copy)"
    )

    async def described() -> str:
        return (await stack.kubectl("describe", "canary", "podinfo", "-n", "invalid")).stdout

    text = await support.poll(described, lambda out: "Warning" in out, timeout=30, what="describe")
    assert "spec.routeRef: required field missing" in text

    def condition(status: dict[str, Any]) -> dict[str, Any]:
        return next((c for c in status.get("conditions") or [] if c["type"] == "Valid"), {})

    status = await wait_for(
        stack, "invalid", lambda s: condition(s).get("status") == "False", "Valid=False"
    )
    assert "spec.routeRef: required field missing" in condition(status)["message"]
    # fixed, it is analysed: initialized, and valid again
    await stack.kubectl("apply", "-f", "-", stdin=manifests("invalid"))
    status = await wait_for(
        stack,
        "invalid",
        lambda s: s.get("phase") == "Initialized" and condition(s).get("status") == "True",
        "Initialized and Valid=True",
    )
    valid(recorder.events)
