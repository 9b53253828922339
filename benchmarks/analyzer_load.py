"""Figures 2-4: the analyzer's step overhead, the canaries one replica holds, and scale-out.

Real analyzer processes (``python -m services.analyzer``) over a real nats-server; around
them the stand-ins of ``analyzer_standins`` (observations written to KV, one in-process server
for the Kubernetes status writes and the Prometheus queries). Each canary's first tick is
published at an even spread over one interval (canaries created over time); after that the
analyzer re-schedules every tick itself (``nak`` with the 10 s interval). At the target size
one more window runs with Prometheus answering in 50 ms, as a loaded one does.

* step overhead: ``sluice_analyzer_step_overhead_seconds`` of the analyzer's ``/metrics`` at
  the smallest load (a step from reading the canary to its status written, minus awaiting
  Prometheus and webhooks);
* capacity: one replica holding more and more Progressing canaries; steps/s, tick lateness
  (``sluice_analyzer_tick_lateness_seconds``: due → started), CPU and RSS of the analyzer;
* scale-out: the largest load on 1, 2 and 3 replicas; steps/s, lateness and each replica's
  share of the steps.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pathlib
import time
from typing import Any

import aiohttp
import msgspec
import nats
import uvloop
from nats.js import JetStreamContext

from benchmarks import analyzer_figures, harness
from benchmarks import analyzer_standins as standins
from libs import messages, streams
from tests.fixtures.services import ServiceProcess

INTERVAL_S = analyzer_figures.INTERVAL_S
OVERHEAD = analyzer_figures.OVERHEAD
LATENESS = analyzer_figures.LATENESS
Plan = analyzer_figures.Plan
Stage = analyzer_figures.Stage
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=10)
KV_CONCURRENCY = 64


def run(args: argparse.Namespace) -> list[harness.Figure]:
    plan = analyzer_figures.QUICK if args.quick else analyzer_figures.FULL
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_measure(plan))


class Bench:
    def __init__(self, js: JetStreamContext, services: harness.Services, env: dict[str, str]):
        self.js = js
        self.services = services
        self.env = env
        self.analyzers: list[tuple[ServiceProcess, harness.ProcessStats]] = []
        self.canaries = 0

    async def add_replica(self, nats_url: str) -> None:
        process = self.services.start("analyzer", nats_url, **self.env)
        await self.services.ready(process)
        assert process.proc is not None
        self.analyzers.append((process, harness.ProcessStats(process.proc.pid, children=False)))

    async def grow(self, size: int) -> None:
        """Observations of the new canaries, then their first ticks spread over one interval."""
        new = range(self.canaries, size)
        canaries_kv = await self.js.key_value(streams.CANARIES.name)
        workloads_kv = await self.js.key_value(streams.WORKLOADS.name)
        limit = asyncio.Semaphore(KV_CONCURRENCY)

        async def observe(index: int) -> None:
            name = standins.canary_name(index)
            async with limit:
                await canaries_kv.put(
                    messages.canary_key(standins.NAMESPACE, name),
                    standins.canary_observation(index, INTERVAL_S),
                )
                for workload in (name, f"{name}-primary"):
                    await workloads_kv.put(
                        messages.workload_key(standins.NAMESPACE, workload),
                        standins.workload_observation(workload),
                    )

        await asyncio.gather(*(observe(i) for i in new))
        start = time.monotonic()
        spacing = INTERVAL_S / max(len(new), 1)
        pending: list[asyncio.Task[Any]] = []
        for offset, index in enumerate(new):
            delay = start + offset * spacing - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            ref = messages.CanaryRef(namespace=standins.NAMESPACE, name=standins.canary_name(index))
            tick = msgspec.json.encode(messages.Tick(canary=ref))
            subject = messages.tick_subject(ref.namespace, ref.name)
            pending.append(asyncio.create_task(self.js.publish(subject, tick, timeout=10)))
        await asyncio.gather(*pending)
        self.canaries = size

    async def window(self, seconds: float) -> Stage:
        before = [await _scrape(p) for p, _ in self.analyzers]
        cpu_before = [s.sample().cpu_s for _, s in self.analyzers]
        others_before = self._others()
        started = time.monotonic()
        peak = [0.0] * len(self.analyzers)
        while (left := started + seconds - time.monotonic()) > 0:
            await asyncio.sleep(min(1.0, left))
            for i, (_, stats) in enumerate(self.analyzers):
                peak[i] = max(peak[i], stats.sample().rss_mb)
        took = time.monotonic() - started
        cpu_after = [s.sample().cpu_s for _, s in self.analyzers]
        others = {k: (v - others_before[k]) / took * 100 for k, v in self._others().items()}
        after = [await _scrape(p) for p, _ in self.analyzers]
        overhead = [
            standins.parse_histogram(a, OVERHEAD) - standins.parse_histogram(b, OVERHEAD)
            for a, b in zip(after, before, strict=True)
        ]
        lateness = [
            standins.parse_histogram(a, LATENESS) - standins.parse_histogram(b, LATENESS)
            for a, b in zip(after, before, strict=True)
        ]
        return Stage(
            canaries=self.canaries,
            replicas=len(self.analyzers),
            window_s=took,
            steps=[h.count for h in overhead],
            overhead=standins.merge(overhead),
            lateness=standins.merge(lateness),
            cpu_percent=[(a - b) / took * 100 for a, b in zip(cpu_after, cpu_before, strict=True)],
            rss_mb=peak,
            others_cpu=others,
        )

    def _others(self) -> dict[str, float]:
        """CPU seconds of what shares the cores with the analyzers: nats-server (our other
        child), this process (the stand-ins, the tick publisher) and the whole machine."""
        analyzers = {s.pid for _, s in self.analyzers}
        mine = harness.ProcessStats(os.getpid())
        children = [p for p in mine.pids() if p != os.getpid() and p not in analyzers]
        nats_cpu = sum(harness.ProcessStats(p, children=False).sample().cpu_s for p in children)
        fields = pathlib.Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        ticks = [int(f) for f in fields]
        busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
        return {
            "nats_server": nats_cpu,
            "benchmark_and_stand_ins": harness.ProcessStats(os.getpid(), children=False)
            .sample()
            .cpu_s,
            "machine": busy,
        }


async def _scrape(process: ServiceProcess) -> str:
    async with (
        aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as session,
        session.get(process.base_url + "/metrics") as resp,
    ):
        if resp.status != 200:
            raise harness.BenchmarkError(f"analyzer /metrics answered {resp.status}")
        return await resp.text()


async def _probe(url: str, count: int) -> dict[str, dict[str, float]]:
    """Round trips to the stand-in (one at a time, from this process) for each kind of call."""
    status = standins._STATUS_PATH.format(name=standins.canary_name(0))
    times: dict[str, list[float]] = {"status_write": [], "prometheus_query": []}
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as session:
        for _ in range(count):
            started = time.perf_counter()
            async with session.patch(url + status, json={"status": {"iterations": 2}}) as resp:
                await resp.read()
            times["status_write"].append(time.perf_counter() - started)
            started = time.perf_counter()
            async with session.get(url + "/api/v1/query", params={"query": "vector(1)"}) as resp:
                await resp.read()
            times["prometheus_query"].append(time.perf_counter() - started)
    return {kind: harness.summary(values) for kind, values in times.items()}


async def _measure(plan: Plan) -> list[harness.Figure]:
    standin = standins.StandIn()
    url = await standin.start()
    try:
        probe = await _probe(url, plan.probes)
        standin.handling_s.clear()
        with harness.workdir("analyzer") as tmp, harness.nats_server(tmp / "js") as server:
            nc = await nats.connect(server.url, connect_timeout=5)
            try:
                js = nc.jetstream(timeout=10)
                await streams.declare(
                    js,
                    streams=(streams.EVENTS, streams.TICKS, streams.DEAD),
                    buckets=(streams.WORKLOADS, streams.CANARIES, streams.TEMPLATES),
                    timeout_s=10,
                )
                env = {
                    "SLUICE_KUBECONFIG": str(standins.kubeconfig(tmp / "kubeconfig", url)),
                    "SLUICE_PROMETHEUS_URL": url,
                }
                async with harness.services(tmp) as services:
                    bench = Bench(js, services, env)
                    await bench.add_replica(server.url)
                    capacity: list[Stage] = []
                    for size in plan.sizes:
                        await bench.grow(size)
                        await asyncio.sleep(plan.settle_s)
                        capacity.append(await bench.window(plan.window_s))
                        if size == plan.sizes[-2]:  # the target size, with a slow Prometheus
                            standin.prometheus_delay_s = plan.slow_prometheus_s
                            await asyncio.sleep(plan.settle_s)
                            slow = await bench.window(plan.window_s)
                            slow.prometheus_delay_s = plan.slow_prometheus_s
                            capacity.append(slow)
                            standin.prometheus_delay_s = 0.0
                    scale = [capacity[-1]]
                    for _ in plan.replicas[1:]:
                        await bench.add_replica(server.url)
                        await asyncio.sleep(plan.settle_s)
                        scale.append(await bench.window(plan.window_s))
            finally:
                await nc.close()
        handling = harness.summary(standin.handling_s) if standin.handling_s else {}
    finally:
        await standin.stop()
    return analyzer_figures.figures(plan, capacity, scale, probe, handling)
