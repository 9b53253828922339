"""How the demo ends: the verdict on each rollout, the report and its summary, and what a run
that keeps its stack prints."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import shlex
import sys
from collections.abc import Mapping
from typing import Any

from scripts.demo import tutorial


class DemoFailure(Exception):
    """The demo did not go as expected; the message says what was expected and what happened."""


@dataclasses.dataclass(frozen=True)
class Container:
    """The primary's podinfo container, as its pod template has it."""

    image: str
    env: Mapping[str, str]

    @classmethod
    def of(cls, deployment: Mapping[str, Any]) -> Container:
        spec = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
        for container in spec.get("containers") or ():
            if container.get("name") == tutorial.CONTAINER:
                env = {
                    str(e.get("name")): str(e.get("value", "")) for e in container.get("env") or ()
                }
                return cls(str(container.get("image", "")), env)
        return cls("", {})

    def describe(self) -> str:
        fault = self.env.get(tutorial.FAULT_VARIABLE)
        what = self.image or "no podinfod container"
        return f"{what} with {tutorial.FAULT_VARIABLE}={fault}" if fault is not None else what


@dataclasses.dataclass(frozen=True)
class Verdict:
    ok: bool
    line: str


def judge_promotion(phase: str, primary: Container) -> Verdict:
    """Rollout 1: Succeeded, and the primary runs the good image without the fault."""
    if (
        phase == "Succeeded"
        and primary.image == tutorial.GOOD_IMAGE
        and tutorial.FAULT_VARIABLE not in primary.env
    ):
        return Verdict(
            True,
            f"promoted: rollout 1 ended Succeeded; {tutorial.PRIMARY} runs {primary.describe()}",
        )
    return Verdict(
        False,
        f"rollout 1 (good revision): expected phase Succeeded with {tutorial.PRIMARY} running "
        f"{tutorial.GOOD_IMAGE}; got phase {phase or '(none)'} with {tutorial.PRIMARY} running "
        f"{primary.describe()}",
    )


def judge_rollback(phase: str, before: Container, after: Container) -> Verdict:
    """Rollout 2: Failed, and the primary exactly as rollout 1 left it."""
    if phase == "Failed" and after == before and tutorial.FAULT_VARIABLE not in after.env:
        return Verdict(
            True,
            f"rolled back: rollout 2 ended Failed; {tutorial.PRIMARY} still runs "
            f"{after.describe()}",
        )
    return Verdict(
        False,
        f"rollout 2 (faulty revision): expected phase Failed with {tutorial.PRIMARY} unchanged "
        f"({before.describe()}); got phase {phase or '(none)'} with {tutorial.PRIMARY} running "
        f"{after.describe()}",
    )


@dataclasses.dataclass
class Report:
    """What the summary says."""

    verdicts: list[Verdict] = dataclasses.field(default_factory=list)
    failure: str = ""
    timings: dict[str, float] = dataclasses.field(default_factory=dict)  # stage -> seconds
    revision_latency_s: float | None = None  # kubectl set image -> "New revision detected"
    slack_messages: int = 0
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failure and len(self.verdicts) == 2 and all(v.ok for v in self.verdicts)


def duration(seconds: float) -> str:
    """``3m58s`` / ``42.1s``."""
    if seconds >= 60:
        whole = round(seconds)
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{seconds:.1f}s"


def summary(report: Report) -> list[str]:
    lines = [v.line for v in report.verdicts]
    if report.failure:
        lines.append(f"FAILED: {report.failure}")
    stages = ", ".join(f"{name} {duration(s)}" for name, s in report.timings.items())
    lines.append(f"wall time: {duration(report.wall_s)}" + (f" ({stages})" if stages else ""))
    if report.revision_latency_s is not None:
        lines.append(
            f'kubectl set image → "New revision detected" on the bus: '
            f"{report.revision_latency_s:.2f}s"
        )
    lines.append(f"Slack messages received by the sink: {report.slack_messages}")
    lines.append("demo passed" if report.ok else "demo FAILED")
    return lines


def third_revision() -> str:
    """One change of the pod template (one revision): a new image, and the fault the faulty
    revision added removed (the target keeps the rolled-back spec, as with Flagger)."""
    container = {
        "name": tutorial.CONTAINER,
        "image": "ghcr.io/stefanprodan/podinfo:6.0.3",
        "env": [{"name": tutorial.FAULT_VARIABLE, "$patch": "delete"}],
    }
    patch = {"spec": {"template": {"spec": {"containers": [container]}}}}
    return json.dumps(patch, separators=(",", ":"))


def keep_instructions(root: pathlib.Path) -> list[str]:
    python = shlex.quote(tutorial.shown_path(pathlib.Path(sys.executable)))
    sluice = shlex.quote(tutorial.shown_path(pathlib.Path(sys.executable).parent / "sluice"))
    where = shlex.quote(tutorial.shown_path(root))
    ns, name = tutorial.NAMESPACE, tutorial.CANARY
    return [
        "The stack keeps running (--keep). Use it:",
        f"  source {where}/env",
        f"  kubectl get canaries -n {ns}",
        f"  kubectl describe canary {name} -n {ns}",
        "  # a third, good revision: a new image, and the faulty revision's error rate gone",
        f"  kubectl patch deployment/{tutorial.TARGET} -n {ns} -p {shlex.quote(third_revision())}",
        f"  {sluice} watch {name} -n {ns}             # follows the rollout; exit 0 promoted, 1 failed",
        f"  {sluice} events {name} -n {ns} --since 15m",
        f"  {sluice} dashboard --allow-actions       # http://127.0.0.1:3100",
        f"  {python} -m sandbox --dir {where} down     # stops it",
        "(The chat sink ended with the demo: the notifier's Slack deliveries fail from now on.)",
    ]
