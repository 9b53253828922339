"""Flagger's scheduler for one step of one canary: initialization, revisions, readiness,
rollback, analysis, promotion, finalising and deletion. How a successful analysis step moves
the canary forward is the strategy's (``strategies``)."""

from __future__ import annotations

import msgspec

from libs import messages
from libs.model import canary as canary_model
from libs.model import strategy
from services.analyzer.machine import control, strategies
from services.analyzer.machine.effects import (
    CheckMetrics,
    Context,
    Hook,
    HooksOutcome,
    Initialize,
    MetricsOutcome,
    Outcome,
    Phase,
    Promote,
    Revert,
    RunHooks,
    Scale,
    SetFinalizer,
    SetWeights,
    Step,
)
from services.analyzer.machine.stepping import (
    StepState,
    new_revision,
    not_ready,
    parse_rfc3339,
    scale_up_replicas,
)


def step(ctx: Context) -> Step:
    """One step of Flagger's scheduler for ``ctx.canary`` (see the package doc)."""
    s = StepState(ctx)
    canary = ctx.canary
    deleting = bool(canary.metadata.deletion_timestamp)
    guarded = canary_model.FINALIZER in canary.metadata.finalizers
    if deleting:
        if guarded:
            return (yield from _terminate(s))
        return s.outcome()  # going away; Kubernetes collects what it owns
    if canary.spec.revert_on_deletion != guarded:
        yield SetFinalizer(canary.spec.revert_on_deletion)
    if canary.spec.suspend:
        return s.outcome()
    s.request = control.due(s)
    if s.request is not None and s.request.action in control.ON_NEXT_STEP:
        return (yield from _act(s, s.request))
    if control.paused(ctx.status) is not None:
        return s.outcome()
    phase = ctx.status.phase

    # --- initialization: until the primary exists and is ready
    if phase in (Phase.UNSET, Phase.INITIALIZING):
        return (yield from _initialize(s))

    changed = new_revision(ctx)

    # --- a new revision while idle: confirm-rollout gate, then scale up and start
    if phase in (Phase.INITIALIZED, Phase.SUCCEEDED, Phase.FAILED, Phase.WAITING):
        retry = control.retrying(s)
        if not changed and not retry:
            return s.outcome()
        # the canary's phase, as Flagger
        gate = yield from control.ask_gate(s, Hook.CONFIRM_ROLLOUT, phase)
        if not gate.ok:
            s.wait(
                Hook.CONFIRM_ROLLOUT,
                gate,
                f"Halt {s.who} advancement waiting for approval {gate.failed}",
            )
            s.set_phase(Phase.WAITING)
            return s.outcome()
        s.gate_passed()
        s.passed(Hook.CONFIRM_ROLLOUT, gate.passed)
        yield Scale(s.target, scale_up_replicas(ctx), up=True)
        s.info(messages.NewRevision, f"New revision detected! Scaling up {s.who}")
        _restart_counters(s)
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
        yield Scale(s.target, scale_up_replicas(ctx), up=True)
        _restart_counters(s)
        s.gate_passed()
        s.set_phase(Phase.PROGRESSING)
        return s.outcome()

    if phase == Phase.PROMOTING:
        return (yield from _promoting(s))
    if phase == Phase.FINALISING:
        return (yield from _finalising(s))
    if phase not in (Phase.PROGRESSING, Phase.WAITING_PROMOTION):
        return s.outcome()  # Terminating / Terminated: nothing to analyse
    return (yield from _analyse(s))


def _act(s: StepState, request: canary_model.ControlRecord) -> Step:
    """Carry out a promote, abort or reject request (``control``) as the step."""
    if request.action == "promote":
        control.done(s, request, "promoting", f"Skipping the rest of the analysis of {s.who}")
        s.gate_passed()
        s.info(
            messages.PromotionStarted,
            f"Copying {s.who} template spec to {s.target}-primary.{s.ref.namespace}",
        )
        yield Promote()
        s.set_phase(Phase.PROMOTING)
        return s.outcome()
    by = request.by or "someone"
    what = f"aborted by {by}" if request.action == "abort" else f"{request.gate} rejected by {by}"
    control.done(s, request, "rolled back", "")  # the rollback's own events say who asked
    target = s.ctx.target
    if s.ctx.status.phase == Phase.WAITING and target is not None:
        # never started: the revision counts as analysed, so it is not started again
        s.update(last_applied_spec=target.revision, tracked_configs=dict(target.tracked_configs))
    return (yield from _rollback(s, f"Rolling back {s.who} {what}", reason=what))


