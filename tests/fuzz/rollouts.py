"""Canaries in flight while the bus is fuzzed (``python -m tests.fuzz --with-rollouts N``).

The run then happens on a sandbox stack (``python -m sandbox up``: Kubernetes API and APISIX
simulators, Prometheus, the stack's nats-server) with all five services. ``Flight`` puts N
canaries of the tutorial in namespaces ``fuzz-roll-<i>`` (1 s interval, stepWeight 10 up to
50, no webhooks; every other one checks a MetricTemplate that always fails, threshold 2) and
keeps them busy: as soon as a rollout ends, the next revision of its Deployment starts another,
until the fuzzing is over. A plain subscriber records each canary's events.

The invariant (``check``): every round ends the way it must, with no step skipped or
repeated — a good canary advances exactly 10, 20, 30, 40, 50 and is promoted once; a bad one
advances to 10, fails exactly ``threshold`` counted checks and is rolled back once. At the end the
canaries are deleted, so their ticks end and the consumers can drain.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import operator
import pathlib
from typing import Any

from nats.aio.client import Client

from tests.sandbox.e2e import support
from tests.sandbox.e2e.rollouts import manifests

PREFIX = "fuzz-roll-"
GOOD_WEIGHTS = [10, 20, 30, 40, 50]
BAD_WEIGHTS = [10]
THRESHOLD = 2
ROUND_TIMEOUT_S = 120.0  # one rollout on a machine busy with the fuzzing


@dataclasses.dataclass
class RolloutReport:
    namespace: str
    good: bool  # expected to be promoted (else rolled back)
    rounds: int = 0
    outcomes: list[str] = dataclasses.field(default_factory=list)  # per round
    problems: list[str] = dataclasses.field(default_factory=list)


def service_env(stack: support.Stack) -> dict[str, str]:
    """What the services need of the stack (no proxy: no webhook, Prometheus on 127.0.0.1)."""
    return {
        "SLUICE_KUBECONFIG": stack.env["KUBECONFIG"],
        "SLUICE_PROMETHEUS_URL": stack.env["PROMETHEUS_URL"],
        "SLUICE_MIN_INTERVAL_S": "1",
    }


def start_stack(workdir: pathlib.Path) -> support.Stack:
    root = workdir / "stack"
    root.mkdir(parents=True, exist_ok=True)
    return support.start_stack_blocking(root)


def canary_docs(namespace: str, good: bool, prometheus: str) -> str:
    def edit(docs: list[dict[str, Any]]) -> None:
        docs.append(
            {
                "apiVersion": "flagger.app/v1beta1",
                "kind": "MetricTemplate",
                "metadata": {"name": "level", "namespace": namespace},
                "spec": {
                    "provider": {"type": "prometheus", "address": prometheus},
                    "query": "vector(1)" if good else "vector(100)",
                },
            }
        )
        analysis = docs[3]["spec"]["analysis"]
        analysis["webhooks"] = []
        analysis["metrics"] = [
            {"name": "level", "templateRef": {"name": "level"}, "thresholdRange": {"max": 10}}
        ]

    return manifests(namespace, edit, analysis_changes={"threshold": THRESHOLD})


class Flight:
    def __init__(self, stack: support.Stack, count: int) -> None:
        self.stack = stack
        self.reports = {
            f"{PREFIX}{i}": RolloutReport(f"{PREFIX}{i}", good=i % 2 == 0) for i in range(count)
        }
        self.events: dict[str, list[dict[str, Any]]] = {ns: [] for ns in self.reports}
        self.stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def _record(self, msg: Any) -> None:
        namespace = msg.subject.split(".")[2]
        if namespace in self.events:
            self.events[namespace].append(json.loads(msg.data))

    async def _ended(self, namespace: str) -> int:
        """Rollouts of ``namespace`` that ended so far (promoted or rolled back)."""
        kinds = ("promotion_completed", "rolled_back")
        return sum(1 for e in self.events[namespace] if e["kind"] in kinds)

    async def start(self, nc: Client) -> None:
        """Apply the canaries, wait until each is Initialized, start the first rollouts."""
        await nc.subscribe("sluice.events.*.podinfo.*", cb=self._record)
        prometheus = self.stack.env["PROMETHEUS_URL"]
        text = "---\n".join(canary_docs(ns, r.good, prometheus) for ns, r in self.reports.items())
        await self.stack.kubectl("apply", "-f", "-", stdin=text)
        await asyncio.gather(*(self._phase(ns, ("Initialized",)) for ns in self.reports))
        self._tasks = [asyncio.create_task(self._fly(ns)) for ns in self.reports]

    async def _phase(self, namespace: str, phases: tuple[str, ...]) -> None:
        async def phase() -> str:
            out = await self.stack.kubectl(
                "get", "canary", "podinfo", "-n", namespace, "-o", "json", check=False
            )
            status = json.loads(out.stdout).get("status") or {} if out.code == 0 else {}
            return str(status.get("phase", ""))

        await support.poll(
            phase, lambda p: p in phases, ROUND_TIMEOUT_S, f"{namespace} {phases}", 0.5
        )

    async def _fly(self, namespace: str) -> None:
        """New revisions one after another: each waits for the last rollout's end."""
        report = self.reports[namespace]
        while not self.stop.is_set() or report.rounds == 0:
            report.rounds += 1
            ended = report.rounds
            await self.stack.kubectl(
                "set",
                "image",
                "deployment/podinfo",
                f"podinfod=ghcr.io/stefanprodan/podinfo:6.1.{report.rounds}",
                "-n",
                namespace,
            )

            await support.poll(
                lambda: self._ended(namespace),
                functools.partial(operator.le, ended),
                ROUND_TIMEOUT_S,
                f"{namespace} round {ended}",
                0.3,
            )
            # the status is written before the events: the phase is final by now
            await self._phase(namespace, ("Succeeded", "Failed"))

    async def finish(self) -> None:
        """Let the rollouts in flight end, check each round, delete the canaries."""
        self.stop.set()
        results = await asyncio.gather(*self._tasks, return_exceptions=True)
        for (namespace, report), result in zip(self.reports.items(), results, strict=True):
            if isinstance(result, BaseException):
                report.problems.append(f"did not end: {type(result).__name__}: {result}")
            self._judge(namespace, report)
        await asyncio.gather(
            *(
                self.stack.kubectl("delete", "canary", "podinfo", "-n", ns, "--wait=false")
                for ns in self.reports
            )
        )

    async def cancel(self) -> None:
        """Stop the rollout loops (after a failure elsewhere; a no-op after ``finish``)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _judge(self, namespace: str, report: RolloutReport) -> None:
        rounds: list[list[dict[str, Any]]] = []
        for event in self.events[namespace]:
            if event["kind"] == "new_revision":
                rounds.append([])
            elif rounds:
                rounds[-1].append(event)
        for i, events in enumerate(rounds, 1):
            weights = [
                e["canary_weight"]
                for e in events
                if e["kind"] == "weight_advanced"
                and e["message"].startswith("Advance")
                and "canary weight" in e["message"]
            ]
            promoted = sum(1 for e in events if e["kind"] == "promotion_completed")
            rolled_back = sum(1 for e in events if e["kind"] == "rolled_back")
            halts = sum(1 for e in events if e["kind"] == "halted" and e.get("counted"))
            report.outcomes.append(f"{'promoted' if promoted else 'rolled back'} {weights}")
            if report.good:
                wrong = weights != GOOD_WEIGHTS or promoted != 1 or rolled_back
            else:
                wrong = weights != BAD_WEIGHTS or rolled_back != 1 or promoted or halts != THRESHOLD
            if wrong:
                report.problems.append(
                    f"round {i}: weights {weights}, {promoted} promotions, {rolled_back} "
                    f"rollbacks, {halts} halts (expected "
                    + (
                        f"{GOOD_WEIGHTS} and one promotion)"
                        if report.good
                        else f"{BAD_WEIGHTS}, {THRESHOLD} halts and one rollback)"
                    )
                )
        if len(rounds) != report.rounds:
            report.problems.append(f"{len(rounds)} rollouts started for {report.rounds} revisions")


def render(reports: list[RolloutReport]) -> str:
    lines = [f"{'canary':<14} {'expected':<12} {'rounds':>6}  outcomes"]
    for r in reports:
        outcomes = sorted({o: r.outcomes.count(o) for o in r.outcomes}.items())
        said = ", ".join(f"{n}x {o}" for o, n in outcomes)
        lines.append(
            f"{r.namespace:<14} {'promoted' if r.good else 'rolled back':<12} {r.rounds:>6}  "
            f"{said}" + "".join(f"\n    PROBLEM {p}" for p in r.problems)
        )
    return "\n".join(lines)


def check(reports: list[RolloutReport]) -> list[str]:
    """Problems of the ``rollouts-correct`` invariant, one line per canary with any."""
    return [f"{r.namespace}: " + "; ".join(r.problems) for r in reports if r.problems] + [
        f"{r.namespace}: no rollout ended" for r in reports if not r.outcomes
    ]
