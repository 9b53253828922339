"""What ``sluice watch`` shows and decides, with no I/O: whether a rollout is over and with
which exit status (``verdict``, by the analyzer's own rule for a pending revision), the frame
of one moment (``frame_of``), and its two renderings — redrawn in place with rich on a
terminal (``LiveView``), one plain line per change otherwise (``PlainView``)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from cli import events
from libs import messages
from libs.model import canary as canary_model
from libs.model import strategy

Phase = canary_model.Phase
EXIT_OK = 0
EXIT_FAILED = 1
SHOWN_EVENTS = 12
HIDDEN_EVENTS = frozenset({"metric_checked"})
FINISHED = (Phase.SUCCEEDED, Phase.INITIALIZED, Phase.FAILED)


@dataclasses.dataclass(frozen=True)
class Verdict:
    """Whether the rollout is over, the exit status then, and what to say."""

    over: bool
    status: int = EXIT_OK
    message: str = ""


def pending_revision(
    status: canary_model.CanaryStatus, workload: messages.WorkloadObservation | None
) -> str | None:
    """The target's revision when the analyzer will (re)start a rollout for it, else None.

    The analyzer's rule (Flagger's ``HasTargetChanged`` plus tracked configs): the pod template
    differs from the last applied one unless it is the promoted one, or — same template — a
    tracked ConfigMap/Secret changed. Without an observation of the target nothing is pending.
    """
    if workload is None:
        return None
    applied, promoted = status.last_applied_spec, status.last_promoted_spec
    if not applied:
        return workload.revision
    if workload.revision not in (applied, promoted):
        return workload.revision
    if workload.revision != applied:
        return None
    if dict(workload.tracked_configs) != dict(status.tracked_configs or {}):
        return workload.revision
    return None


def verdict(
    who: str,
    observation: messages.CanaryObservation | None,
    workload: messages.WorkloadObservation | None,
) -> Verdict:
    """Is the rollout of ``who`` (``name.namespace``) over, and with which exit status?"""
    if observation is None:
        return Verdict(False, EXIT_FAILED, f"{who} not found")
    if observation.canary is None:
        problems = "; ".join(observation.problems) or "no details"
        return Verdict(True, EXIT_FAILED, f"{who} is invalid: {problems}")
    status = observation.canary.status or canary_model.CanaryStatus()
    phase = status.phase
    if phase in (Phase.TERMINATING, Phase.TERMINATED):
        return Verdict(True, EXIT_FAILED, f"{who} was deleted")
    if phase not in FINISHED:
        return Verdict(False, message=f"{who} is {phase or 'not initialized yet'}")
    pending = pending_revision(status, workload)
    if pending is not None:
        return Verdict(False, message=f"{who}: new revision {_short(pending)} pending")
    if phase == Phase.FAILED:
        return Verdict(True, EXIT_FAILED, f"{who} Failed: rolled back")
    if phase == Phase.INITIALIZED:
        return Verdict(True, EXIT_OK, f"{who} Initialized: nothing new to roll out")
    revision = _short(status.last_promoted_spec or "")
    return Verdict(True, EXIT_OK, f"{who} Succeeded: revision {revision} promoted")


def _short(revision: str) -> str:
    return revision[:12] or "-"


# --------------------------------------------------------------------------- what is shown


@dataclasses.dataclass(frozen=True)
class MetricView:
    name: str
    value: float | None
    min: float | None = None
    max: float | None = None
    passed: bool = True
    dry_run: bool = False


@dataclasses.dataclass(frozen=True)
class Frame:
    """One canary as ``watch`` shows it."""

    who: str
    found: bool = False
    phase: str = ""
    iterations_based: bool = False  # blue/green and A/B: iterations, not weights
    weight: int = 0
    max_weight: int = 100
    iteration: int = 0
    iterations: int = 0
    failed_checks: int = 0
    threshold: int = 1
    metrics: tuple[MetricView, ...] = ()
    gate: str = ""
    note: str = ""  # a pending revision, problems

    def key(self) -> tuple[object, ...]:
        """What a plain line is printed for a change of."""
        return (self.found, self.phase, self.weight, self.iteration, self.gate, self.note)


def metrics_of(status: canary_model.CanaryStatus) -> dict[str, MetricView]:
    return {
        m.name: MetricView(m.name, m.value, m.min, m.max, bool(m.passed), bool(m.dry_run))
        for m in status.metrics
    }


def metric_of(event: messages.MetricChecked) -> MetricView:
    return MetricView(event.metric, event.value, event.min, event.max, event.passed, event.dry_run)


def frame_of(
    who: str,
    observation: messages.CanaryObservation | None,
    workload: messages.WorkloadObservation | None,
    metrics: dict[str, MetricView],
) -> Frame:
    """What to show for the current observations; ``metrics`` are the last values known."""
    if observation is None:
        return Frame(who=who, note="not found yet")
    if observation.canary is None:
        return Frame(who=who, found=True, note="invalid: " + "; ".join(observation.problems))
    canary = observation.canary
    status = canary.status or canary_model.CanaryStatus()
    analysis = canary.get_analysis()
    kind = strategy.detect(analysis)
    gate = next(
        (c.reason for c in status.conditions if c.type == "Gate" and c.status == "False"), ""
    )
    pending = pending_revision(status, workload) if status.phase in FINISHED else None
    return Frame(
        who=who,
        found=True,
        phase=str(status.phase) or "-",
        iterations_based=kind is not strategy.Strategy.CANARY,
        weight=status.canary_weight or 0,
        max_weight=strategy.max_weight(analysis),
        iteration=status.iterations or 0,
        iterations=analysis.iterations_or_zero(),
        failed_checks=status.failed_checks or 0,
        threshold=analysis.threshold_or_default(),
        metrics=tuple(metrics[name] for name in sorted(metrics)),
        gate=gate,
        note=f"new revision {_short(pending)} pending" if pending else "",
    )


def clock(at_ms: int) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at_ms / 1000))


def _number(value: float | None) -> str:
    return "no values" if value is None else f"{value:.2f}".rstrip("0").rstrip(".")


def threshold_text(metric: MetricView) -> str:
    if metric.min is not None and metric.max is not None:
        return f"{_number(metric.min)} .. {_number(metric.max)}"
    if metric.min is not None:
        return f">= {_number(metric.min)}"
    if metric.max is not None:
        return f"<= {_number(metric.max)}"
    return "no range"


def metric_text(metric: MetricView) -> str:
    result = "" if metric.passed else " failed"
    dry = " dry-run" if metric.dry_run else ""
    return f"{metric.name} {_number(metric.value)} ({threshold_text(metric)}){result}{dry}"


def progress_text(frame: Frame) -> str:
    if frame.iterations_based:
        return f"iteration {frame.iteration}/{frame.iterations}"
    return f"weight {frame.weight}/{frame.max_weight}"


def plain_line(frame: Frame, now_ms: int) -> str:
    """The line printed when what ``Frame.key`` covers changed (no terminal)."""
    if not frame.found:
        return f"{clock(now_ms)}  {frame.who}: {frame.note}"
    parts = [f"{clock(now_ms)}  {frame.who}", frame.phase or "-"]
    if frame.phase != "-" and not frame.note.startswith("invalid"):
        parts.append(progress_text(frame))
        parts.append(f"failed checks {frame.failed_checks}/{frame.threshold}")
        parts += [metric_text(m) for m in frame.metrics]
    if frame.gate:
        parts.append(f"waiting at {frame.gate}")
    if frame.note:
        parts.append(frame.note)
    return "  ".join(parts)


def event_line(event: messages.EventBase) -> str | None:
    """An event as a line (None for the metric values, which show in the frame)."""
    if messages.event_kind(event) in HIDDEN_EVENTS:
        return None
    return f"{clock(event.at_ms)}  {event.message or events.describe(event)}"


def render(frame: Frame, lines: Sequence[str]) -> RenderableType:
    """The terminal view: a summary grid, the metrics table and the last events."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("Canary", frame.who)
    grid.add_row("Phase", Text(frame.phase or "-", style=_phase_style(frame.phase)))
    if frame.found and frame.phase not in ("", "-"):
        if frame.iterations_based:
            total, done = max(frame.iterations, 1), frame.iteration
        else:
            total, done = max(frame.max_weight, 1), frame.weight
        bar = Table.grid(padding=(0, 1))
        bar.add_row(
            ProgressBar(total=total, completed=min(done, total), width=30),
            progress_text(frame),
        )
        grid.add_row("Progress", bar)
        checks = f"{frame.failed_checks}/{frame.threshold}"
        grid.add_row("Failed checks", Text(checks, style="red" if frame.failed_checks else ""))
    if frame.gate:
        grid.add_row("Waiting at", Text(frame.gate, style="yellow"))
    if frame.note:
        grid.add_row("Note", frame.note)
    parts: list[RenderableType] = [grid]
    if frame.metrics:
        table = Table(title="Metrics", title_justify="left", box=None, padding=(0, 2))
        for column in ("NAME", "VALUE", "THRESHOLD", "RESULT"):
            table.add_column(column)
        for m in frame.metrics:
            result = ("dry run, " if m.dry_run else "") + ("passed" if m.passed else "failed")
            table.add_row(
                m.name,
                _number(m.value),
                threshold_text(m),
                Text(result, style="green" if m.passed else "red"),
            )
        parts += [Text(""), table]
    parts += [Text(""), Text("Events", style="bold")]
    parts += [Text(line) for line in lines[-SHOWN_EVENTS:]] or [Text("  <none yet>")]
    return Group(*parts)


def _phase_style(phase: str) -> str:
    if phase in (Phase.SUCCEEDED, Phase.INITIALIZED):
        return "green"
    if phase in (Phase.FAILED, Phase.TERMINATING, Phase.TERMINATED):
        return "red"
    return "cyan"


# --------------------------------------------------------------------------- output


class PlainView:
    """No terminal: one line per change of phase / weight / iteration, one per event."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.last: tuple[object, ...] | None = None

    def show(self, frame: Frame, new_lines: Sequence[str], now_ms: int) -> None:
        for line in new_lines:
            print(line, file=self.out, flush=True)
        if frame.key() != self.last:
            self.last = frame.key()
            print(plain_line(frame, now_ms), file=self.out, flush=True)

    def close(self) -> None:
        pass


class LiveView:
    """A terminal: the frame redrawn in place with rich."""

    def __init__(self, console: Console) -> None:
        self.lines: list[str] = []
        self.live = Live(console=console, auto_refresh=False, transient=False)
        self.live.start()

    def show(self, frame: Frame, new_lines: Sequence[str], now_ms: int) -> None:
        self.lines += new_lines
        self.live.update(render(frame, self.lines), refresh=True)

    def close(self) -> None:
        self.live.stop()


# --------------------------------------------------------------------------- running
