"""Kubernetes objects at their edges during real rollouts, each canary in a namespace of its own
on one sandbox stack, all at the same time, with the five services as processes.

Every case ends in a Warning event on the Canary (as ``kubectl describe canary`` shows it) and
a status that says what is wrong — or in a clean rollout when the object is merely at a limit —
and no service restarts or logs a traceback on the way:

- a Canary at its limits: stepWeight 100 / maxWeight 100 / threshold 1 with many webhooks, 20
  stepWeights with many metrics and a huge threshold, names at the 63-character label limit
  (rolled out) and past it (rejected with a field path), a huge interval;
- a MetricTemplate whose query returns a matrix, NaN, +Inf, an empty vector or several series;
- a webhook that answers more slowly than its timeout, forever;
- an ApisixRoute without the rule Flagger copies (then fixed: the analysis resumes);
- the target Deployment deleted mid-analysis.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import yaml
from aiohttp import web
from nats.aio.client import Client

from tests.fixtures.services import ServiceFactory, ServiceProcess
from tests.sandbox.e2e import support
from tests.sandbox.e2e.rollouts import (
    LOADTESTER,
    Docs,
    condition,
    hook,
    manifests,
    new_image,
    record,
    start,
    valid,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

TIMEOUT = 150.0  # seconds one case may take on a busy two-core machine
STEP_WEIGHTS = list(range(5, 101, 5))  # 20 steps
FITS = "t" * 55  # the longest target name: "<name>-primary" is 63 characters
TOO_LONG = "t" * 56
CANARY_63 = "c" * 63


# --------------------------------------------------------------------------- helpers


async def status_of(stack: support.Stack, namespace: str, name: str = "podinfo") -> dict[str, Any]:
    out = await stack.kubectl("get", "canary", name, "-n", namespace, "-o", "json", check=False)
    return dict(json.loads(out.stdout).get("status") or {}) if out.code == 0 else {}


async def until(
    stack: support.Stack,
    namespace: str,
    check: Callable[[dict[str, Any]], bool],
    what: str,
    name: str = "podinfo",
) -> dict[str, Any]:
    return await support.poll(
        lambda: status_of(stack, namespace, name),
        check,
        timeout=TIMEOUT,
        what=f"{namespace}: {what}",
        interval=0.5,
    )


def phase_is(phase: str) -> Callable[[dict[str, Any]], bool]:
    return lambda s: s.get("phase") == phase


async def warned(stack: support.Stack, namespace: str, text: str, name: str = "podinfo") -> str:
    """Until ``kubectl describe canary`` lists a Warning event containing ``text``."""

    async def described() -> str:
        return (await stack.kubectl("describe", "canary", name, "-n", namespace)).stdout

    def has(out: str) -> bool:
        return any("Warning" in line and text in line for line in out.splitlines())

    return await support.poll(
        described, has, timeout=TIMEOUT, what=f"{namespace}: a Warning with {text!r}", interval=1
    )


async def apply(stack: support.Stack, docs: Docs) -> None:
    await stack.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(docs))


def docs_of(namespace: str, edit: Callable[[Docs], None] | None = None, **analysis: Any) -> Docs:
    return list(yaml.safe_load_all(manifests(namespace, edit, analysis_changes=analysis)))


def template(namespace: str, name: str, query: str, prometheus: str) -> dict[str, Any]:
    return {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "MetricTemplate",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"provider": {"type": "prometheus", "address": prometheus}, "query": query},
    }


def custom_metric(name: str, ref: str) -> dict[str, Any]:
    return {"name": name, "templateRef": {"name": ref}, "thresholdRange": {"max": 10}}


def still_running(procs: dict[str, list[ServiceProcess]]) -> None:
    """Each service is the process started for this test, and never logged a traceback."""
    for name, group in procs.items():
        for proc in group:
            assert proc.proc is not None
            assert proc.proc.poll() is None, f"{name} exited ({proc.proc.returncode})"
            assert "Traceback" not in proc.log_text(), f"{name}:\n{proc.log_text()[-3000:]}"


@contextlib.asynccontextmanager
async def slow_server() -> AsyncIterator[str]:
    """A webhook endpoint that never answers while the test runs."""
    released = asyncio.Event()

    async def handler(_: web.Request) -> web.Response:
        await released.wait()
        return web.Response(text="too late")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/check"
    finally:
        released.set()
        await runner.cleanup()


# --------------------------------------------------------------------------- limits


async def at_the_limits(stack: support.Stack, nc: Client) -> None:
    """Big steps, threshold 1 and 24 webhooks: one advance to 100, then promoted."""
    ns = "edge-max"
    recorder = await record(nc, ns)

    def hooks(docs: Docs) -> None:
        webhooks = docs[3]["spec"]["analysis"]["webhooks"]
        webhooks += [
            hook(f"pre-{i}", "pre-rollout", f"{LOADTESTER}/gate/approve") for i in range(12)
        ]
        webhooks += [hook(f"run-{i}", "rollout", f"{LOADTESTER}/gate/approve") for i in range(12)]

    docs = docs_of(ns, hooks, stepWeight=100, maxWeight=100, threshold=1, metrics=[])
    await apply(stack, docs)
    await until(stack, ns, phase_is("Initialized"), "Initialized")
    await new_image(stack, ns)
    await until(stack, ns, phase_is("Succeeded"), "Succeeded")
    assert recorder.weights() == [100]
    assert len(recorder.messages("promotion_completed")) == 1
    valid(recorder.events)


async def many_steps_and_metrics(stack: support.Stack, nc: Client) -> None:
    """20 stepWeights, 12 metrics and a huge threshold: every step once, in order."""
    ns = "edge-steps"
    recorder = await record(nc, ns)
    prometheus = stack.env["PROMETHEUS_URL"]

    def metrics(docs: Docs) -> None:
        docs.append(template(ns, "one", "vector(1)", prometheus))
        analysis = docs[3]["spec"]["analysis"]
        del analysis["stepWeight"], analysis["maxWeight"]
        analysis["stepWeights"] = STEP_WEIGHTS
        analysis["metrics"] = [custom_metric(f"one-{i}", "one") for i in range(12)]

    await apply(stack, docs_of(ns, metrics, threshold=2**31 - 1))
    await until(stack, ns, phase_is("Initialized"), "Initialized")
    await new_image(stack, ns)
    await until(stack, ns, phase_is("Succeeded"), "Succeeded")
    assert recorder.weights() == STEP_WEIGHTS
    checked = [e for e in recorder.events if e["kind"] == "metric_checked"]
    assert {e["metric"] for e in checked} == {f"one-{i}" for i in range(12)}
    valid(recorder.events)


def renamed(target: str, canary: str) -> Callable[[Docs], None]:
    def edit(docs: Docs) -> None:
        deployment, route, obj = docs[1], docs[2], docs[3]
        labels = {"app": target}
        deployment["metadata"]["name"] = target
        deployment["metadata"]["labels"] = labels
        deployment["spec"]["selector"]["matchLabels"] = labels
        deployment["spec"]["template"]["metadata"]["labels"] = labels
        route["spec"]["http"][0]["backends"][0]["serviceName"] = target
        obj["metadata"]["name"] = canary
        obj["spec"]["targetRef"]["name"] = target

    return edit


async def names_at_the_label_limit(stack: support.Stack, nc: Client) -> None:
    """A 63-character Canary on a 55-character target rolls out."""
    ns = "edge-names-fit"
    recorder = await record(nc, ns)
    await apply(stack, docs_of(ns, renamed(FITS, CANARY_63), stepWeight=50))
    await until(stack, ns, phase_is("Initialized"), "Initialized", CANARY_63)
    await stack.kubectl(
        "set",
        "image",
        f"deployment/{FITS}",
        "podinfod=ghcr.io/stefanprodan/podinfo:6.0.1",
        "-n",
        ns,
    )
    await until(stack, ns, phase_is("Succeeded"), "Succeeded", CANARY_63)
    assert recorder.weights() == [50]
    valid(recorder.events)


async def names_past_the_label_limit(stack: support.Stack, nc: Client) -> None:
    """A 56-character target would need a 64-character primary: rejected by field path."""
    ns = "edge-names-long"
    await apply(stack, docs_of(ns, renamed(TOO_LONG, CANARY_63)))
    expected = "spec.targetRef.name: expected at most 55 characters"
    await warned(stack, ns, expected, CANARY_63)

    def invalid(s: dict[str, Any]) -> bool:
        found = condition(s, "Valid")
        return found is not None and found["status"] == "False"

    status = await until(stack, ns, invalid, "Valid=False", CANARY_63)
    valid_condition = condition(status, "Valid")
    assert valid_condition is not None
    assert expected in valid_condition["message"]
    assert "phase" not in status or status["phase"] in ("", None)
    # nothing was created for it
    services = await stack.kubectl("get", "services", "-n", ns, "-o", "name")
    assert TOO_LONG not in services.stdout


async def huge_interval(stack: support.Stack) -> None:
    """The CRD's schema refuses hours; a year in minutes is taken (and initializes)."""
    ns = "edge-interval"
    refused = await stack.kubectl(
        "apply",
        "-f",
        "-",
        stdin=yaml.safe_dump_all(docs_of(ns, interval="8760h", threshold=2**31 - 1)),
        check=False,
    )
    assert refused.code != 0
    assert "spec.analysis.interval" in refused.stderr
    await apply(stack, docs_of(ns, interval="525600m", threshold=2**31 - 1))
    await until(stack, ns, phase_is("Initialized"), "Initialized")


