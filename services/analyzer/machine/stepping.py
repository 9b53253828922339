"""The state of one step while it runs — the status being built and the events so far — and
the pure facts a step reads off its context: readiness, new revisions, status conditions."""

from __future__ import annotations

import datetime
from typing import Literal

import msgspec

from libs import messages
from libs.model import canary as canary_model
from services.analyzer.machine.effects import Context, Hook, HooksOutcome, Outcome, Phase

# The Promoted condition: Flagger's status and message per phase.
ConditionStatus = Literal["True", "False", "Unknown"]
PROMOTED_CONDITION: dict[Phase, tuple[ConditionStatus, str]] = {
    Phase.INITIALIZING: ("Unknown", "New deployment detected, starting initialization."),
    Phase.INITIALIZED: ("True", "Deployment initialization completed."),
    Phase.WAITING: ("Unknown", "Waiting for approval."),
    Phase.PROGRESSING: ("Unknown", "New revision detected, starting canary analysis."),
    Phase.WAITING_PROMOTION: ("Unknown", "Waiting for approval."),
    Phase.PROMOTING: ("Unknown", "Canary analysis completed, starting primary rolling update."),
    Phase.FINALISING: ("Unknown", "Canary analysis completed, routing all traffic to primary."),
    Phase.SUCCEEDED: ("True", "Canary analysis completed successfully, promotion finished."),
    Phase.FAILED: ("False", "Canary analysis failed, deployment scaled to zero."),
    Phase.TERMINATING: ("Unknown", "Canary is being deleted, reverting the target."),
    Phase.TERMINATED: ("Unknown", "Canary deleted, the target serves again."),
}

# Sluice's own condition while a confirm-* gate holds the canary: status False, reason the
# webhook type, message what it waits for. A gate alert goes out when it appears, not on
# every step the gate stays closed (Flagger alerts on every step for traffic increases).
GATE_CONDITION = "Gate"

# Flagger's "<Type> check <name> passed" wording per webhook type.
PASSED_PREFIX: dict[Hook, str] = {
    Hook.CONFIRM_ROLLOUT: "Confirm-rollout",
    Hook.PRE_ROLLOUT: "Pre-rollout",
    Hook.CONFIRM_TRAFFIC_INCREASE: "Confirm-traffic-increase",
    Hook.CONFIRM_PROMOTION: "Confirm-promotion",
    Hook.POST_ROLLOUT: "Post-rollout",
    Hook.ROLLBACK: "Rollback",
}


def rfc3339(ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str | None) -> int | None:
    if not text:
        return None
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return int(moment.timestamp() * 1000)


# --------------------------------------------------------------------------- conditions


def with_condition(
    status: canary_model.CanaryStatus,
    kind: str,
    value: ConditionStatus,
    reason: str,
    message: str,
    now: str,
) -> tuple[canary_model.Condition, ...]:
    """``status.conditions`` with condition ``kind`` set (its transition time kept unless
    its status changes)."""
    old = next((c for c in status.conditions if c.type == kind), None)
    changed = old is None or old.status != value
    condition = canary_model.Condition(
        type=kind,
        status=value,
        reason=reason,
        message=message,
        last_update_time=now,
        last_transition_time=now if changed or old is None else old.last_transition_time,
    )
    return (*(c for c in status.conditions if c.type != kind), condition)


def waiting_at(status: canary_model.CanaryStatus) -> Hook | None:
    """The confirm-* gate the canary waits at (the ``Gate`` condition), if any."""
    gate = next((c for c in status.conditions if c.type == GATE_CONDITION), None)
    if gate is None or gate.status != "False":
        return None
    try:
        return Hook(gate.reason)
    except ValueError:
        return None


# --------------------------------------------------------------------------- readiness


def not_ready(obs: messages.WorkloadObservation | None, threshold: int) -> str | None:
    """Why a Deployment is not ready yet, in Flagger's words; None when it is. (Unlike
    Flagger, a Deployment with replicas and none available is never ready, whatever the
    threshold.)"""
    if obs is None:
        return "waiting for rollout to finish: the deployment is not observed yet"
    if obs.generation > obs.observed_generation:
        return "waiting for rollout to finish: observed deployment generation less than desired generation"
    if obs.updated_replicas < obs.replicas:
        return (
            f"waiting for rollout to finish: {obs.updated_replicas} out of {obs.replicas} "
            "new replicas have been updated"
        )
    if obs.status_replicas > obs.updated_replicas:
        return (
            f"waiting for rollout to finish: {obs.status_replicas - obs.updated_replicas} "
            "old replicas are pending termination"
        )
    needed = obs.updated_replicas * threshold // 100
    if obs.available_replicas < needed or (obs.replicas > 0 and obs.available_replicas == 0):
        return (
            f"waiting for rollout to finish: {obs.available_replicas} of {needed} "
            f"(readyThreshold {threshold}%) updated replicas are available"
        )
    return None


def new_revision(ctx: Context) -> bool:
    """Flagger's ``HasTargetChanged`` plus tracked configs: the pod template differs from the
    last applied one (unless it is the promoted one), or a tracked ConfigMap/Secret changed."""
    if ctx.target is None:
        return False
    applied = ctx.status.last_applied_spec
    if not applied:
        return True
    if ctx.target.revision != applied and ctx.target.revision != ctx.status.last_promoted_spec:
        return True
    if ctx.target.revision != applied:
        return False
    tracked = ctx.status.tracked_configs or {}
    return dict(ctx.target.tracked_configs) != dict(tracked)


