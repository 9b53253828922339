"""Every subject and every payload on Sluice's bus, declared once.

Three kinds of traffic (see docs/architecture.md for who produces and consumes each):

* **Events** — facts, durable in the ``SLUICE_EVENTS`` stream on
  ``sluice.events.<namespace>.<canary>.<kind>``. One tagged union, ``Event``, tag field ``kind``.
  The notifier and any custom integration subscribe with their own durable consumers.
* **Commands** — requests answered by exactly one replica of the acting service (NATS
  request/reply with a queue group). Commands carry desired state, never deltas, plus the
  canary state revision they were decided at, so a redelivered or repeated command is harmless.
  Every reply is a ``Reply`` (tagged union, tag field ``kind``).
* **Control** — a person or a program asks the analyzer to act on a canary now (promote,
  abort, pause, resume, retry, approve, reject) with a ``ControlRequest`` on
  ``sluice.control.<namespace>.<canary>.<action>``; one analyzer replica answers with a
  ``ControlAnswer``: accepted, or refused with the reason. NATS subject permissions on this
  prefix decide who may send what (docs/security.md).
* **Rollouts (standalone mode)** — without Kubernetes nobody sees a new version deployed,
  so whoever deployed it says so: a ``RolloutRequest`` on ``sluice.rollout.<namespace>.<canary>``
  (``sluice rollout start``, or the webhook-runner's ``POST /rollouts/...``), answered by one
  watcher replica with a ``RolloutAnswer``.
* **Ticks and observations** — one ``Tick`` per canary in the ``SLUICE_TICKS`` work queue;
  current truth (``WorkloadObservation``) in JetStream KV buckets written by the watcher.

Evolution rules: new fields get defaults; a field's type never changes; no
``forbid_unknown_fields`` here, so older and newer replicas can share the bus during a rolling
upgrade. JSON on the wire; the JSON Schemas in ``docs/events/`` are generated from this module.
"""

from __future__ import annotations

import re
import time
import typing
from collections.abc import Iterable

import msgspec

from libs import errors, logs
from libs.model import analysis, standalone
from libs.model import canary as canary_model
from libs.model import templates as templates_model

# ----------------------------------------------------------------------------- subjects

EVENTS_PREFIX = "sluice.events"
EVENTS_ALL = f"{EVENTS_PREFIX}.>"
TICKS_PREFIX = "sluice.tick"
TICKS_ALL = f"{TICKS_PREFIX}.>"
CMD_TRAFFIC = "sluice.cmd.traffic.set"
CMD_WORKLOAD = "sluice.cmd.workload"
CMD_WEBHOOK = "sluice.cmd.webhook.run"
CONTROL_PREFIX = "sluice.control"
CONTROL_ALL = f"{CONTROL_PREFIX}.>"
ROLLOUT_PREFIX = "sluice.rollout"
ROLLOUT_ALL = f"{ROLLOUT_PREFIX}.>"
DELIVERIES_PREFIX = "sluice.deliveries"
DELIVERIES_ALL = f"{DELIVERIES_PREFIX}.>"

# Queue groups: every replica of a service joins its group, so one replica answers a command.
QUEUE_TRAFFIC_SHIFTER = "traffic-shifter"
QUEUE_WEBHOOK_RUNNER = "webhook-runner"
QUEUE_ANALYZER = "analyzer"
QUEUE_WATCHER = "watcher"

# Header names carried by every message Sluice publishes.
HEADER_CORRELATION_ID = "Sluice-Correlation-Id"
HEADER_MSG_ID = "Nats-Msg-Id"  # JetStream de-duplication uses this one

DEAD_PREFIX = "sluice.dead"
DEAD_ALL = f"{DEAD_PREFIX}.>"

# Headers of a dead-lettered message (its payload is the original, byte for byte).
HEADER_DEAD_REASON = "Sluice-Dead-Reason"  # undecodable | permanent | exhausted
HEADER_DEAD_SUBJECT = "Sluice-Dead-Subject"  # the subject it was consumed from
HEADER_DEAD_CONSUMER = "Sluice-Dead-Consumer"  # <stream>/<durable>
HEADER_DEAD_ERROR = "Sluice-Dead-Error"  # why, clipped
HEADER_DEAD_DELIVERIES = "Sluice-Dead-Deliveries"  # how often it was tried
# Failed handlings of a tick so far (a tick's delivery count also grows with every reschedule).
HEADER_FAILURES = "Sluice-Failures"
HEADER_NOT_BEFORE_MS = "Sluice-Not-Before-Ms"  # a retried copy waits until this time

_TOKEN = re.compile(r"^[A-Za-z0-9_-]+$")

# The longest subject token Sluice builds: Kubernetes namespaces are DNS labels (63), object
# names DNS subdomains (253). A longer name cannot come from a real object, and a subject built
# from an unbounded one could exceed the server's control line, which closes the connection.
MAX_NAMESPACE = 63
MAX_NAME = 253
MAX_KIND = 63


