"""What counts as a revision of a workload, and what its readiness looks like — pure functions.

Flagger's rules (reference sections 1 and 3): a new revision is a change of the pod template
(``spec.template``) or of the data of a ConfigMap/Secret the template uses; replica changes
do not count. So:

* ``template_hash`` — sha256 of the canonical JSON of ``spec.template`` (sorted keys, no
  whitespace), first 16 hex digits. Key order and ``spec.replicas`` cannot change it.
* which ConfigMaps/Secrets a pod spec uses and which of them are tracked is
  ``libs.model.configrefs`` (the traffic-shifter copies the same ones to the primary).
* ``config_checksum`` — sha256 of the canonical JSON of ``data`` and ``binaryData``.
* ``observe`` — the ``WorkloadObservation`` of a Deployment: generation, replicas and status
  counts, and ``progress_deadline_exceeded`` from the Progressing condition.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from libs import messages

Obj = dict[str, Any]
REVISION_LENGTH = 16


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def template_hash(deployment: Obj) -> str:
    """The revision of a Deployment: a stable hash of ``spec.template`` only."""
    template = (deployment.get("spec") or {}).get("template") or {}
    return hashlib.sha256(canonical_json(template)).hexdigest()[:REVISION_LENGTH]


def pod_spec(deployment: Obj) -> Obj:
    spec: Obj = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
    return spec


def config_checksum(obj: Obj) -> str:
    """sha256 of a ConfigMap's or Secret's ``data`` and ``binaryData`` (canonical JSON)."""
    content = {"data": obj.get("data") or {}, "binaryData": obj.get("binaryData") or {}}
    return hashlib.sha256(canonical_json(content)).hexdigest()


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
