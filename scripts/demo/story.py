"""The tutorial's story: the manifests, rollout 1 (a good revision, promoted) and rollout 2 (a
faulty one, rolled back), each waited for on the bus and with kubectl, each judged."""

from __future__ import annotations

import ipaddress
import json
import pathlib
import time
from collections.abc import Mapping
from typing import Any

from scripts.demo import chat, cluster, events, outcome, snapshot, tutorial, waiting

TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})
# the logs that tell why a rollout did not end as expected
ROLLOUT_LOGS = ("sluice-analyzer", "sluice-traffic-shifter", "sluice-webhook-runner")


class Demo:
    """The demo's run: its chat sink, its own stack, the bus, and the report of what happened."""

    def __init__(
        self,
        root: pathlib.Path,
        board: snapshot.Board,
        pod_network: ipaddress.IPv4Network,
        deadline_s: float = tutorial.DEADLINE_S,
    ) -> None:
        self.root = root
        self.board = board
        self.deadline = waiting.Deadline(board.started, deadline_s)
        self.sandbox = cluster.Sandbox(root, board, pod_network, self.deadline)
        self.sink = chat.ChatSink(board.chat)
        self.bus = events.Follower(board)
        self.report = outcome.Report()

    # --- the stack, the sink and the bus ---

    async def up(self) -> None:
        url = await self.sink.start()
        self.board.action(f"chat sink listening on {url}")
        await self.sandbox.up(url)

    async def listen(self) -> None:
        """Follow the canary's events on the bus (JetStream, so de-duplicated)."""
        await self.bus.follow(self.sandbox.kube_env["NATS_URL"])

    async def wait_event(
        self, kind: str, after: float, timeout: float, failure: str
    ) -> events.Arrival:
        """The first ``kind`` event that arrived after ``after`` (monotonic)."""
        try:
            return await self.bus.wait(kind, after, self.deadline.budget(timeout))
        except TimeoutError as exc:
            raise outcome.DemoFailure(failure + self.deadline.overdue()) from exc

    async def close(self) -> None:
        await self.bus.close()
        await self.sink.stop()

    async def stop_up(self) -> None:
        """An interrupted `sandbox up` stops what it started itself (on SIGINT)."""
        await self.sandbox.stop_up()

    async def canary(self) -> dict[str, Any]:
        obj = await self.sandbox.get_json("canary", tutorial.CANARY)
        self.board.canary(obj)
        return obj

    async def primary(self) -> outcome.Container:
        return outcome.Container.of(await self.sandbox.get_json("deployment", tutorial.PRIMARY))

    def describe_canary(self, obj: Mapping[str, Any] | None) -> str:
        status = (obj or {}).get("status") or {}
        return (
            f"the canary is {status.get('phase') or 'without a phase'} at weight "
            f"{status.get('canaryWeight') or 0}% with {status.get('failedChecks') or 0} failed "
            f"checks"
        )

    # --- the story ---

    async def run(self) -> outcome.Report:
        report = self.report
        t0 = time.monotonic()
        await self.up()
        await self.listen()
        report.timings["sandbox up"] = time.monotonic() - t0

        self.board.set_stage("applying the tutorial's manifests")
        t0 = time.monotonic()
        files = [
            w
            for name in tutorial.MANIFEST_FILES
            for w in ("-f", tutorial.shown_path(tutorial.MANIFESTS / name))
        ]
        await self.sandbox.kubectl("apply", *files)
        await waiting.poll(
            self.canary,
            lambda obj: (obj.get("status") or {}).get("phase") == "Initialized",
            self.deadline.budget(tutorial.INITIALIZED_TIMEOUT_S),
            lambda obj: (
                f"expected the canary to reach phase Initialized within "
                f"{tutorial.INITIALIZED_TIMEOUT_S:g}s of `kubectl apply`; "
                f"{self.describe_canary(obj)}{self.deadline.overdue()} "
                f"(logs: {self.sandbox.log('sluice-analyzer', 'sluice-traffic-shifter')})"
            ),
        )
        report.timings["initialization"] = time.monotonic() - t0

        # rollout 1: a good revision
        self.board.set_stage(
            f"rollout 1 of 2: a good revision ({tutorial.GOOD_IMAGE.rsplit('/', 1)[-1]})"
        )
        t0 = time.monotonic()
        await self.sandbox.kubectl(
            "set",
            "image",
            f"deployment/{tutorial.TARGET}",
            f"{tutorial.CONTAINER}={tutorial.GOOD_IMAGE}",
            "-n",
            tutorial.NAMESPACE,
        )
        phase, latency = await self.rollout(
            t0, "rollout 1", "Succeeded", tutorial.PROMOTION_TIMEOUT_S
        )
        report.revision_latency_s = latency
        primary = await self.primary()
        verdict = outcome.judge_promotion(phase, primary)
        self._verdict(verdict)
        report.timings["rollout 1"] = time.monotonic() - t0
        if not verdict.ok:
            return report

        # rollout 2: a faulty revision, one change of the pod template (one revision)
        self.board.set_stage(
            f"rollout 2 of 2: a faulty revision ({tutorial.FAULTY_IMAGE.rsplit('/', 1)[-1]}, "
            f"{tutorial.FAULT_VARIABLE}={tutorial.FAULT_VALUE})"
        )
        before = primary
        t0 = time.monotonic()
        change = {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {
                                "name": tutorial.CONTAINER,
                                "image": tutorial.FAULTY_IMAGE,
                                "env": [
                                    {"name": tutorial.FAULT_VARIABLE, "value": tutorial.FAULT_VALUE}
                                ],
                            }
                        ]
                    }
                }
            }
        }
        self.board.action(
            f"(= kubectl set image … {tutorial.CONTAINER}={tutorial.FAULTY_IMAGE} + "
            f"kubectl set env … {tutorial.FAULT_VARIABLE}={tutorial.FAULT_VALUE}, "
            "in one write so that it is one revision)",
            style="dim",
        )
        await self.sandbox.kubectl(
            "patch",
            f"deployment/{tutorial.TARGET}",
            "-n",
            tutorial.NAMESPACE,
            "--type=strategic",
            "-p",
            json.dumps(change, separators=(",", ":")),
        )
        phase, _ = await self.rollout(t0, "rollout 2", "Failed", tutorial.ROLLBACK_TIMEOUT_S)
        self._verdict(outcome.judge_rollback(phase, before, await self.primary()))
        report.timings["rollout 2"] = time.monotonic() - t0
        return report

    def _verdict(self, verdict: outcome.Verdict) -> None:
        self.report.verdicts.append(verdict)
        self.board.action(verdict.line, style="bold green" if verdict.ok else "bold red")

    async def rollout(
        self, started: float, name: str, expected: str, timeout: float
    ) -> tuple[str, float]:
        """Wait for "New revision detected" then for the canary's end of that revision; the
        phase it ended in and the latency of the event (from ``started``, monotonic)."""
        arrival = await self.wait_event(
            "new_revision",
            started,
            tutorial.REVISION_TIMEOUT_S,
            f'{name}: expected "New revision detected! Scaling up '
            f'{tutorial.TARGET}.{tutorial.NAMESPACE}" on the bus within '
            f"{tutorial.REVISION_TIMEOUT_S:g}s of the change; it did not arrive (logs: "
            f"{self.sandbox.log('sluice-watcher', 'sluice-analyzer')})",
        )
        latency = arrival.at - started
        self.board.action(
            f'"New revision detected" arrived {latency:.2f}s after the change '
            f"(kubectl itself took {self.sandbox.kubectl_s:.2f}s)"
        )
        revision = arrival.event.revision

        def ended(obj: Mapping[str, Any]) -> bool:
            status = obj.get("status") or {}
            # the status of *this* revision (events are published before the status is written)
            return (
                status.get("phase") in TERMINAL_PHASES and status.get("lastAppliedSpec") == revision
            )

        obj = await waiting.poll(
            self.canary,
            ended,
            self.deadline.budget(timeout),
            lambda obj: (
                f"{name}: expected the canary to end {expected} within {timeout:g}s of the new "
                f"revision; {self.describe_canary(obj)}{self.deadline.overdue()} (logs: "
                f"{self.sandbox.log(*ROLLOUT_LOGS)})"
            ),
        )
        return str((obj.get("status") or {}).get("phase")), latency