def _restart_counters(s: StepState) -> None:
    target = s.ctx.target
    s.update(
        canary_weight=0,
        failed_checks=0,
        iterations=0,
        last_applied_spec=target.revision if target else "",
        tracked_configs=dict(target.tracked_configs) if target else None,
    )


def _initialize(s: StepState) -> Step:
    ctx = s.ctx
    yield Initialize()
    if ctx.status.phase == Phase.UNSET:
        s.set_phase(Phase.INITIALIZING)
    reason = not_ready(ctx.primary, s.analysis.primary_ready_percent())
    if reason is not None:
        s.hold(f"{s.target}-primary.{s.ref.namespace} not ready: {reason}", reason)
        return s.outcome()
    yield SetWeights(100, 0)  # the canary route exists from now on, all traffic on the primary
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


def _analyse(s: StepState) -> Step:
    ctx = s.ctx

    # the target was observed when the analysis started: gone now, it was deleted since, and
    # waiting for the progress deadline would keep sending traffic to a canary with no pods
    if ctx.target is None:
        return (
            yield from _rollback(
                s,
                f"Rolling back {s.who} target Deployment {s.target}.{s.ref.namespace} not found: "
                "deleted during the analysis",
                reason="target deleted",
            )
        )

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
                    f"Rolling back {s.who} progress deadline exceeded {s.who} not ready: {reason}",
                    reason="progress deadline exceeded",
                )
            )
        s.hold(f"{s.who} not ready: {reason}", reason)
        return s.outcome()

    if s.canary.spec.skip_analysis:
        return (yield from _skip_analysis(s))

    # manual rollback through the rollback webhooks
    rollback = yield RunHooks(Hook.ROLLBACK, ctx.status.phase)
    assert isinstance(rollback, HooksOutcome)
    if rollback.any_ok:
        s.passed(Hook.ROLLBACK, rollback.passed[:1])
        return (
            yield from _rollback(
                s, f"Rolling back {s.who} manual webhook invoked", reason="manual webhook invoked"
            )
        )

    # the failed checks threshold, checked at the start of a step
    if s.failed_checks >= s.analysis.threshold_or_default():
        return (
            yield from _rollback(
                s,
                f"Rolling back {s.who} failed checks threshold reached {s.failed_checks}",
                reason=f"failed checks threshold reached {s.failed_checks}",
            )
        )

    if strategies.starting(s):
        s.info(messages.AnalysisStarted, f"Starting canary analysis for {s.who}")
        pre = yield RunHooks(Hook.PRE_ROLLOUT, ctx.status.phase)
        assert isinstance(pre, HooksOutcome)
        if not pre.ok:
            return halt(
                s,
                f"Halt {s.who} advancement pre-rollout check {pre.failed} failed {pre.error}",
                mute_alert=pre.mute_alert,
            )
        s.passed(Hook.PRE_ROLLOUT, pre.passed)
    else:
        hooks = yield RunHooks(Hook.ROLLOUT, ctx.status.phase)
        assert isinstance(hooks, HooksOutcome)
        if not hooks.ok:
            return halt(
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
                    name=c.metric,
                    value=c.value,
                    min=c.min,
                    max=c.max,
                    passed=c.passed,
                    dry_run=c.dry_run or None,
                    canary_value=c.canary_value,
                    primary_value=c.primary_value,
                )
                for c in checked.checked
            )
        )
        if not checked.ok:
            return halt(s, checked.halt)
    return (yield from strategies.advance(s))


def halt(s: StepState, message: str, *, mute_alert: bool = False) -> Outcome:
    """A failed check: Flagger's "Halt ..." warning, one more failed check."""
    failed = s.failed_checks + 1
    s.warn(messages.Halted, message, reason=message, failed_checks=failed, mute_alert=mute_alert)
    s.update(failed_checks=failed)
    return s.outcome()


