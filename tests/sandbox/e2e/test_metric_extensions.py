"""Sluice's metric extensions end to end, each canary in a namespace of its own on one sandbox
stack with the five services as processes: a dry-run metric that fails on every step is
reported and never halts, and a relative check compares the canary's error rate with the
primary's as the gateway measured them.

The relative check needs each side's traffic under its own gateway route label. The canary
route Sluice generates carries both backends under one label, so the test adds two direct
ApisixRoutes, one per side (``canary.<ns>.example.com`` → ``podinfo-canary``,
``primary.<ns>.example.com`` → ``podinfo-primary``), and the rollout webhooks load both; the
MetricTemplate names the canary's route in ``routeLabel`` and the primary's in
``primary.routeLabel``. The simulated pods answer 500 with probability ``SANDBOX_ERROR_RATE``.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from nats.aio.client import Client

from tests.fixtures.services import ServiceFactory
from tests.sandbox.e2e import support
from tests.sandbox.e2e.rollouts import Docs, initialized, new_image, record, start, valid, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

ERROR_RATE_QUERY = (
    '(sum(rate(apisix_http_status{route=~"{{ variables.routeLabel }}",code=~"5.."}'
    "[{{ interval }}])) or vector(0)) / "
    'sum(rate(apisix_http_status{route=~"{{ variables.routeLabel }}"}[{{ interval }}])) * 100'
)
RELATIVE_HALT = re.compile(
    r"Halt podinfo\.(?P<ns>[a-z-]+) advancement error-rate (?P<diff>-?\d+\.\d\d) > 10 "
    r"\(canary (?P<canary>\d+\.\d\d), primary (?P<primary>\d+\.\d\d)\)"
)


def checked(events: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    return [e for e in events if e["kind"] == "metric_checked" and e["metric"] == metric]


async def test_a_failing_dry_run_metric_is_reported_and_never_halts(
    stack: support.Stack, service: ServiceFactory, stack_nc: Client
) -> None:
    await start(stack, service)
    recorder = await record(stack_nc, "dry")
    metrics = [
        {"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "1m"},
        {  # a p99 of at least ten minutes: fails on every step
            "name": "request-duration",
            "thresholdRange": {"min": 600_000},
            "interval": "30s",
            "templateVariables": {"sluice.dryRun": "true"},
        },
    ]
    await initialized(stack, "dry", analysis_changes={"metrics": metrics})
    await new_image(stack, "dry")
    status = await wait_for(stack, "dry", lambda s: s.get("phase") == "Succeeded", "Succeeded")

    assert recorder.weights() == [10, 20, 30, 40, 50]
    dry = checked(recorder.events, "request-duration")
    assert dry
    assert all(e["dry_run"] and not e["passed"] for e in dry)
    measured = [e for e in dry if e["value"] is not None]
    assert measured  # the gateway measured the canary on at least one step
    for event in measured:
        assert re.fullmatch(
            r"Dry-run metric request-duration \S+ < 10m0s would have halted podinfo\.dry "
            r"advancement",
            event["message"],
        ), event["message"]
    assert not any("request duration" in m for m in recorder.messages("halted"))
    real = checked(recorder.events, "request-success-rate")
    assert real
    assert not any(e["dry_run"] for e in real)
    shown = {m["name"]: m for m in status.get("metrics") or []}
    assert shown["request-duration"]["passed"] is False
    assert shown["request-duration"]["dryRun"] is True
    assert "dryRun" not in shown["request-success-rate"]
    assert shown["request-success-rate"]["passed"] is True
    assert shown["request-duration"]["min"] == 600_000
    valid(recorder.events)


def relative_setup(namespace: str, prometheus_url: str) -> tuple[Any, dict[str, Any]]:
    """``edit`` for ``initialized`` (pods erring 5%, direct routes, the MetricTemplate) and
    the analysis changes (the relative metric, a load test per side)."""
    host = f"{namespace}.example.com"

    def direct_route(side: str) -> dict[str, Any]:
        return {
            "apiVersion": "apisix.apache.org/v2",
            "kind": "ApisixRoute",
            "metadata": {"name": f"podinfo-{side}-direct", "namespace": namespace},
            "spec": {
                "http": [
                    {
                        "name": "direct",
                        "match": {"hosts": [f"{side}.{host}"], "paths": ["/*"]},
                        "backends": [{"serviceName": f"podinfo-{side}", "servicePort": 80}],
                        "plugins": [
                            {
                                "name": "prometheus",
                                "enable": True,
                                "config": {"disable": False, "prefer_name": True},
                            }
                        ],
                    }
                ]
            },
        }

    def edit(docs: Docs) -> None:
        deployment = next(d for d in docs if d["kind"] == "Deployment")
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        container["env"].append({"name": "SANDBOX_ERROR_RATE", "value": "0.05"})
        docs.append(
            {
                "apiVersion": "flagger.app/v1beta1",
                "kind": "MetricTemplate",
                "metadata": {"name": "error-rate", "namespace": namespace},
                "spec": {
                    "provider": {"type": "prometheus", "address": prometheus_url},
                    "query": ERROR_RATE_QUERY,
                },
            }
        )
        docs.extend([direct_route("canary"), direct_route("primary")])

    analysis = {
        "threshold": 5,
        "metrics": [
            {  # the canary's error rate at most 10 points above the primary's
                "name": "error-rate",
                "templateRef": {"name": "error-rate"},
                "thresholdRange": {"max": 10},
                "interval": "1m",
                "templateVariables": {
                    "sluice.compareTo": "primary",
                    "routeLabel": f"{namespace}_podinfo-canary-direct_.+",
                    "primary.routeLabel": f"{namespace}_podinfo-primary-direct_.+",
                },
            }
        ],
        "webhooks": [
            {
                "name": f"load-{side}",
                "url": "http://flagger-loadtester.test/",
                "timeout": "5s",
                "type": "rollout",
                "metadata": {
                    "cmd": f"hey -z 1m -q 25 -c 2 -h2 -host {side}.{host} "
                    "http://apisix-gateway.apisix/api/info"
                },
            }
            for side in ("canary", "primary")
        ],
    }
    return edit, analysis


async def test_a_canary_erring_like_the_primary_is_promoted(
    stack: support.Stack, service: ServiceFactory, stack_nc: Client
) -> None:
    await start(stack, service)
    recorder = await record(stack_nc, "rel-same")
    edit, analysis = relative_setup("rel-same", stack.env["PROMETHEUS_URL"])
    await initialized(stack, "rel-same", edit=edit, analysis_changes=analysis)
    await new_image(stack, "rel-same")  # same 5% errors as the primary
    await wait_for(stack, "rel-same", lambda s: s.get("phase") == "Succeeded", "Succeeded")

    relative = [e for e in checked(recorder.events, "error-rate") if e["value"] is not None]
    assert relative
    for event in relative:
        assert event["value"] == pytest.approx(event["canary_value"] - event["primary_value"])
    # both sides really erred (an absolute "at most 1%" check would have rolled it back)
    assert any(e["canary_value"] > 1 and e["primary_value"] > 1 for e in relative)
    assert relative[-1]["passed"]
    valid(recorder.events)


async def test_a_canary_erring_much_more_than_the_primary_is_rolled_back(
    stack: support.Stack, service: ServiceFactory, stack_nc: Client
) -> None:
    await start(stack, service)
    recorder = await record(stack_nc, "rel-worse")
    edit, analysis = relative_setup("rel-worse", stack.env["PROMETHEUS_URL"])
    await initialized(stack, "rel-worse", edit=edit, analysis_changes=analysis)
    await stack.kubectl(
        "set", "env", "deployment/podinfo", "SANDBOX_ERROR_RATE=0.6", "-n", "rel-worse"
    )
    await wait_for(stack, "rel-worse", lambda s: s.get("phase") == "Failed", "Failed")

    halts = [m for m in recorder.messages("halted") if RELATIVE_HALT.fullmatch(m)]
    assert halts, recorder.messages("halted")
    found = RELATIVE_HALT.fullmatch(halts[-1])
    assert found is not None
    canary, primary = float(found["canary"]), float(found["primary"])
    assert canary > primary + 10
    assert 30 < canary < 90  # the canary's pods answer 500 60% of the time
    assert primary < 20  # the primary's 5%
    assert recorder.messages("rolled_back")[0].startswith(
        "Rolling back podinfo.rel-worse failed checks threshold reached 5"
    )
    failing = [e for e in checked(recorder.events, "error-rate") if e["value"] is not None]
    assert any(not e["passed"] and e["canary_value"] is not None for e in failing)
    valid(recorder.events)
