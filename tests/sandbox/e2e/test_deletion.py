"""Deleting a Canary end to end, with the five services as processes on one sandbox stack and
the real ``kubectl delete`` (which waits until the Canary is gone): with ``revertOnDeletion``
the finalizer holds the Canary while Sluice gives the workload back — target scaled up, apex
Service on the target's pods — and the user's route keeps answering; without it, Kubernetes
garbage-collects everything the Canary owns and leaves the user's ApisixRoute alone."""

from __future__ import annotations

from typing import Any

import nats.js.errors
import pytest
from nats.aio.client import Client

from libs import messages, streams
from libs.model import canary as canary_model
from tests.fixtures.services import ServiceFactory
from tests.sandbox.e2e import support
from tests.sandbox.e2e.rollouts import get, initialized, record, start, valid

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

OWNED = [
    ("deployment", "podinfo-primary"),
    ("service", "podinfo-primary"),
    ("service", "podinfo-canary"),
    ("apisixroute", "podinfo-podinfo-canary"),
]


def finalizers(obj: dict[str, Any] | None) -> list[str]:
    return list(((obj or {}).get("metadata") or {}).get("finalizers") or [])


async def gone(stack: support.Stack, namespace: str, *objects: tuple[str, str]) -> None:
    for kind, name in objects:
        await support.poll(
            lambda kind=kind, name=name: get(stack, namespace, kind, name),  # type: ignore[misc]
            lambda found: found is None,
            timeout=30,
            what=f"{kind} {name} deleted",
        )


async def no_pending_tick(stack_nc: Client, namespace: str) -> None:
    """The canary's ticks have ended: none waits in the work queue any more."""
    js = stack_nc.jetstream()
    subject = messages.tick_subject(namespace, "podinfo")

    async def pending() -> bool:
        try:
            await js.get_last_msg(streams.TICKS.name, subject)
        except nats.js.errors.NotFoundError:
            return False
        return True

    await support.poll(pending, lambda waiting: not waiting, timeout=30, what="ticks ended")


async def test_revert_on_deletion_gives_the_workload_back_and_keeps_the_route_serving(
    stack: support.Stack, service: ServiceFactory, stack_nc: Client
) -> None:
    namespace = "revert"
    await start(stack, service)
    recorder = await record(stack_nc, namespace)
    await initialized(stack, namespace, revertOnDeletion=True)
    canary = await support.poll(
        lambda: get(stack, namespace, "canary", "podinfo"),
        lambda found: canary_model.FINALIZER in finalizers(found),
        timeout=30,
        what="the finalizer on the Canary",
    )
    assert canary is not None
    primary = await get(stack, namespace, "deployment", "podinfo-primary")
    assert primary is not None
    target = await get(stack, namespace, "deployment", "podinfo")
    assert target is not None
    assert target["spec"]["replicas"] == 0

    # kubectl waits until the finalizer is removed
    deleted = await stack.kubectl("delete", "canary", "podinfo", "-n", namespace)
    assert 'canary.flagger.app "podinfo" deleted' in deleted.stdout
    assert await get(stack, namespace, "canary", "podinfo") is None

    async def terminated() -> list[str]:
        return recorder.messages("terminated")

    await support.poll(terminated, lambda said: len(said) > 0, timeout=30, what="terminated")
    assert recorder.messages("terminating") == [f"Terminating canary podinfo.{namespace}"]
    assert recorder.messages("terminated") == [f"Terminated canary podinfo.{namespace}"]
    valid(recorder.events)

    # the target has the primary's replicas and is ready; the apex Service selects its pods
    # and outlives the Canary, which no longer owns it
    target = await get(stack, namespace, "deployment", "podinfo")
    assert target is not None
    assert target["spec"]["replicas"] == primary["spec"]["replicas"]
    assert target["status"].get("readyReplicas") == primary["spec"]["replicas"]
    apex = await get(stack, namespace, "service", "podinfo")
    assert apex is not None
    assert apex["spec"]["selector"] == {"app": "podinfo"}
    assert "ownerReferences" not in apex["metadata"]

    # what the Canary owned is collected; the user's route answers from the target's pods
    await gone(stack, namespace, *OWNED)
    await no_pending_tick(stack_nc, namespace)
    replicas = target["spec"]["replicas"]
    await stack.wait_route(f"{namespace}_podinfo_method", {"podinfo": (100, replicas)})
    counts = await support.load(
        stack.env["GATEWAY_URL"] + "/api/info",
        total=40,
        concurrency=4,
        host=f"{namespace}.example.com",
    )
    assert sum(counts.values()) == 40
    assert {status for status, _ in counts} == {200}, counts
    assert all(
        host.startswith("podinfo-") and not host.startswith("podinfo-primary-")
        for _, host in counts
    ), counts


async def test_a_plain_deletion_collects_what_the_canary_owns(
    stack: support.Stack, service: ServiceFactory, stack_nc: Client
) -> None:
    namespace = "plain"
    await start(stack, service)
    recorder = await record(stack_nc, namespace)
    await initialized(stack, namespace)
    canary = await get(stack, namespace, "canary", "podinfo")
    assert canary is not None
    assert finalizers(canary) == []
    await support.poll(
        lambda: get(stack, namespace, "apisixroute", "podinfo-podinfo-canary"),
        lambda found: found is not None,
        timeout=30,
        what="the canary route",
    )
    route = await get(stack, namespace, "apisixroute", "podinfo")
    assert route is not None

    await stack.kubectl("delete", "canary", "podinfo", "-n", namespace)
    assert await get(stack, namespace, "canary", "podinfo") is None
    # as with Flagger, the apex Service Sluice made is the Canary's too
    await gone(stack, namespace, *OWNED, ("service", "podinfo"))
    await no_pending_tick(stack_nc, namespace)
    after = await get(stack, namespace, "apisixroute", "podinfo")
    assert after is not None
    # untouched by Sluice: the same spec and generation (the ingress controller's status
    # conditions may have moved its resourceVersion)
    assert after["metadata"]["generation"] == route["metadata"]["generation"]
    assert after["spec"] == route["spec"]
    target = await get(stack, namespace, "deployment", "podinfo")
    assert target is not None  # the user's Deployment stays, as it was left
    assert recorder.messages("terminating") == []
    assert recorder.messages("terminated") == []
