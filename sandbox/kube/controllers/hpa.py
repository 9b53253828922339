"""The HorizontalPodAutoscaler controller, without metrics.

The sandbox simulates no CPU or custom metrics, so an HPA (autoscaling/v2) only keeps its
target's ``spec.replicas`` within ``[minReplicas (default 1), maxReplicas]``, as a real HPA
does whatever the metrics say, and reports a sane status: ``currentReplicas`` (the target's
spec.replicas), ``desiredReplicas`` (clamped), ``lastScaleTime``, and the conditions AbleToScale,
ScalingActive and ScalingLimited. A target at 0 replicas is left at 0 (Kubernetes disables
autoscaling then: ScalingActive False / ScalingDisabled), which Flagger relies on when it
scales a canary down. It reacts to HPA and target changes at once, not every 15 s.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable

from sandbox.kube import registry as kregistry
from sandbox.kube import store as kstore
from sandbox.kube.controllers import events, objects, reconciling
from sandbox.kube.controllers import settings as csettings

log = logging.getLogger(__name__)

COMPONENT = "horizontal-pod-autoscaler"
Obj = kstore.Obj
SCALABLE = frozenset({"Deployment", "ReplicaSet", "StatefulSet"})


def desired_replicas(current: int, minimum: int, maximum: int) -> int:
    """What the HPA wants without metrics: the current count clamped to [min, max]; 0 stays 0."""
    if current == 0 and minimum != 0:
        return 0
    return max(minimum, min(current, maximum))


class HPAController:
    def __init__(
        self,
        store: kstore.Store,
        registry: kregistry.Registry,
        settings: csettings.ControllerSettings,
    ) -> None:
        self.store = store
        self.registry = registry
        self.loop = reconciling.WorkLoop("hpa", store, self.reconcile, settings)
        self.loop.watch(kregistry.HPAS)
        self.loop.watch(kregistry.DEPLOYMENTS, self._hpas_of_target)

    async def run(self) -> None:
        await self.loop.run()

    def _hpas_of_target(self, _event: str, target: Obj) -> Iterable[reconciling.Key]:
        namespace = target["metadata"].get("namespace", "")
        for hpa in self.store.list(kregistry.HPAS, namespace)[0]:
            ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
            if (
                ref.get("kind") == target.get("kind")
                and ref.get("name") == target["metadata"]["name"]
            ):
                yield (namespace, hpa["metadata"]["name"])

    def reconcile(self, key: reconciling.Key) -> None:
        namespace, name = key
        try:
            hpa = self.store.get(kregistry.HPAS, namespace, name)
        except kstore.NotFound:
            return
        spec = hpa.get("spec") or {}
        ref = spec.get("scaleTargetRef") or {}
        status = copy.deepcopy(hpa.get("status") or {})
        status["observedGeneration"] = int(hpa["metadata"].get("generation", 1))
        rtype = self.registry.by_kind(ref.get("apiVersion") or "apps/v1", ref.get("kind") or "")
        target: Obj | None = None
        problem = ""
        if rtype is None or ref.get("kind") not in SCALABLE:
            problem = f"the HPA controller cannot scale {ref.get('apiVersion')}/{ref.get('kind')}"
        else:
            try:
                target = self.store.get(rtype, namespace, ref.get("name", ""))
            except kstore.NotFound:
                problem = f'{rtype.plural}/scale.{rtype.group} "{ref.get("name")}" not found'
        if target is None or rtype is None:
            objects.set_condition(
                status,
                "AbleToScale",
                "False",
                "FailedGetScale",
                f"the HPA controller was unable to get the target's current scale: {problem}",
                update_time=False,
            )
            self._write(hpa, status)
            return
        current = int((target.get("spec") or {}).get("replicas", 1))
        minimum = int(spec.get("minReplicas") or 1)
        maximum = int(spec.get("maxReplicas") or max(minimum, 1))
        desired = desired_replicas(current, minimum, maximum)
        status["currentReplicas"] = current
        status["desiredReplicas"] = desired
        if current == 0 and minimum != 0:
            objects.set_condition(
                status,
                "ScalingActive",
                "False",
                "ScalingDisabled",
                "scaling is disabled since the replica count of the target is zero",
                update_time=False,
            )
        else:
            objects.set_condition(
                status,
                "ScalingActive",
                "True",
                "ValidMetricFound",
                "the sandbox simulates no metrics: replicas are kept within [minReplicas, maxReplicas]",
                update_time=False,
            )
        if desired < current:
            objects.set_condition(
                status,
                "ScalingLimited",
                "True",
                "TooManyReplicas",
                "the desired replica count is more than the maximum replica count",
                update_time=False,
            )
        elif desired > current:
            objects.set_condition(
                status,
                "ScalingLimited",
                "True",
                "TooFewReplicas",
                "the desired replica count is less than the minimum replica count",
                update_time=False,
            )
        else:
            objects.set_condition(
                status,
                "ScalingLimited",
                "False",
                "DesiredWithinRange",
                "the desired count is within the acceptable range",
                update_time=False,
            )
        if desired != current:
            scaled = copy.deepcopy(target)
            scaled["spec"]["replicas"] = desired
            self.store.update(rtype, scaled)
            status["lastScaleTime"] = objects.rfc3339(objects.now())
            why = "below Spec.MinReplicas" if desired > current else "above Spec.MaxReplicas"
            events.record(
                self.store,
                hpa,
                events.NORMAL,
                "SuccessfulRescale",
                f"New size: {desired}; reason: Current number of replicas {why}",
                component=COMPONENT,
            )
            objects.set_condition(
                status,
                "AbleToScale",
                "True",
                "SucceededRescale",
                f"the HPA controller was able to update the target scale to {desired}",
                update_time=False,
            )
        else:
            objects.set_condition(
                status,
                "AbleToScale",
                "True",
                "ReadyForNewScale",
                "recommended size matches current size",
                update_time=False,
            )
        self._write(hpa, status)

    def _write(self, hpa: Obj, status: Obj) -> None:
        if (hpa.get("status") or {}) == status:
            return
        updated = copy.deepcopy(hpa)
        updated["status"] = status
        self.store.update(kregistry.HPAS, updated, subresource="status")
