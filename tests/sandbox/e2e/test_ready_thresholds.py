"""``analysis.canaryReadyThreshold`` and ``analysis.primaryReadyThreshold`` end to end: each
canary in a namespace of its own on one sandbox stack, the five services as processes, a 1 s
analysis interval, the tutorial's Deployment with two replicas. One of the two pods is made
unready the way a podinfo user does it (``POST <pod IP>:9898/readyz/disable``); the simulated
kubelet's readiness probe fails, the Deployment's ``availableReplicas`` drops to 1, and then:

- the canary at ``canaryReadyThreshold: 50`` (1 of 2 is enough) keeps stepping at its closed
  confirm-traffic-increase gate and, once the gate opens, is promoted;
- the canary at the default 100% halts each step, without counting a failed check, with
  Flagger's "podinfo.<ns> not ready" warning, and once ``progressDeadlineSeconds``
  has passed since the analysis started it is rolled back;
- while promoting step by step (``stepWeightPromotion``), a primary at the default 100% halts
  with "podinfo-primary.<ns> not ready" and holds its weights until the pod is ready again;
  at ``primaryReadyThreshold: 50`` the promotion goes on to the end.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from nats.aio.client import Client

from tests.fixtures.services import ServiceFactory
from tests.sandbox.e2e import support
from tests.sandbox.e2e.rollouts import (
    GATE,
    Calls,
    Docs,
    Recorder,
    calls,
    condition,
    hook,
    initialized,
    loadtester,
    new_image,
    phase,
    record,
    said,
    start,
    valid,
    wait_for,
    with_hooks,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

NEW_IMAGE = "ghcr.io/stefanprodan/podinfo:6.0.1"  # what new_image() sets
ONE_OF_TWO = (
    "waiting for rollout to finish: 1 of 2 (readyThreshold 100%) updated replicas are available"
)
TRAFFIC_GATE = hook("ask-traffic", "confirm-traffic-increase", GATE)


def two_replicas(docs: Docs) -> None:
    """The tutorial's Deployment, with two replicas (it sets none: one)."""
    docs[1]["spec"]["replicas"] = 2


def gated(docs: Docs) -> None:
    """Two replicas, and a confirm-traffic-increase gate after the load test."""
    two_replicas(docs)
    with_hooks(TRAFFIC_GATE)(docs)


# --------------------------------------------------------------------------- pods


def is_ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


async def new_pods(stack: support.Stack, namespace: str, app: str) -> list[dict[str, Any]]:
    """``kubectl get pods -l app=<app>``: the live pods running the new image."""
    out = await stack.kubectl("get", "pods", "-n", namespace, "-l", f"app={app}", "-o", "json")
    return [
        pod
        for pod in json.loads(out.stdout)["items"]
        if not pod["metadata"].get("deletionTimestamp")
        and pod["spec"]["containers"][0]["image"] == NEW_IMAGE
    ]


async def readyz(pod: dict[str, Any], action: str) -> None:
    """``curl -X POST http://<pod IP>:9898/readyz/<action>``, podinfo's readiness switch."""
    url = f"http://{pod['status']['podIP']}:9898/readyz/{action}"
    async with aiohttp.ClientSession() as http, http.post(url, timeout=support.HTTP) as resp:
        assert resp.status == 202, f"{url}: {resp.status}"


async def make_one_unready(stack: support.Stack, namespace: str, app: str) -> str:
    """Disable the readiness of one ready pod of ``app`` (of two, on the new image); once the
    kubelet's probe has failed and the Deployment counts one available replica, the pod's name."""
    pods = await new_pods(stack, namespace, app)
    states = [(p["metadata"]["name"], is_ready(p)) for p in pods]
    assert [ready for _, ready in states] == [True, True], states
    victim = pods[0]
    await readyz(victim, "disable")
    name = victim["metadata"]["name"]

    async def unready() -> list[str]:
        return [
            p["metadata"]["name"] for p in await new_pods(stack, namespace, app) if not is_ready(p)
        ]

    await support.poll(unready, lambda seen: seen == [name], timeout=30, what=f"{name} unready")

    async def counts() -> tuple[int, int]:
        out = await stack.kubectl("get", "deployment", app, "-n", namespace, "-o", "json")
        status = json.loads(out.stdout).get("status") or {}
        return status.get("updatedReplicas", 0), status.get("availableReplicas", 0)

    await support.poll(counts, lambda seen: seen == (2, 1), timeout=30, what=f"{app} available 1")
    return name


