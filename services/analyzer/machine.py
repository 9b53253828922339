"""One analysis step of one canary, as Flagger's scheduler takes it — with no I/O at all.

``step(ctx)`` is a generator. It yields the effects the step needs — run the webhooks of a type,
check the metrics, initialize, set weights, scale, promote — and receives each one's outcome;
it returns the ``Outcome``: the canary's new status and the events of the step, in order. The
analyzer drives it against the bus (commands, queries); tests drive it with scripted answers,
so every transition of Flagger's table is checked without a server.

A command that fails is not an outcome the step sees: the driver raises, nothing of the step
is committed, and the step is taken again later (commands are desired state, so repeating
them is harmless). The status write is the step's commit point.

Strategies slot in at ``_advance``: the canary (weights) strategy is Flagger's ``runCanary``;
blue/green and A/B count iterations instead. Gates (confirm-*) are ``RunHooks`` of their type
whose failure halts without counting, as in Flagger.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Generator
from typing import Literal

import msgspec

from libs import messages
from libs.model import analysis as analysis_model
from libs.model import canary as canary_model
from libs.model import strategy

Phase = canary_model.Phase
Hook = analysis_model.WebhookType

# --------------------------------------------------------------------------- effects


@dataclasses.dataclass(frozen=True)
class Initialize:
    """Primary workload, Services, primary HPA, canary route (100/0); target scaled to 0."""


@dataclasses.dataclass(frozen=True)
class SetWeights:
    primary: int
    canary: int


@dataclasses.dataclass(frozen=True)
class Scale:
    workload: str
    replicas: int


@dataclasses.dataclass(frozen=True)
class Promote:
    """Copy the target's pod template (and configs) to the primary workload."""


@dataclasses.dataclass(frozen=True)
class RunHooks:
    """Call every webhook of ``type`` in order; answered with ``HooksOutcome``."""

    type: Hook
    phase: Phase


@dataclasses.dataclass(frozen=True)
class CheckMetrics:
    """Query every metric of the analysis in Flagger's order; answered with ``MetricsOutcome``."""


Effect = Initialize | SetWeights | Scale | Promote | RunHooks | CheckMetrics


@dataclasses.dataclass(frozen=True)
class HooksOutcome:
    ok: bool  # every hook answered <= 202 (no hooks of the type: True)
    failed: str = ""  # the first hook that did not
    error: str = ""
    mute_alert: bool = False  # that hook's muteAlert
    any_ok: bool = False  # at least one hook answered <= 202 (rollback hooks trigger on it)


@dataclasses.dataclass(frozen=True)
class MetricsOutcome:
    ok: bool
    halt: str = ""  # Flagger's "Halt ..." message of the first failed check
    checked: tuple[messages.MetricChecked, ...] = ()  # every measured value, for events


Answer = HooksOutcome | MetricsOutcome | None  # None: a command was carried out


# --------------------------------------------------------------------------- inputs, outputs


@dataclasses.dataclass(frozen=True)
class Context:
    canary: canary_model.Canary
    status: canary_model.CanaryStatus
    target: messages.WorkloadObservation | None  # the target Deployment, as the watcher sees it
    primary: messages.WorkloadObservation | None  # <target>-primary, once it exists
    now_ms: int


@dataclasses.dataclass(frozen=True)
class Outcome:
    status: canary_model.CanaryStatus
    events: tuple[messages.EventBase, ...] = ()


Step = Generator[Effect, Answer, Outcome]

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


# --------------------------------------------------------------------------- readiness


def not_ready(obs: messages.WorkloadObservation | None, threshold: int) -> str | None:
    """Why a Deployment is not ready yet, in Flagger's words; None when it is."""
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
            f"waiting for rollout to finish: {obs.available_replicas} of {obs.updated_replicas} "
            f"(readyThreshold {threshold}%) updated replicas are available"
        )
    return None


# --------------------------------------------------------------------------- the step