async def test_a_canary_at_its_limits_rolls_out_or_is_rejected_by_field_path(
    stack: support.Stack, service: ServiceFactory, stack_nc: Client
) -> None:
    procs = await start(stack, service)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(at_the_limits(stack, stack_nc))
        tg.create_task(many_steps_and_metrics(stack, stack_nc))
        tg.create_task(names_at_the_label_limit(stack, stack_nc))
        tg.create_task(names_past_the_label_limit(stack, stack_nc))
        tg.create_task(huge_interval(stack))
    still_running(procs)


# --------------------------------------------------------------------------- faults


QUERIES = {  # namespace suffix: (query, the Warning it ends in)
    "matrix": ("vector(1)[30s:10s]", "query returned multiple values (a range vector)"),
    "nan": ("vector(0) / 0", "custom: no values found (the query returned NaN)"),
    "inf": ("vector(1) / 0", "advancement custom +Inf > 10"),
    "empty": ("vector(1) < 0", "no values found for custom metric: custom: no values found"),
    # several series: the last is the value, as in Flagger (both fail the max of 10 here)
    "multi": (
        'label_replace(vector(20), "a", "x", "", "") or label_replace(vector(20), "a", "y", "", "")',
        "advancement custom 20.00 > 10",
    ),
}


async def bad_query(stack: support.Stack, nc: Client, kind: str) -> None:
    ns = f"edge-q-{kind}"
    query, warning = QUERIES[kind]
    recorder = await record(nc, ns)
    prometheus = stack.env["PROMETHEUS_URL"]

    def metric(docs: Docs) -> None:
        docs.append(template(ns, "edge", query, prometheus))
        docs[3]["spec"]["analysis"]["metrics"] = [custom_metric("custom", "edge")]
        docs[3]["spec"]["analysis"]["webhooks"] = []

    await apply(stack, docs_of(ns, metric, threshold=2))
    await until(stack, ns, phase_is("Initialized"), "Initialized")
    await new_image(stack, ns)
    await until(stack, ns, phase_is("Failed"), "Failed")
    await warned(stack, ns, warning)
    await warned(stack, ns, "failed checks threshold reached 2")
    assert any(warning in m for m in recorder.messages("halted")), recorder.messages("halted")
    valid(recorder.events)


