"""A/B testing on APISIX end to end: the five services as processes against a sandbox stack, an
A/B canary (3 iterations at 1 s, a header match and a cookie match in groups of their own)
advancing iteration by iteration and promoting; while it is Progressing, real requests through
the gateway that match are answered by the canary pods and the others by the primary pods, and
the builtin success-rate query on the canary route counts only the matching requests.

To look at the routing while the canary is Progressing, a rollout webhook asks the loadtester's
gate: open for the first iteration, closed while the test sends its requests (the analysis
halts, the route stays as it is), opened again to let the canary finish."""

from __future__ import annotations

import collections

import aiohttp
import pytest
from nats.aio.client import Client

from libs.model import templates
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

NS = "ab"
HOST = f"{NS}.example.com"
COOKIE_MATCH = "^(.*?;)?(canary=always)(;.*)?$"
MATCH = [
    {"headers": {"x-canary": {"exact": "insider"}}},
    {"headers": {"cookie": {"regex": COOKIE_MATCH}}},
]
MATCHING: list[dict[str, str]] = [
    {"X-Canary": "insider"},
    {"Cookie": "canary=always"},
    {"Cookie": "canary=always; session=42"},
    {"Cookie": "session=42;canary=always"},
]
NOT_MATCHING: list[dict[str, str]] = [
    {},
    {"X-Canary": "outsider"},
    {"Cookie": "canary=never"},
    {"Cookie": "session=42; canary=always"},  # Flagger's regex wants no space after a ';'
]


def ab_canary(docs: Docs) -> None:
    """The load test sends matching requests (the canary route only sees those), and a rollout
    webhook on the loadtester's gate lets the test hold the analysis."""
    analysis = docs[3]["spec"]["analysis"]
    for weights in ("maxWeight", "stepWeight"):  # A/B testing counts iterations
        analysis.pop(weights, None)
    load = analysis["webhooks"][0]["metadata"]
    load["cmd"] = load["cmd"].replace("hey ", "hey -H 'X-Canary: insider' ", 1)
    analysis["webhooks"].append(
        {"name": "hold", "type": "rollout", "url": f"{LOADTESTER}/gate/check", "timeout": "5s"}
    )


async def answers(
    stack: support.Stack, path: str, headers: dict[str, str], n: int
) -> collections.Counter[tuple[int, str, str]]:
    """``n`` GETs through the gateway: (status, deployment of the answering pod, version)."""
    seen: collections.Counter[tuple[int, str, str]] = collections.Counter()
    async with aiohttp.ClientSession() as http:
        for _ in range(n):
            status, body = await support.get_json(
                http, stack.env["GATEWAY_URL"] + path, headers={"Host": HOST, **headers}
            )
            pod = str(body.get("hostname", ""))
            seen[(status, pod.rsplit("-", 2)[0] if pod else "", str(body.get("version", "")))] += 1
    return seen


async def metric(stack: support.Stack, promql: str, expected: float) -> None:
    await support.poll(
        lambda: support.query(stack.env["PROMETHEUS_URL"], promql),
        lambda v: v == expected,
        timeout=30,
        what=promql,
        interval=0.5,
    )