async def enable(stack: support.Stack, namespace: str, app: str, name: str) -> None:
    pod = next(p for p in await new_pods(stack, namespace, app) if p["metadata"]["name"] == name)
    await readyz(pod, "enable")


# --------------------------------------------------------------------------- events


def since(recorder: Recorder, mark: int, kind: str, prefix: str = "") -> list[dict[str, Any]]:
    """The ``kind`` events after the first ``mark`` ones whose message starts with ``prefix``."""
    return [
        e for e in recorder.events[mark:] if e["kind"] == kind and e["message"].startswith(prefix)
    ]


async def more(recorder: Recorder, mark: int, kind: str, prefix: str, count: int) -> None:
    async def seen() -> int:
        return len(since(recorder, mark, kind, prefix))

    await support.poll(seen, lambda n: n >= count, timeout=60, what=f"{count} x {prefix!r}")


def waiting(namespace: str) -> str:
    return f"Halt podinfo.{namespace} advancement waiting for traffic increase approval ask-traffic"


# --------------------------------------------------------------------------- the canary


async def canary_at_half(stack: support.Stack, nc: Client, seen: Calls) -> None:
    """canaryReadyThreshold 50: one of two canary pods available is ready enough."""
    ns = "canary-half"
    recorder = await record(nc, ns)
    await initialized(stack, ns, edit=gated, analysis_changes={"canaryReadyThreshold": 50})
    await new_image(stack, ns)
    await said(recorder, "waiting_approval", waiting(ns))
    await make_one_unready(stack, ns, "podinfo")
    mark = len(recorder.events)
    asked = seen.count(ns, "confirm-traffic-increase")
    not_ready = f"podinfo.{ns} not ready"

    async def steps() -> tuple[int, list[str]]:
        halts = [e["message"] for e in since(recorder, mark, "halted", not_ready)]
        return seen.count(ns, "confirm-traffic-increase") - asked, halts

    # three more steps reach the gate, none halts on readiness
    stepped, halts = await support.poll(steps, lambda s: s[0] >= 3 or bool(s[1]), 60, "3 steps")
    assert halts == []
    assert stepped >= 3
    status = await phase(stack, ns)
    assert (status["phase"], status.get("canaryWeight", 0)) == ("Progressing", 0)
    assert condition(status, "Gate") is not None

    await loadtester(stack, "/gate/open", ns)
    await wait_for(stack, ns, lambda s: s.get("phase") == "Succeeded", "Succeeded")
    await said(recorder, "promotion_completed", f"Promotion completed! Scaling down podinfo.{ns}")
    assert recorder.weights() == [10, 20, 30, 40, 50]
    assert since(recorder, mark, "halted", not_ready) == []
    assert recorder.messages("rolled_back") == []
    valid(recorder.events)


async def canary_at_full(stack: support.Stack, nc: Client, seen: Calls) -> None:
    """The default canaryReadyThreshold (100): halts uncounted, then the progress deadline."""
    ns = "canary-full"
    deadline_s = 20
    recorder = await record(nc, ns)
    await initialized(stack, ns, edit=gated, progressDeadlineSeconds=deadline_s)
    await new_image(stack, ns)
    await said(recorder, "waiting_approval", waiting(ns))
    await make_one_unready(stack, ns, "podinfo")
    mark = len(recorder.events)
    halt = f"podinfo.{ns} not ready: {ONE_OF_TWO}"
    await more(recorder, mark, "halted", halt, 1)
    asked = seen.count(ns, "confirm-traffic-increase")  # not asked again while not ready

    status = await wait_for(stack, ns, lambda s: s.get("phase") == "Failed", "Failed")
    assert status.get("canaryWeight", 0) == 0
    assert status.get("failedChecks", 0) == 0
    await said(recorder, "phase_changed", f"Canary failed! Scaling down podinfo.{ns}")
    rollback = f"Rolling back podinfo.{ns} progress deadline exceeded {halt}"
    assert recorder.messages("rolled_back") == [rollback]
    halts = since(recorder, mark, "halted", f"podinfo.{ns}")
    assert {(e["message"], e["counted"], e["failed_checks"]) for e in halts} == {(halt, False, 0)}
    assert seen.count(ns, "confirm-traffic-increase") == asked
    # the deadline counts from the start of the analysis, as the product stamps its events;
    # status.lastTransitionTime, which it counts from, has whole seconds (Kubernetes' format)
    started = next(e for e in recorder.events if e["kind"] == "new_revision")
    rolled_back = next(e for e in recorder.events if e["kind"] == "rolled_back")
    assert rolled_back["at_ms"] - started["at_ms"] > (deadline_s - 1) * 1000
    assert halts[0]["at_ms"] < rolled_back["at_ms"]

    async def replicas() -> int:
        out = await stack.kubectl("get", "deployment", "podinfo", "-n", ns, "-o", "json")
        return int(json.loads(out.stdout)["spec"].get("replicas", 0))

    await support.poll(replicas, lambda n: n == 0, timeout=30, what="canary scaled to zero")
    valid(recorder.events)