def _token(value: str, what: str, limit: int) -> str:
    """A subject token: Kubernetes names are DNS labels, so they never contain dots."""
    if len(value) > limit:
        raise errors.InvalidInput(
            f"{what} {logs.clip(repr(value), 80)} is {len(value)} characters long; "
            f"expected at most {limit}",
            path=what,
            expected=f"at most {limit} characters",
        )
    if not _TOKEN.match(value):
        raise errors.InvalidInput(
            f"{what} {logs.clip(repr(value), 80)} cannot be a subject token "
            "(expected [A-Za-z0-9_-]+)",
            path=what,
            expected="[A-Za-z0-9_-]+",
        )
    return value


def _canary_tokens(namespace: str, canary: str) -> str:
    return f"{_token(namespace, 'namespace', MAX_NAMESPACE)}.{_token(canary, 'canary', MAX_NAME)}"


def event_subject(namespace: str, canary: str, kind: str) -> str:
    return f"{EVENTS_PREFIX}.{_canary_tokens(namespace, canary)}.{_token(kind, 'kind', MAX_KIND)}"


def tick_subject(namespace: str, canary: str) -> str:
    return f"{TICKS_PREFIX}.{_canary_tokens(namespace, canary)}"


def control_subject(namespace: str, canary: str, action: str) -> str:
    """Where a control request for one canary goes: ``sluice.control.<ns>.<canary>.<action>``."""
    return (
        f"{CONTROL_PREFIX}.{_canary_tokens(namespace, canary)}.{_token(action, 'action', MAX_KIND)}"
    )


def rollout_subject(namespace: str, canary: str) -> str:
    """Where a standalone canary's new revision is announced: ``sluice.rollout.<ns>.<canary>``."""
    return f"{ROLLOUT_PREFIX}.{_canary_tokens(namespace, canary)}"


def delivery_subject(namespace: str, canary: str) -> str:
    return f"{DELIVERIES_PREFIX}.{_canary_tokens(namespace, canary)}"


def dead_subject(durable: str) -> str:
    """Where a consumer's dead letters go (``SLUICE_DEAD``)."""
    return f"{DEAD_PREFIX}.{_token(durable, 'durable', MAX_KIND)}"


GATE_KINDS = ("gate", "rollback")  # flagger-loadtester's /gate/* and /rollback/* switches


def gate_key(kind: str, namespace: str, name: str) -> str:
    """Key of a canary's gate or rollback switch in the ``sluice_gates`` KV bucket."""
    if kind not in GATE_KINDS:
        raise errors.InvalidInput(f"gate kind: expected one of {GATE_KINDS}, got {kind!r}")
    return f"{kind}.{_canary_tokens(namespace, name)}"


def workload_key(namespace: str, name: str) -> str:
    """Key of a workload in the ``sluice_workloads`` KV bucket."""
    return f"{_token(namespace, 'namespace', MAX_NAMESPACE)}.{_token(name, 'name', MAX_NAME)}"


def canary_key(namespace: str, name: str) -> str:
    """Key of a Canary in the ``sluice_canaries`` KV bucket."""
    return f"{_token(namespace, 'namespace', MAX_NAMESPACE)}.{_token(name, 'canary', MAX_NAME)}"


def template_key(namespace: str, name: str) -> str:
    """Key of a MetricTemplate in the ``sluice_templates`` KV bucket."""
    return f"{_token(namespace, 'namespace', MAX_NAMESPACE)}.{_token(name, 'name', MAX_NAME)}"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# ----------------------------------------------------------------------------- shared parts


# The vocabulary of Flagger's objects is shared with the model, declared once there.
Severity = analysis.Severity
Phase = canary_model.Phase
WebhookType = analysis.WebhookType
ControlAction = canary_model.ControlAction
CONTROL_ACTIONS: tuple[str, ...] = typing.get_args(canary_model.ControlAction)


class CanaryRef(msgspec.Struct, frozen=True, kw_only=True):
    namespace: str
    name: str


class MatchCondition(msgspec.Struct, frozen=True, kw_only=True):
    """One A/B routing condition: one header or query parameter of an ``analysis.match`` entry."""

    scope: str  # "header" | "query"
    name: str
    op: str  # "exact" | "prefix" | "suffix" | "regex"
    value: str


def match_groups(entries: Iterable[analysis.MatchCondition]) -> list[list[MatchCondition]]:
    """Flagger's ``analysis.match`` as routing groups: a request matches when every condition
    of at least one group holds (entries are OR-ed, the conditions of an entry AND-ed)."""
    groups: list[list[MatchCondition]] = []
    for entry in entries:
        group = [
            MatchCondition(scope=scope, name=name, op=op, value=value)
            for scope, conditions in (("header", entry.headers), ("query", entry.query_params))
            for name, condition in sorted(conditions.items())
            for op, value in condition.operators()
        ]
        if group:
            groups.append(group)
    return groups


# ----------------------------------------------------------------------------- events


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


# ----------------------------------------------------------------------------- ticks and observations


class Tick(msgspec.Struct, frozen=True, kw_only=True):
    """One analysis step is due for a canary (work queue ``SLUICE_TICKS``)."""

    canary: CanaryRef
    interval_s: float = 0.0  # the canary's analysis interval when known; 0 = run now
    scheduled_at_ms: int = msgspec.field(default_factory=now_ms)


