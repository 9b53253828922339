"""One chaos run: the seed rollout twice on a fresh stack while the run's faults fire.

1. start the stack and the five services; apply the tutorial's objects in namespace ``chaos``
   (1 s analysis interval, threshold 10) and wait for ``Initialized``;
2. the good revision (``podinfo:6.0.1``) must be promoted, then the faulty one (half of its
   answers are errors: ``SANDBOX_ERROR_RATE=0.5``) must be rolled back; each rollout's faults
   fire at their moments, and once they have all cleared the canary must reach its final
   phase within ``STUCK_BOUND_S``;
3. after each rollout: the final state and the weight steps of the stored events
   (``checks``); after both, every durable consumer drains.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import pytest

from tests.chaos import checks, schedule
from tests.chaos.cluster import World
from tests.sandbox.e2e import rollouts

NAMESPACE = "chaos"
STUCK_BOUND_S = 60.0  # a rollout reaches its final phase this long after its faults cleared
FINAL = ("Succeeded", "Failed")


@dataclasses.dataclass
class RunResult:
    seed: int
    faults: list[schedule.Fault]
    failures: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    rollout_s: dict[str, float] = dataclasses.field(default_factory=dict)
    dead_letters: int = 0
    workdir: str = ""

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "ok": self.ok,
            "failures": self.failures,
            "faults": [f.to_json() for f in self.faults],
            "seconds": round(self.seconds, 1),
            "rollout_s": {k: round(v, 1) for k, v in self.rollout_s.items()},
            "dead_letters": self.dead_letters,
            "workdir": self.workdir,
        }


async def _inject(world: World, fault: schedule.Fault, started: float) -> None:
    await asyncio.sleep(max(0.0, started + fault.at_s - time.monotonic()))
    match fault.kind:
        case "kill":
            await world.kill_service(fault.target, fault.down_s)
        case "nats-restart":
            await world.restart_component("nats", fault.down_s)
        case "prometheus" if fault.target == "metrics-gone":
            await world.metrics_gone(fault.down_s)
        case "prometheus":
            await world.restart_component("prometheus", fault.down_s)
        case "kube":
            await world.kube_fault(fault.target, fault.down_s)
        case "webhook-kill":
            await world.kill_mid_load_test(fault.down_s)
        case _:
            raise ValueError(f"unknown fault kind {fault.kind!r}")


async def _final_phase(world: World, bound_s: float) -> dict[str, Any]:
    """The status once the rollout left its starting phase and reached a final one (or the
    last status seen when ``bound_s`` passed)."""
    deadline = time.monotonic() + bound_s
    moved = False
    while True:
        try:
            status = await checks.canary_status(world, NAMESPACE)
        except Exception:  # the observer's own read failed: look again
            status = {}
        phase = status.get("phase")
        moved = moved or (phase is not None and phase not in FINAL and phase != "Initialized")
        if (moved and phase in FINAL) or time.monotonic() > deadline:
            return status
        await asyncio.sleep(0.3)


async def _rollout(
    world: World, result: RunResult, phase: str, want: str, change: dict[str, Any]
) -> None:
    after_seq = await checks.last_event_seq(world.nats_url)
    started = time.monotonic()
    await world.patch(f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/podinfo", change)
    faults = [f for f in result.faults if f.phase == phase]
    outcomes = await asyncio.gather(
        *(_inject(world, f, started) for f in faults), return_exceptions=True
    )
    for fault, outcome in zip(faults, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            result.failures.append(f"{phase}: could not inject {fault.describe()}: {outcome!r}")
    status = await _final_phase(world, STUCK_BOUND_S)
    result.rollout_s[phase] = time.monotonic() - started
    if status.get("phase") not in FINAL:
        result.failures.append(
            f"{phase}: stuck in {status.get('phase')!r} (weight {status.get('canaryWeight')}, "
            f"failed checks {status.get('failedChecks')}) {STUCK_BOUND_S:g}s after the faults"
        )
        return
    result.failures += [f"{phase}: {p}" for p in await checks.final_state(world, NAMESPACE, want)]
    events = await checks.stored_events(world.nats_url, NAMESPACE, after_seq)
    result.failures += [f"{phase}: {p}" for p in checks.weight_steps(events, want)]


def _image(tag: str) -> dict[str, Any]:
    container = {"name": "podinfod", "image": f"ghcr.io/stefanprodan/podinfo:{tag}"}
    return {"spec": {"template": {"spec": {"containers": [container]}}}}


def _faulty() -> dict[str, Any]:
    container = {"name": "podinfod", "env": [{"name": "SANDBOX_ERROR_RATE", "value": "0.5"}]}
    return {"spec": {"template": {"spec": {"containers": [container]}}}}


async def run(seed: int, workdir: Any) -> RunResult:
    result = RunResult(seed, schedule.plan(seed), workdir=str(workdir))
    began = time.monotonic()
    world = World(workdir)
    try:
        await world.start()
        assert world.stack is not None
        await world.stack.kubectl("apply", "-f", "-", stdin=rollouts.manifests(NAMESPACE))
        status = await _final_phase(world, 0)
        deadline = time.monotonic() + 60
        while status.get("phase") != "Initialized":
            if time.monotonic() > deadline:
                raise TimeoutError(f"not Initialized within 60s: {status}")
            await asyncio.sleep(0.3)
            status = await checks.canary_status(world, NAMESPACE)
        await _rollout(world, result, "good", "Succeeded", _image("6.0.1"))
        if result.ok:
            await _rollout(world, result, "faulty", "Failed", _faulty())
        result.failures += await checks.drained(world.nats_url)
        result.dead_letters = await checks.dead_letters(world.nats_url)
    except (Exception, pytest.fail.Exception) as exc:
        result.failures.append(f"the run could not go on: {exc!r}"[:2000])
    finally:
        try:
            result.failures += await asyncio.to_thread(world.stop)
        except Exception as exc:  # sandbox down failed or left a process running
            result.failures.append(f"stopping the stack: {exc!r}"[:2000])
        result.seconds = time.monotonic() - began
    return result
