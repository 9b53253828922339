"""The ``flagger.app/v1beta1`` Canary: spec, service, references and status.

``parse_canary(obj)`` turns a raw object (as read from YAML or the Kubernetes API) into a
``Canary`` after full validation, raising ``InvalidInput`` that lists every problem.
"""

from __future__ import annotations

import enum
import hashlib
import json
from typing import Any, Literal

import msgspec

from libs.model import analysis as analysis_model
from libs.model import meta

API_VERSION = "flagger.app/v1beta1"
KIND = "Canary"
DEFAULT_PROGRESS_DEADLINE_SECONDS = 600
DEFAULT_PORT_NAME = "http"

#: Traffic providers Flagger's CRD accepts. Sluice routes ``apisix`` (its default).
Provider = Literal[
    "apisix",
    "appmesh",
    "appmesh:v1beta2",
    "contour",
    "gatewayapi:v1",
    "gatewayapi:v1beta1",
    "gloo",
    "istio",
    "knative",
    "kubernetes",
    "kuma",
    "linkerd",
    "nginx",
    "osm",
    "skipper",
    "smi:v1alpha1",
    "smi:v1alpha2",
    "smi:v1alpha3",
    "traefik",
]
DEFAULT_PROVIDER = "apisix"


# The finalizer a Canary with revertOnDeletion carries: Flagger's own name, so the finalizers
# of a cluster that moves from Flagger to Sluice keep being honoured.
FINALIZER = "finalizer.flagger.app"


class Phase(enum.StrEnum):
    """Canary status phase; ``""`` before the first reconcile."""

    UNSET = ""
    INITIALIZING = "Initializing"
    INITIALIZED = "Initialized"
    WAITING = "Waiting"
    PROGRESSING = "Progressing"
    WAITING_PROMOTION = "WaitingPromotion"
    PROMOTING = "Promoting"
    FINALISING = "Finalising"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    TERMINATING = "Terminating"
    TERMINATED = "Terminated"


# --- references ----------------------------------------------------------------------------


class TargetRef(meta.Model, frozen=True):
    """The workload under canary analysis."""

    api_version: str
    kind: Literal["Deployment", "DaemonSet", "Service"]
    name: str


class PrimaryScalerReplicas(meta.Model, frozen=True):
    """Replica bounds for the primary's autoscaler."""

    min_replicas: meta.PositiveInt | None = None
    max_replicas: meta.PositiveInt | None = None


class AutoscalerRef(meta.Model, frozen=True):
    """The target's HorizontalPodAutoscaler or KEDA ScaledObject."""

    api_version: str
    kind: Literal["HorizontalPodAutoscaler", "ScaledObject"]
    name: str
    primary_scaler_queries: meta.StringMap = msgspec.field(default_factory=dict)
    primary_scaler_replicas: PrimaryScalerReplicas | None = None


class RouteRef(meta.Model, frozen=True):
    """The ApisixRoute whose rule for the apex service Sluice copies into the canary route."""

    api_version: str
    kind: Literal["ApisixRoute"]
    name: str


class IngressRef(meta.Model, frozen=True):
    """NGINX ingress reference (another provider; accepted, unused by Sluice)."""

    api_version: str
    kind: Literal["Ingress"]
    name: str


class UpstreamRef(meta.Model, frozen=True):
    """Gloo upstream reference (another provider; accepted, unused by Sluice)."""

    api_version: str
    kind: Literal["Upstream"]
    name: str
    namespace: str | None = None


class UnmanagedMetadata(meta.Model, frozen=True):
    """Metadata keys Flagger must not manage on generated objects."""

    annotations: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()


class CanaryService(meta.Model, frozen=True):
    """``spec.service``: the apex/primary/canary Services. Mesh-only fields are accepted as is."""

    port: meta.Port
    name: str | None = None
    port_name: str | None = None
    target_port: int | str | None = None
    app_protocol: str | None = None
    port_discovery: bool = False
    headless: bool = False
    traffic_distribution: Literal["PreferClose", "PreferSameZone", "PreferSameNode"] | None = None
    apex: meta.ServiceMetadata | None = None
    primary: meta.ServiceMetadata | None = None
    canary: meta.ServiceMetadata | None = None
    unmanaged_metadata: UnmanagedMetadata | None = None
    # mesh-only fields (Istio, App Mesh, Gateway API, ...): accepted, ignored by APISIX routing
    timeout: str | None = None
    backend_timeout: str | None = None
    mesh_name: str | None = None
    backends: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()
    gateways: tuple[str, ...] = ()
    gateway_refs: tuple[dict[str, Any], ...] = ()
    delegation: bool = False
    match: tuple[dict[str, Any], ...] = ()
    retries: dict[str, Any] | None = None
    rewrite: dict[str, Any] | None = None
    mirror: tuple[dict[str, Any], ...] = ()
    headers: dict[str, Any] | None = None
    cors_policy: dict[str, Any] | None = None
    traffic_policy: dict[str, Any] | None = None


class CanarySpec(meta.Model, frozen=True):
    """``spec`` of a Canary."""

    target_ref: TargetRef
    service: CanaryService
    provider: Provider | None = None
    metrics_server: str | None = None
    autoscaler_ref: AutoscalerRef | None = None
    route_ref: RouteRef | None = None
    ingress_ref: IngressRef | None = None
    upstream_ref: UpstreamRef | None = None
    progress_deadline_seconds: meta.NonNegative | None = None
    skip_analysis: bool = False
    revert_on_deletion: bool = False
    suspend: bool = False
    analysis: analysis_model.CanaryAnalysis | None = None
    canary_analysis: analysis_model.CanaryAnalysis | None = None


