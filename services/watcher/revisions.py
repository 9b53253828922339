"""What counts as a revision of a workload, and what its readiness looks like — pure functions.

Flagger's rules (reference sections 1 and 3): a new revision is a change of the pod template
(``spec.template``) or of the data of a ConfigMap/Secret the template uses; replica changes
do not count. So:

* ``template_hash`` — sha256 of the canonical JSON of ``spec.template`` (sorted keys, no
  whitespace), first 16 hex digits. Key order and ``spec.replicas`` cannot change it.
* ``config_refs`` — the ConfigMaps/Secrets a pod spec uses, from every container and init
  container (``env[].valueFrom.configMapKeyRef/secretKeyRef``, ``envFrom[]``) and volume
  (``configMap``, ``secret``, ``projected.sources[]``), each with whether it is optional
  (required wins when both).
* ``config_checksum`` — sha256 of the canonical JSON of ``data`` and ``binaryData``.
* ``observe`` — the ``WorkloadObservation`` of a Deployment: generation, replicas and status
  counts, and ``progress_deadline_exceeded`` from the Progressing condition.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from typing import Any, Literal

from libs import messages

Obj = dict[str, Any]
ConfigKind = Literal["configmap", "secret"]
TRACKING_ANNOTATION = "flagger.app/config-tracking"  # "disabled" opts a config out (Flagger)
REVISION_LENGTH = 16


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def template_hash(deployment: Obj) -> str:
    """The revision of a Deployment: a stable hash of ``spec.template`` only."""
    template = (deployment.get("spec") or {}).get("template") or {}
    return hashlib.sha256(canonical_json(template)).hexdigest()[:REVISION_LENGTH]


@dataclasses.dataclass(frozen=True, order=True)
class ConfigRef:
    kind: ConfigKind
    name: str
    optional: bool = False

    @property
    def key(self) -> str:
        """Flagger's ``trackedConfigs`` key: ``configmap/<name>`` or ``secret/<name>``."""
        return f"{self.kind}/{self.name}"


def _refs(pod_spec: Obj) -> Iterator[ConfigRef]:
    containers = [*(pod_spec.get("initContainers") or []), *(pod_spec.get("containers") or [])]
    for container in containers:
        for env in container.get("env") or []:
            source = env.get("valueFrom") or {}
            if ref := source.get("configMapKeyRef"):
                yield ConfigRef("configmap", ref.get("name", ""), bool(ref.get("optional")))
            if ref := source.get("secretKeyRef"):
                yield ConfigRef("secret", ref.get("name", ""), bool(ref.get("optional")))
        for env_from in container.get("envFrom") or []:
            if ref := env_from.get("configMapRef"):
                yield ConfigRef("configmap", ref.get("name", ""), bool(ref.get("optional")))
            if ref := env_from.get("secretRef"):
                yield ConfigRef("secret", ref.get("name", ""), bool(ref.get("optional")))
    for volume in pod_spec.get("volumes") or []:
        if ref := volume.get("configMap"):
            yield ConfigRef("configmap", ref.get("name", ""), bool(ref.get("optional")))
        if ref := volume.get("secret"):
            yield ConfigRef("secret", ref.get("secretName", ""), bool(ref.get("optional")))
        for source in (volume.get("projected") or {}).get("sources") or []:
            if ref := source.get("configMap"):
                yield ConfigRef("configmap", ref.get("name", ""), bool(ref.get("optional")))
            if ref := source.get("secret"):
                yield ConfigRef("secret", ref.get("name", ""), bool(ref.get("optional")))


def config_refs(pod_spec: Obj) -> list[ConfigRef]:
    """Every ConfigMap/Secret the pod spec uses, once each, sorted; required beats optional."""
    found: dict[tuple[str, str], bool] = {}
    for ref in _refs(pod_spec):
        if not ref.name:
            continue
        key = (ref.kind, ref.name)
        found[key] = found.get(key, True) and ref.optional
    return sorted(ConfigRef(kind, name, optional) for (kind, name), optional in found.items())  # type: ignore[arg-type]


def pod_spec(deployment: Obj) -> Obj:
    spec: Obj = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
    return spec


def config_checksum(obj: Obj) -> str:
    """sha256 of a ConfigMap's or Secret's ``data`` and ``binaryData`` (canonical JSON)."""
    content = {"data": obj.get("data") or {}, "binaryData": obj.get("binaryData") or {}}
    return hashlib.sha256(canonical_json(content)).hexdigest()


def tracking_disabled(obj: Obj) -> bool:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(TRACKING_ANNOTATION, "")).lower() == "disabled"


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def progress_deadline_exceeded(deployment: Obj) -> bool:
    for condition in (deployment.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Progressing":
            return bool(condition.get("reason") == "ProgressDeadlineExceeded")
    return False


def observe(
    deployment: Obj, tracked_configs: dict[str, str] | None = None
) -> messages.WorkloadObservation:
    """The observation of a Deployment (revision from its template; readiness from status)."""
    meta = deployment.get("metadata") or {}
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    return messages.WorkloadObservation(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        kind=str(deployment.get("kind") or "Deployment"),
        revision=template_hash(deployment),
        generation=_int(meta.get("generation")),
        observed_generation=_int(status.get("observedGeneration")),
        replicas=_int(spec.get("replicas"), 1),  # the API server's default
        status_replicas=_int(status.get("replicas")),
        updated_replicas=_int(status.get("updatedReplicas")),
        ready_replicas=_int(status.get("readyReplicas")),
        available_replicas=_int(status.get("availableReplicas")),
        progress_deadline_exceeded=progress_deadline_exceeded(deployment),
        tracked_configs=dict(tracked_configs or {}),
    )
