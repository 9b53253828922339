"""The ConfigMaps and Secrets of a pod template, and their ``-primary`` copies.

Flagger's config tracker (``pkg/canary/config_tracker.go``): the primary never reads the
target's configs; it gets copies named ``<name>-primary``, refreshed at initialization and at
every promotion, and its pod template is rewritten to use them. So a config edited for the
next canary cannot reach the primary before that canary is promoted.

* Which references count and which configs are tracked is ``libs.model.configrefs`` (the
  rules the watcher checksums by): every container, init container and volume;
  ``flagger.app/config-tracking: disabled`` and registry-type Secrets are skipped.
* Optional configs that do not exist are skipped; a required one that does not exist is
  ``NotFound``.
* A copy has the original's ``data`` and ``binaryData`` (Flagger forgets ``binaryData``),
  labels by include prefix, the Secret's ``type``, and the Canary as controller; other owners
  a copy already had are kept as non-controllers.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from typing import Any

from libs import errors
from libs.adapters import kubernetes
from libs.model import canary as canary_model
from libs.model import configrefs
from services.traffic_shifter.kube import objects

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Kind = configrefs.Kind

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


async def used_by(store: objects.Objects, namespace: str, pod_spec: Obj) -> list[Config]:
    """The configs of ``pod_spec`` that the primary gets copies of, sorted by key."""
    found = []
    for ref in configrefs.config_refs(pod_spec):
        kind, name = ref.kind, ref.name
        resource = kubernetes.CONFIGMAPS if kind == "configmap" else kubernetes.SECRETS
        obj = await store.find(resource, namespace, name)
        if obj is None:
            if not ref.optional:
                raise errors.NotFound(
                    f"{resource.kind} {namespace}/{name}, used by the target's pod template, "
                    "does not exist"
                )
            log.info("optional %s %s/%s does not exist; not copied", kind, namespace, name)
            continue
        if not configrefs.tracked(kind, obj):
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
    for slot in configrefs.slots(spec):
        if (slot.kind, slot.name) in copied:
            slot.ref[slot.field] = slot.name + PRIMARY_SUFFIX
    return spec
