"""Writing Kubernetes objects the way a controller does, and Flagger's metadata rules.

``Objects.ensure`` is the one write primitive: read the object, let a pure function say what
it should be, create it when missing or replace it (PUT, conditional on the read
``resourceVersion``) when it differs; nothing is written when it already is as wanted, so
every command is idempotent. A lost compare-and-set (``Conflict``: someone wrote in between,
or created the object first) re-reads and re-applies, a few times, then lets the
``Conflict`` through (temporary: the command is retried later). Every other error — the
adapter's ``NotFound``, ``InvalidInput``, ``Timeout``, ``Unavailable`` — goes through as is.

Metadata helpers follow Flagger's ``pkg/canary/util.go``: keys containing
``toolkit.fluxcd.io`` are never copied (Flux would fight over them), labels are copied only
when they match an include prefix (``SLUICE_INCLUDE_LABEL_PREFIX``, ``*`` for all), and the
selector label's value becomes ``<value>-primary``.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from libs import errors, messages
from libs.adapters import kubernetes
from libs.model import canary as canary_model

log = logging.getLogger(__name__)

Obj = dict[str, Any]
# (current object or None when missing) -> the object it should be, or None: leave it as is
Build = Callable[[Obj | None], Obj | None]

TOOLKIT_MARKER = "toolkit.fluxcd.io"
ID_ANNOTATION = "flagger-id"  # Flagger's name, so tools that ignore it keep working
# Annotations that describe one object and must not travel to a copy: kubectl's record of
# what was applied to the original, and the Deployment controller's own rollout counter.
NOT_COPIED = frozenset(
    {"kubectl.kubernetes.io/last-applied-configuration", "deployment.kubernetes.io/revision"}
)


@dataclasses.dataclass(frozen=True)
class Options:
    """How the Kubernetes side behaves (from the service settings)."""

    selector_labels: tuple[str, ...] = ("app", "name", "app.kubernetes.io/name")
    include_label_prefixes: tuple[str, ...] = ()
    conflict_attempts: int = 4  # reads-and-writes of one object before a Conflict goes through


class Objects:
    """Conditional create-or-replace of raw objects through the adapter."""

    def __init__(self, kube: kubernetes.Kube, options: Options) -> None:
        self.kube = kube
        self.options = options

    async def canary(self, ref: messages.CanaryRef) -> canary_model.Canary:
        """The Canary a command is about, validated (its spec and uid decide what is built)."""
        try:
            raw = await self.kube.get(kubernetes.CANARIES, ref.namespace, ref.name)
        except errors.NotFound as exc:
            raise errors.NotFound(f"Canary {ref.namespace}/{ref.name} not found") from exc
        return canary_model.parse_canary(raw)

    async def find(self, resource: kubernetes.Resource, namespace: str, name: str) -> Obj | None:
        try:
            return await self.kube.get(resource, namespace, name)
        except errors.NotFound:
            return None

    async def ensure(
        self, resource: kubernetes.Resource, namespace: str, name: str, build: Build
    ) -> Obj:
        """The object as it is after making it what ``build`` says (see the module docstring)."""
        attempts = max(1, self.options.conflict_attempts)
        for attempt in range(1, attempts + 1):
            current = await self.find(resource, namespace, name)
            desired = build(copy.deepcopy(current) if current is not None else None)
            if desired is None:
                if current is None:
                    raise errors.NotFound(f"{resource.kind} {namespace}/{name} does not exist")
                return current
            try:
                if current is None:
                    created = await self.kube.create(resource, namespace, desired)
                    log.info("%s %s/%s created", resource.kind, namespace, name)
                    return created
                desired.setdefault("metadata", {})["resourceVersion"] = current["metadata"].get(
                    "resourceVersion"
                )
                replaced = await self.kube.replace(resource, namespace, name, desired)
                log.info("%s %s/%s updated", resource.kind, namespace, name)
                return replaced
            except errors.Conflict:
                if attempt == attempts:
                    raise
                log.debug(
                    "%s %s/%s changed while writing it (attempt %d); re-reading",
                    resource.kind,
                    namespace,
                    name,
                    attempt,
                )
        raise AssertionError("unreachable")  # the loop returns or raises


# ----------------------------------------------------------------------------- ownership


def owner_reference(canary: canary_model.Canary) -> Obj:
    """The controller reference to the Canary that every generated object carries."""
    if not canary.metadata.uid:
        raise errors.InvalidInput(
            f"Canary {canary.namespace}/{canary.name} has no metadata.uid", path="metadata.uid"
        )
    return {
        "apiVersion": canary_model.API_VERSION,
        "kind": canary_model.KIND,
        "name": canary.name,
        "uid": canary.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def controller_of(obj: Obj) -> Obj | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if isinstance(ref, dict) and ref.get("controller"):
            return ref
    return None


def owned_by(obj: Obj, canary: canary_model.Canary) -> bool:
    """Whether the object's controller is this Canary (Flagger's ``isOwnedByCanary``)."""
    ref = controller_of(obj)
    return (
        ref is not None and ref.get("kind") == canary_model.KIND and ref.get("name") == canary.name
    )


def with_owner(existing: list[Obj], canary: canary_model.Canary) -> list[Obj]:
    """Our controller reference first, then other owners kept (demoted to non-controllers),
    as Flagger does for the primary ConfigMaps and Secrets."""
    ours = owner_reference(canary)
    kept = []
    for ref in existing:
        if ref.get("kind") == canary_model.KIND and ref.get("name") == canary.name:
            continue
        kept.append({**ref, "controller": False})
    return [ours, *kept]


# ----------------------------------------------------------------------------- metadata


def filter_metadata(values: Mapping[str, str] | None) -> dict[str, str]:
    """Everything but Flux's keys (Flagger's ``filterMetadata``)."""
    return {k: v for k, v in (values or {}).items() if TOOLKIT_MARKER not in k}


def copied_annotations(values: Mapping[str, str] | None) -> dict[str, str]:
    """Annotations copied from an original to a generated object."""
    return {k: v for k, v in filter_metadata(values).items() if k not in NOT_COPIED}


def include_by_prefix(
    values: Mapping[str, str] | None, prefixes: tuple[str, ...]
) -> dict[str, str]:
    """Labels whose key starts with one of ``prefixes`` (``*`` = all), never Flux's."""
    result = {}
    for key, value in filter_metadata(values).items():
        if any(p == "*" or (p and key.startswith(p)) for p in prefixes):
            result[key] = value
    return result


