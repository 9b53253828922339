"""Figure 6, idle memory: RSS of each of the five services after start-up and an idle period.

The services run as processes as in production: configured against a sandbox stack
(``python -m sandbox up``: Kubernetes API simulator, Prometheus, NATS with JetStream), so the
Kubernetes client, the informers, the Prometheus client and the loadtester are all loaded, with
no Canary to work on. They are started one after another (each until ``/readyz`` answers 200:
its start-up time), then left idle together; RSS (the process and its children, from
``/proc``) is sampled every second. Reported per service: start-up time, RSS when ready, RSS at
the end of the idle period, the peak, the settle time (when RSS last moved by more than 1 MB)
and the private memory (``Private_*`` of ``/proc/<pid>/smaps_rollup``: RSS minus shared
library pages).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import pathlib
import time
from typing import Any

import uvloop

from benchmarks import harness
from tests.sandbox.e2e import support

TARGET_MB = 80.0
SAMPLE_EVERY_S = 1.0
SETTLED_MB = 1.0  # RSS steps below this are noise (allocator, GC)


def private_mb(pid: int) -> float:
    """Private (unshared) resident memory of ``pid`` in MB, from smaps_rollup."""
    total_kb = 0
    for line in pathlib.Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("Private_Clean", "Private_Dirty"):
            total_kb += int(rest.split()[0])
    return total_kb * 1024 / 1e6


def settle_time(samples: list[tuple[float, float]]) -> float:
    """Seconds after start of the last sample whose RSS differs from the one before it by
    more than ``SETTLED_MB`` (0 when it never moved)."""
    settled = samples[0][0]
    for (_, before), (at, rss) in itertools.pairwise(samples):
        if abs(rss - before) > SETTLED_MB:
            settled = at
    return settled


async def _measure(idle_s: float) -> dict[str, Any]:
    with harness.workdir("idle") as tmp:
        stack = await asyncio.to_thread(support.start_stack_blocking, tmp / "stack")
        try:
            async with harness.services(tmp) as started:
                return await _services(stack, started, idle_s)
        finally:
            await asyncio.to_thread(support.stop_stack_blocking, stack)


async def _services(
    stack: support.Stack, started: harness.Services, idle_s: float
) -> dict[str, Any]:
    env = {
        "SLUICE_KUBECONFIG": stack.env["KUBECONFIG"],
        "SLUICE_PROMETHEUS_URL": stack.env["PROMETHEUS_URL"],
        "SLUICE_LOADTESTER_PORT": stack.env["LOADTESTER_PORT"],
        "HTTP_PROXY": stack.env["HTTP_PROXY"],
        "NO_PROXY": stack.env["NO_PROXY"],
    }
    found: dict[str, dict[str, Any]] = {}
    watched: list[tuple[str, float, harness.ProcessStats]] = []
    for name in harness.SERVICES:
        began = time.monotonic()
        process = started.start(name, stack.env["NATS_URL"], **env)
        await started.ready(process)
        assert process.proc is not None
        ready_s = time.monotonic() - began
        stats = harness.ProcessStats(process.proc.pid)
        found[name] = {
            "pid": process.proc.pid,
            "startup_s": ready_s,
            "rss_ready_mb": stats.sample().rss_mb,
            "samples": [(ready_s, stats.sample().rss_mb)],
        }
        watched.append((name, began, stats))
    idle_from = time.monotonic()
    while (now := time.monotonic()) - idle_from < idle_s:
        for name, began, stats in watched:
            found[name]["samples"].append((now - began, stats.sample().rss_mb))
        await asyncio.sleep(SAMPLE_EVERY_S)  # a sampling period, not a wait for an event
    for name, began, stats in watched:
        end = stats.sample()
        samples = found[name]["samples"] + [(time.monotonic() - began, end.rss_mb)]
        found[name].update(
            rss_mb=end.rss_mb,
            peak_mb=max(rss for _, rss in samples),
            settle_s=settle_time(samples),
            private_mb=private_mb(stats.pid),
            cpu_s=end.cpu_s,
            samples=[(round(at, 2), round(rss, 2)) for at, rss in samples],
        )
    return {"idle_s": idle_s, "services": found}


def _figure(data: dict[str, Any]) -> harness.Figure:
    services = data["services"]
    worst = max(services, key=lambda name: services[name]["rss_mb"])
    over = [name for name, s in services.items() if s["rss_mb"] > TARGET_MB]
    per = "; ".join(
        f"{name} {s['rss_mb']:.0f} MB (private {s['private_mb']:.0f}, peak {s['peak_mb']:.0f}, "
        f"ready in {s['startup_s']:.1f} s, settled at {s['settle_s']:.0f} s)"
        for name, s in services.items()
    )
    return harness.Figure(
        key="idle_rss",
        title="idle RSS of each service",
        value=" · ".join(f"{name} {s['rss_mb']:.0f} MB" for name, s in services.items()),
        target=f"≤ {TARGET_MB:g} MB each",
        met=not over,
        conditions=(
            f"{harness.machine()}; each against the sandbox (Kubernetes, Prometheus, NATS), "
            f"no Canary, RSS incl. children after start-up + {data['idle_s']:g} s idle; {per}; "
            f"largest: {worst}" + (f"; over target: {', '.join(over)}" if over else "")
        ),
        stand_ins=["idle: Kubernetes API and Prometheus are the sandbox's simulators"],
        data=data,
    )


def run(args: argparse.Namespace) -> list[harness.Figure]:
    idle_s = 10.0 if args.quick else 30.0
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        data = runner.run(_measure(idle_s))
    return [_figure(data)]