class _Step:
    """The state of one step while it runs: the status being built and the events so far."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.canary = ctx.canary
        self.analysis = ctx.canary.get_analysis()
        self.status = ctx.status
        self.events: list[messages.EventBase] = []
        ref = messages.CanaryRef(
            namespace=ctx.canary.metadata.namespace or "", name=ctx.canary.metadata.name or ""
        )
        self.ref = ref
        self.target = ctx.canary.spec.target_ref.name
        self.who = f"{self.target}.{ref.namespace}"  # Flagger's "%s.%s"

    # --- recording ---

    def emit(self, event: messages.EventBase) -> None:
        self.events.append(event)

    def info(self, cls: type[messages.EventBase], message: str, **fields: object) -> None:
        self.emit(self._event(cls, messages.Severity.INFO, message, fields))

    def warn(self, cls: type[messages.EventBase], message: str, **fields: object) -> None:
        self.emit(self._event(cls, messages.Severity.WARN, message, fields))

    def _event(
        self,
        cls: type[messages.EventBase],
        severity: messages.Severity,
        message: str,
        fields: dict[str, object],
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
        self.update(phase=phase, conditions=self._conditions(phase))
        if phase != previous or not self.status.last_transition_time:
            self.update(last_transition_time=rfc3339(self.ctx.now_ms))

    def _conditions(self, phase: Phase) -> tuple[canary_model.Condition, ...]:
        wanted = PROMOTED_CONDITION.get(phase)
        if wanted is None:
            return self.status.conditions
        value, message = wanted
        old = next((c for c in self.status.conditions if c.type == "Promoted"), None)
        now = rfc3339(self.ctx.now_ms)
        changed = old is None or old.status != value
        condition = canary_model.Condition(
            type="Promoted",
            status=value,
            reason=str(phase),
            message=message,
            last_update_time=now,
            last_transition_time=now if changed or old is None else old.last_transition_time,
        )
        others = tuple(c for c in self.status.conditions if c.type != "Promoted")
        return (*others, condition)

    def outcome(self) -> Outcome:
        return Outcome(status=self.status, events=tuple(self.events))


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
    """Flagger's canary scale-up: the target's replicas if > 0, else the primary's, else 1."""
    if ctx.target is not None and ctx.target.replicas > 0:
        return ctx.target.replicas
    if ctx.primary is not None and ctx.primary.replicas > 0:
        return ctx.primary.replicas
    return 1


