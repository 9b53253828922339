"""Controlling rollouts with the ``sluice`` CLI end to end: the real command as a subprocess,
the five services as processes on one sandbox stack, a 1 s analysis interval, each canary in
a namespace of its own and all at once.

- promote mid-analysis skips the rest of it and still goes through Promoting and Finalising;
- abort mid-analysis rolls back at once; retry analyses the Failed revision again;
- pause holds a canary where it is until resume;
- approve opens a waiting confirm-promotion gate, named by its webhook;
- commands that do not fit the phase are refused with the reason, and nothing changes;
- every accepted request is an event carrying who asked, and Kubernetes Events record it;
- ``sluice watch`` as a CI step: exit 0 once promoted, 1 after a rollback, 2 on its timeout.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import pytest
from nats.aio.client import Client

from tests.fixtures.services import ServiceFactory
from tests.sandbox.e2e import support
from tests.sandbox.e2e.rollouts import (
    GATE,
    REPO,
    get,
    hook,
    initialized,
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

SLUICE = str(REPO / ".venv" / "bin" / "sluice")


async def sluice(stack: support.Stack, *argv: str) -> support.Result:
    env = stack.env | {"PATH": f"{REPO / '.venv' / 'bin'}{os.pathsep}{stack.env['PATH']}"}
    return await support.run([SLUICE, *argv], env)


async def at_weight(stack: support.Stack, ns: str, weight: int) -> dict[str, Any]:
    return await wait_for(
        stack, ns, lambda s: (s.get("canaryWeight") or 0) >= weight, f"weight {weight}"
    )


async def image_of(stack: support.Stack, ns: str, name: str) -> str:
    deployment = await get(stack, ns, "deployment", name)
    assert deployment is not None
    return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])


async def events_of(stack: support.Stack, ns: str) -> list[str]:
    out = await stack.kubectl("get", "events", "-n", ns, "-o", "json")
    return [str(e.get("message")) for e in json.loads(out.stdout)["items"]]


async def promote_mid_analysis(stack: support.Stack, nc: Client) -> None:
    ns = "ctl-promote"
    recorder = await record(nc, ns)
    await initialized(stack, ns)
    refused = await sluice(stack, "promote", "podinfo", "-n", ns)
    assert refused.code == 1
    assert refused.stderr.strip() == (
        f"sluice: podinfo.{ns} is Initialized; no analysis to promote"
    )
    await new_image(stack, ns)
    # a CI step waiting for the rollout, started right after the new image
    watching = asyncio.create_task(sluice(stack, "watch", "podinfo", "-n", ns, "--timeout", "4m"))
    await at_weight(stack, ns, 10)
    done = await sluice(stack, "promote", "podinfo", "-n", ns, "--as", "alice")
    assert done.code == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"promote of podinfo.{ns} requested by alice: skipping the rest of the analysis "
        "and promoting with its next step",
        f"Skipping the rest of the analysis of podinfo.{ns}",
    ]
    await wait_for(stack, ns, lambda s: s.get("phase") == "Succeeded", "Succeeded")
    watched = await watching
    assert watched.code == 0, watched.stderr
    assert watched.stdout.splitlines()[-1].startswith(f"podinfo.{ns} Succeeded: revision ")
    assert await image_of(stack, ns, "podinfo-primary") == "ghcr.io/stefanprodan/podinfo:6.0.1"
    # promoted before the analysis reached maxWeight 50, through Promoting and Finalising
    assert max(recorder.weights()) < 50
    phases = [e["phase"] for e in recorder.events if e["kind"] == "phase_changed"]
    assert phases[-3:] == ["Promoting", "Finalising", "Succeeded"]
    (requested,) = [e for e in recorder.events if e["kind"] == "control_requested"]
    assert (requested["action"], requested["by"]) == ("promote", "alice")
    assert requested["message"] == f"Promote of podinfo.{ns} requested by alice"
    status = await phase(stack, ns)
    assert status["control"]["action"] == "promote"
    assert status["control"]["by"] == "alice"
    assert status["control"]["outcome"] == "promoting"
    valid(recorder.events)


async def abort_then_retry(stack: support.Stack, nc: Client) -> None:
    ns = "ctl-abort"
    recorder = await record(nc, ns)
    await initialized(stack, ns)
    await new_image(stack, ns)
    await at_weight(stack, ns, 10)
    done = await sluice(
        stack, "abort", "podinfo", "-n", ns, "--as", "bob", "--reason", "p99 looks bad"
    )
    assert done.code == 0, done.stderr
    assert done.stdout.splitlines()[-1] == f"podinfo.{ns}: rolled back"
    status = await wait_for(stack, ns, lambda s: s.get("phase") == "Failed", "Failed")
    assert status["control"]["reason"] == "p99 looks bad"
    assert await image_of(stack, ns, "podinfo-primary") == "ghcr.io/stefanprodan/podinfo:6.0.0"
    canary_deployment = await get(stack, ns, "deployment", "podinfo")
    assert canary_deployment is not None
    assert canary_deployment["spec"]["replicas"] == 0
    await said(recorder, "rolled_back", f"Rolling back podinfo.{ns} aborted by bob")
    messages = await support.poll(
        lambda: events_of(stack, ns),
        lambda seen: f"Abort of podinfo.{ns} requested by bob: p99 looks bad" in seen,
        timeout=30,
        what="the request's Kubernetes Event",
    )
    assert f"Rolling back podinfo.{ns} aborted by bob" in messages

    watched = await sluice(stack, "watch", "podinfo", "-n", ns, "--timeout", "1m")
    assert watched.code == 1, watched.stdout + watched.stderr
    again = await sluice(stack, "abort", "podinfo", "-n", ns)
    assert again.code == 1
    assert again.stderr.strip() == f"sluice: podinfo.{ns} is Failed; nothing to abort"

    retried = await sluice(stack, "retry", "podinfo", "-n", ns, "--as", "bob")
    assert retried.code == 0, retried.stderr
    assert retried.stdout.splitlines()[-1] == f"Analysing podinfo.{ns} again"
    await wait_for(stack, ns, lambda s: s.get("phase") == "Succeeded", "Succeeded", timeout=180)
    assert await image_of(stack, ns, "podinfo-primary") == "ghcr.io/stefanprodan/podinfo:6.0.1"
    valid(recorder.events)


async def pause_then_resume(stack: support.Stack, nc: Client) -> None:
    ns = "ctl-pause"
    recorder = await record(nc, ns)
    await initialized(stack, ns)
    await new_image(stack, ns)
    await at_weight(stack, ns, 10)
    paused = await sluice(stack, "pause", "podinfo", "-n", ns, "--as", "carol")
    assert paused.code == 0, paused.stderr
    assert paused.stdout.strip() == (
        f"podinfo.{ns} paused by carol: no step is taken until it is resumed"
    )
    twice = await sluice(stack, "pause", "podinfo", "-n", ns)
    assert twice.code == 1
    assert twice.stderr.startswith(f"sluice: podinfo.{ns} is already paused (Paused by carol")
    # a step already under way may still commit; after that, nothing moves
    await asyncio.sleep(2)
    held = (await phase(stack, ns)).get("canaryWeight")
    steps = len(recorder.weights())
    await asyncio.sleep(5)  # five analysis intervals
    status = await phase(stack, ns)
    assert status.get("canaryWeight") == held
    assert len(recorder.weights()) == steps
    waited = await sluice(stack, "watch", "podinfo", "-n", ns, "--timeout", "2s")
    assert waited.code == 2, waited.stdout + waited.stderr  # still under way: timed out
    paused_condition = [c for c in status["conditions"] if c["type"] == "Paused"]
    assert paused_condition[0]["status"] == "True"
    resumed = await sluice(stack, "resume", "podinfo", "-n", ns, "--as", "carol")
    assert resumed.code == 0, resumed.stderr
    await wait_for(stack, ns, lambda s: s.get("phase") == "Succeeded", "Succeeded")
    kinds = [
        (e["kind"], e.get("action")) for e in recorder.events if e["kind"] == "control_requested"
    ]
    assert kinds == [("control_requested", "pause"), ("control_requested", "resume")]
    valid(recorder.events)


async def approve_a_gate(stack: support.Stack, nc: Client) -> None:
    ns = "ctl-approve"
    recorder = await record(nc, ns)
    gate = hook("ask-the-team", "confirm-promotion", GATE)
    await initialized(stack, ns, edit=with_hooks(gate))
    early = await sluice(stack, "approve", "podinfo", "-n", ns)
    assert early.code == 1
    assert early.stderr.strip() == (
        f"sluice: podinfo.{ns} is not waiting at any gate; nothing to approve"
    )
    await new_image(stack, ns)
    await wait_for(stack, ns, lambda s: s.get("phase") == "WaitingPromotion", "WaitingPromotion")
    wrong = await sluice(stack, "approve", "podinfo", "confirm-rollout", "-n", ns)
    assert wrong.code == 1
    assert wrong.stderr.strip() == (
        f"sluice: podinfo.{ns} waits at confirm-promotion, not confirm-rollout"
    )
    done = await sluice(stack, "approve", "podinfo", "ask-the-team", "-n", ns, "--as", "dave")
    assert done.code == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "Confirm-promotion approved by dave"
    await wait_for(stack, ns, lambda s: s.get("phase") == "Succeeded", "Succeeded")
    applied = [e for e in recorder.events if e["kind"] == "control_applied"]
    assert [(e["action"], e["gate"], e["outcome"]) for e in applied] == [
        ("approve", "confirm-promotion", "approved")
    ]
    valid(recorder.events)


async def test_the_cli_says_what_is_missing(stack: support.Stack) -> None:
    """No analyzer on the bus, and no bus at all: each said in one line."""
    nobody = await sluice(stack, "abort", "podinfo", "-n", "test")
    assert nobody.code == 1
    assert nobody.stderr.strip() == (
        "sluice: no analyzer answers on sluice.control.test.podinfo.abort; "
        "is the analyzer running (with Kubernetes access)?"
    )
    unreachable = await sluice(
        stack, "abort", "podinfo", "-n", "test", "--nats-url", "nats://127.0.0.1:1"
    )
    assert unreachable.code == 1
    assert unreachable.stderr.strip() == (
        "sluice: cannot reach NATS at nats://127.0.0.1:1 (--nats-url): connection refused; "
        "is the stack up? try make sandbox-up, or set NATS_URL / --nats-url"
    )


async def test_every_control_command(
    stack: support.Stack, service: ServiceFactory, stack_nc: Client
) -> None:
    await start(stack, service)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(promote_mid_analysis(stack, stack_nc))
        tg.create_task(abort_then_retry(stack, stack_nc))
        tg.create_task(pause_then_resume(stack, stack_nc))
        tg.create_task(approve_a_gate(stack, stack_nc))
