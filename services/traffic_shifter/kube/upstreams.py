"""The apex Service's ApisixUpstream follows its traffic to the primary and canary Services.

With apisix-ingress-controller, an ApisixUpstream named like a Service sets how APISIX reaches
that Service: load balancer, retries, timeouts, scheme, Host passing, label subsets. The canary
route sends the apex's traffic to ``<apex>-primary`` and ``<apex>-canary`` instead, Services no
ApisixUpstream names, so the user's settings would silently stop applying for as long as the
Canary exists (the canary route stays after promotion). Flagger's APISIX router leaves it so.

Here the user's ApisixUpstream ``<apex>`` is copied to ``<apex>-primary`` and ``<apex>-canary``
(spec, and labels and annotations by Flagger's copy rules), owned by the Canary so they go with
it, and kept in step on every route reconcile. When the user's goes, the copies' spec is
emptied (APISIX's defaults, as with no ApisixUpstream; nothing is deleted). An ApisixUpstream
of those names that the Canary does not own is the user's: it is left alone.
"""

from __future__ import annotations

import copy
from typing import Any

from libs import errors
from libs.adapters import kubernetes
from libs.model import canary as canary_model
from services.traffic_shifter.kube import objects

Obj = dict[str, Any]
API_VERSION = "apisix.apache.org/v2"
KIND = "ApisixUpstream"


def copy_of(canary: canary_model.Canary, source: Obj | None, name: str) -> Obj:
    """The ApisixUpstream ``name`` following ``source`` (None: the user has none)."""
    source_meta = (source or {}).get("metadata") or {}
    metadata: Obj = {
        "name": name,
        "namespace": canary.namespace,
        "ownerReferences": [objects.owner_reference(canary)],
    }
    labels = objects.filter_metadata(source_meta.get("labels"))
    annotations = objects.copied_annotations(source_meta.get("annotations"))
    if labels:
        metadata["labels"] = labels
    if annotations:
        metadata["annotations"] = annotations
    spec = copy.deepcopy((source or {}).get("spec") or {})
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": spec}


def resync(canary: canary_model.Canary, desired: Obj, current: Obj | None) -> Obj | None:
    """What to write over ``current`` (None: nothing): a copy the Canary owns is brought in
    step; one it does not own is the user's."""
    if current is None:
        return desired
    if not objects.owned_by(current, canary):
        return None
    updated = copy.deepcopy(current)
    updated["spec"] = desired["spec"]
    meta = objects.meta(updated)
    for key in ("labels", "annotations"):
        if desired["metadata"].get(key):
            meta[key] = desired["metadata"][key]
        else:
            meta.pop(key, None)
    return None if updated == current else updated


async def follow(store: objects.Objects, canary: canary_model.Canary, apex: str) -> None:
    """Bring ``<apex>-primary`` and ``<apex>-canary`` in step with the user's ``<apex>``."""
    namespace = canary.namespace
    source = await store.find(kubernetes.APISIX_UPSTREAMS, namespace, apex)
    for name in (f"{apex}-primary", f"{apex}-canary"):
        desired = copy_of(canary, source, name)

        def build(found: Obj | None, desired: Obj = desired) -> Obj | None:
            if found is None and source is None:
                return None  # nothing to follow, nothing to empty
            return resync(canary, desired, found)

        try:
            await store.ensure(kubernetes.APISIX_UPSTREAMS, namespace, name, build)
        except errors.NotFound:
            if source is not None:
                raise