def step(ctx: Context) -> Step:
    """One step of Flagger's scheduler for ``ctx.canary`` (canary strategy; see module doc)."""
    s = _Step(ctx)
    canary = ctx.canary
    if canary.spec.suspend:
        return s.outcome()
    phase = ctx.status.phase

    # --- initialization: until the primary exists and is ready
    if phase in (Phase.UNSET, Phase.INITIALIZING):
        yield Initialize()
        if phase == Phase.UNSET:
            s.set_phase(Phase.INITIALIZING)
        reason = not_ready(ctx.primary, s.analysis.primary_ready_percent())
        if reason is not None:
            s.warn(
                messages.Halted,
                f"primary deployment {s.target}-primary.{s.ref.namespace} not ready: {reason}",
                reason=reason,
                failed_checks=ctx.status.failed_checks or 0,
                counted=False,
            )
            return s.outcome()
        target = ctx.target
        s.update(
            canary_weight=0,
            failed_checks=0,
            iterations=0,
            last_applied_spec=target.revision if target else "",
            last_promoted_spec=target.revision if target else "",
            tracked_configs=dict(target.tracked_configs) if target else None,
        )
        s.set_phase(Phase.INITIALIZED)
        s.info(messages.Initialized, f"Initialization done! {s.who}")
        return s.outcome()

    changed = new_revision(ctx)

    # --- a new revision while idle: confirm-rollout gate, then scale up and start
    if phase in (Phase.INITIALIZED, Phase.SUCCEEDED, Phase.FAILED, Phase.WAITING):
        if not changed:
            return s.outcome()
        gate = yield RunHooks(Hook.CONFIRM_ROLLOUT, Phase.WAITING)
        assert isinstance(gate, HooksOutcome)
        if not gate.ok:
            if phase != Phase.WAITING:
                s.warn(
                    messages.WaitingApproval,
                    f"Halt {s.who} advancement waiting for approval {gate.failed}",
                    gate=Hook.CONFIRM_ROLLOUT,
                    webhook=gate.failed,
                )
            s.set_phase(Phase.WAITING)
            return s.outcome()
        yield Scale(s.target, scale_up_replicas(ctx))
        s.info(messages.NewRevision, f"New revision detected! Scaling up {s.who}")
        s.update(
            canary_weight=0,
            failed_checks=0,
            iterations=0,
            last_applied_spec=ctx.target.revision if ctx.target else "",
            tracked_configs=dict(ctx.target.tracked_configs) if ctx.target else None,
        )
        s.set_phase(Phase.PROGRESSING)
        return s.outcome()

    # --- a new revision mid-analysis restarts it (not while promoting or finalising)
    if phase in (Phase.PROGRESSING, Phase.WAITING_PROMOTION) and changed:
        yield SetWeights(100, 0)
        s.info(
            messages.NewRevision,
            f"New revision detected! Restarting analysis for {s.who}",
            restarted=True,
        )
        yield Scale(s.target, scale_up_replicas(ctx))
        s.update(
            canary_weight=0,
            failed_checks=0,
            iterations=0,
            last_applied_spec=ctx.target.revision if ctx.target else "",
            tracked_configs=dict(ctx.target.tracked_configs) if ctx.target else None,
        )
        s.set_phase(Phase.PROGRESSING)
        return s.outcome()

    if phase == Phase.PROMOTING:
        return (yield from _promoting(s))
    if phase == Phase.FINALISING:
        return (yield from _finalising(s))
    if phase not in (Phase.PROGRESSING, Phase.WAITING_PROMOTION):
        return s.outcome()  # Terminating / Terminated: nothing to analyse
    return (yield from _analyse(s))


def _analyse(s: _Step) -> Step:
    ctx = s.ctx
    failed_checks = ctx.status.failed_checks or 0

    # canary readiness; the deployment's own progress deadline is final
    if ctx.target is not None and ctx.target.progress_deadline_exceeded:
        return (
            yield from _rollback(
                s,
                f"Rolling back {s.who} progress deadline exceeded "
                f"deployment {s.target!r} exceeded its progress deadline",
                reason="progress deadline exceeded",
            )
        )
    reason = not_ready(ctx.target, s.analysis.canary_ready_percent())
    if reason is not None:
        started = parse_rfc3339(ctx.status.last_transition_time) or ctx.now_ms
        if ctx.now_ms - started > s.canary.progress_deadline_seconds() * 1000:
            return (
                yield from _rollback(
                    s,
                    f"Rolling back {s.who} progress deadline exceeded "
                    f"canary deployment {s.who} not ready: {reason}",
                    reason="progress deadline exceeded",
                )
            )
        s.warn(
            messages.Halted,
            f"canary deployment {s.who} not ready: {reason}",
            reason=reason,
            failed_checks=failed_checks,
            counted=False,
        )
        return s.outcome()

    # manual rollback through the rollback webhooks
    rollback = yield RunHooks(Hook.ROLLBACK, ctx.status.phase)
    assert isinstance(rollback, HooksOutcome)
    if rollback.any_ok:
        return (
            yield from _rollback(
                s, f"Rolling back {s.who} manual webhook invoked", reason="manual webhook invoked"
            )
        )

    # the failed checks threshold, checked at the start of a step
    if failed_checks >= s.analysis.threshold_or_default():
        return (
            yield from _rollback(
                s,
                f"Rolling back {s.who} failed checks threshold reached {failed_checks}",
                reason=f"failed checks threshold reached {failed_checks}",
            )
        )

    weight = ctx.status.canary_weight or 0
    iterations = ctx.status.iterations or 0
    if s.canary.spec.skip_analysis:
        return (yield from _promote(s))
    if weight == 0 and iterations == 0:
        s.info(messages.AnalysisStarted, f"Starting canary analysis for {s.who}")
        pre = yield RunHooks(Hook.PRE_ROLLOUT, ctx.status.phase)
        assert isinstance(pre, HooksOutcome)
        if not pre.ok:
            return _halt(
                s,
                f"Halt {s.who} advancement pre-rollout check {pre.failed} failed {pre.error}",
                mute_alert=pre.mute_alert,
            )
    else:
        hooks = yield RunHooks(Hook.ROLLOUT, ctx.status.phase)
        assert isinstance(hooks, HooksOutcome)
        if not hooks.ok:
            return _halt(
                s,
                f"Halt {s.who} advancement external check {hooks.failed} failed {hooks.error}",
                mute_alert=hooks.mute_alert,
            )
        checked = yield CheckMetrics()
        assert isinstance(checked, MetricsOutcome)
        s.events.extend(checked.checked)
        s.update(
            metrics=tuple(
                canary_model.MetricStatus(
                    name=c.metric, value=c.value, min=c.min, max=c.max, passed=c.passed
                )
                for c in checked.checked
            )
        )
        if not checked.ok:
            return _halt(s, checked.halt)
    return (yield from _advance(s))


