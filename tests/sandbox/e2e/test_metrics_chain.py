"""The metrics chain end to end: simulated pods behind Services,
an ApisixRoute synced by the gateway, traffic through the gateway's data plane, the gateway's
APISIX metrics scraped every second by the stack's real Prometheus, and Flagger's builtin APISIX
queries answered by it — everything in the processes ``python -m sandbox up`` starts.

Flagger's queries (reference: flagger-behaviour.md §7, pkg/metrics/observers/apisix.go) are
filled in with namespace=test, route=podinfo, target=podinfo, interval=1m, so they select the
route label ``test_podinfo-podinfo-canary_<rule>`` of the canary ApisixRoute Flagger generates.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math

import nats
import pytest
import yaml

from libs import messages
from libs.model import templates
from tests.fixtures.services import ServiceFactory
from tests.sandbox.e2e import support

pytestmark = pytest.mark.e2e

SUCCESS_RATE = templates.APISIX_BUILTIN_QUERIES["request-success-rate"]
DURATION = templates.APISIX_BUILTIN_QUERIES["request-duration"]
CANARY_ROUTE = "test_podinfo-podinfo-canary_podinfo"  # <namespace>_<apisixroute>_<rule>


def render(template: str, interval: str = "1m") -> str:
    """Fill a builtin query for the seed canary (test/podinfo) the way the analyzer does."""
    values = {"namespace": "test", "route": "podinfo", "target": "podinfo", "interval": interval}
    return templates.render_query(template, values)


def app(
    name: str, namespace: str, version: str, replicas: int = 1, env: dict[str, str] | None = None
) -> list[dict]:
    """A podinfo Deployment (readiness over HTTP, no minReadySeconds) and its Service."""
    labels = {"app": name}
    container = {
        "name": "podinfod",
        "image": f"ghcr.io/stefanprodan/podinfo:{version}",
        "command": ["./podinfo", "--port=9898"],
        "ports": [{"name": "http", "containerPort": 9898}],
        "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": 9898}},
    }
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "selector": labels,
                "ports": [{"name": "http", "port": 80, "targetPort": 9898}],
            },
        },
    ]


def deployment_of(pod: str) -> str:
    """``podinfo-canary-<replicaset hash>-<suffix>`` → ``podinfo-canary``."""
    return pod.rsplit("-", 2)[0]


def route(name: str, namespace: str, rule: str, host: str, weights: dict[str, int]) -> dict:
    """An ApisixRoute like Flagger's generated canary route: one rule, weighted backends, the
    prometheus plugin with ``prefer_name`` (route label = ``<ns>_<name>_<rule>``)."""
    return {
        "apiVersion": "apisix.apache.org/v2",
        "kind": "ApisixRoute",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "http": [
                {
                    "name": rule,
                    "priority": 10000,
                    "match": {"hosts": [host], "paths": ["/*"]},
                    "backends": [
                        {"serviceName": svc, "servicePort": 80, "weight": weight}
                        for svc, weight in weights.items()
                    ],
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


async def apply_and_roll_out(stack: support.Stack, objects: list[dict], namespace: str) -> None:
    await stack.kubectl("create", "namespace", namespace, check=False)  # "test" already exists
    await stack.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(objects))
    deployments = [o["metadata"]["name"] for o in objects if o["kind"] == "Deployment"]
    await asyncio.gather(
        *(
            stack.kubectl(
                "rollout", "status", f"deployment/{name}", "-n", namespace, "--timeout=60s"
            )
            for name in deployments
        )
    )


async def test_flagger_builtin_queries_through_simulated_pods(stack: support.Stack) -> None:
    # One canary Deployment carries both faults: the app sleeps SANDBOX_LATENCY_MS first and
    # then answers 500 with probability SANDBOX_ERROR_RATE, so every request is slow and 30%
    # fail — one run of traffic serves both of Flagger's checks.
    faults = {"SANDBOX_ERROR_RATE": "0.3", "SANDBOX_LATENCY_MS": "50"}
    objects = [
        *app("podinfo-primary", "test", "6.0.0"),
        *app("podinfo-canary", "test", "6.0.1", replicas=2, env=faults),
        route(
            "podinfo-podinfo-canary",
            "test",
            "podinfo",
            "app.example.com",
            {"podinfo-primary": 0, "podinfo-canary": 100},
        ),
    ]
    await apply_and_roll_out(stack, objects, "test")
    await stack.wait_route(CANARY_ROUTE, {"podinfo-primary": (0, 1), "podinfo-canary": (100, 2)})

    prometheus = stack.env["PROMETHEUS_URL"]
    scraped_total = f'sum(apisix_http_status{{route="{CANARY_ROUTE}"}})'
    scrapes_with_traffic = (
        f'count_over_time(apisix_http_status{{route="{CANARY_ROUTE}",code="200"}}[1m])'
    )
    stop = asyncio.Event()
    traffic = asyncio.create_task(
        support.load(stack.env["GATEWAY_URL"] + "/api/info", stop=stop, concurrency=16)
    )
    try:
        # Enough for stable numbers: >= 2,000 canary requests scraped (the success rate's
        # standard error is then ~1 point, the 65-75 band ~5 of them) over >= 5 scrapes.
        await support.poll(
            lambda: support.query(prometheus, scraped_total),
            lambda v: v is not None and v >= 2000,
            timeout=60,
            what=scraped_total,
            interval=0.5,
        )
        await support.poll(
            lambda: support.query(prometheus, scrapes_with_traffic),
            lambda v: v is not None and v >= 5,
            timeout=20,
            what=scrapes_with_traffic,
            interval=0.5,
        )
        success = await support.query(prometheus, render(SUCCESS_RATE))
        p99 = await support.query(prometheus, render(DURATION))
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await traffic
    counts: collections.Counter[tuple[int, str]] = traffic.result()
    print(f"\nrequest-success-rate={success} request-duration p99={p99} ms; sent {counts.total()}")

    assert success is not None
    assert 65 <= success <= 75
    # Every canary request takes 50 ms + gateway/app overhead, so all land in APISIX's bucket
    # (50, 100] (its buckets: ... 20, 50, 100, 200 ...) unless >= 1% exceed 100 ms.
    # histogram_quantile interpolates linearly inside the bucket: 50 + 50 * 0.99 = 99.5 ms.
    # That 99.5 is what an unloaded run measures.
    assert p99 is not None
    assert not math.isnan(p99)
    # The upper bound allows one bucket more: on a loaded 2-core machine scheduler jitter can
    # push 1% of requests past 100 ms, which moves p99 into (100, 200]. The lower bound is what
    # proves the injected latency is seen (without it p99 is a few ms).
    assert 50 < p99 <= 200
    # The gateway, not the test, saw the failures; no request went to the primary.
    statuses = collections.Counter(status for status, _ in counts.elements())
    assert set(statuses) == {200, 500}, statuses
    pods = {host for (status, host) in counts if status == 200}
    assert {deployment_of(host) for host in pods} == {"podinfo-canary"}, pods


async def test_weights_70_30_split_10000_requests_by_answering_pod(stack: support.Stack) -> None:
    objects = [
        *app("podinfo-primary", "split", "6.0.0", replicas=2),
        *app("podinfo-canary", "split", "6.0.1", replicas=2),
        route(
            "podinfo",
            "split",
            "main",
            "split.example.com",
            {"podinfo-primary": 70, "podinfo-canary": 30},
        ),
    ]
    await apply_and_roll_out(stack, objects, "split")
    await stack.wait_route(
        "split_podinfo_main", {"podinfo-primary": (70, 2), "podinfo-canary": (30, 2)}
    )
    counts = await support.load(
        stack.env["GATEWAY_URL"] + "/api/info",
        total=10_000,
        concurrency=32,
        host="split.example.com",
    )
    assert counts.total() == 10_000
    assert {status for status, _ in counts} == {200}
    by_deployment: collections.Counter[str] = collections.Counter()
    for (_, host), n in counts.items():
        by_deployment[deployment_of(host)] += n
    assert set(by_deployment) == {"podinfo-primary", "podinfo-canary"}
    share = by_deployment["podinfo-canary"] / 10_000 * 100
    print(f"\ncanary share {share:.2f}% of 10,000 ({dict(by_deployment)})")
    assert abs(share - 30) <= 3
    assert len({host for _, host in counts}) == 4  # both pods of each deployment answered


SEED_LOAD_TEST = (
    "hey -z 1m -q 10 -c 2 -h2 -host app.example.com http://apisix-gateway.apisix/api/info"
)


async def test_the_seeds_rollout_webhook_makes_traffic_prometheus_sees(
    stack: support.Stack, service: ServiceFactory
) -> None:
    """The tutorial's rollout webhook, run as the analyzer asks for it (``RunWebhook``), reaches
    ``http://flagger-loadtester.test/`` — the webhook-runner's own loadtester API — and its hey
    sends traffic through the gateway: the canary route's ``apisix_http_status`` rises in the
    stack's Prometheus."""
    objects = [
        *app("podinfo-primary", "test", "6.0.0"),
        *app("podinfo-canary", "test", "6.0.1"),
        route(
            "podinfo-podinfo-canary",
            "test",
            "podinfo",
            "app.example.com",
            {"podinfo-primary": 0, "podinfo-canary": 100},
        ),
    ]
    await apply_and_roll_out(stack, objects, "test")
    await stack.wait_route(CANARY_ROUTE, {"podinfo-primary": (0, 1), "podinfo-canary": (100, 1)})
    prometheus = stack.env["PROMETHEUS_URL"]
    scraped_total = f'sum(apisix_http_status{{route="{CANARY_ROUTE}"}})'
    before = await support.query(prometheus, scraped_total) or 0.0
    runner = service(
        "webhook_runner",
        stack.env["NATS_URL"],
        SLUICE_LOADTESTER_PORT=stack.env["LOADTESTER_PORT"],
        HTTP_PROXY=stack.env["HTTP_PROXY"],
        NO_PROXY=stack.env["NO_PROXY"],
    )
    await runner.ready()
    await runner.wait_log("loadtester API listening")
    # what the analyzer sends for the seed's rollout webhook; the runner posts Flagger's
    # payload to http://flagger-loadtester.test/ through the name proxy, i.e. to itself
    command = messages.RunWebhook(
        canary=messages.CanaryRef(namespace="test", name="podinfo"),
        webhook=messages.WebhookSpec(
            name="load-test",
            type=messages.WebhookType.ROLLOUT,
            url="http://flagger-loadtester.test/",
            timeout_s=5.0,
            metadata={"cmd": SEED_LOAD_TEST},
        ),
        phase=messages.Phase.PROGRESSING,
    )
    nc = await nats.connect(stack.env["NATS_URL"])
    try:
        msg = await nc.request(messages.CMD_WEBHOOK, messages.ENCODER.encode(command), timeout=10)
    finally:
        await nc.close()
    reply = messages.REPLY_DECODER.decode(msg.data)
    assert isinstance(reply, messages.WebhookResult)
    assert (reply.ok, reply.status_code) == (True, 202)
    # 20 requests/s (-q is per worker); a 1 s scrape interval sees them within a few seconds
    seen = await support.poll(
        lambda: support.query(prometheus, scraped_total),
        lambda v: v is not None and v >= before + 40,
        timeout=30,
        what=scraped_total,
        interval=0.5,
    )
    print(f"\n{scraped_total}: {before} -> {seen}")
    assert runner.terminate() == 0  # the running hey ends with the service
    assert "task starting hey -z 1m" in runner.log_text()
