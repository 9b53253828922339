"""The ConfigMaps and Secrets of a pod template, and their ``-primary`` copies.

Flagger's config tracker (``pkg/canary/config_tracker.go``): the primary never reads the
target's configs; it gets copies named ``<name>-primary``, refreshed at initialization and at
every promotion, and its pod template is rewritten to use them. So a config edited for the
next canary cannot reach the primary before that canary is promoted.

* Found in every container and init container (``env[].valueFrom.configMapKeyRef`` /
  ``secretKeyRef``, ``envFrom[]``) and volume (``configMap``, ``secret``,
  ``projected.sources[]``). A reference is required unless it says ``optional: true``.
* Skipped: configs annotated ``flagger.app/config-tracking: disabled`` (any value starting
  with ``disable``, as Flagger reads it), Secrets of a type other than Opaque, basic-auth,
  ssh-auth and TLS (registry credentials belong to service accounts), and optional configs
  that do not exist. A required one that does not exist is ``NotFound``.
* A copy has the original's ``data`` and ``binaryData`` (Flagger forgets ``binaryData``),
  labels by include prefix, the Secret's ``type``, and the Canary as controller; other owners
  a copy already had are kept as non-controllers.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Iterator
from typing import Any, Literal

from libs import errors
from libs.adapters import kubernetes
from libs.model import canary as canary_model
from services.traffic_shifter.kube import objects

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Kind = Literal["configmap", "secret"]

TRACKING_ANNOTATION = "flagger.app/config-tracking"
COPIED_SECRET_TYPES = frozenset(
    {
        "Opaque",
        "kubernetes.io/basic-auth",
        "kubernetes.io/ssh-auth",
        "kubernetes.io/tls",
    }
)
PRIMARY_SUFFIX = "-primary"


@dataclasses.dataclass(frozen=True)
class Config:
    """A config the target uses and the primary gets a copy of."""

    kind: Kind
    obj: Obj

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])

    @property
    def key(self) -> str:
        """Flagger's ``trackedConfigs`` key: ``configmap/<name>`` or ``secret/<name>``."""
        return f"{self.kind}/{self.name}"

    @property
    def version(self) -> str:
        meta = self.obj.get("metadata") or {}
        return f"{meta.get('uid', '')}/{meta.get('resourceVersion', '')}"


def _references(pod_spec: Obj) -> Iterator[tuple[Kind, str, bool]]:
    """(kind, name, optional) of every reference in a pod spec."""
    for container in [*(pod_spec.get("containers") or []), *(pod_spec.get("initContainers") or [])]:
        for env in container.get("env") or []:
            source = env.get("valueFrom") or {}
            if ref := source.get("configMapKeyRef"):
                yield "configmap", ref.get("name", ""), bool(ref.get("optional"))
            elif ref := source.get("secretKeyRef"):
                yield "secret", ref.get("name", ""), bool(ref.get("optional"))
        for env_from in container.get("envFrom") or []:
            if ref := env_from.get("configMapRef"):
                yield "configmap", ref.get("name", ""), bool(ref.get("optional"))
            elif ref := env_from.get("secretRef"):
                yield "secret", ref.get("name", ""), bool(ref.get("optional"))
    for volume in pod_spec.get("volumes") or []:
        if ref := volume.get("configMap"):
            yield "configmap", ref.get("name", ""), bool(ref.get("optional"))
        if ref := volume.get("secret"):
            yield "secret", ref.get("secretName", ""), bool(ref.get("optional"))
        for source in (volume.get("projected") or {}).get("sources") or []:
            if ref := source.get("configMap"):
                yield "configmap", ref.get("name", ""), bool(ref.get("optional"))
            if ref := source.get("secret"):
                yield "secret", ref.get("name", ""), bool(ref.get("optional"))


def references(pod_spec: Obj) -> dict[tuple[Kind, str], bool]:
    """(kind, name) → required, for every config the pod spec uses (required wins)."""
    found: dict[tuple[Kind, str], bool] = {}
    for kind, name, optional in _references(pod_spec):
        if name:
            found[(kind, name)] = found.get((kind, name), False) or not optional
    return found


def _tracking_disabled(obj: Obj) -> bool:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(TRACKING_ANNOTATION, "")).startswith("disable")


