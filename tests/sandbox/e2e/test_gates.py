"""Every Flagger gate and webhook type end to end, against the loadtester API the webhook-runner
serves as ``flagger-loadtester.test``: each canary in a namespace of its own on one sandbox
stack, the five services as processes, a 1 s analysis interval, and gates opened the way
Flagger's docs show (a POST to ``/gate/open`` through the cluster's Service name).

- confirm-rollout holds a new revision in Waiting, alerts once however long it waits, and lets
  it go once the gate opens; a muted gate records its Event but alerts nobody;
- an approval is kept in NATS KV: neither a wait nor an approval given in advance is lost when
  the webhook-runner is killed and replaced;
- confirm-promotion holds a canary at its maximum weight while the analysis goes on;
  confirm-traffic-increase holds the weight, once per wait;
- the rollback switch aborts a rollout; a failing pre-rollout hook counts failed checks up to
  the threshold; a failing post-rollout hook only warns.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from nats.aio.client import Client

from tests.fixtures import services
from tests.fixtures.services import ServiceFactory
from tests.fixtures.sinks import Sink
from tests.sandbox.e2e import support
from tests.sandbox.e2e.rollouts import (
    GATE,
    HALT,
    ROLLBACK,
    Calls,
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


def alerts(sink: Sink, namespace: str) -> list[str]:
    """The Slack texts the canary of ``namespace`` alerted with."""
    return [
        r.body["attachments"][0]["text"] for r in sink.received if r.path == f"/hooks/{namespace}"
    ]


async def alerted(sink: Sink, namespace: str, message: str) -> None:
    async def texts() -> list[str]:
        return alerts(sink, namespace)

    await support.poll(texts, lambda seen: message in seen, timeout=30, what=f"alert {message}")


# --------------------------------------------------------------------------- the gates


async def confirm_rollout(stack: support.Stack, nc: Client, seen: Calls, sink: Sink) -> None:
    ns = "confirm"
    recorder = await record(nc, ns)
    gate = hook("ask-rollout", "confirm-rollout", GATE)
    await initialized(stack, ns, edit=with_hooks(gate, alerts_to=f"{sink.base_url}/hooks/{ns}"))
    await new_image(stack, ns)
    await wait_for(stack, ns, lambda s: s.get("phase") == "Waiting", "Waiting")
    before = seen.count(ns, "confirm-rollout")
    await seen.reach(ns, "confirm-rollout", before + 3)  # asked again on three more steps
    status = await phase(stack, ns)
    assert status["phase"] == "Waiting"
    assert status.get("canaryWeight", 0) == 0
    waiting = f"Halt podinfo.{ns} advancement waiting for approval ask-rollout"
    assert recorder.messages("waiting_approval") == [waiting]
    held = condition(status, "Gate")
    assert held is not None
    assert (held["status"], held["reason"]) == ("False", "confirm-rollout")
    await alerted(sink, ns, waiting)
    assert alerts(sink, ns).count(waiting) == 1

    await loadtester(stack, "/gate/open", ns)
    status = await wait_for(stack, ns, lambda s: s.get("phase") == "Progressing", "Progressing")
    assert condition(status, "Gate") is None
    await said(recorder, "webhook_passed", "Confirm-rollout check ask-rollout passed")
    await said(recorder, "new_revision", f"New revision detected! Scaling up podinfo.{ns}")
    opened = recorder.messages("gate_changed")
    assert len(opened) == 1
    assert opened[0].startswith(f"Gate for podinfo.{ns} opened by ")
    assert recorder.messages("waiting_approval") == [waiting]
    await alerted(sink, ns, f"New revision detected! Scaling up podinfo.{ns}")
    assert alerts(sink, ns).count(waiting) == 1  # one wait, one alert
    valid(recorder.events)


async def muted_gate(stack: support.Stack, nc: Client, sink: Sink) -> None:
    """``muteAlert: true``: the wait is recorded (an Event on the Canary) but nobody is alerted."""
    ns = "muted"
    recorder = await record(nc, ns)
    gate = hook("quiet-gate", "confirm-rollout", GATE, muteAlert=True)
    await initialized(stack, ns, edit=with_hooks(gate, alerts_to=f"{sink.base_url}/hooks/{ns}"))
    await alerted(sink, ns, f"Initialization done! podinfo.{ns}")  # this canary does alert
    await new_image(stack, ns)
    waiting = f"Halt podinfo.{ns} advancement waiting for approval quiet-gate"
    await said(recorder, "waiting_approval", waiting)
    event = next(e for e in recorder.events if e["kind"] == "waiting_approval")
    assert event["mute_alert"] is True

    async def recorded() -> list[str]:
        out = await stack.kubectl("get", "events", "-n", ns, "-o", "json")
        return [item["message"] for item in json.loads(out.stdout)["items"]]

    # the notifier alerts before it records the Event, so once the Event exists it is decided
    await support.poll(recorded, lambda seen: waiting in seen, timeout=30, what="the Event")
    assert waiting not in alerts(sink, ns)
    valid(recorder.events)


async def confirm_promotion(stack: support.Stack, nc: Client, seen: Calls) -> str:
    """Held at the maximum weight while the analysis goes on; a failing post-rollout hook after
    the promotion only warns (its message is returned)."""
    ns = "promotion"
    recorder = await record(nc, ns)
    hooks = (
        hook("ask-promotion", "confirm-promotion", GATE),
        hook("tell-done", "post-rollout", HALT),
    )
    await initialized(stack, ns, edit=with_hooks(*hooks), analysis_changes={"maxWeight": 20})
    await new_image(stack, ns)
    await wait_for(stack, ns, lambda s: s.get("phase") == "WaitingPromotion", "WaitingPromotion")
    checked = len(recorder.messages("metric_checked"))
    asked = seen.count(ns, "confirm-promotion")
    await seen.reach(ns, "confirm-promotion", asked + 3)

    async def measured() -> int:
        return len(recorder.messages("metric_checked"))

    # both metrics, on at least two more steps: the analysis goes on while the gate holds
    await support.poll(measured, lambda n: n >= checked + 4, timeout=30, what="metric checks")
    status = await phase(stack, ns)
    assert status["phase"] == "WaitingPromotion"
    assert status["canaryWeight"] == 20
    held = condition(status, "Gate")
    assert held is not None
    assert (held["status"], held["reason"]) == ("False", "confirm-promotion")
    waiting = f"Halt podinfo.{ns} advancement waiting for promotion approval ask-promotion"
    assert recorder.messages("waiting_approval") == [waiting]
    assert recorder.messages("promotion_started") == []

    await loadtester(stack, "/gate/open", ns)
    status = await wait_for(stack, ns, lambda s: s.get("phase") == "Succeeded", "Succeeded")
    assert condition(status, "Gate") is None
    await said(recorder, "promotion_completed", f"Promotion completed! Scaling down podinfo.{ns}")
    await said(recorder, "webhook_passed", "Confirm-promotion check ask-promotion passed")
    assert recorder.weights() == [10, 20]
    assert recorder.messages("waiting_approval") == [waiting]
    failed = [e for e in recorder.events if e["kind"] == "webhook_failed"]
    assert [(e["webhook"], e["type"], e["severity"]) for e in failed] == [
        ("tell-done", "post-rollout", "warn")
    ]
    assert (await phase(stack, ns))["phase"] == "Succeeded"  # the failure only warned
    valid(recorder.events)
    return str(failed[0]["message"])


async def confirm_traffic_increase(stack: support.Stack, nc: Client, seen: Calls) -> None:
    """Each weight step waits for the gate; one alert per wait, two waits here."""
    ns = "traffic"
    recorder = await record(nc, ns)
    await initialized(
        stack, ns, edit=with_hooks(hook("ask-traffic", "confirm-traffic-increase", GATE))
    )
    await new_image(stack, ns)
    await wait_for(stack, ns, lambda s: s.get("phase") == "Progressing", "Progressing")
    await seen.reach(ns, "confirm-traffic-increase", 3)
    status = await phase(stack, ns)
    assert status.get("canaryWeight", 0) == 0
    held = condition(status, "Gate")
    assert held is not None
    assert (held["status"], held["reason"]) == ("False", "confirm-traffic-increase")
    waiting = f"Halt podinfo.{ns} advancement waiting for traffic increase approval ask-traffic"
    assert recorder.messages("waiting_approval") == [waiting]

    await loadtester(stack, "/gate/open", ns)
    await wait_for(stack, ns, lambda s: (s.get("canaryWeight") or 0) >= 10, "weight 10")
    await said(recorder, "webhook_passed", "Confirm-traffic-increase check ask-traffic passed")
    await loadtester(stack, "/gate/close", ns)  # a second wait, at whichever step comes next

    async def waits() -> list[str]:
        return recorder.messages("waiting_approval")

    await support.poll(waits, lambda seen: len(seen) == 2, timeout=30, what="the second wait")
    held_at = (await phase(stack, ns))["canaryWeight"]
    asked = seen.count(ns, "confirm-traffic-increase")
    await seen.reach(ns, "confirm-traffic-increase", asked + 3)
    status = await phase(stack, ns)
    assert status["canaryWeight"] == held_at
    assert condition(status, "Gate") is not None
    assert recorder.messages("waiting_approval") == [waiting, waiting]  # once per wait

    await loadtester(stack, "/gate/open", ns)
    status = await wait_for(stack, ns, lambda s: s.get("phase") == "Succeeded", "Succeeded")
    assert condition(status, "Gate") is None
    assert recorder.weights() == [10, 20, 30, 40, 50]
    valid(recorder.events)


# --------------------------------------------------------------------------- failing hooks


async def rollback_switch(stack: support.Stack, nc: Client, seen: Calls) -> None:
    ns = "abort"
    recorder = await record(nc, ns)
    await initialized(stack, ns, edit=with_hooks(hook("abort-switch", "rollback", ROLLBACK)))
    await new_image(stack, ns)
    await wait_for(stack, ns, lambda s: (s.get("canaryWeight") or 0) >= 10, "weight 10")
    assert seen.count(ns, "rollback") >= 1  # asked, said no: the analysis went on
    assert recorder.messages("rolled_back") == []

    await loadtester(stack, "/rollback/open", ns)
    status = await wait_for(stack, ns, lambda s: s.get("phase") == "Failed", "Failed")
    assert status.get("canaryWeight", 0) == 0
    await said(recorder, "phase_changed", f"Canary failed! Scaling down podinfo.{ns}")
    assert recorder.messages("rolled_back") == [f"Rolling back podinfo.{ns} manual webhook invoked"]
    await said(recorder, "webhook_passed", "Rollback check abort-switch passed")
    valid(recorder.events)


async def failing_pre_rollout(stack: support.Stack, nc: Client) -> str:
    """A pre-rollout hook that always fails counts a failed check on each first analysis step
    until the threshold rolls the canary back; the failing post-rollout hook then only warns
    (its message is returned)."""
    ns = "prehalt"
    recorder = await record(nc, ns)
    # the failing hooks' URL carries credentials: no log, event or reply may show them
    halt = support.secret_url(HALT, "prehalt")
    hooks = (hook("pre-check", "pre-rollout", halt), hook("post-check", "post-rollout", halt))
    await initialized(stack, ns, edit=with_hooks(*hooks), analysis_changes={"threshold": 2})
    await new_image(stack, ns)
    await wait_for(stack, ns, lambda s: s.get("phase") == "Failed", "Failed")
    await said(recorder, "phase_changed", f"Canary failed! Scaling down podinfo.{ns}")
    halts = [e for e in recorder.events if e["kind"] == "halted" and "pre-rollout" in e["message"]]
    assert [(e["message"], e["failed_checks"]) for e in halts] == [
        (f"Halt podinfo.{ns} advancement pre-rollout check pre-check failed Forbidden", 1),
        (f"Halt podinfo.{ns} advancement pre-rollout check pre-check failed Forbidden", 2),
    ]
    assert recorder.messages("rolled_back") == [
        f"Rolling back podinfo.{ns} failed checks threshold reached 2"
    ]
    assert recorder.weights() == []

    async def failed_hooks() -> list[dict[str, Any]]:
        return [e for e in recorder.events if e["kind"] == "webhook_failed"]

    failed = await support.poll(failed_hooks, bool, timeout=30, what="the post-rollout warning")
    assert [(e["webhook"], e["type"], e["severity"]) for e in failed] == [
        ("post-check", "post-rollout", "warn")
    ]
    valid(recorder.events)
    told = json.dumps(recorder.events)
    assert [value for value in services.SECRETS if value in told] == []  # the hook's credentials
    return str(failed[0]["message"])


async def test_every_gate_and_hook_type(
    stack: support.Stack, service: ServiceFactory, stack_nc: Client, sink: Sink
) -> None:
    """Six canaries at once, each in its own namespace, independent of each other."""
    await start(stack, service)
    seen = await calls(stack_nc)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(confirm_rollout(stack, stack_nc, seen, sink))
        tg.create_task(muted_gate(stack, stack_nc, sink))
        promoted = tg.create_task(confirm_promotion(stack, stack_nc, seen))
        tg.create_task(confirm_traffic_increase(stack, stack_nc, seen))
        tg.create_task(rollback_switch(stack, stack_nc, seen))
        rolled_back = tg.create_task(failing_pre_rollout(stack, stack_nc))
    # Flagger's words for a failing post-rollout hook, after a promotion and after a rollback
    assert promoted.result() == "Post-rollout hook tell-done failed Forbidden"
    assert rolled_back.result() == "Post-rollout hook post-check failed Forbidden"


# --------------------------------------------------------------------------- durable gates


async def test_approvals_survive_a_webhook_runner_restart(
    stack: support.Stack, service: ServiceFactory, stack_nc: Client
) -> None:
    """One canary waits at its gate while the webhook-runner is killed and replaced, then is
    approved through the new process; another is approved in advance, before the restart."""
    procs = await start(stack, service)
    seen = await calls(stack_nc)
    waiting_ns, approved_ns = "durable-wait", "durable-open"
    waiting_rec = await record(stack_nc, waiting_ns)
    approved_rec = await record(stack_nc, approved_ns)
    gate = hook("ask-rollout", "confirm-rollout", GATE)
    await asyncio.gather(
        initialized(stack, waiting_ns, edit=with_hooks(gate)),
        initialized(stack, approved_ns, edit=with_hooks(gate)),
    )
    await new_image(stack, waiting_ns)
    await wait_for(stack, waiting_ns, lambda s: s.get("phase") == "Waiting", "Waiting")
    await loadtester(stack, "/gate/open", approved_ns)  # its next revision is approved already

    old = procs["webhook_runner"][0]
    old.kill()
    replacement = service("webhook_runner", stack.env["NATS_URL"], **old.env)
    await replacement.ready()
    await replacement.wait_log("loadtester API listening")
    asked = seen.count(waiting_ns, "confirm-rollout")
    await seen.reach(waiting_ns, "confirm-rollout", asked + 2)  # answered by the new process
    assert (await phase(stack, waiting_ns))["phase"] == "Waiting"

    await loadtester(stack, "/gate/open", waiting_ns)
    await wait_for(stack, waiting_ns, lambda s: s.get("phase") == "Progressing", "Progressing")
    await said(
        waiting_rec, "new_revision", f"New revision detected! Scaling up podinfo.{waiting_ns}"
    )
    assert len(waiting_rec.messages("waiting_approval")) == 1  # one wait, across the restart

    await new_image(stack, approved_ns)
    await wait_for(stack, approved_ns, lambda s: s.get("phase") == "Progressing", "Progressing")
    await said(
        approved_rec, "new_revision", f"New revision detected! Scaling up podinfo.{approved_ns}"
    )
    assert approved_rec.messages("waiting_approval") == []  # the approval was not forgotten
    valid(waiting_rec.events)
    valid(approved_rec.events)