def primary_labels(values: Mapping[str, str] | None, label: str, value: str) -> dict[str, str]:
    """``values`` without Flux's keys, with ``label`` set to ``value`` (``makePrimaryLabels``)."""
    result = {k: v for k, v in filter_metadata(values).items() if k != label}
    result[label] = value
    return result


def pod_annotations(values: Mapping[str, str] | None, rollout_id: str) -> dict[str, str]:
    """A pod template's annotations plus the id that makes the primary roll out."""
    result = {k: v for k, v in filter_metadata(values).items() if k != ID_ANNOTATION}
    result[ID_ANNOTATION] = rollout_id
    return result


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def rollout_id(template: Obj, configs: Mapping[str, str]) -> str:
    """A UUID-shaped id of what the primary is given: the target's pod template and the
    versions (``uid/resourceVersion``) of the configs copied for it. Flagger draws a random
    one on every promotion; deriving it from the content keeps a repeated command from
    restarting the primary while any change still rolls it out. Versions, not data, are
    hashed, so nothing of a Secret's value can be guessed from the annotation."""
    digest = hashlib.sha256(canonical_json({"template": template, "configs": dict(configs)}))
    return str(uuid.UUID(bytes=digest.digest()[:16], version=4))


def meta(obj: Obj) -> Obj:
    value = obj.setdefault("metadata", {})
    assert isinstance(value, dict)
    return value