async def used_by(store: objects.Objects, namespace: str, pod_spec: Obj) -> list[Config]:
    """The configs of ``pod_spec`` that the primary gets copies of, sorted by key."""
    found = []
    for (kind, name), required in sorted(references(pod_spec).items()):
        resource = kubernetes.CONFIGMAPS if kind == "configmap" else kubernetes.SECRETS
        obj = await store.find(resource, namespace, name)
        if obj is None:
            if required:
                raise errors.NotFound(
                    f"{resource.kind} {namespace}/{name}, used by the target's pod template, "
                    "does not exist"
                )
            log.info("optional %s %s/%s does not exist; not copied", kind, namespace, name)
            continue
        if _tracking_disabled(obj):
            continue
        if kind == "secret" and str(obj.get("type") or "Opaque") not in COPIED_SECRET_TYPES:
            continue
        found.append(Config(kind, obj))
    return found


def _copy(
    config: Config, current: Obj | None, canary: canary_model.Canary, prefixes: tuple[str, ...]
) -> Obj | None:
    name = config.name + PRIMARY_SUFFIX
    existing_owners = ((current or {}).get("metadata") or {}).get("ownerReferences") or []
    desired: Obj = {
        "apiVersion": "v1",
        "kind": "ConfigMap" if config.kind == "configmap" else "Secret",
        "metadata": {
            "name": name,
            "namespace": canary.namespace,
            "labels": objects.include_by_prefix(config.obj["metadata"].get("labels"), prefixes),
            "ownerReferences": objects.with_owner(existing_owners, canary),
        },
    }
    for field in ("data", "binaryData"):
        if config.obj.get(field):
            desired[field] = config.obj[field]
    if config.kind == "secret":
        desired["type"] = config.obj.get("type") or "Opaque"
    if current is None:
        return desired
    current_meta = current.get("metadata") or {}
    unchanged = (
        all(current.get(f) == desired.get(f) for f in ("data", "binaryData"))
        and (config.kind == "configmap" or current.get("type") == desired["type"])
        and (current_meta.get("labels") or {}) == desired["metadata"]["labels"]
        and current_meta.get("ownerReferences") == desired["metadata"]["ownerReferences"]
    )
    if unchanged:
        return None
    merged = copy.deepcopy(current)
    merged_meta = objects.meta(merged)
    merged_meta["labels"] = desired["metadata"]["labels"]
    merged_meta["ownerReferences"] = desired["metadata"]["ownerReferences"]
    for field in ("data", "binaryData"):
        merged.pop(field, None)
        if field in desired:
            merged[field] = desired[field]
    if config.kind == "secret":
        merged["type"] = desired["type"]
    return merged


async def sync_copies(
    store: objects.Objects, canary: canary_model.Canary, configs: list[Config]
) -> None:
    """Create or refresh ``<name>-primary`` for every config."""
    prefixes = store.options.include_label_prefixes
    for config in configs:
        resource = kubernetes.CONFIGMAPS if config.kind == "configmap" else kubernetes.SECRETS

        def build(current: Obj | None, config: Config = config) -> Obj | None:
            return _copy(config, current, canary, prefixes)

        await store.ensure(resource, canary.namespace, config.name + PRIMARY_SUFFIX, build)


def rewrite(pod_spec: Obj, configs: list[Config]) -> Obj:
    """A copy of ``pod_spec`` whose references to ``configs`` name their ``-primary`` copies."""
    copied = {(c.kind, c.name) for c in configs}
    spec = copy.deepcopy(pod_spec)

    def renamed(kind: Kind, ref: Obj, field: str = "name") -> None:
        if (kind, ref.get(field, "")) in copied:
            ref[field] = ref[field] + PRIMARY_SUFFIX

    for container in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        for env in container.get("env") or []:
            source = env.get("valueFrom") or {}
            if ref := source.get("configMapKeyRef"):
                renamed("configmap", ref)
            elif ref := source.get("secretKeyRef"):
                renamed("secret", ref)
        for env_from in container.get("envFrom") or []:
            if ref := env_from.get("configMapRef"):
                renamed("configmap", ref)
            elif ref := env_from.get("secretRef"):
                renamed("secret", ref)
    for volume in spec.get("volumes") or []:
        if ref := volume.get("configMap"):
            renamed("configmap", ref)
        if ref := volume.get("secret"):
            renamed("secret", ref, "secretName")
        for source in (volume.get("projected") or {}).get("sources") or []:
            if ref := source.get("configMap"):
                renamed("configmap", ref)
            if ref := source.get("secret"):
                renamed("secret", ref)
    return spec