def _skip_analysis(s: StepState) -> Step:
    """Flagger's ``shouldSkipAnalysis``: everything to the primary, promote, scale down, done."""
    yield SetWeights(100, 0)
    s.info(
        messages.PromotionStarted,
        f"Copying {s.who} template spec to {s.target}-primary.{s.ref.namespace}",
    )
    yield Promote()
    yield from _succeed(s)
    s.info(
        messages.PromotionCompleted,
        f"Promotion completed! Canary analysis was skipped for {s.who}",
        skipped_analysis=True,
    )
    return s.outcome()


def _promoting(s: StepState) -> Step:
    """Route traffic back to the (promoted) primary, at once or by stepWeightPromotion."""
    reason = not_ready(s.ctx.primary, s.analysis.primary_ready_percent())
    if reason is not None:
        if s.ctx.primary is not None and s.ctx.primary.progress_deadline_exceeded:
            yield SetWeights(0, 100)
            s.error(
                messages.RolledBack,
                f"Promotion of {s.who} failed, primary not ready: {reason}",
                reason="primary not ready",
                failed_checks=s.failed_checks,
            )
            s.set_phase(Phase.FAILED)
            return s.outcome()
        s.hold(f"{s.target}-primary.{s.ref.namespace} not ready: {reason}", reason)
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


def _succeed(s: StepState) -> Step:
    """The canary scaled down, the promoted revision recorded, phase Succeeded."""
    yield Scale(s.target, 0)
    s.update(
        canary_weight=0,
        failed_checks=0,
        iterations=0,
        last_promoted_spec=s.ctx.status.last_applied_spec,
    )
    s.set_phase(Phase.SUCCEEDED)
    return s.outcome()


def _finalising(s: StepState) -> Step:
    yield from _succeed(s)
    yield from _post_rollout(s, Phase.SUCCEEDED)
    s.info(messages.PromotionCompleted, f"Promotion completed! Scaling down {s.who}")
    return s.outcome()


def _post_rollout(s: StepState, phase: Phase) -> Step:
    post = yield RunHooks(Hook.POST_ROLLOUT, phase)
    assert isinstance(post, HooksOutcome)
    s.passed(Hook.POST_ROLLOUT, post.passed)
    if not post.ok:
        s.warn(
            messages.WebhookFailed,
            f"Post-rollout hook {post.failed} failed {post.error}",
            webhook=post.failed,
            type=Hook.POST_ROLLOUT,
            error=post.error,
            mute_alert=post.mute_alert,
        )
    return s.outcome()


def _rollback(s: StepState, message: str, *, reason: str) -> Step:
    s.error(messages.RolledBack, message, reason=reason, failed_checks=s.failed_checks)
    yield SetWeights(100, 0)
    yield Scale(s.target, 0)
    s.update(canary_weight=0, failed_checks=0, iterations=0)
    s.gate_passed()
    previous = s.status.phase
    s.set_phase(Phase.FAILED)
    # the PhaseChanged just emitted carries Flagger's second rollback message
    last = s.events[-1]
    if isinstance(last, messages.PhaseChanged) and previous != Phase.FAILED:
        s.events[-1] = msgspec.structs.replace(
            last, message=f"Canary failed! Scaling down {s.who}", severity=messages.Severity.WARN
        )
    yield from _post_rollout(s, Phase.FAILED)
    return s.outcome()


def _terminate(s: StepState) -> Step:
    """revertOnDeletion, one step each: Terminating; the target gets its traffic back,
    Terminated; the finalizer goes and Kubernetes deletes the Canary and what it owns."""
    if s.ctx.status.phase == Phase.TERMINATED:
        yield SetFinalizer(False)
        return s.outcome()
    if s.ctx.status.phase != Phase.TERMINATING:
        # written on its own, so the phase shows while the target comes back up
        s.set_phase(Phase.TERMINATING)
        s.info(messages.Terminating, f"Terminating canary {s.who}")
        return s.outcome()
    yield Revert()
    s.gate_passed()
    s.set_phase(Phase.TERMINATED)
    s.info(messages.Terminated, f"Terminated canary {s.who}")
    return s.outcome()
