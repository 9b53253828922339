"""The shared base Struct, Kubernetes ObjectMeta, object references and constrained field types.

Constrained field types carry their rule as ``msgspec.Meta``: bounds and patterns are enforced
by msgspec and by the structural walk; ``extra["expected"]`` is the human wording used in
problem messages, and ``extra["check"]`` names a rule the walk applies beyond the pattern
(``interval``, ``duration``, ``url``).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from libs.model import durations


class Model(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    rename="camel",
    omit_defaults=True,
):
    """Base of every object-model Struct: immutable, strict, Flagger's camelCase wire names."""


# --- constrained field types ---------------------------------------------------------------

Interval = Annotated[
    str,
    msgspec.Meta(
        pattern=durations.INTERVAL_PATTERN,
        extra={"expected": "a duration like 30s or 1m", "check": "interval"},
    ),
]
"""An interval field: Flagger's pattern ``^[0-9]+(m|s)`` and a parsable Go duration."""

Duration = Annotated[
    str,
    msgspec.Meta(
        pattern=durations.INTERVAL_PATTERN,
        extra={"expected": "a duration like 10s or 1m30s", "check": "interval"},
    ),
]
"""A timeout field (webhook ``timeout``): same rule as an interval, worded for timeouts."""

Weight = Annotated[int, msgspec.Meta(ge=0, le=100, extra={"expected": "a weight from 0 to 100"})]
"""A traffic percentage."""

Percent = Annotated[
    int, msgspec.Meta(ge=0, le=100, extra={"expected": "a percentage from 0 to 100"})
]
"""A percentage of replicas (ready thresholds)."""

Port = Annotated[int, msgspec.Meta(ge=1, le=65535, extra={"expected": "a port from 1 to 65535"})]
"""A TCP port number."""

NonNegative = Annotated[int, msgspec.Meta(ge=0, extra={"expected": "an integer >= 0"})]
"""A count that cannot be negative."""

PositiveInt = Annotated[int, msgspec.Meta(ge=1, extra={"expected": "an integer >= 1"})]
"""A count of at least one."""

HttpUrl = Annotated[
    str, msgspec.Meta(extra={"expected": "an absolute http or https URL", "check": "url"})
]
"""An absolute ``http://`` or ``https://`` URL."""

StringMap = dict[str, str]


# --- metadata and references ---------------------------------------------------------------


class ObjectMeta(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=False,
    rename="camel",
    omit_defaults=True,
):
    """The subset of Kubernetes ObjectMeta Sluice reads; fields a server adds are tolerated.

    Unknown metadata fields are accepted (a newer server may add some); they are not kept.
    """

    name: str | None = None
    generate_name: str | None = None
    namespace: str | None = None
    labels: StringMap = msgspec.field(default_factory=dict)
    annotations: StringMap = msgspec.field(default_factory=dict)
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    creation_timestamp: str | None = None
    deletion_timestamp: str | None = None
    deletion_grace_period_seconds: int | None = None
    self_link: str | None = None
    finalizers: tuple[str, ...] = ()
    owner_references: tuple[dict[str, Any], ...] = ()
    managed_fields: tuple[dict[str, Any], ...] = ()


class LocalObjectReference(Model, frozen=True):
    """``{name}`` of an object in the same namespace (a Secret)."""

    name: str


class CrossNamespaceObjectReference(Model, frozen=True):
    """``{name, namespace}``; an empty namespace means the referring object's namespace."""

    name: str
    namespace: str | None = None

    def namespace_or(self, default: str | None) -> str | None:
        """The referenced namespace, ``default`` (the referrer's namespace) when unset."""
        return self.namespace or default


class ServiceMetadata(Model, frozen=True):
    """Labels and annotations added to a generated Service (``apex``, ``primary``, ``canary``)."""

    labels: StringMap = msgspec.field(default_factory=dict)
    annotations: StringMap = msgspec.field(default_factory=dict)


def display_name(name: str | None, kind: str, namespace: str | None) -> str:
    """``podinfo (Canary, test)``: how problems and messages name an object."""
    where = f", {namespace}" if namespace else ""
    return f"{name or '<unnamed>'} ({kind or '<no kind>'}{where})"


class Object(Model, frozen=True):
    """A top-level Kubernetes object: apiVersion, kind, metadata (spec and status in subclasses)."""

    api_version: str
    kind: str
    metadata: ObjectMeta

    @property
    def name(self) -> str:
        """``metadata.name`` (empty when only generateName is set)."""
        return self.metadata.name or ""

    @property
    def namespace(self) -> str:
        """``metadata.namespace``, ``default`` when unset."""
        return self.metadata.namespace or "default"


LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def slim(obj: dict[str, Any]) -> dict[str, Any]:
    """A shallow copy of a raw object without what is left out before validating it:
    ``metadata.managedFields`` (the server's bookkeeping, untyped and often bigger than the
    object) and the last-applied annotation (a second copy of the object). ``obj`` is not
    changed."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return obj
    slimmed = {key: value for key, value in meta.items() if key != "managedFields"}
    annotations = slimmed.get("annotations")
    if isinstance(annotations, dict) and LAST_APPLIED in annotations:
        slimmed["annotations"] = {k: v for k, v in annotations.items() if k != LAST_APPLIED}
    return {**obj, "metadata": slimmed}
