"""What a chaos run checks once a rollout is over, read as an observer the faults never touch:
the Kubernetes objects (through the API with the fault-exempt header) and the bus (the
``SLUICE_EVENTS`` stream as stored, and the durable consumers' counters).

Each check returns the problems it found (empty: it holds)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import nats
from nats.js.api import ConsumerConfig, DeliverPolicy

from tests.chaos import cluster
from tests.chaos.cluster import World

GOOD_IMAGE = "ghcr.io/stefanprodan/podinfo:6.0.1"
STEP = 10
MAX_WEIGHT = 50
# the analyzer's durable tick consumer keeps one scheduled tick a canary (the one canary)
TICKS_SCHEDULED = 1


async def canary_status(world: World, namespace: str) -> dict[str, Any]:
    found = await world.get(f"/apis/flagger.app/v1beta1/namespaces/{namespace}/canaries/podinfo")
    return dict((found or {}).get("status") or {})


async def final_state(world: World, namespace: str, want_phase: str) -> list[str]:
    """The phase, the primary's image, the route's weights, the canary scaled to zero."""
    problems = []
    status = await canary_status(world, namespace)
    if status.get("phase") != want_phase:
        problems.append(f"phase {status.get('phase')!r}, expected {want_phase}")
    apps = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    primary = await world.get(f"{apps}/podinfo-primary") or {}
    container = primary.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [{}])
    if container[0].get("image") != GOOD_IMAGE:
        problems.append(f"primary image {container[0].get('image')!r}, expected {GOOD_IMAGE}")
    if any(e.get("name") == "SANDBOX_ERROR_RATE" for e in container[0].get("env") or []):
        problems.append("the primary runs the faulty revision (SANDBOX_ERROR_RATE)")
    canary = await world.get(f"{apps}/podinfo") or {}
    replicas = canary.get("spec", {}).get("replicas")
    if replicas != 0:
        problems.append(f"canary Deployment podinfo at {replicas} replicas, expected 0")
    route = await world.get(
        f"/apis/apisix.apache.org/v2/namespaces/{namespace}/apisixroutes/podinfo-podinfo-canary"
    )
    weights = {
        b.get("serviceName"): b.get("weight")
        for rule in (route or {}).get("spec", {}).get("http", [])
        for b in rule.get("backends", [])
    }
    if weights != {"podinfo-primary": 100, "podinfo-canary": 0}:
        problems.append(f"ApisixRoute weights {weights}, expected podinfo-primary 100 / canary 0")
    return problems


async def last_event_seq(nats_url: str) -> int:
    nc = await cluster.connect(nats_url)
    try:
        info = await nc.jetstream(timeout=5).stream_info("SLUICE_EVENTS")
        return int(info.state.last_seq)
    finally:
        await nc.close()


async def stored_events(nats_url: str, namespace: str, after_seq: int) -> list[dict[str, Any]]:
    """The canary's events as ``SLUICE_EVENTS`` stores them, after stream sequence ``after_seq``."""
    nc = await cluster.connect(nats_url)
    events: list[dict[str, Any]] = []
    try:
        js = nc.jetstream(timeout=5)
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=after_seq + 1,
            filter_subject=f"sluice.events.{namespace}.>",
            inactive_threshold=30,
        )
        sub = await js.pull_subscribe(
            f"sluice.events.{namespace}.>", durable=None, stream="SLUICE_EVENTS", config=config
        )
        while True:
            try:
                batch = await sub.fetch(100, timeout=1)
            except nats.errors.TimeoutError:
                break
            for msg in batch:
                events.append(json.loads(msg.data))
                await msg.ack()
            if batch and batch[-1].metadata.num_pending == 0:
                break
        await sub.unsubscribe()
    finally:
        await nc.close()
    return events


def advances(events: list[dict[str, Any]]) -> list[int]:
    return [
        int(e["canary_weight"])
        for e in events
        if e.get("kind") == "weight_advanced"
        and str(e.get("message", "")).startswith("Advance")
        and "canary weight" in str(e.get("message", ""))
    ]


def weight_steps(events: list[dict[str, Any]], want_phase: str) -> list[str]:
    """No weight step skipped or repeated; the good revision reaches maxWeight, promoted once;
    the faulty one is rolled back once."""
    problems = []
    seen = advances(events)
    expected = list(range(STEP, STEP * len(seen) + 1, STEP))
    if seen != expected:
        problems.append(f"weight steps {seen}: skipped or repeated (expected {expected})")
    kinds = [e.get("kind") for e in events]
    if want_phase == "Succeeded":
        if seen[-1:] != [MAX_WEIGHT]:
            problems.append(f"weight steps {seen} never reached {MAX_WEIGHT}")
        if kinds.count("promotion_completed") != 1:
            problems.append(f"{kinds.count('promotion_completed')} promotion_completed events")
    elif kinds.count("rolled_back") < 1 or "promotion_completed" in kinds:
        problems.append(
            f"{kinds.count('rolled_back')} rolled_back and "
            f"{kinds.count('promotion_completed')} promotion_completed events"
        )
    return problems


async def consumers(nats_url: str) -> dict[str, tuple[int, int]]:
    """(num_pending, num_ack_pending) of every durable consumer of the two streams."""
    nc = await cluster.connect(nats_url)
    try:
        js = nc.jetstream(timeout=5)
        found = {}
        for stream in ("SLUICE_EVENTS", "SLUICE_TICKS"):
            for info in await js.consumers_info(stream):
                if info.config.durable_name:
                    key = f"{stream}/{info.config.durable_name}"
                    found[key] = (int(info.num_pending or 0), int(info.num_ack_pending or 0))
        return found
    finally:
        await nc.close()


async def drained(nats_url: str, timeout: float = 60.0) -> list[str]:
    """Every durable consumer drains to nothing pending and nothing unacknowledged (but the
    scheduled tick) within ``timeout``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        seen = await consumers(nats_url)
        problems = [
            f"consumer {key}: {pending} pending, {unacked} unacknowledged"
            for key, (pending, unacked) in sorted(seen.items())
            if pending + unacked > (TICKS_SCHEDULED if key.startswith("SLUICE_TICKS/") else 0)
        ]
        if not problems or asyncio.get_running_loop().time() > deadline:
            return problems
        await asyncio.sleep(0.5)


async def dead_letters(nats_url: str) -> int:
    nc = await cluster.connect(nats_url)
    try:
        info = await nc.jetstream(timeout=5).stream_info("SLUICE_DEAD")
        return int(info.state.messages)
    finally:
        await nc.close()
