"""Figures 2-4 from what the analyzer load windows measured (``analyzer_load``): the plan of
a run, one window's numbers (``Stage``) and the three ``Figure`` rows."""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

from benchmarks import analyzer_standins as standins
from benchmarks import harness

INTERVAL_S = 10
OVERHEAD_TARGET_S = 0.005
LATENESS_TARGET_S = 1.0
RSS_TARGET_MB = 200.0
CAPACITY_TARGET = 1000  # canaries
SCALE_TARGET = 1.8  # 1 -> 2 replicas, when one replica is CPU-bound
CPU_BOUND = 85.0  # % of one core: above this the replica itself is the limit
OVERHEAD = "sluice_analyzer_step_overhead_seconds"
LATENESS = "sluice_analyzer_tick_lateness_seconds"

STAND_INS = [
    "Kubernetes API (status writes) and Prometheus (queries answer 100): one aiohttp server "
    "in the benchmark's process",
    "the watcher: Canary and Deployment observations written to KV directly",
]


@dataclasses.dataclass(frozen=True)
class Plan:
    sizes: tuple[int, ...]
    replicas: tuple[int, ...]
    settle_s: float
    window_s: float
    probes: int
    slow_prometheus_s: float = 0.05  # one more window at the target size, queries this slow


FULL = Plan(sizes=(100, 1000, 5000), replicas=(1, 2, 3), settle_s=8.0, window_s=20.0, probes=300)
QUICK = Plan(sizes=(100, 500), replicas=(1, 2), settle_s=4.0, window_s=10.0, probes=100)


@dataclasses.dataclass
class Stage:
    """What one measuring window saw."""

    canaries: int
    replicas: int
    window_s: float
    steps: list[float]  # per replica
    overhead: standins.Histogram
    lateness: standins.Histogram
    cpu_percent: list[float]  # per replica, % of one core
    rss_mb: list[float]  # per replica, peak during the window
    prometheus_delay_s: float = 0.0
    # % of one core: nats-server, this process (stand-ins), the machine (every core, every user)
    others_cpu: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def steps_per_s(self) -> float:
        return sum(self.steps) / self.window_s

    @property
    def cpu_ms_per_step(self) -> float:
        """The replicas' CPU time per step: what a step costs, whatever the load."""
        steps = sum(self.steps)
        return sum(self.cpu_percent) / 100 * self.window_s / steps * 1000 if steps else math.nan

    @property
    def machine_saturated(self) -> bool:
        """Every core was busy (other processes included): no replica could get more CPU."""
        busy = self.others_cpu.get("machine", 0.0)
        return busy >= 95.0 * (os.cpu_count() or 1)

    def row(self) -> dict[str, Any]:
        return {
            "canaries": self.canaries,
            "replicas": self.replicas,
            "window_s": round(self.window_s, 1),
            "steps_per_s": round(self.steps_per_s, 1),
            "cpu_ms_per_step": _round(self.cpu_ms_per_step),
            "expected_steps_per_s": round(self.canaries / INTERVAL_S, 1),
            "steps_per_replica": [int(s) for s in self.steps],
            "lateness_p50_s": _round(self.lateness.quantile(0.5)),
            "lateness_p99_s": _round(self.lateness.quantile(0.99)),
            "lateness_samples": int(self.lateness.count),
            "overhead_p50_ms": _round(self.overhead.quantile(0.5) * 1000),
            "overhead_p99_ms": _round(self.overhead.quantile(0.99) * 1000),
            "cpu_percent": [round(c, 1) for c in self.cpu_percent],
            "rss_mb": [round(r, 1) for r in self.rss_mb],
            "prometheus_delay_s": self.prometheus_delay_s,
            "others_cpu_percent": {k: round(v, 1) for k, v in self.others_cpu.items()},
        }


def _round(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 4)


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None or math.isnan(seconds) else f"{seconds * 1000:.3g} ms"


def _s(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds:.3g} s"


def _stand_ins(probe: dict[str, dict[str, float]], handling: dict[str, float]) -> list[str]:
    """The stand-ins, each with how fast it answered (it must be far below what is measured)."""
    rows = list(STAND_INS)
    for kind, stats in probe.items():
        rows.append(f"stand-in {kind} round trip (idle, one at a time): {harness.ms(stats)}")
    if handling:
        rows.append(f"stand-in handling time under load: {harness.ms(handling)}")
    return rows


