"""The ConfigMaps and Secrets a pod template uses, and which of them are tracked.

Flagger's config tracker (``pkg/canary/config_tracker.go``), in the one place both sides read
it: the watcher checksums the tracked configs (a change is a new revision, recorded in
``status.trackedConfigs``) and the traffic-shifter gives the primary ``-primary`` copies of
the same configs. If the two disagreed, a config could start revisions whose copy the primary
never gets, or the other way round.

* A reference is found in every container and init container (``env[].valueFrom``
  ``configMapKeyRef`` / ``secretKeyRef``, ``envFrom[]``) and volume (``configMap``,
  ``secret``, ``projected.sources[]``). It is required unless it says ``optional: true``;
  when a config is referenced both ways, required wins.
* A config is tracked unless its annotation ``flagger.app/config-tracking`` starts with
  ``disable`` (Flagger's test, case-sensitive: ``disabled`` and ``disable`` opt out,
  ``Disabled`` and ``false`` do not), and, for a Secret, unless its type is other than
  Opaque, basic-auth, ssh-auth or TLS (registry credentials belong to service accounts).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, Literal

Obj = dict[str, Any]
Kind = Literal["configmap", "secret"]

TRACKING_ANNOTATION = "flagger.app/config-tracking"
DISABLED_PREFIX = "disable"
TRACKED_SECRET_TYPES = frozenset(
    {
        "Opaque",
        "kubernetes.io/basic-auth",
        "kubernetes.io/ssh-auth",
        "kubernetes.io/tls",
    }
)


@dataclasses.dataclass(frozen=True, order=True)
class ConfigRef:
    kind: Kind
    name: str
    optional: bool = False

    @property
    def key(self) -> str:
        """Flagger's ``trackedConfigs`` key: ``configmap/<name>`` or ``secret/<name>``."""
        return f"{self.kind}/{self.name}"


@dataclasses.dataclass(frozen=True)
class Slot:
    """One place of a pod spec that names a config: ``ref[field]`` is the name."""

    kind: Kind
    ref: Obj
    field: str = "name"

    @property
    def name(self) -> str:
        return str(self.ref.get(self.field) or "")

    @property
    def optional(self) -> bool:
        return bool(self.ref.get("optional"))


def slots(pod_spec: Obj) -> Iterator[Slot]:
    """Every reference to a ConfigMap or Secret in ``pod_spec``, as the dict holding it (so a
    caller working on a copy of the spec may rename it in place)."""
    containers = [*(pod_spec.get("containers") or []), *(pod_spec.get("initContainers") or [])]
    for container in containers:
        for env in container.get("env") or []:
            source = env.get("valueFrom") or {}
            if ref := source.get("configMapKeyRef"):
                yield Slot("configmap", ref)
            elif ref := source.get("secretKeyRef"):
                yield Slot("secret", ref)
        for env_from in container.get("envFrom") or []:
            if ref := env_from.get("configMapRef"):
                yield Slot("configmap", ref)
            elif ref := env_from.get("secretRef"):
                yield Slot("secret", ref)
    for volume in pod_spec.get("volumes") or []:
        if ref := volume.get("configMap"):
            yield Slot("configmap", ref)
        if ref := volume.get("secret"):
            yield Slot("secret", ref, "secretName")
        for source in (volume.get("projected") or {}).get("sources") or []:
            if ref := source.get("configMap"):
                yield Slot("configmap", ref)
            if ref := source.get("secret"):
                yield Slot("secret", ref)


def config_refs(pod_spec: Obj) -> list[ConfigRef]:
    """Every ConfigMap/Secret the pod spec uses, once each, sorted; required beats optional."""
    optional: dict[tuple[Kind, str], bool] = {}
    for slot in slots(pod_spec):
        if slot.name:
            key = (slot.kind, slot.name)
            optional[key] = optional.get(key, True) and slot.optional
    return sorted(ConfigRef(kind, name, opt) for (kind, name), opt in optional.items())


def tracking_disabled(obj: Obj) -> bool:
    """The config opted out with ``flagger.app/config-tracking: disabled`` (or any value
    starting with ``disable``, as Flagger reads it)."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(TRACKING_ANNOTATION, "")).startswith(DISABLED_PREFIX)


def tracked(kind: Kind, obj: Obj) -> bool:
    """Whether a config the pod spec uses is tracked (checksummed and copied to the primary)."""
    if tracking_disabled(obj):
        return False
    return kind == "configmap" or str(obj.get("type") or "Opaque") in TRACKED_SECRET_TYPES