def _halt(s: _Step, message: str, *, mute_alert: bool = False) -> Outcome:
    failed = (s.ctx.status.failed_checks or 0) + 1
    s.warn(messages.Halted, message, reason=message, failed_checks=failed, mute_alert=mute_alert)
    s.update(failed_checks=failed)
    return s.outcome()


def _advance(s: _Step) -> Step:
    """Flagger's ``runCanary``: one weight step, or promotion at the maximum weight."""
    weight = s.ctx.status.canary_weight or 0
    top = strategy.max_weight(s.analysis)
    if weight < top:
        canary_weight = strategy.next_canary_weight(s.analysis, weight)
        primary_weight = 100 - canary_weight
        gate = yield RunHooks(Hook.CONFIRM_TRAFFIC_INCREASE, s.ctx.status.phase)
        assert isinstance(gate, HooksOutcome)
        if not gate.ok:
            s.warn(
                messages.Halted,
                f"Halt {s.who} advancement waiting for traffic increase approval {gate.failed}",
                reason="waiting for traffic increase approval",
                failed_checks=s.ctx.status.failed_checks or 0,
                counted=False,
            )
            return s.outcome()
        yield SetWeights(primary_weight, canary_weight)
        s.update(canary_weight=canary_weight)
        s.info(
            messages.WeightAdvanced,
            f"Advance {s.who} canary weight {canary_weight}",
            canary_weight=canary_weight,
            primary_weight=primary_weight,
        )
        return s.outcome()
    return (yield from _promote(s))


def _promote(s: _Step) -> Step:
    gate = yield RunHooks(Hook.CONFIRM_PROMOTION, s.ctx.status.phase)
    assert isinstance(gate, HooksOutcome)
    if not gate.ok:
        if s.ctx.status.phase != Phase.WAITING_PROMOTION:
            s.warn(
                messages.WaitingApproval,
                f"Halt {s.who} advancement waiting for promotion approval {gate.failed}",
                gate=Hook.CONFIRM_PROMOTION,
                webhook=gate.failed,
            )
        s.set_phase(Phase.WAITING_PROMOTION)
        return s.outcome()
    s.info(
        messages.PromotionStarted,
        f"Copying {s.who} template spec to {s.target}-primary.{s.ref.namespace}",
    )
    yield Promote()
    s.set_phase(Phase.PROMOTING)
    return s.outcome()