# --------------------------------------------------------------------------- the primary

PROMOTION = {"stepWeight": 50, "stepWeightPromotion": 5}  # canary 50, then primary 55 ... 95


async def promoting(stack: support.Stack, nc: Client, ns: str, **analysis: Any) -> Recorder:
    """Until the first step of the promotion; then one new primary pod is made unready."""
    recorder = await record(nc, ns)
    await initialized(stack, ns, edit=two_replicas, analysis_changes={**PROMOTION, **analysis})
    await new_image(stack, ns)
    await said(recorder, "weight_advanced", f"Advance podinfo.{ns} primary weight 55")
    return recorder


async def primary_at_full(stack: support.Stack, nc: Client) -> None:
    """The default primaryReadyThreshold (100): the promotion halts until the pod is ready."""
    ns = "primary-full"
    recorder = await promoting(stack, nc, ns)
    pod = await make_one_unready(stack, ns, "podinfo-primary")
    mark = len(recorder.events)
    halt = f"podinfo-primary.{ns} not ready: {ONE_OF_TWO}"
    await more(recorder, mark, "halted", halt, 1)
    held = (await phase(stack, ns))["canaryWeight"]
    advanced = len(since(recorder, mark, "weight_advanced"))
    await more(recorder, mark, "halted", halt, 4)  # three more steps, each halted
    status = await phase(stack, ns)
    assert (status["phase"], status["canaryWeight"]) == ("Promoting", held)
    assert len(since(recorder, mark, "weight_advanced")) == advanced
    halts = since(recorder, mark, "halted")
    assert {(e["message"], e["counted"]) for e in halts} == {(halt, False)}

    await enable(stack, ns, "podinfo-primary", pod)
    await wait_for(stack, ns, lambda s: s.get("phase") == "Succeeded", "Succeeded")
    await said(recorder, "promotion_completed", f"Promotion completed! Scaling down podinfo.{ns}")
    primary = [m for m in recorder.messages("weight_advanced") if "canary weight" not in m]
    assert primary == [
        *(f"Advance podinfo.{ns} primary weight {w}" for w in range(55, 100, 5)),
        "Routing all traffic to primary",
    ]
    assert recorder.messages("rolled_back") == []
    valid(recorder.events)


async def primary_at_half(stack: support.Stack, nc: Client) -> None:
    """primaryReadyThreshold 50: the promotion goes on with one of two primary pods."""
    ns = "primary-half"
    recorder = await promoting(stack, nc, ns, primaryReadyThreshold=50)
    await make_one_unready(stack, ns, "podinfo-primary")
    mark = len(recorder.events)
    assert (await phase(stack, ns))["phase"] == "Promoting"
    not_ready = f"podinfo-primary.{ns}"

    async def steps() -> tuple[int, list[str]]:
        advanced = since(recorder, mark, "weight_advanced", f"Advance podinfo.{ns} primary weight")
        return len(advanced), [e["message"] for e in since(recorder, mark, "halted", not_ready)]

    # three more promotion steps, none halts on readiness
    stepped, halts = await support.poll(steps, lambda s: s[0] >= 3 or bool(s[1]), 60, "3 steps")
    assert halts == []
    assert stepped >= 3
    await wait_for(stack, ns, lambda s: s.get("phase") == "Succeeded", "Succeeded")
    await said(recorder, "promotion_completed", f"Promotion completed! Scaling down podinfo.{ns}")
    assert since(recorder, mark, "halted", not_ready) == []
    assert recorder.messages("rolled_back") == []
    valid(recorder.events)


async def test_ready_thresholds_hold_or_let_a_half_ready_deployment_go(
    stack: support.Stack, service: ServiceFactory, stack_nc: Client
) -> None:
    """Four canaries at once, each in its own namespace, independent of each other."""
    await start(stack, service)
    seen = await calls(stack_nc)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(canary_at_half(stack, stack_nc, seen))
        tg.create_task(canary_at_full(stack, stack_nc, seen))
        tg.create_task(primary_at_full(stack, stack_nc))
        tg.create_task(primary_at_half(stack, stack_nc))
