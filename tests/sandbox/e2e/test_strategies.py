"""Strategies end to end: blue/green, stepWeights with stepWeightPromotion, a maxWeight a step
overshoots, and skipAnalysis — each canary in a namespace of its own on one sandbox stack, the
five services as processes, 1 s analysis interval, the seed's metrics and load-test webhook.
The scenarios are independent and run at the same time."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from nats.aio.client import Client

from tests.fixtures.services import ServiceFactory
from tests.sandbox.e2e import support
from tests.sandbox.e2e.rollouts import (
    Recorder,
    initialized,
    new_image,
    record,
    start,
    valid,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

WEIGHTS = {"stepWeight": None, "maxWeight": None}


def succeeded(status: dict[str, Any]) -> bool:
    return status.get("phase") == "Succeeded"


async def rollout(
    stack: support.Stack, nc: Client, namespace: str, **analysis: Any
) -> tuple[Recorder, dict[str, Any]]:
    """Initialize ``namespace``'s canary with ``analysis``, push 6.0.1, wait for Succeeded."""
    recorder = await record(nc, namespace)
    await initialized(stack, namespace, analysis_changes=analysis)
    await new_image(stack, namespace)
    final = await wait_for(stack, namespace, succeeded, f"{namespace} Succeeded", timeout=240)
    valid(recorder.events)
    return recorder, final


def flow(recorder: Recorder) -> list[str]:
    """The messages users read in ``kubectl describe``, metric values and phases aside."""
    skipped = {"metric_checked", "phase_changed", "webhook_passed", "halted"}
    return [e["message"] for e in recorder.events if e["kind"] not in skipped and e["message"]]


async def blue_green(stack: support.Stack, nc: Client) -> None:
    recorder, final = await rollout(stack, nc, "bluegreen", iterations=3, **WEIGHTS)
    assert flow(recorder)[-8:] == [
        "Starting canary analysis for podinfo.bluegreen",
        "Advance podinfo.bluegreen canary iteration 1/3",
        "Advance podinfo.bluegreen canary iteration 2/3",
        "Advance podinfo.bluegreen canary iteration 3/3",
        "Routing all traffic to canary",
        "Copying podinfo.bluegreen template spec to podinfo-primary.bluegreen",
        "Routing all traffic to primary",
        "Promotion completed! Scaling down podinfo.bluegreen",
    ]
    assert (final.get("iterations"), final.get("canaryWeight")) == (0, 0)


async def step_weights(stack: support.Stack, nc: Client) -> None:
    recorder, _ = await rollout(
        stack, nc, "steps", stepWeights=[5, 25, 60], stepWeightPromotion=25, **WEIGHTS
    )
    assert recorder.weights() == [5, 25, 60]
    promotion = [
        e["message"]
        for e in recorder.events
        if e["kind"] == "weight_advanced" and "primary" in e["message"]
    ]
    assert promotion == [
        "Advance podinfo.steps primary weight 65",
        "Advance podinfo.steps primary weight 90",
        "Routing all traffic to primary",
    ]


async def overshoot(stack: support.Stack, nc: Client) -> None:
    recorder, _ = await rollout(stack, nc, "overshoot", stepWeight=30, maxWeight=50)
    assert recorder.weights() == [30, 60]  # Flagger's order: a step may pass maxWeight


async def skip_analysis(stack: support.Stack, nc: Client) -> None:
    recorder = await record(nc, "skip")
    await initialized(stack, "skip", skipAnalysis=True)
    await new_image(stack, "skip")
    await wait_for(
        stack,
        "skip",
        lambda s: succeeded(s) and bool(recorder.messages("promotion_completed")),
        "skip Succeeded",
    )
    assert recorder.messages("promotion_completed") == [
        "Promotion completed! Canary analysis was skipped for podinfo.skip"
    ]
    assert not recorder.messages("metric_checked")
    valid(recorder.events)


async def test_every_weight_strategy_runs_in_flaggers_order(
    stack: support.Stack, service: ServiceFactory, stack_nc: Client
) -> None:
    await start(stack, service)
    await asyncio.gather(
        blue_green(stack, stack_nc),
        step_weights(stack, stack_nc),
        overshoot(stack, stack_nc),
        skip_analysis(stack, stack_nc),
    )
    # after promotion every canary route sends everything to the primary
    for namespace in ("bluegreen", "steps", "overshoot", "skip"):
        route = await stack.kubectl(
            "get",
            "apisixroute",
            "podinfo-podinfo-canary",
            "-n",
            namespace,
            "-o",
            "jsonpath={.spec.http[0].backends[*].weight}",
        )
        assert route.stdout.split() == ["100", "0"], namespace