async def slow_webhook(stack: support.Stack, nc: Client, url: str) -> None:
    ns = "edge-slow"
    recorder = await record(nc, ns)

    def slow(docs: Docs) -> None:
        docs[3]["spec"]["analysis"]["metrics"] = []
        docs[3]["spec"]["analysis"]["webhooks"] = [
            {"name": "slow", "type": "rollout", "url": url, "timeout": "2s"}
        ]

    await apply(stack, docs_of(ns, slow, threshold=2))
    await until(stack, ns, phase_is("Initialized"), "Initialized")
    await new_image(stack, ns)
    await until(stack, ns, phase_is("Failed"), "Failed")
    await warned(stack, ns, "external check slow failed no answer within 2s")
    await warned(stack, ns, "Rolling back podinfo.edge-slow failed checks threshold reached 2")
    halts = [m for m in recorder.messages("halted") if "slow failed" in m]
    assert len(halts) == 2, halts  # rolled back after `threshold` failures, not before or after
    valid(recorder.events)


async def route_without_the_rule(stack: support.Stack, nc: Client) -> None:
    ns = "edge-norule"
    recorder = await record(nc, ns)

    def other_backend(docs: Docs) -> None:
        docs[2]["spec"]["http"][0]["backends"][0]["serviceName"] = "other"

    docs = docs_of(ns, other_backend)
    await apply(stack, docs)
    said = (
        "cannot proceed: SetWeights failed: ApisixRoute edge-norule/podinfo has no HTTP rule "
        "whose single backend is the Service 'podinfo'"
    )
    await warned(stack, ns, said)

    def refused(s: dict[str, Any]) -> bool:
        found = condition(s, "Valid")
        return found is not None and found["status"] == "False"

    status = await until(stack, ns, refused, "Valid=False")
    found = condition(status, "Valid")
    assert found is not None
    assert "has no HTTP rule" in found["message"]
    # fixed, the analysis goes on by itself: not stuck, and valid again
    await apply(stack, docs_of(ns))

    def resumed(s: dict[str, Any]) -> bool:
        found = condition(s, "Valid")
        return s.get("phase") == "Initialized" and found is not None and found["status"] == "True"

    await until(stack, ns, resumed, "Initialized and Valid=True")
    assert len([m for m in recorder.messages("halted") if "cannot proceed" in m]) == 1
    valid(recorder.events)