class WorkloadObservation(msgspec.Struct, frozen=True, kw_only=True):
    """The watcher's view of one workload, value in the ``sluice_workloads`` KV bucket."""

    namespace: str
    name: str
    kind: str = "Deployment"
    revision: str  # pod-template hash (replica changes do not change it)
    generation: int
    observed_generation: int
    replicas: int  # spec.replicas
    status_replicas: int = 0
    updated_replicas: int = 0
    ready_replicas: int = 0
    available_replicas: int = 0
    progress_deadline_exceeded: bool = False
    tracked_configs: dict[str, str] = {}  # "configmap/name" -> checksum
    # standalone mode: the upstream nodes (host:port) serving this side, for the builtin checks
    nodes: list[str] = []
    observed_at_ms: int = msgspec.field(default_factory=now_ms)


class CanaryObservation(msgspec.Struct, frozen=True, kw_only=True):
    """The watcher's view of one Canary, value in the ``sluice_canaries`` KV bucket.

    ``canary`` is the validated object (spec and status, camelCase as in Kubernetes, without
    ``managedFields`` and the last-applied annotation); when the object is invalid it is None
    and ``problems`` holds the lines ``sluice validate`` prints. ``uid``, ``resource_version``
    and ``generation`` come from the object's metadata either way.
    """

    namespace: str
    name: str
    uid: str
    resource_version: str
    generation: int
    canary: canary_model.Canary | None = None
    problems: list[str] = []
    # standalone mode (an ApisixCanary kept in KV): its route and upstreams; the entry's KV
    # revision is its resource version
    apisix: standalone.ApisixTarget | None = None
    observed_at_ms: int = msgspec.field(default_factory=now_ms)


class TemplateObservation(msgspec.Struct, frozen=True, kw_only=True):
    """The watcher's view of one MetricTemplate, value in the ``sluice_templates`` KV bucket.

    ``template`` is the validated object, or None with ``problems`` when it is invalid. A
    provider's ``secretRef`` stays a reference: secret values never go to the bus.
    """

    namespace: str
    name: str
    uid: str
    resource_version: str
    generation: int
    template: templates_model.MetricTemplate | None = None
    problems: list[str] = []
    observed_at_ms: int = msgspec.field(default_factory=now_ms)


class GateState(msgspec.Struct, frozen=True, kw_only=True):
    """A gate or rollback switch, value in the ``sluice_gates`` KV bucket (absent: closed)."""

    open: bool
    by: str = ""
    at_ms: int = msgspec.field(default_factory=now_ms)


# ----------------------------------------------------------------------------- commands


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


# ----------------------------------------------------------------------------- notifier output


class DeliveryResult(msgspec.Struct, frozen=True, kw_only=True):
    """What the notifier did with one event for one alert provider (core NATS, not durable)."""

    canary: CanaryRef
    event_kind: str
    provider: str  # "slack/<alert name>", "kubernetes-event", ...
    ok: bool
    error: str = ""
    at_ms: int = msgspec.field(default_factory=now_ms)


# ----------------------------------------------------------------------------- codecs (built once)

ENCODER = msgspec.json.Encoder()
EVENT_DECODER: msgspec.json.Decoder[Event] = msgspec.json.Decoder(Event)
TICK_DECODER = msgspec.json.Decoder(Tick)
TRAFFIC_DECODER = msgspec.json.Decoder(SetWeights)
WORKLOAD_DECODER: msgspec.json.Decoder[WorkloadCommand] = msgspec.json.Decoder(WorkloadCommand)
WEBHOOK_DECODER = msgspec.json.Decoder(RunWebhook)
CONTROL_DECODER = msgspec.json.Decoder(ControlRequest)
ROLLOUT_DECODER = msgspec.json.Decoder(RolloutRequest)
REPLY_DECODER: msgspec.json.Decoder[Reply] = msgspec.json.Decoder(Reply)
OBSERVATION_DECODER = msgspec.json.Decoder(WorkloadObservation)
CANARY_OBSERVATION_DECODER = msgspec.json.Decoder(CanaryObservation)
TEMPLATE_OBSERVATION_DECODER = msgspec.json.Decoder(TemplateObservation)
GATE_DECODER = msgspec.json.Decoder(GateState)
DELIVERY_DECODER = msgspec.json.Decoder(DeliveryResult)

# What the schema generator writes to docs/events/: name -> type.
SCHEMA_TYPES: dict[str, object] = {
    "event": Event,
    "tick": Tick,
    "workload-observation": WorkloadObservation,
    "canary-observation": CanaryObservation,
    "template-observation": TemplateObservation,
    "gate-state": GateState,
    "command-set-weights": SetWeights,
    "command-workload": WorkloadCommand,
    "command-run-webhook": RunWebhook,
    "control-request": ControlRequest,
    "rollout-request": RolloutRequest,
    "reply": Reply,
    "delivery-result": DeliveryResult,
}