def figures(
    plan: Plan,
    capacity: list[Stage],
    scale: list[Stage],
    probe: dict[str, dict[str, float]],
    handling: dict[str, float],
) -> list[harness.Figure]:
    stand_ins = _stand_ins(probe, handling)
    cores = os.cpu_count() or 1
    base = f"{harness.machine()} · blue/green canaries, 2 builtin metrics, no webhooks, interval {INTERVAL_S} s"
    light = capacity[0]
    p50, p99 = light.overhead.quantile(0.5), light.overhead.quantile(0.99)
    overhead = harness.Figure(
        key="analyzer_step_overhead",
        title="analyzer step overhead",
        value=f"p50 {_ms(p50)} · p99 {_ms(p99)} ({int(light.overhead.count)} steps)",
        target=f"p99 ≤ {OVERHEAD_TARGET_S * 1000:g} ms",
        met=None if math.isnan(p99) else p99 <= OVERHEAD_TARGET_S,
        conditions=f"{base} · {light.canaries} canaries on 1 replica · "
        f"{OVERHEAD} from /metrics: reading the canary → status written, minus awaiting "
        "Prometheus (the checks include their KV template reads and thread hand-off); "
        "quantiles interpolated within histogram buckets"
        + (
            " · every core of the machine was busy meanwhile (other processes included)"
            if light.machine_saturated
            else ""
        ),
        stand_ins=stand_ins,
        data={
            "p50_s": _none(p50),
            "p99_s": _none(p99),
            "stages": [s.row() for s in capacity],
            "stand_in_round_trip": probe,
            "stand_in_handling": handling,
        },
    )
    held = [s for s in capacity if _keeps_up(s)]
    largest = max((s.canaries for s in held), default=0)
    at_target = next(
        (s for s in capacity if s.canaries == CAPACITY_TARGET and not s.prometheus_delay_s), None
    )
    met: bool | None = None
    if at_target is not None:
        met = _keeps_up(at_target) and max(at_target.rss_mb) <= RSS_TARGET_MB
    cap_rows = " · ".join(
        f"{s.canaries}{_slow(s)}: {s.steps_per_s:.0f}/s (of {s.canaries / INTERVAL_S:.0f}), "
        f"late p50 "
        f"{_s(s.lateness.quantile(0.5))} p99 {_s(s.lateness.quantile(0.99))}, CPU "
        f"{s.cpu_percent[0]:.0f} % ({s.cpu_ms_per_step:.2g} ms a step), RSS {s.rss_mb[0]:.0f} MB"
        for s in capacity
    )
    capacity_figure = harness.Figure(
        key="analyzer_capacity",
        title="analyzer capacity (1 replica)",
        value=f"holds {largest} canaries · {cap_rows}",
        target=f"{CAPACITY_TARGET} canaries with lateness p99 < {LATENESS_TARGET_S:g} s and "
        f"RSS ≤ {RSS_TARGET_MB:g} MB",
        met=met,
        conditions=f"{base} · sizes {' → '.join(str(s) for s in plan.sizes)}, each measured "
        f"for {plan.window_s:g} s after its first ticks were spread over one interval · "
        f"lateness from {LATENESS} (due → step started)",
        stand_ins=stand_ins,
        data={"stages": [s.row() for s in capacity], "largest_held": largest},
    )
    one = scale[0]
    two = scale[1] if len(scale) > 1 else None
    speedup = two.steps_per_s / one.steps_per_s if two is not None and one.steps_per_s else math.nan
    bound = one.cpu_percent[0] >= CPU_BOUND
    scale_rows = " · ".join(
        f"{s.replicas}x: {s.steps_per_s:.0f}/s, late p99 {_s(s.lateness.quantile(0.99))}, "
        f"steps {'/'.join(str(int(n)) for n in s.steps)}, CPU "
        f"{'/'.join(f'{c:.0f}' for c in s.cpu_percent)} %, nats-server "
        f"{s.others_cpu.get('nats_server', math.nan):.0f} %, stand-ins "
        f"{s.others_cpu.get('benchmark_and_stand_ins', math.nan):.0f} %, machine "
        f"{s.others_cpu.get('machine', math.nan):.0f} % of {cores * 100}"
        for s in scale
    )
    scale_figure = harness.Figure(
        key="analyzer_scale_out",
        title="analyzer scale-out",
        value=f"1 → 2 replicas: {speedup:.2f}x · {scale_rows}",
        target=f"≥ {SCALE_TARGET:g}x from 1 to 2 replicas where one replica is CPU-bound",
        met=(speedup >= SCALE_TARGET) if bound and not math.isnan(speedup) else None,
        conditions=f"{base} · {one.canaries} canaries · {cores} cores shared by the replicas, "
        "nats-server and the stand-ins: the replicas together get at most "
        f"{cores} cores minus what those use, so more than {cores} replicas cannot add "
        f"throughput · one replica at {one.cpu_percent[0]:.0f} % of a core "
        f"({'CPU-bound' if bound else 'not CPU-bound: the ratio does not test scaling'})"
        + (
            " · every core of the machine was busy during the 1-replica window (other "
            "processes included): more replicas could only share what was left"
            if one.machine_saturated
            else ""
        )
        + " · lateness counts the ticks that came back to the replica that re-scheduled them",
        stand_ins=stand_ins,
        data={"stages": [s.row() for s in scale], "speedup_1_to_2": _none(speedup)},
    )
    return [overhead, capacity_figure, scale_figure]


def _slow(stage: Stage) -> str:
    delay = stage.prometheus_delay_s
    return f" with Prometheus answering in {delay * 1000:g} ms" if delay else ""


def _keeps_up(stage: Stage) -> bool:
    """Every canary stepped about once an interval, and ticks start less than 1 s late."""
    expected = stage.canaries / INTERVAL_S
    late = stage.lateness.quantile(0.99)
    return stage.steps_per_s >= 0.9 * expected and not math.isnan(late) and late < LATENESS_TARGET_S


def _none(value: float) -> float | None:
    return None if math.isnan(value) else value