class Condition(meta.Model, frozen=True):
    """A status condition: Flagger's ``Promoted``; Sluice adds ``Valid`` (the spec validates),
    ``Gate`` (False while a confirm-* gate holds the canary; reason = the webhook type) and
    ``Paused`` (True while ``sluice pause`` holds the canary; message = who paused it)."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str | None = None
    last_transition_time: str | None = None
    last_update_time: str | None = None


class MetricStatus(meta.Model, frozen=True):
    """A metric's last measured value against its threshold (Sluice adds it to the status;
    Flagger users ask for it)."""

    name: str
    value: float | None = None  # None: no values found (relative checks: canary - primary)
    min: float | None = None
    max: float | None = None
    passed: bool | None = None  # always written, false included
    dry_run: bool | None = None  # a dry-run metric: shown, never halts
    canary_value: float | None = None  # relative checks: the two sides of ``value``
    primary_value: float | None = None


ControlAction = Literal["promote", "abort", "pause", "resume", "retry", "approve", "reject"]


class ControlRecord(meta.Model, frozen=True):
    """The last control request on the canary (``sluice promote``, ``abort`` …): who asked
    what and when, and once the analyzer has acted on it, when and how. A request is pending
    while ``handledAt`` is empty; one request is pending at a time."""

    action: ControlAction
    gate: str | None = None  # approve / reject: the confirm-* webhook type
    by: str = ""  # who asked
    reason: str | None = None  # why, as they said
    requested_at: str = ""
    handled_at: str | None = None
    outcome: str | None = None  # what came of it, e.g. "rolled back", "dropped: ..."

    @property
    def pending(self) -> bool:
        return not self.handled_at


class CanaryStatus(meta.Model, frozen=True):
    """``status`` of a Canary, written by the analyzer through the status subresource."""

    phase: Phase = Phase.UNSET
    canary_weight: int | None = None
    failed_checks: int | None = None
    iterations: int | None = None
    last_applied_spec: str | None = None
    last_promoted_spec: str | None = None
    last_tracked_revision: str | None = None
    tracked_configs: meta.StringMap | None = None
    last_transition_time: str | None = None
    session_affinity_cookie: str | None = None
    primary_session_affinity_cookie: str | None = None
    previous_session_affinity_cookie: str | None = None
    conditions: tuple[Condition, ...] = ()
    metrics: tuple[MetricStatus, ...] = ()  # the last analysis step's measurements
    control: ControlRecord | None = None  # the last control request (Sluice's)

    def checksum(self) -> str:
        """What webhooks get as ``checksum``: it changes when the applied spec or a tracked
        config changes (Flagger hashes the same two fields, with its own hash function)."""
        tracked = sorted((self.tracked_configs or {}).items())
        text = json.dumps([tracked, self.last_applied_spec or ""], separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


class Canary(meta.Object, frozen=True):
    """A Flagger Canary object."""

    spec: CanarySpec
    status: CanaryStatus | None = None

    # --- Flagger's defaults ---
    def get_analysis(self) -> analysis_model.CanaryAnalysis:
        """``spec.analysis``, else the deprecated ``spec.canaryAnalysis``, else an empty one."""
        return self.spec.analysis or self.spec.canary_analysis or analysis_model.CanaryAnalysis()

    def provider(self) -> str:
        """The traffic provider; Sluice's default is ``apisix``."""
        return self.spec.provider or DEFAULT_PROVIDER

    def service_name(self) -> str:
        """The apex Service name: ``service.name``, default ``targetRef.name``."""
        return self.spec.service.name or self.spec.target_ref.name

    def primary_service_name(self) -> str:
        """``<apex>-primary``."""
        return f"{self.service_name()}-primary"

    def canary_service_name(self) -> str:
        """``<apex>-canary``."""
        return f"{self.service_name()}-canary"

    def port_name(self) -> str:
        """The Service port name, default ``http``."""
        return self.spec.service.port_name or DEFAULT_PORT_NAME

    def target_port(self) -> int | str:
        """The container port (number or name), default the service port."""
        target = self.spec.service.target_port
        if target is None or target in ("", 0):
            return self.spec.service.port
        return target

    def progress_deadline_seconds(self) -> int:
        """Seconds the target may take to make progress, default 600."""
        value = self.spec.progress_deadline_seconds
        return value if value is not None else DEFAULT_PROGRESS_DEADLINE_SECONDS

    def route_name(self) -> str:
        """The name used for ``{{ route }}`` in queries: routeRef.name, default targetRef.name."""
        return self.spec.route_ref.name if self.spec.route_ref else self.spec.target_ref.name


def promoted_condition_status(phase: Phase) -> Literal["True", "False", "Unknown"]:
    """Status of the ``Promoted`` condition for a phase, as Flagger sets it."""
    if phase in (Phase.INITIALIZED, Phase.SUCCEEDED):
        return "True"
    if phase is Phase.FAILED:
        return "False"
    return "Unknown"


def parse_canary(obj: dict[str, Any]) -> Canary:
    """Validate and decode one Canary object; ``InvalidInput`` lists every problem."""
    from libs.model import validation

    return validation.parse_one(obj, Canary)