async def target_deleted(stack: support.Stack, nc: Client) -> None:
    ns = "edge-gone"
    recorder = await record(nc, ns)
    await apply(stack, docs_of(ns, threshold=1000, metrics=[]))
    await until(stack, ns, phase_is("Initialized"), "Initialized")
    await new_image(stack, ns)
    await until(stack, ns, lambda s: (s.get("canaryWeight") or 0) >= 20, "weight 20")
    await stack.kubectl("delete", "deployment", "podinfo", "-n", ns)
    status = await until(stack, ns, phase_is("Failed"), "Failed")
    assert status.get("canaryWeight") == 0
    await warned(stack, ns, "target Deployment podinfo.edge-gone not found: deleted during")
    primary = await stack.kubectl("get", "deployment", "podinfo-primary", "-n", ns, "-o", "json")
    assert json.loads(primary.stdout)["spec"]["replicas"] >= 1  # the primary still serves
    valid(recorder.events)


async def test_bad_objects_mid_rollout_end_in_a_warning_and_a_clear_status(
    stack: support.Stack, service: ServiceFactory, stack_nc: Client
) -> None:
    procs = await start(stack, service)
    async with slow_server() as slow_url, asyncio.TaskGroup() as tg:
        for kind in QUERIES:
            tg.create_task(bad_query(stack, stack_nc, kind))
        tg.create_task(slow_webhook(stack, stack_nc, slow_url))
        tg.create_task(route_without_the_rule(stack, stack_nc))
        tg.create_task(target_deleted(stack, stack_nc))
    still_running(procs)
