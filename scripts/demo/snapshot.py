"""The state snapshot: everything the demo shows, as plain data. The bus, kubectl and the chat
sink update a ``Board``; ``display`` draws it; in plain mode each change is also one line."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any

from libs import messages
from scripts.demo import chat

# Bus events that `kubectl describe canary` does not list (services.notifier.kubeevents
# .NOT_RECORDED: measurements and the watcher's hints); a test keeps the two equal.
NOT_DESCRIBED = frozenset({"metric_checked", "revision_detected"})
# Units of Flagger's builtin metrics (anything else is shown bare).
UNITS = {"request-success-rate": "%", "request-duration": "ms"}


@dataclasses.dataclass
class Metric:
    """One metric of the Canary: its threshold, and its last measured value."""

    name: str
    min: float | None = None
    max: float | None = None
    value: float | None = None
    passed: bool | None = None  # None: not measured yet
    measured: bool = False  # a metric_checked event arrived (value None then: no values)


@dataclasses.dataclass(frozen=True)
class Entry:
    at_s: float  # seconds since the demo started
    text: str
    style: str = ""  # a rich style
    tag: str = ""  # e.g. an event's type (Normal, Warning)


def unit(metric: str) -> str:
    return UNITS.get(metric, "")


def number(value: float) -> str:
    return f"{value:g}"


def threshold_text(metric: Metric) -> str:
    """``≥ 99%``, ``≤ 500ms``, ``99..100`` or ``—`` (no threshold known yet)."""
    u = unit(metric.name)
    if metric.min is not None and metric.max is not None:
        return f"{number(metric.min)}..{number(metric.max)}{u}"
    if metric.min is not None:
        return f"≥ {number(metric.min)}{u}"
    if metric.max is not None:
        return f"≤ {number(metric.max)}{u}"
    return "—"


def value_text(metric: Metric) -> str:
    if not metric.measured:
        return "not measured yet"
    if metric.value is None:
        return "no values"
    return f"{metric.value:.2f}{unit(metric.name)}"


def verdict_text(metric: Metric) -> str:
    if metric.passed is None:
        return ""
    return "ok" if metric.passed else "FAILS"


def described(event: messages.EventBase) -> bool:
    """Whether ``kubectl describe canary`` lists this bus event (as the notifier records it)."""
    return bool(event.message) and messages.event_kind(event) not in NOT_DESCRIBED


def event_type(event: messages.EventBase) -> str:
    """Kubernetes' event type, as describe shows it."""
    return "Normal" if event.severity == messages.Severity.INFO else "Warning"


def severity_style(severity: str) -> str:
    return {"warn": "yellow", "error": "bold red"}.get(severity, "")


def _discard(_line: str) -> None:
    pass


@dataclasses.dataclass
class Board:
    """Everything the demo shows, as plain data: the bus, kubectl and the chat sink update it;
    ``render`` draws it; in plain mode ``out`` gets one line per change."""

    started: float = dataclasses.field(default_factory=time.monotonic)
    stage: str = "starting the sandbox"
    phase: str = ""
    weight: int = 0
    max_weight: int = 0
    failed_checks: int = 0
    threshold: int = 0
    metrics: dict[str, Metric] = dataclasses.field(default_factory=dict)
    events: list[Entry] = dataclasses.field(default_factory=list)
    slack: list[Entry] = dataclasses.field(default_factory=list)
    actions: list[Entry] = dataclasses.field(default_factory=list)
    out: Callable[[str], None] = _discard

    def at(self, now: float | None = None) -> float:
        return (time.monotonic() if now is None else now) - self.started

    def _line(self, at_s: float, word: str, text: str) -> None:
        self.out(f"[{at_s:6.1f}s] {word:<7} {text}")

    def set_stage(self, stage: str, now: float | None = None) -> None:
        self.stage = stage
        self._line(self.at(now), "stage", stage)

    def action(self, text: str, now: float | None = None, style: str = "") -> None:
        at_s = self.at(now)
        self.actions.append(Entry(at_s, text, style))
        self._line(at_s, "demo", text)

    def set_phase(self, phase: str, now: float | None = None) -> None:
        if phase and phase != self.phase:
            self.phase = phase
            self._line(self.at(now), "phase", phase)

    def event(self, event: messages.EventBase, now: float | None = None) -> None:
        """A bus event arrived."""
        at_s = self.at(now)
        match event:
            case messages.MetricChecked():
                metric = self.metrics.setdefault(event.metric, Metric(event.metric))
                metric.min, metric.max = event.min, event.max
                metric.value, metric.passed, metric.measured = event.value, event.passed, True
                self._line(
                    at_s,
                    "metric",
                    f"{event.metric} {value_text(metric)} "
                    f"({threshold_text(metric)}) {verdict_text(metric)}",
                )
            case messages.WeightAdvanced():
                self.weight = event.canary_weight
            case messages.PhaseChanged():
                self.set_phase(str(event.phase), now)
            case messages.Halted():
                self.failed_checks = max(self.failed_checks, event.failed_checks)
            case _:
                pass
        if described(event):
            style = severity_style(str(event.severity))
            self.events.append(Entry(at_s, event.message, style, event_type(event)))
            self._line(at_s, "event", f"{event_type(event):<8} {event.message}")

    def chat(self, payload: Any, now: float | None = None) -> None:
        """The sink received a Slack message."""
        text, colour = chat.slack_text(payload)
        at_s = self.at(now)
        self.slack.append(Entry(at_s, text, "red" if colour == "danger" else ""))
        self._line(at_s, "slack", text)

    def canary(self, obj: Mapping[str, Any], now: float | None = None) -> None:
        """What ``kubectl get canary -o json`` says: status, and the analysis' limits."""
        analysis = (obj.get("spec") or {}).get("analysis") or {}
        self.max_weight = int(analysis.get("maxWeight") or self.max_weight)
        self.threshold = int(analysis.get("threshold") or self.threshold)
        for spec in analysis.get("metrics") or ():
            name = str(spec.get("name", ""))
            if name and name not in self.metrics:
                limits = spec.get("thresholdRange") or {}
                self.metrics[name] = Metric(name, limits.get("min"), limits.get("max"))
        status = obj.get("status") or {}
        self.weight = int(status.get("canaryWeight") or 0)
        self.failed_checks = int(status.get("failedChecks") or 0)
        self.set_phase(str(status.get("phase") or ""), now)