def scale_up_replicas(ctx: Context) -> int:
    """The analyzer's estimate of Flagger's scale-up (the traffic-shifter decides with the live
    objects, HPA included): the target's replicas if > 0, else the primary's, else 1."""
    if ctx.target is not None and ctx.target.replicas > 0:
        return ctx.target.replicas
    if ctx.primary is not None and ctx.primary.replicas > 0:
        return ctx.primary.replicas
    return 1


# --------------------------------------------------------------------------- the step


class StepState:
    """The state of one step while it runs: the status being built and the events so far."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.canary = ctx.canary
        self.analysis = ctx.canary.get_analysis()
        self.status = ctx.status
        self.events: list[messages.EventBase] = []
        self.ref = messages.CanaryRef(
            namespace=ctx.canary.metadata.namespace or "", name=ctx.canary.metadata.name or ""
        )
        self.target = ctx.canary.spec.target_ref.name
        self.who = f"{self.target}.{self.ref.namespace}"  # Flagger's "%s.%s"
        # the control request this step acts on (``control.due``), until it is acted on
        self.request: canary_model.ControlRecord | None = None

    @property
    def failed_checks(self) -> int:
        return self.ctx.status.failed_checks or 0

    # --- recording ---

    def emit(self, event: messages.EventBase) -> None:
        self.events.append(event)

    def info(self, cls: type[messages.EventBase], message: str, **fields: object) -> None:
        self.emit(self.event(cls, messages.Severity.INFO, message, **fields))

    def warn(self, cls: type[messages.EventBase], message: str, **fields: object) -> None:
        self.emit(self.event(cls, messages.Severity.WARN, message, **fields))

    def error(self, cls: type[messages.EventBase], message: str, **fields: object) -> None:
        self.emit(self.event(cls, messages.Severity.ERROR, message, **fields))

    def event(
        self,
        cls: type[messages.EventBase],
        severity: messages.Severity,
        message: str,
        **fields: object,
    ) -> messages.EventBase:
        common: dict[str, object] = {
            "canary": self.ref,
            "target": self.target,
            "revision": self.ctx.target.revision if self.ctx.target else "",
            "severity": severity,
            "message": message,
            "at_ms": self.ctx.now_ms,
        }
        return cls(**common, **fields)  # type: ignore[arg-type]

    def passed(self, kind: Hook, hooks: tuple[str, ...]) -> None:
        """Flagger's "<Type> check <name> passed" for each hook that said yes."""
        prefix = PASSED_PREFIX.get(kind)
        if prefix is None:
            return
        for name in hooks:
            message = f"{prefix} check {name} passed"
            if kind == Hook.ROLLBACK:
                self.warn(messages.WebhookPassed, message, webhook=name, type=kind)
            else:
                self.info(messages.WebhookPassed, message, webhook=name, type=kind)

    # --- status ---

    def update(self, **changes: object) -> None:
        self.status = msgspec.structs.replace(self.status, **changes)

    def set_phase(self, phase: Phase) -> None:
        previous = self.status.phase
        if phase != previous:
            self.emit(
                messages.PhaseChanged(
                    canary=self.ref,
                    target=self.target,
                    previous=previous,
                    phase=phase,
                    at_ms=self.ctx.now_ms,
                )
            )
        self.update(phase=phase, conditions=self._promoted(phase))
        if phase != previous or not self.status.last_transition_time:
            self.update(last_transition_time=rfc3339(self.ctx.now_ms))

    def _promoted(self, phase: Phase) -> tuple[canary_model.Condition, ...]:
        wanted = PROMOTED_CONDITION.get(phase)
        if wanted is None:
            return self.status.conditions
        value, message = wanted
        return self._with_condition("Promoted", value, str(phase), message)

    def _with_condition(
        self, kind: str, value: ConditionStatus, reason: str, message: str
    ) -> tuple[canary_model.Condition, ...]:
        return with_condition(self.status, kind, value, reason, message, rfc3339(self.ctx.now_ms))

    def waiting_at(self) -> Hook | None:
        """The gate the canary already waited at when this step started, if any."""
        return waiting_at(self.ctx.status)

    def wait_at(self, kind: Hook, message: str) -> bool:
        """Record that the canary waits at gate ``kind``; True when this wait is new."""
        new = self.waiting_at() != kind
        self.update(conditions=self._with_condition(GATE_CONDITION, "False", str(kind), message))
        return new

    def wait(self, kind: Hook, gate: HooksOutcome, message: str) -> bool:
        """The canary waits at gate ``kind``: the gate alert (``waiting_approval``) when this
        wait is new; True then."""
        new = self.wait_at(kind, message)
        if new:
            self.warn(
                messages.WaitingApproval,
                message,
                gate=kind,
                webhook=gate.failed,
                mute_alert=gate.mute_alert,
            )
        return new

    def hold(self, message: str, reason: str) -> None:
        """A step that cannot go on yet and counts no failed check (not ready, a closed gate)."""
        self.warn(
            messages.Halted,
            message,
            reason=reason,
            failed_checks=self.failed_checks,
            counted=False,
        )

    def gate_passed(self) -> None:
        """No gate holds the canary any more."""
        if any(c.type == GATE_CONDITION for c in self.status.conditions):
            kept = tuple(c for c in self.status.conditions if c.type != GATE_CONDITION)
            self.update(conditions=kept)

    def outcome(self) -> Outcome:
        return Outcome(status=self.status, events=tuple(self.events))