async def test_an_ab_canary_routes_only_matching_requests_to_the_canary(
    stack: support.Stack, service: ServiceFactory, stack_nc: Client
) -> None:
    await start(stack, service)
    recorder = await record(stack_nc, NS)
    await initialized(
        stack,
        NS,
        edit=ab_canary,
        analysis_changes={
            "iterations": 3,
            "match": MATCH,
            "threshold": 1000,  # the held steps halt on the closed gate
        },
    )
    route = (await stack.routes())["routes"]
    canary_rules = sorted(r["name"] for r in route if r["name"].startswith(f"{NS}_podinfo-"))
    assert canary_rules == [
        f"{NS}_podinfo-podinfo-canary_method-ab-0",
        f"{NS}_podinfo-podinfo-canary_method-ab-1",
    ]

    await loadtester(stack, "/gate/open", NS)
    await new_image(stack, NS)
    await wait_for(stack, NS, lambda s: (s.get("iterations") or 0) >= 1, "iteration 1")
    await loadtester(stack, "/gate/close", NS)
    status = await wait_for(stack, NS, lambda s: s.get("phase") == "Progressing", "Progressing")
    assert (status.get("iterations") or 0) < 3
    for rule in ("method-ab-0", "method-ab-1"):
        await stack.wait_route(
            f"{NS}_podinfo-podinfo-canary_{rule}",
            {"podinfo-primary": (0, 1), "podinfo-canary": (100, 1)},
        )

    # matching requests: the canary's pods (6.0.1); the others: the primary's (6.0.0)
    for headers in MATCHING:
        assert await answers(stack, "/api/info", headers, 10) == {(200, "podinfo", "6.0.1"): 10}
    for headers in NOT_MATCHING:
        assert await answers(stack, "/api/info", headers, 10) == {
            (200, "podinfo-primary", "6.0.0"): 10
        }

    # what the gateway's prometheus plugin reports: the canary route counts the matching
    # requests only; failures of non-matching requests do not touch the canary's success rate
    canary_route = f'route=~"{NS}_podinfo-podinfo-canary_.+"'
    primary_500 = f'sum(apisix_http_status{{route="{NS}_podinfo_method",code="500"}})'
    for headers in MATCHING:
        await answers(stack, "/status/418", headers, 15)
    for batch, total in ((5, 20), (10, 60)):  # two scrapes apart: a rate Prometheus can see
        for headers in NOT_MATCHING:
            await answers(stack, "/status/500", headers, batch)
        await metric(stack, primary_500, total)
    await metric(stack, f'sum(apisix_http_status{{{canary_route},code="418"}})', 60)
    assert (
        await support.query(
            stack.env["PROMETHEUS_URL"], f'sum(apisix_http_status{{{canary_route},code="500"}})'
        )
        is None
    )
    values = {"namespace": NS, "route": "podinfo", "target": "podinfo", "interval": "1m"}
    success = templates.render_query(
        templates.APISIX_BUILTIN_QUERIES["request-success-rate"], values
    )
    # once the primary's failures show in a rate over the same window, the canary's success
    # rate is still 100: its query does not see them
    failing = f'sum(rate(apisix_http_status{{route="{NS}_podinfo_method",code="500"}}[1m])) > 0'

    async def rates() -> tuple[float | None, float | None]:
        prometheus = stack.env["PROMETHEUS_URL"]
        return await support.query(prometheus, failing), await support.query(prometheus, success)

    _, rate = await support.poll(
        rates,
        lambda r: None not in r,
        timeout=30,
        what="success rate and primary failures",
        interval=0.5,
    )
    assert rate == 100.0
    assert (await wait_for(stack, NS, lambda s: True, "status"))["phase"] == "Progressing"

    await loadtester(stack, "/gate/open", NS)
    await wait_for(stack, NS, lambda s: s.get("phase") == "Succeeded", "Succeeded")
    events = [e["message"] for e in recorder.events]
    expected = [
        f"New revision detected! Scaling up podinfo.{NS}",
        f"Starting canary analysis for podinfo.{NS}",
        f"Advance podinfo.{NS} canary iteration 1/3",
        f"Advance podinfo.{NS} canary iteration 2/3",
        f"Advance podinfo.{NS} canary iteration 3/3",
        f"Copying podinfo.{NS} template spec to podinfo-primary.{NS}",
        "Routing all traffic to primary",
        f"Promotion completed! Scaling down podinfo.{NS}",
    ]
    assert [m for m in events if m in expected] == expected, events
    assert not any("canary weight" in m for m in events), events

    # after promotion everyone gets the new version from the primary, matching or not
    for headers in (MATCHING[0], NOT_MATCHING[0]):
        seen = await answers(stack, "/api/info", headers, 5)
        assert seen == {(200, "podinfo-primary", "6.0.1"): 5}
    valid(recorder.events)
