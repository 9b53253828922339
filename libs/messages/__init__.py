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
upgrade. JSON on the wire; the JSON Schemas in ``docs/events/`` are generated from this package.

The package is split by kind: ``subjects`` (addresses, headers, KV keys), ``common`` (shared
vocabulary), ``events``, ``state`` (ticks and observations), ``commands`` (commands, control,
rollouts, replies). Import from ``libs.messages``: every public name is re-exported here.
"""

from __future__ import annotations

import msgspec

from libs.messages.commands import (
    Command,
    CommandBase,
    CommandFailed,
    ControlAnswer,
    ControlRequest,
    InitializeWorkload,
    PromoteWorkload,
    Reply,
    ReplyBase,
    RevertCanary,
    RolloutAnswer,
    RolloutRequest,
    RunWebhook,
    ScaleWorkload,
    SetFinalizer,
    SetWeights,
    WebhookResult,
    WebhookSpec,
    WeightsApplied,
    WorkloadApplied,
    WorkloadCommand,
)
from libs.messages.common import (
    CONTROL_ACTIONS,
    CanaryRef,
    ControlAction,
    MatchCondition,
    Phase,
    Severity,
    WebhookType,
    match_groups,
)
from libs.messages.events import (
    AnalysisStarted,
    ControlApplied,
    ControlRequested,
    DeadLettered,
    DeliveryResult,
    Event,
    EventBase,
    GateChanged,
    Halted,
    Initialized,
    IterationAdvanced,
    MetricChecked,
    NewRevision,
    PhaseChanged,
    PromotionCompleted,
    PromotionStarted,
    RevisionDetected,
    RolledBack,
    Terminated,
    Terminating,
    WaitingApproval,
    WebhookFailed,
    WebhookPassed,
    WeightAdvanced,
    event_kind,
)
from libs.messages.state import (
    CanaryObservation,
    GateState,
    TemplateObservation,
    Tick,
    WorkloadObservation,
)
from libs.messages.subjects import (
    CMD_TRAFFIC,
    CMD_WEBHOOK,
    CMD_WORKLOAD,
    CONTROL_ALL,
    CONTROL_PREFIX,
    DEAD_ALL,
    DEAD_PREFIX,
    DELIVERIES_ALL,
    DELIVERIES_PREFIX,
    EVENTS_ALL,
    EVENTS_PREFIX,
    GATE_KINDS,
    HEADER_CORRELATION_ID,
    HEADER_DEAD_CONSUMER,
    HEADER_DEAD_DELIVERIES,
    HEADER_DEAD_ERROR,
    HEADER_DEAD_REASON,
    HEADER_DEAD_SUBJECT,
    HEADER_FAILURES,
    HEADER_MSG_ID,
    HEADER_NOT_BEFORE_MS,
    MAX_KIND,
    MAX_NAME,
    MAX_NAMESPACE,
    QUEUE_ANALYZER,
    QUEUE_TRAFFIC_SHIFTER,
    QUEUE_WATCHER,
    QUEUE_WEBHOOK_RUNNER,
    ROLLOUT_ALL,
    ROLLOUT_PREFIX,
    TICKS_ALL,
    TICKS_PREFIX,
    TOKEN,
    canary_key,
    control_subject,
    dead_subject,
    delivery_subject,
    event_subject,
    gate_key,
    now_ms,
    rollout_subject,
    template_key,
    tick_subject,
    workload_key,
)

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

__all__ = [
    "CANARY_OBSERVATION_DECODER",
    "CMD_TRAFFIC",
    "CMD_WEBHOOK",
    "CMD_WORKLOAD",
    "CONTROL_ACTIONS",
    "CONTROL_ALL",
    "CONTROL_DECODER",
    "CONTROL_PREFIX",
    "DEAD_ALL",
    "DEAD_PREFIX",
    "DELIVERIES_ALL",
    "DELIVERIES_PREFIX",
    "DELIVERY_DECODER",
    "ENCODER",
    "EVENTS_ALL",
    "EVENTS_PREFIX",
    "EVENT_DECODER",
    "GATE_DECODER",
    "GATE_KINDS",
    "HEADER_CORRELATION_ID",
    "HEADER_DEAD_CONSUMER",
    "HEADER_DEAD_DELIVERIES",
    "HEADER_DEAD_ERROR",
    "HEADER_DEAD_REASON",
    "HEADER_DEAD_SUBJECT",
    "HEADER_FAILURES",
    "HEADER_MSG_ID",
    "HEADER_NOT_BEFORE_MS",
    "MAX_KIND",
    "MAX_NAME",
    "MAX_NAMESPACE",
    "OBSERVATION_DECODER",
    "QUEUE_ANALYZER",
    "QUEUE_TRAFFIC_SHIFTER",
    "QUEUE_WATCHER",
    "QUEUE_WEBHOOK_RUNNER",
    "REPLY_DECODER",
    "ROLLOUT_ALL",
    "ROLLOUT_DECODER",
    "ROLLOUT_PREFIX",
    "SCHEMA_TYPES",
    "TEMPLATE_OBSERVATION_DECODER",
    "TICKS_ALL",
    "TICKS_PREFIX",
    "TICK_DECODER",
    "TOKEN",
    "TRAFFIC_DECODER",
    "WEBHOOK_DECODER",
    "WORKLOAD_DECODER",
    "AnalysisStarted",
    "CanaryObservation",
    "CanaryRef",
    "Command",
    "CommandBase",
    "CommandFailed",
    "ControlAction",
    "ControlAnswer",
    "ControlApplied",
    "ControlRequest",
    "ControlRequested",
    "DeadLettered",
    "DeliveryResult",
    "Event",
    "EventBase",
    "GateChanged",
    "GateState",
    "Halted",
    "InitializeWorkload",
    "Initialized",
    "IterationAdvanced",
    "MatchCondition",
    "MetricChecked",
    "NewRevision",
    "Phase",
    "PhaseChanged",
    "PromoteWorkload",
    "PromotionCompleted",
    "PromotionStarted",
    "Reply",
    "ReplyBase",
    "RevertCanary",
    "RevisionDetected",
    "RolledBack",
    "RolloutAnswer",
    "RolloutRequest",
    "RunWebhook",
    "ScaleWorkload",
    "SetFinalizer",
    "SetWeights",
    "Severity",
    "TemplateObservation",
    "Terminated",
    "Terminating",
    "Tick",
    "WaitingApproval",
    "WebhookFailed",
    "WebhookPassed",
    "WebhookResult",
    "WebhookSpec",
    "WebhookType",
    "WeightAdvanced",
    "WeightsApplied",
    "WorkloadApplied",
    "WorkloadCommand",
    "WorkloadObservation",
    "canary_key",
    "control_subject",
    "dead_subject",
    "delivery_subject",
    "event_kind",
    "event_subject",
    "gate_key",
    "match_groups",
    "now_ms",
    "rollout_subject",
    "template_key",
    "tick_subject",
    "workload_key",
]
