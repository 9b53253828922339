"""The primary's HorizontalPodAutoscaler (Flagger's ``pkg/canary/hpa_reconciler.go``).

``<autoscalerRef.name>-primary`` is a copy of the target's ``autoscaling/v2`` HPA that scales
``<target>-primary``: same min/max replicas (``primaryScalerReplicas`` overrides them),
metrics and behavior, the target HPA's labels (without Flux's), owned by the Canary.
Initialization only creates it; a promotion also brings an existing one up to date with the
target's HPA, as Flagger does. KEDA ScaledObjects are not supported yet.

``scale_up_replicas`` is Flagger's ``ScaleFromZero`` rule for the canary's replicas when a new
revision starts: the target's ``spec.replicas`` if > 0; else, without an autoscaler, the
primary's (if > 0); else the HPA's ``minReplicas`` if > 1; else 1.
"""

from __future__ import annotations

import copy
from typing import Any

from libs import errors
from libs.adapters import kubernetes
from libs.model import canary as canary_model
from services.traffic_shifter.kube import objects

Obj = dict[str, Any]
SPEC_FIELDS = ("minReplicas", "maxReplicas", "metrics", "behavior")


def desired_spec(canary: canary_model.Canary, target_hpa: Obj, primary: str) -> Obj:
    source = target_hpa.get("spec") or {}
    scale_ref = source.get("scaleTargetRef") or {}
    spec: Obj = {
        "scaleTargetRef": {
            "apiVersion": scale_ref.get("apiVersion", "apps/v1"),
            "kind": scale_ref.get("kind", "Deployment"),
            "name": primary,
        },
    }
    for field in SPEC_FIELDS:
        if source.get(field) is not None:
            spec[field] = copy.deepcopy(source[field])
    ref = canary.spec.autoscaler_ref
    bounds = ref.primary_scaler_replicas if ref else None
    if bounds is not None:
        if bounds.min_replicas is not None:
            spec["minReplicas"] = bounds.min_replicas
        if bounds.max_replicas is not None:
            spec["maxReplicas"] = bounds.max_replicas
    return spec


def _min(spec: Obj) -> Any:
    return spec.get("minReplicas", 1)  # the API's default


def desired_hpa(
    canary: canary_model.Canary,
    target_hpa: Obj,
    name: str,
    primary: str,
    current: Obj | None,
    *,
    update: bool,
) -> Obj | None:
    spec = desired_spec(canary, target_hpa, primary)
    labels = objects.filter_metadata((target_hpa.get("metadata") or {}).get("labels"))
    if current is None:
        return {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {
                "name": name,
                "namespace": canary.namespace,
                "labels": labels,
                "ownerReferences": [objects.owner_reference(canary)],
            },
            "spec": spec,
        }
    if not update:
        return None
    current_spec = current.get("spec") or {}
    same = (
        all(current_spec.get(f) == spec.get(f) for f in ("maxReplicas", "metrics", "behavior"))
        and _min(current_spec) == _min(spec)
        and ((current.get("metadata") or {}).get("labels") or {}) == labels
    )
    if same:
        return None
    updated = copy.deepcopy(current)
    updated_spec = updated.setdefault("spec", {})
    for field in SPEC_FIELDS:
        updated_spec.pop(field, None)
        if field in spec:
            updated_spec[field] = spec[field]
    objects.meta(updated)["labels"] = labels
    return updated


async def reconcile_primary(
    store: objects.Objects,
    canary: canary_model.Canary,
    hpa_name: str,
    primary: str,
    *,
    update: bool,
) -> Obj | None:
    """Create (and with ``update`` refresh) the primary HPA; None when the canary has none."""
    ref = canary.spec.autoscaler_ref
    if not hpa_name:
        return None
    if ref is not None and ref.kind != "HorizontalPodAutoscaler":
        raise errors.Unsupported(
            f"autoscalerRef.kind {ref.kind} of Canary {canary.namespace}/{canary.name}: "
            "only HorizontalPodAutoscaler is supported on Kubernetes for now"
        )
    try:
        target_hpa = await store.kube.get(kubernetes.HPAS, canary.namespace, hpa_name)
    except errors.NotFound as exc:
        raise errors.NotFound(
            f"HorizontalPodAutoscaler {canary.namespace}/{hpa_name} (the canary's autoscalerRef) "
            "not found"
        ) from exc
    name = f"{hpa_name}-primary"

    def build(current: Obj | None) -> Obj | None:
        return desired_hpa(canary, target_hpa, name, primary, current, update=update)

    return await store.ensure(kubernetes.HPAS, canary.namespace, name, build)


def _positive(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


async def scale_up_replicas(
    store: objects.Objects, canary: canary_model.Canary, target: Obj
) -> int:
    """How many replicas the canary (``target``, as just read) gets on a new revision."""
    if (replicas := _positive((target.get("spec") or {}).get("replicas"))) is not None:
        return replicas
    namespace = canary.namespace
    ref = canary.spec.autoscaler_ref
    if ref is None:
        primary_name = f"{canary.spec.target_ref.name}-primary"
        try:
            primary = await store.kube.get(kubernetes.DEPLOYMENTS, namespace, primary_name)
        except errors.NotFound as exc:
            raise errors.NotFound(
                f"Deployment {namespace}/{primary_name} not found: initialize the canary first"
            ) from exc
        return _positive((primary.get("spec") or {}).get("replicas")) or 1
    if ref.kind == "HorizontalPodAutoscaler":
        hpa = await store.find(kubernetes.HPAS, namespace, ref.name)  # missing: Flagger uses 1
        minimum = _positive(((hpa or {}).get("spec") or {}).get("minReplicas"))
        if minimum is not None and minimum > 1:
            return minimum
    return 1
