"""Ticks and observations: the work queue's payload and the current truth kept in KV buckets."""

from __future__ import annotations

import msgspec

from libs.messages.common import CanaryRef
from libs.messages.subjects import now_ms
from libs.model import canary as canary_model
from libs.model import standalone
from libs.model import templates as templates_model


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
