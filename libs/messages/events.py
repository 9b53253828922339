"""Events: the facts on ``sluice.events.<namespace>.<canary>.<kind>`` (the ``Event`` union),
and the notifier's delivery results on ``sluice.deliveries.<namespace>.<canary>``."""

from __future__ import annotations

import msgspec

from libs.messages.common import CanaryRef, ControlAction, Phase, Severity, WebhookType
from libs.messages.subjects import now_ms


class EventBase(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind"):
    """Fields every event has. ``message`` is Flagger's verbatim text where Flagger has one."""

    canary: CanaryRef
    target: str = ""  # targetRef.name; Flagger's messages say "<target>.<namespace>"
    revision: str = ""  # pod-template hash the event is about
    severity: Severity = Severity.INFO
    message: str = ""
    at_ms: int = msgspec.field(default_factory=now_ms)
    mute_alert: bool = False  # the webhook behind this event has muteAlert: record, do not alert


class RevisionDetected(EventBase, frozen=True, kw_only=True, tag="revision_detected"):
    """Watcher: the target's pod template or a tracked ConfigMap/Secret changed."""

    tracked_configs: dict[str, str] = {}


class PhaseChanged(EventBase, frozen=True, kw_only=True, tag="phase_changed"):
    """Analyzer: status.phase moved."""

    previous: Phase
    phase: Phase


class Initialized(EventBase, frozen=True, kw_only=True, tag="initialized"):
    """ "Initialization done! <target>.<ns>"."""


class NewRevision(EventBase, frozen=True, kw_only=True, tag="new_revision"):
    """ "New revision detected! Scaling up ..." (or "... Restarting analysis ...")."""

    restarted: bool = False


class AnalysisStarted(EventBase, frozen=True, kw_only=True, tag="analysis_started"):
    """ "Starting canary analysis for <target>.<ns>"."""


class WeightAdvanced(EventBase, frozen=True, kw_only=True, tag="weight_advanced"):
    """ "Advance <target>.<ns> canary weight N" (or primary weight during promotion)."""

    canary_weight: int
    primary_weight: int


class IterationAdvanced(EventBase, frozen=True, kw_only=True, tag="iteration_advanced"):
    """ "Advance <target>.<ns> canary iteration N/M" (blue/green and A/B)."""

    iteration: int
    iterations: int


class MetricChecked(EventBase, frozen=True, kw_only=True, tag="metric_checked"):
    """One metric measured during a step, with its value (Flagger hides these; Sluice shows them)."""

    metric: str
    value: float | None = None  # None: no values found (relative: canary minus primary)
    min: float | None = None
    max: float | None = None
    passed: bool
    dry_run: bool = False  # measured and shown, never halts (templateVariables sluice.dryRun)
    # relative checks (templateVariables sluice.compareTo: primary): ``value`` is the
    # difference canary - primary, checked against thresholdRange; these are the two sides
    canary_value: float | None = None
    primary_value: float | None = None


class Halted(EventBase, frozen=True, kw_only=True, tag="halted"):
    """ "Halt <target>.<ns> advancement ..." — a failed check or a closed gate."""

    reason: str
    failed_checks: int
    counted: bool = True  # gates halt without counting a failed check


class WaitingApproval(EventBase, frozen=True, kw_only=True, tag="waiting_approval"):
    """A confirm-* gate said no; the canary waits."""

    gate: WebhookType
    webhook: str


class PromotionStarted(EventBase, frozen=True, kw_only=True, tag="promotion_started"):
    """ "Copying <target>.<ns> template spec to <target>-primary.<ns>"."""


class PromotionCompleted(EventBase, frozen=True, kw_only=True, tag="promotion_completed"):
    """ "Promotion completed! Scaling down <target>.<ns>"."""

    skipped_analysis: bool = False


class RolledBack(EventBase, frozen=True, kw_only=True, tag="rolled_back"):
    """ "Rolling back <target>.<ns> ..." then "Canary failed! Scaling down <target>.<ns>"."""

    reason: str
    failed_checks: int = 0


class WebhookFailed(EventBase, frozen=True, kw_only=True, tag="webhook_failed"):
    """A webhook did not succeed (post-rollout failures only warn)."""

    webhook: str
    type: WebhookType
    error: str


class WebhookPassed(EventBase, frozen=True, kw_only=True, tag="webhook_passed"):
    """ "Confirm-rollout check <name> passed" (likewise pre-rollout, confirm-traffic-increase,
    confirm-promotion, post-rollout; "Rollback check <name> passed" precedes a manual rollback)."""

    webhook: str
    type: WebhookType


class Terminating(EventBase, frozen=True, kw_only=True, tag="terminating"):
    """ "Terminating canary <target>.<ns>" (revertOnDeletion: the revert starts)."""


class Terminated(EventBase, frozen=True, kw_only=True, tag="terminated"):
    """ "Terminated canary <target>.<ns>" (revertOnDeletion)."""


class GateChanged(EventBase, frozen=True, kw_only=True, tag="gate_changed"):
    """A loadtester gate or rollback switch was opened or closed (an approval, or its end)."""

    gate: str  # "gate" (confirm-* hooks) | "rollback" (rollback hooks)
    open: bool
    by: str  # who asked: the caller's address


class ControlRequested(EventBase, frozen=True, kw_only=True, tag="control_requested"):
    """Someone asked for ``action`` on the canary and the analyzer accepted it ("Abort of
    podinfo.test requested by alice"); pause and resume take effect at once, the others on the
    canary's next step (``control_applied``)."""

    action: ControlAction
    gate: str = ""  # approve / reject: the confirm-* webhook type
    by: str
    reason: str = ""


class ControlApplied(EventBase, frozen=True, kw_only=True, tag="control_applied"):
    """The analyzer acted on an accepted request (``outcome`` says how: "rolled back",
    "promoting", "approved", "retrying", or "dropped: <why>" when the canary moved on first)."""

    action: ControlAction
    gate: str = ""
    by: str
    outcome: str


class DeadLettered(EventBase, frozen=True, kw_only=True, tag="dead_lettered"):
    """A message about this canary was given up on and moved to ``SLUICE_DEAD`` (a warning:
    for a tick, the canary's analysis waits until a new revision or a retry wakes it up)."""

    subject: str  # where the message was consumed from
    reason: str  # undecodable | permanent | exhausted
    error: str
    deliveries: int = 0


Event = (
    RevisionDetected
    | PhaseChanged
    | Initialized
    | NewRevision
    | AnalysisStarted
    | WeightAdvanced
    | IterationAdvanced
    | MetricChecked
    | Halted
    | WaitingApproval
    | PromotionStarted
    | PromotionCompleted
    | RolledBack
    | WebhookFailed
    | WebhookPassed
    | Terminating
    | Terminated
    | GateChanged
    | ControlRequested
    | ControlApplied
    | DeadLettered
)


def event_kind(event: EventBase) -> str:
    """The ``kind`` tag of an event class (last token of its subject)."""
    tag = type(event).__struct_config__.tag
    assert isinstance(tag, str)
    return tag


class DeliveryResult(msgspec.Struct, frozen=True, kw_only=True):
    """What the notifier did with one event for one alert provider (core NATS, not durable)."""

    canary: CanaryRef
    event_kind: str
    provider: str  # "slack/<alert name>", "kubernetes-event", ...
    ok: bool
    error: str = ""
    at_ms: int = msgspec.field(default_factory=now_ms)
