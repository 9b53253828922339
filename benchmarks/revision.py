"""Figure 1, revision latency: ``kubectl set image`` → "New revision detected" on the bus.

A sandbox stack (``python -m sandbox up``: the Kubernetes API and APISIX simulators, NATS) runs
the five services as processes, as ``tests/sandbox/e2e`` does. Three Canaries (the tutorial's
podinfo in namespaces ``bench-0..2``, interval 1 s, ``skipAnalysis`` so that a rollout is over
in seconds; a new revision is detected on the same path as with an analysis) are rolled out in
turn with the real kubectl, one ``kubectl set image`` at a time; a canary's next rollout waits
until its previous one is ``Succeeded``. For each rollout, measured in this process on one
monotonic clock:

- ``t_kubectl``: just before kubectl is started;
- ``t_accepted``: a watch on the Deployments (this process, HTTP to the simulated API server)
  sees the new generation (the new image);
- ``t_detected``: the watcher's ``revision_detected`` event arrives (subscriber on
  ``sluice.events.>``);
- ``t_new_revision``: the analyzer's ``new_revision`` event ("New revision detected! Scaling up
  podinfo.<ns>") arrives.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import pathlib
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import nats
import uvloop
import yaml
from nats.aio.client import Client
from nats.aio.msg import Msg

from benchmarks import harness
from libs import streams
from tests.sandbox.e2e import support

CANARIES = 3  # canaries rolled out in turn, so one finishes while the others are measured
NAMESPACES = tuple(f"bench-{i}" for i in range(CANARIES))
ROLLOUT_TIMEOUT_S = 60.0
EVENT_TIMEOUT_S = 30.0
TARGET_S = 1.0
SLOW_HINT_S = 0.3  # an analyzer share above this is the hint waiting for its pull
IMAGE = "ghcr.io/stefanprodan/podinfo"


class Clock:
    """Monotonic arrival times of what the rollouts wait for."""

    def __init__(self) -> None:
        self.image_at: dict[str, float] = {}  # first time the Deployment had this image
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.changed = asyncio.Event()

    async def on_event(self, msg: Msg) -> None:
        self.events.append((time.monotonic(), json.loads(msg.data)))
        self.changed.set()

    def first(self, kind: str, namespace: str, after: float, **fields: Any) -> float | None:
        for at, event in self.events:
            if (
                at >= after
                and event["kind"] == kind
                and event["canary"]["namespace"] == namespace
                and all(event.get(k) == v for k, v in fields.items())
            ):
                return at
        return None

    async def wait(
        self, kind: str, namespace: str, after: float, timeout: float, **fields: Any
    ) -> float:
        deadline = time.monotonic() + timeout
        while (at := self.first(kind, namespace, after, **fields)) is None:
            self.changed.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise harness.BenchmarkError(
                    f"no {kind} event {fields} in {namespace} within {timeout:g}s"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)
        return at


async def _watch_deployment(kube_url: str, clock: Clock) -> None:
    """Record when each new generation of the podinfo Deployments is seen (a new image)."""
    url = f"{kube_url}/apis/apps/v1/deployments"
    params = {"watch": "true", "fieldSelector": "metadata.name=podinfo"}
    headers = {"Authorization": "Bearer sandbox"}
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=None)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        while True:
            async with http.get(url, params=params, headers=headers) as resp:
                resp.raise_for_status()
                async for line in resp.content:
                    if not line.strip():
                        continue
                    obj = json.loads(line)["object"]
                    for container in obj["spec"]["template"]["spec"]["containers"]:
                        if container["image"] not in clock.image_at:
                            clock.image_at[container["image"]] = time.monotonic()
                            clock.changed.set()


async def _image_seen(clock: Clock, image: str, timeout: float) -> float:
    """When the watch first saw the Deployment's new generation with ``image``."""
    deadline = time.monotonic() + timeout
    while image not in clock.image_at:
        clock.changed.clear()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise harness.BenchmarkError(f"the Deployment watch never saw image {image}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(clock.changed.wait(), remaining)
    return clock.image_at[image]


def _manifests(namespace: str) -> str:
    """The tutorial's Namespace, Deployment, ApisixRoute and Canary in ``namespace``, interval
    1 s and ``skipAnalysis`` (promoted as soon as the canary is ready), no metrics or webhooks."""
    deployment, route, canary = (
        yaml.safe_load((support.MANIFESTS / name).read_text())
        for name in ("podinfo-deployment.yaml", "podinfo-apisixroute.yaml", "podinfo-canary.yaml")
    )
    for obj in (deployment, route, canary):
        obj["metadata"]["namespace"] = namespace
    route["spec"]["http"][0]["match"]["hosts"] = [f"{namespace}.example.com"]
    canary["spec"]["skipAnalysis"] = True
    canary["spec"]["analysis"].update(
        interval="1s", maxWeight=50, stepWeight=50, metrics=[], webhooks=[]
    )
    namespace_obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    return yaml.safe_dump_all([namespace_obj, deployment, route, canary])


async def _observed(nc: Client, namespace: str, phases: tuple[str, ...]) -> None:
    """Until the watcher's observation of the Canary (KV ``sluice_canaries``), which the
    analyzer decides from, shows one of ``phases``: a rollout starts from a settled canary."""
    kv = await nc.jetstream().key_value(streams.CANARIES.name)
    deadline = time.monotonic() + ROLLOUT_TIMEOUT_S
    phase = None
    while True:
        with contextlib.suppress(nats.js.errors.KeyNotFoundError):
            entry = await kv.get(f"{namespace}.podinfo")
            observed = json.loads(entry.value or b"{}").get("canary") or {}
            phase = (observed.get("status") or {}).get("phase")
            if phase in phases:
                return
        if time.monotonic() > deadline:
            raise harness.BenchmarkError(
                f"the Canary {namespace}/podinfo is observed {phase!r}, not {phases}, "
                f"after {ROLLOUT_TIMEOUT_S:g}s"
            )
        await asyncio.sleep(0.05)  # a polling period, not a wait for an event


@contextlib.asynccontextmanager
async def _stack(tmp: pathlib.Path) -> AsyncIterator[support.Stack]:
    running = await asyncio.to_thread(support.start_stack_blocking, tmp / "stack")
    try:
        yield running
    finally:
        await asyncio.to_thread(support.stop_stack_blocking, running)


async def _measure(rollout_count: int) -> dict[str, Any]:
    with harness.workdir("revision") as tmp:
        async with _stack(tmp) as stack, harness.services(tmp) as started:
            env = {
                "SLUICE_KUBECONFIG": stack.env["KUBECONFIG"],
                "SLUICE_PROMETHEUS_URL": stack.env["PROMETHEUS_URL"],
                "SLUICE_LOADTESTER_PORT": stack.env["LOADTESTER_PORT"],
                "SLUICE_MIN_INTERVAL_S": "1",
                "HTTP_PROXY": stack.env["HTTP_PROXY"],
                "NO_PROXY": stack.env["NO_PROXY"],
            }
            procs = [started.start(name, stack.env["NATS_URL"], **env) for name in harness.SERVICES]
            await asyncio.gather(*(started.ready(p) for p in procs))
            nc = await nats.connect(stack.env["NATS_URL"], connect_timeout=5)
            clock = Clock()
            watch = asyncio.create_task(_watch_deployment(stack.env["KUBE_URL"], clock))
            try:
                await nc.subscribe("sluice.events.>", cb=clock.on_event)
                start = time.monotonic()
                for namespace in NAMESPACES:
                    await stack.kubectl("apply", "-f", "-", stdin=_manifests(namespace))
                for namespace in NAMESPACES:
                    await clock.wait("initialized", namespace, start, ROLLOUT_TIMEOUT_S)
                return await _rollouts(stack, nc, clock, rollout_count)
            finally:
                watch.cancel()
                with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
                    await watch
                await nc.close()


async def _rollouts(stack: support.Stack, nc: Client, clock: Clock, count: int) -> dict[str, Any]:
    rows: list[dict[str, float]] = []
    last_new: dict[str, float] = {}
    for i in range(count):
        namespace = NAMESPACES[i % CANARIES]
        if namespace in last_new:  # its previous rollout must be over
            await clock.wait(
                "phase_changed",
                namespace,
                last_new[namespace],
                ROLLOUT_TIMEOUT_S,
                phase="Succeeded",
            )
        await _observed(nc, namespace, ("Initialized", "Succeeded"))
        tag = f"6.1.{i}"
        t_kubectl = time.monotonic()
        await stack.kubectl(
            "set", "image", "deployment/podinfo", f"podinfod={IMAGE}:{tag}", "-n", namespace
        )
        t_returned = time.monotonic()
        t_new = await clock.wait("new_revision", namespace, t_kubectl, EVENT_TIMEOUT_S)
        last_new[namespace] = t_new
        t_accepted = await _image_seen(clock, f"{IMAGE}:{tag}", EVENT_TIMEOUT_S)
        t_detected = clock.first("revision_detected", namespace, t_kubectl) or float("nan")
        rows.append(
            {
                "from_kubectl_s": t_new - t_kubectl,
                "from_accepted_s": t_new - t_accepted,
                "kubectl_to_accepted_s": t_accepted - t_kubectl,
                "kubectl_wall_s": t_returned - t_kubectl,
                "accepted_to_watcher_event_s": t_detected - t_accepted,
                "watcher_event_to_new_revision_s": t_new - t_detected,
            }
        )
    return {"rollouts": rows}


def _figure(data: dict[str, Any], count: int) -> harness.Figure:
    rows = data["rollouts"]
    parts = {key: harness.summary([row[key] for row in rows]) for key in rows[0]}
    kubectl, accepted = parts["from_kubectl_s"], parts["from_accepted_s"]
    startup = parts["kubectl_to_accepted_s"]["p50"]
    shares = {
        "kubectl start-up and request": startup,
        "watcher: watch event to revision_detected": parts["accepted_to_watcher_event_s"]["p50"],
        "analyzer: hint to new_revision (incl. scale-up command, status write)": parts[
            "watcher_event_to_new_revision_s"
        ]["p50"],
    }
    dominant = max(shares, key=lambda k: shares[k])
    slowest = max(rows, key=lambda row: row["from_kubectl_s"])
    slowest_text = (
        f"; slowest rollout {1000 * slowest['from_kubectl_s']:.0f} ms: kubectl "
        f"{1000 * slowest['kubectl_to_accepted_s']:.0f}, watcher "
        f"{1000 * slowest['accepted_to_watcher_event_s']:.0f}, analyzer "
        f"{1000 * slowest['watcher_event_to_new_revision_s']:.0f} ms"
    )
    if slowest["watcher_event_to_new_revision_s"] > SLOW_HINT_S:
        slowest_text += (
            " (the analyzer's hints consumer, a JetStream pull, sometimes hands a "
            "revision_detected over only when its current pull ends: bounded by "
            "SLUICE_FETCH_TIMEOUT_S, 2 s by default; with 0.5 s such tails stayed under 0.45 s)"
        )
    return harness.Figure(
        key="revision_latency",
        title="revision latency: kubectl set image → New revision detected",
        value=(f"from kubectl {harness.ms(kubectl)}; from API accept {harness.ms(accepted)}"),
        target=f"≤ {TARGET_S:g} s (Flagger: next tick, ≈ interval/2)",
        met=kubectl["p99"] <= TARGET_S,
        conditions=(
            f"{harness.machine()}; {count} rollouts one at a time, {CANARIES} Canaries in "
            "turn (interval 1 s, skipAnalysis), each from Succeeded (the others may be "
            "finishing theirs); sandbox Kubernetes API + 5 services as processes; "
            "p50 shares: "
            + ", ".join(f"{name} {1000 * s:.0f} ms" for name, s in shares.items())
            + f"; dominated by {dominant}"
            + slowest_text
        ),
        stand_ins=[
            "revision: Kubernetes API and pods are the sandbox simulator (in-memory, local HTTP)"
        ],
        data={"summary_s": parts, **data},
    )


def run(args: argparse.Namespace) -> list[harness.Figure]:
    count = 10 if args.quick else 20
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        data = runner.run(_measure(count))
    return [_figure(data, count)]
