"""A run's fault schedule, derived only from its seed: the same seed, the same faults at the
same moments (``--seed S --runs 1`` replays a run).

Every run injects each kind once, at a moment drawn from the seed within one of the two
rollouts (``good``: the revision that must be promoted; ``faulty``: the one that must be
rolled back), counted from the moment the rollout was started:

=================  ==========================================================================
``kill``           SIGKILL one service (any of the five), restarted ``down_s`` later, as a
                   supervisor would
``nats-restart``   nats-server stopped and started again on the same port and store directory
                   ``down_s`` later
``prometheus``     Prometheus stopped for ``down_s`` seconds, then started on its own storage
                   (``stop``), or the gateway's metrics endpoint gone for ``down_s`` seconds
                   (``metrics-gone``: every scrape fails)
``kube``           the Kubernetes API answers 503 (``kube-503``) or holds every request
                   (``kube-timeout``) for ``down_s`` seconds; open watches are dropped first
``webhook-kill``   the webhook-runner SIGKILLed while a load test runs, restarted ``down_s``
                   later
=================  ==========================================================================

Prometheus is unavailable for less than the 30 s of a real outage: these runs analyse every
second, not every 10 s to 1 min, and each second without the canary's metrics is one failed
check (as in Flagger: "no values found", or the query failing), so 30 s would rightly roll
back the good revision at the tutorial's threshold of 10. A stopped Prometheus is down
``PROMETHEUS_DOWN_S`` (1 s) and a restarted one scrapes again only ~5 s later (its service
discovery's first update): ~7 checks fail. The gateway's metrics endpoint disappears for
``METRICS_GONE_S`` (5 s). Both stay under the threshold, as a 30 s outage does at a 10 s
interval.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

SERVICES = ("watcher", "analyzer", "traffic_shifter", "webhook_runner", "notifier")
KINDS = ("kill", "nats-restart", "prometheus", "kube", "webhook-kill")
PHASES = ("good", "faulty")
KUBE_DOWN_S = 10.0
PROMETHEUS_DOWN_S = 1.0
METRICS_GONE_S = 5.0
LATEST_S = {"good": 8.0, "faulty": 6.0}  # the latest moment of a fault in each rollout


@dataclasses.dataclass(frozen=True)
class Fault:
    kind: str
    phase: str
    at_s: float  # seconds after the rollout started
    down_s: float  # how long the fault lasts (until the restart, or the switch's window)
    target: str = ""  # the killed service; kube-503 or kube-timeout for ``kube``

    def describe(self) -> str:
        what = f"{self.kind}({self.target})" if self.target else self.kind
        return f"{what} at {self.phase}+{self.at_s:.1f}s for {self.down_s:.1f}s"

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def plan(seed: int) -> list[Fault]:
    """The faults of the run with ``seed``, in the order they fire."""
    rng = random.Random(seed)
    faults = []
    for kind in KINDS:
        phase = rng.choice(PHASES)
        at_s = round(rng.uniform(0.5, LATEST_S[phase]), 1)
        target = ""
        if kind == "kill":
            target = rng.choice(SERVICES)
            down_s = rng.uniform(0.5, 3.0)
        elif kind == "nats-restart":
            down_s = rng.uniform(0.5, 3.0)
        elif kind == "prometheus":
            target = rng.choice(("stop", "metrics-gone"))
            down_s = PROMETHEUS_DOWN_S if target == "stop" else METRICS_GONE_S
        elif kind == "kube":
            target = rng.choice(("kube-503", "kube-timeout"))
            down_s = KUBE_DOWN_S
        else:
            down_s = rng.uniform(0.5, 2.0)
        faults.append(Fault(kind, phase, at_s, round(down_s, 1), target))
    return sorted(faults, key=lambda f: (PHASES.index(f.phase), f.at_s))


def run_seed(base: int, index: int) -> int:
    """The seed of run ``index`` of a session started with ``--seed base``."""
    return base + index
