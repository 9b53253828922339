"""The dashboard's view model, built purely from what is on the bus.

``Board`` is fed the entries of the ``sluice_canaries`` KV bucket (``apply_entry``) and the
events of ``SLUICE_EVENTS`` (``apply_event``) and answers with ``CanaryView`` values, the JSON
the page renders: phase, weight against the maximum, iterations, strategy, failed checks
against the threshold, each metric against its threshold, the gate waited at, whether it is
paused, the last control request, a bounded weight history and the recent events. Nothing here
does I/O or reads the clock: times come in with the data, so it is tested without servers.
"""

from __future__ import annotations

import bisect
import collections
from collections.abc import Iterable

import msgspec

from libs import messages
from libs.model import analysis as analysis_model
from libs.model import canary as canary_model
from libs.model import strategy

HISTORY_POINTS = 120  # weight history kept per canary
RECENT_EVENTS = 50  # events kept per canary
ORPHAN_KEYS = 500  # canaries with events but no KV entry whose events are kept


class MetricView(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    value: float | None = None
    min: float | None = None  # the threshold range; None: not checked
    max: float | None = None
    passed: bool | None = None  # None: not measured yet
    dry_run: bool = False


class ControlView(msgspec.Struct, frozen=True, kw_only=True):
    action: str
    gate: str = ""
    by: str = ""
    reason: str = ""
    requested_at: str = ""
    handled_at: str = ""
    outcome: str = ""
    pending: bool = False


class EventView(msgspec.Struct, frozen=True, kw_only=True):
    kind: str
    severity: str
    message: str
    at_ms: int
    seq: int = 0  # stream sequence (0: unknown)


class CanaryView(msgspec.Struct, frozen=True, kw_only=True):
    namespace: str
    name: str
    valid: bool = True
    problems: list[str] = []
    target: str = ""
    phase: str = ""
    strategy: str = ""
    weight: int = 0
    max_weight: int = 0
    step_weight: int = 0
    iterations: int = 0
    max_iterations: int = 0
    failed_checks: int = 0
    threshold: int = 1
    metrics: list[MetricView] = []
    gate: str = ""  # the confirm-* gate the canary waits at
    paused: bool = False
    control: ControlView | None = None
    last_transition_time: str = ""
    observed_at_ms: int = 0
    history: list[tuple[int, int]] = []  # (at_ms, canary weight), oldest first
    events: list[EventView] = []  # newest first

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def key_of(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def _metrics(
    spec: analysis_model.CanaryAnalysis, status: canary_model.CanaryStatus
) -> list[MetricView]:
    """The spec's metrics with their thresholds and last measurement, then any measured metric
    the spec no longer lists."""
    measured = {m.name: m for m in status.metrics}
    views = []
    for metric in spec.metrics:
        limits = metric.effective_range()
        seen = measured.pop(metric.name, None)
        views.append(
            MetricView(
                name=metric.name,
                value=seen.value if seen else None,
                min=seen.min if seen and seen.min is not None else limits.min,
                max=seen.max if seen and seen.max is not None else limits.max,
                passed=seen.passed if seen else None,
                dry_run=bool(seen and seen.dry_run),
            )
        )
    views.extend(
        MetricView(
            name=m.name,
            value=m.value,
            min=m.min,
            max=m.max,
            passed=m.passed,
            dry_run=bool(m.dry_run),
        )
        for m in measured.values()
    )
    return views


def _control(record: canary_model.ControlRecord | None) -> ControlView | None:
    if record is None:
        return None
    return ControlView(
        action=record.action,
        gate=record.gate or "",
        by=record.by,
        reason=record.reason or "",
        requested_at=record.requested_at,
        handled_at=record.handled_at or "",
        outcome=record.outcome or "",
        pending=record.pending,
    )


def describe(observation: messages.CanaryObservation) -> CanaryView:
    """One KV value as the page shows it (history and events are added by ``Board``)."""
    obj = observation.canary
    if obj is None:
        return CanaryView(
            namespace=observation.namespace,
            name=observation.name,
            valid=False,
            problems=list(observation.problems),
            observed_at_ms=observation.observed_at_ms,
        )
    spec = obj.get_analysis()
    status = obj.status or canary_model.CanaryStatus()
    conditions = {c.type: c for c in status.conditions}
    gate = conditions.get("Gate")
    paused = conditions.get("Paused")
    return CanaryView(
        namespace=observation.namespace,
        name=observation.name,
        target=obj.spec.target_ref.name,
        phase=str(status.phase),
        strategy=str(strategy.detect(spec)),
        weight=status.canary_weight or 0,
        max_weight=strategy.max_weight(spec),
        step_weight=spec.step_weight or 0,
        iterations=status.iterations or 0,
        max_iterations=spec.iterations_or_zero(),
        failed_checks=status.failed_checks or 0,
        threshold=spec.threshold_or_default(),
        metrics=_metrics(spec, status),
        gate=gate.reason if gate is not None and gate.status == "False" else "",
        paused=paused is not None and paused.status == "True",
        control=_control(status.control),
        last_transition_time=status.last_transition_time or "",
        observed_at_ms=observation.observed_at_ms,
    )


def _number(value: float | None) -> str:
    return "no value" if value is None else f"{value:g}"


def summary(event: messages.EventBase) -> str:
    """The event's own message, else a line made from its fields (metric checks have none)."""
    if event.message:
        return event.message
    if isinstance(event, messages.MetricChecked):
        limits = " ".join(
            part
            for part in (
                f">= {event.min:g}" if event.min is not None else "",
                f"<= {event.max:g}" if event.max is not None else "",
            )
            if part
        )
        verdict = "passed" if event.passed else "failed"
        dry = " (dry run)" if event.dry_run else ""
        return f"{event.metric} {_number(event.value)} {limits} {verdict}{dry}".replace("  ", " ")
    return messages.event_kind(event).replace("_", " ")


def event_view(event: messages.EventBase, seq: int = 0) -> EventView:
    return EventView(
        kind=messages.event_kind(event),
        severity=str(event.severity),
        message=summary(event),
        at_ms=event.at_ms,
        seq=seq,
    )


class History:
    """(at_ms, weight) points in time order, at most ``limit``; a point that repeats the weight
    of the one before it adds nothing."""

    def __init__(self, limit: int = HISTORY_POINTS) -> None:
        self.limit = limit
        self.points: list[tuple[int, int]] = []

    def add(self, at_ms: int, weight: int) -> bool:
        """Record a weight seen at ``at_ms``; True when the history changed."""
        index = bisect.bisect_right(self.points, (at_ms, 1 << 30))
        if index > 0 and self.points[index - 1][1] == weight:
            return False
        self.points.insert(index, (at_ms, weight))
        # the point after it may now repeat this one
        if index + 1 < len(self.points) and self.points[index + 1][1] == weight:
            del self.points[index + 1]
        del self.points[: max(0, len(self.points) - self.limit)]
        return True


class Board:
    """Every canary the bus knows of, with its weight history and recent events."""

    def __init__(
        self,
        history_points: int = HISTORY_POINTS,
        recent_events: int = RECENT_EVENTS,
        orphan_keys: int = ORPHAN_KEYS,
    ) -> None:
        self.history_points = history_points
        self.recent_events = recent_events
        self.orphan_keys = orphan_keys
        self._views: dict[str, CanaryView] = {}
        self._history: dict[str, History] = {}
        self._events: dict[str, collections.deque[EventView]] = {}
        self._last_seq = 0

    # ------------------------------------------------------------------ feeding

    def apply_entry(self, key: str, value: bytes | None) -> tuple[str, CanaryView | None] | None:
        """A ``sluice_canaries`` entry (``value`` None or empty: deleted or purged).

        Returns ``(key, view)`` of the canary that changed (view None: it is gone), or None
        when the entry is not a canary this board can read."""
        if not value:
            namespace, _, name = key.partition(".")
            gone = key_of(namespace, name)
            self._views.pop(gone, None)
            self._history.pop(gone, None)
            self._events.pop(gone, None)
            return gone, None
        try:
            observation = messages.CANARY_OBSERVATION_DECODER.decode(value)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None
        view = describe(observation)
        ident = view.key
        if view.valid:
            self._history_of(ident).add(view.observed_at_ms, view.weight)
        self._views[ident] = view
        return ident, self.view(ident)

    def apply_event(self, event: messages.EventBase, seq: int = 0) -> str | None:
        """An event of ``SLUICE_EVENTS``; returns the key of the canary it is about, or None
        when it was seen before (a replay after a reconnection)."""
        if seq:
            if seq <= self._last_seq:
                return None
            self._last_seq = seq
        ident = key_of(event.canary.namespace, event.canary.name)
        recent = self._events.get(ident)
        if recent is None:
            self._forget_orphans()
            recent = self._events[ident] = collections.deque(maxlen=self.recent_events)
        recent.appendleft(event_view(event, seq))
        if isinstance(event, messages.WeightAdvanced):
            self._history_of(ident).add(event.at_ms, event.canary_weight)
        return ident

    @property
    def last_seq(self) -> int:
        """The last event stream sequence applied (where a resumed replay starts after)."""
        return self._last_seq

    def _history_of(self, ident: str) -> History:
        history = self._history.get(ident)
        if history is None:
            history = self._history[ident] = History(self.history_points)
        return history

    def _forget_orphans(self) -> None:
        orphans = [k for k in self._events if k not in self._views]
        for ident in orphans[: max(0, len(orphans) - self.orphan_keys + 1)]:
            self._events.pop(ident, None)
            self._history.pop(ident, None)

    # ------------------------------------------------------------------ reading

    def view(self, ident: str) -> CanaryView | None:
        """The canary ``namespace/name`` with its history and recent events."""
        base = self._views.get(ident)
        if base is None:
            return None
        history = self._history.get(ident)
        return msgspec.structs.replace(
            base,
            history=list(history.points) if history else [],
            events=list(self._events.get(ident, ())),
        )

    def snapshot(self) -> list[CanaryView]:
        """Every known canary, by namespace then name."""
        views = (self.view(ident) for ident in sorted(self._views))
        return [v for v in views if v is not None]

    def keys(self) -> Iterable[str]:
        return sorted(self._views)
