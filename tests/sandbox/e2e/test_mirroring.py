"""Traffic mirroring on APISIX end to end: a blue/green canary with ``mirror: true`` and
``mirrorWeight: 50``, the five services as processes against a sandbox stack. During the
iterations clients get only the primary's answers while the canary's pods receive copies of
about half of the requests (APISIX ``proxy-mirror``, ``sample_ratio`` 0.5); after the promotion
the canary route mirrors no more.

As in the A/B test, a rollout webhook on the loadtester's gate holds the analysis while the test
sends its requests."""

from __future__ import annotations

import asyncio
import collections
import json
import re

import pytest
from nats.aio.client import Client

from tests.fixtures.services import ServiceFactory
from tests.sandbox.e2e import support
from tests.sandbox.e2e.rollouts import (
    LOADTESTER,
    Docs,
    initialized,
    loadtester,
    new_image,
    record,
    start,
    valid,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

NS = "mirror"
HOST = f"{NS}.example.com"
CANARY_ROUTE = f"{NS}_podinfo-podinfo-canary_method"
COUNTER = re.compile(r'^http_requests_total\{method="GET",path="/api/info",status="200"\} (\S+)$')


def held_blue_green(docs: Docs) -> None:
    analysis = docs[3]["spec"]["analysis"]
    for weights in ("maxWeight", "stepWeight"):  # blue/green counts iterations
        analysis.pop(weights, None)
    analysis["webhooks"].append(
        {"name": "hold", "type": "rollout", "url": f"{LOADTESTER}/gate/check", "timeout": "5s"}
    )


async def canary_pods_served(stack: support.Stack) -> int:
    """``GET /api/info`` requests the canary's pods answered, from their own counters."""
    out = await stack.kubectl("get", "pods", "-n", NS, "-l", "app=podinfo", "-o", "json")
    total = 0
    for pod in json.loads(out.stdout)["items"]:
        ip = pod["status"].get("podIP")
        if not ip or pod["metadata"].get("deletionTimestamp"):
            continue
        text = (
            await asyncio.to_thread(support.direct_urlopen, f"http://{ip}:9898/metrics")
        ).decode()
        for line in text.splitlines():
            found = COUNTER.match(line)
            if found:
                total += int(float(found.group(1)))
    return total


async def mirror_plugin(stack: support.Stack) -> dict[str, object] | None:
    routes = {r["name"]: r for r in (await stack.routes())["routes"]}
    plugin = routes[CANARY_ROUTE]["plugins"].get("proxy-mirror")
    return dict(plugin) if plugin is not None else None


async def test_a_mirrored_blue_green_canary_gets_copies_while_clients_get_the_primary(
    stack: support.Stack, service: ServiceFactory, stack_nc: Client
) -> None:
    await start(stack, service)
    recorder = await record(stack_nc, NS)
    await initialized(
        stack,
        NS,
        edit=held_blue_green,
        analysis_changes={
            "iterations": 3,
            "mirror": True,
            "mirrorWeight": 50,
            "threshold": 1000,  # the held steps halt on the closed gate
        },
    )
    assert await mirror_plugin(stack) is None

    await loadtester(stack, "/gate/open", NS)
    await new_image(stack, NS)
    await wait_for(stack, NS, lambda s: (s.get("iterations") or 0) >= 1, "iteration 1")
    await loadtester(stack, "/gate/close", NS)
    status = await wait_for(stack, NS, lambda s: s.get("phase") == "Progressing", "Progressing")
    assert (status.get("iterations") or 0) < 3
    assert await mirror_plugin(stack) == {
        "host": f"http://podinfo-canary.{NS}.svc.cluster.local:80",
        "sample_ratio": 0.5,
    }

    before = await canary_pods_served(stack)
    counts = await support.load(
        stack.env["GATEWAY_URL"] + "/api/info", total=400, concurrency=8, host=HOST
    )
    by_deployment = collections.Counter()
    for (code, pod), n in counts.items():
        by_deployment[(code, pod.rsplit("-", 2)[0])] += n
    assert by_deployment == {(200, "podinfo-primary"): 400}
    # about 200 copies of the test's 400 requests (binomial: sd 10), plus copies of the load
    # test's requests; none at all without mirroring
    copies = await support.poll(
        lambda: canary_pods_served(stack),
        lambda n: n - before >= 150,
        timeout=30,
        what="copies at the canary pods",
    )
    print(f"\ncanary pods answered {copies - before} copies while the test sent 400 requests")

    await loadtester(stack, "/gate/open", NS)
    await wait_for(stack, NS, lambda s: s.get("phase") == "Succeeded", "Succeeded")
    assert await mirror_plugin(stack) is None
    events = [e["message"] for e in recorder.events]
    expected = [
        f"Starting canary analysis for podinfo.{NS}",
        f"Advance podinfo.{NS} canary iteration 1/3",
        f"Advance podinfo.{NS} canary iteration 3/3",
        "Routing all traffic to canary",
        f"Copying podinfo.{NS} template spec to podinfo-primary.{NS}",
        "Routing all traffic to primary",
        f"Promotion completed! Scaling down podinfo.{NS}",
    ]
    assert [m for m in events if m in expected] == expected, events
    valid(recorder.events)
