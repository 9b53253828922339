"""Commands (request/reply, answered by one replica of the acting service), control and
rollout requests, and every reply."""

from __future__ import annotations

import msgspec

from libs.messages.common import CanaryRef, ControlAction, MatchCondition, Phase, WebhookType


class CommandBase(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind"):
    canary: CanaryRef
    state_revision: int = 0  # canary status revision the command was decided at
    timeout_s: float = 10.0


class SetWeights(CommandBase, frozen=True, kw_only=True, tag="set_weights"):
    """Desired split between primary and canary for the canary's route."""

    route: str  # routeRef.name (the user's ApisixRoute) or standalone route id
    service: str  # apex service name; backends are <service>-primary and <service>-canary
    primary_weight: int
    canary_weight: int
    # A/B testing: only requests matching one of these groups take the canary route (see
    # ``match_groups``); everyone else stays on the user's route, i.e. the primary
    match: list[list[MatchCondition]] = []
    # traffic mirroring: the percentage of the route's requests also copied to the canary
    # (responses from the copy are discarded); 0 = no mirroring
    mirror_percent: int = 0


class InitializeWorkload(CommandBase, frozen=True, kw_only=True, tag="initialize_workload"):
    """Create or reconcile the primary workload, apex/primary/canary Services and primary HPA."""

    target: str
    service: str
    port: int
    target_port: int | str | None = None
    autoscaler: str = ""


class ScaleWorkload(CommandBase, frozen=True, kw_only=True, tag="scale_workload"):
    """Set a workload's replicas (canary scale-up, scale to zero after promotion or rollback)."""

    workload: str
    replicas: int
    # Flagger's scale-up from zero: the traffic-shifter chooses the replicas from the live
    # objects (the target's if > 0, else the primary's without an HPA, else the HPA's
    # minReplicas if > 1, else 1); ``replicas`` is then only the analyzer's estimate
    scale_up: bool = False


class SetFinalizer(CommandBase, frozen=True, kw_only=True, tag="set_finalizer"):
    """Add (``present``) or remove Sluice's finalizer on the Canary (revertOnDeletion)."""

    present: bool


class RevertCanary(CommandBase, frozen=True, kw_only=True, tag="revert_canary"):
    """A Canary with revertOnDeletion is being deleted: give the target back its replicas and
    the apex Service back to the target's pods, so the user's route keeps serving."""

    target: str
    service: str


class PromoteWorkload(CommandBase, frozen=True, kw_only=True, tag="promote_workload"):
    """Copy the canary's pod template (and configs) to the primary workload."""

    target: str
    revision: str


WorkloadCommand = InitializeWorkload | ScaleWorkload | PromoteWorkload | SetFinalizer | RevertCanary


class WebhookSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One ``analysis.webhooks[]`` entry, defaults applied."""

    name: str
    type: WebhookType
    url: str
    timeout_s: float = 10.0
    retries: int = 0
    mute_alert: bool = False
    disable_tls: bool = False
    metadata: dict[str, str] = {}


class RunWebhook(CommandBase, frozen=True, kw_only=True, tag="run_webhook"):
    """Call one user webhook with Flagger's payload and report the outcome."""

    webhook: WebhookSpec
    phase: Phase
    checksum: str = ""


Command = (
    SetWeights
    | InitializeWorkload
    | ScaleWorkload
    | PromoteWorkload
    | SetFinalizer
    | RevertCanary
    | RunWebhook
)


class ControlRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Act on a canary now: ``sluice.control.<namespace>.<canary>.<action>`` (see the module doc)."""

    canary: CanaryRef
    action: ControlAction
    # approve / reject: a confirm-* webhook type or the gate webhook's name; empty: the gate
    # the canary waits at
    gate: str = ""
    by: str = ""  # who asks, as the client declares it (docs/security.md)
    reason: str = ""  # why, recorded with the request
    timeout_s: float = 10.0


class RolloutRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Standalone mode: ``revision`` now runs behind ``canary``'s canary upstream; analyse it.
    Sent on ``sluice.rollout.<namespace>.<canary>`` (see the module doc)."""

    canary: CanaryRef
    revision: str
    by: str = ""  # who deployed it, as the client declares it
    timeout_s: float = 10.0


# ----------------------------------------------------------------------------- replies


class ReplyBase(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind"):
    canary: CanaryRef | None = None  # None only when the command itself could not be decoded


class WeightsApplied(ReplyBase, frozen=True, kw_only=True, tag="weights_applied"):
    route: str  # the generated route's name, e.g. <route>-<service>-canary
    primary_weight: int
    canary_weight: int


class WorkloadApplied(ReplyBase, frozen=True, kw_only=True, tag="workload_applied"):
    workload: str
    replicas: int | None = None


class WebhookResult(ReplyBase, frozen=True, kw_only=True, tag="webhook_result"):
    """Outcome of a webhook call: ``ok`` means HTTP status <= 202 (Flagger's rule)."""

    webhook: str
    type: WebhookType
    ok: bool
    status_code: int | None = None  # None: no HTTP answer (timeout, connection error)
    attempts: int = 1
    duration_ms: float = 0.0
    message: str = ""  # response body excerpt or the error


class CommandFailed(ReplyBase, frozen=True, kw_only=True, tag="command_failed"):
    """The command was not carried out; ``temporary`` says whether retrying may help."""

    error: str
    temporary: bool


class ControlAnswer(ReplyBase, frozen=True, kw_only=True, tag="control_answer"):
    """The analyzer's answer to a ``ControlRequest``: accepted, or refused and why ("podinfo.test
    is Succeeded; nothing to abort")."""

    action: ControlAction
    accepted: bool
    message: str
    phase: Phase = Phase.UNSET  # the canary's phase when it was answered


class RolloutAnswer(ReplyBase, frozen=True, kw_only=True, tag="rollout_answer"):
    """The watcher's answer to a ``RolloutRequest``: accepted (the analysis starts at the
    canary's next step), or refused and why."""

    revision: str
    accepted: bool
    message: str


Reply = (
    WeightsApplied | WorkloadApplied | WebhookResult | ControlAnswer | RolloutAnswer | CommandFailed
)