def _promoting(s: _Step) -> Step:
    """Route traffic back to the (promoted) primary, at once or by stepWeightPromotion."""
    reason = not_ready(s.ctx.primary, s.analysis.primary_ready_percent())
    if reason is not None:
        if s.ctx.primary is not None and s.ctx.primary.progress_deadline_exceeded:
            yield SetWeights(0, 100)
            s.emit(
                s._event(
                    messages.RolledBack,
                    messages.Severity.ERROR,
                    f"Promotion of {s.who} failed, primary not ready: {reason}",
                    {
                        "reason": "primary not ready",
                        "failed_checks": s.ctx.status.failed_checks or 0,
                    },
                )
            )
            s.set_phase(Phase.FAILED)
            return s.outcome()
        s.warn(
            messages.Halted,
            f"primary deployment {s.target}-primary.{s.ref.namespace} not ready: {reason}",
            reason=reason,
            failed_checks=s.ctx.status.failed_checks or 0,
            counted=False,
        )
        return s.outcome()
    weight = strategy.next_promotion_weight(s.analysis, s.ctx.status.canary_weight or 0)
    yield SetWeights(100 - weight, weight)
    s.update(canary_weight=weight)
    if weight > 0:
        s.info(
            messages.WeightAdvanced,
            f"Advance {s.who} primary weight {100 - weight}",
            canary_weight=weight,
            primary_weight=100 - weight,
        )
        return s.outcome()
    s.info(
        messages.WeightAdvanced,
        "Routing all traffic to primary",
        canary_weight=0,
        primary_weight=100,
    )
    s.set_phase(Phase.FINALISING)
    return s.outcome()


def _finalising(s: _Step) -> Step:
    yield Scale(s.target, 0)
    s.update(
        canary_weight=0,
        failed_checks=0,
        iterations=0,
        last_promoted_spec=s.ctx.status.last_applied_spec,
    )
    s.set_phase(Phase.SUCCEEDED)
    post = yield RunHooks(Hook.POST_ROLLOUT, Phase.SUCCEEDED)
    assert isinstance(post, HooksOutcome)
    if not post.ok:
        s.warn(
            messages.WebhookFailed,
            f"Post-rollout check {post.failed} failed {post.error}",
            webhook=post.failed,
            type=Hook.POST_ROLLOUT,
            error=post.error,
            mute_alert=post.mute_alert,
        )
    s.info(messages.PromotionCompleted, f"Promotion completed! Scaling down {s.who}")
    return s.outcome()


def _rollback(s: _Step, message: str, *, reason: str) -> Step:
    failed = s.ctx.status.failed_checks or 0
    s.emit(
        s._event(
            messages.RolledBack,
            messages.Severity.ERROR,
            message,
            {"reason": reason, "failed_checks": failed},
        )
    )
    yield SetWeights(100, 0)
    yield Scale(s.target, 0)
    s.update(canary_weight=0, failed_checks=0, iterations=0)
    previous = s.status.phase
    s.set_phase(Phase.FAILED)
    # the PhaseChanged just emitted carries Flagger's second rollback message
    last = s.events[-1]
    if isinstance(last, messages.PhaseChanged) and previous != Phase.FAILED:
        s.events[-1] = msgspec.structs.replace(
            last, message=f"Canary failed! Scaling down {s.who}", severity=messages.Severity.WARN
        )
    post = yield RunHooks(Hook.POST_ROLLOUT, Phase.FAILED)
    assert isinstance(post, HooksOutcome)
    if not post.ok:
        s.warn(
            messages.WebhookFailed,
            f"Post-rollout check {post.failed} failed {post.error}",
            webhook=post.failed,
            type=Hook.POST_ROLLOUT,
            error=post.error,
            mute_alert=post.mute_alert,
        )
    return s.outcome()
