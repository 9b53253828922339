"""The ReplicaSet controller: keeps ``spec.replicas`` pods per ReplicaSet, reports their status.

Pods are named ``<rs>-<5 chars>`` (Kubernetes' generateName alphabet), carry the template's
labels and annotations, a controller ownerReference to the ReplicaSet, the template's spec plus
``nodeName`` (the sandbox has one node and no scheduler, so pods are created bound) and start
``Pending`` with ``PodScheduled``; the kubelet takes them from there. Surplus pods go in
Kubernetes' order of preference (unscheduled, pending, not ready, ready the shortest time,
newest). A pod counts as available once Ready for ``minReadySeconds``; the controller sets a
timer for the moment a ready pod becomes available.
"""

from __future__ import annotations

import copy
import logging
import random
from collections.abc import Iterable
from typing import Any

from sandbox.kube import registry
from sandbox.kube import store as kstore
from sandbox.kube.controllers import events, objects, reconciling, rollout
from sandbox.kube.controllers import settings as csettings

log = logging.getLogger(__name__)

COMPONENT = "replicaset-controller"
Obj = kstore.Obj
PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}


def _owner_keys(_event: str, pod: Obj) -> Iterable[reconciling.Key]:
    ref = objects.controller_ref(pod)
    if ref is not None and ref.get("kind") == "ReplicaSet":
        yield (pod["metadata"].get("namespace", ""), ref["name"])


def ready_since(pod: Obj) -> float | None:
    cond = objects.get_condition(pod.get("status"), "Ready")
    if cond is None or cond.get("status") != "True":
        return None
    at = objects.parse_time(cond.get("lastTransitionTime"))
    return at.timestamp() if at is not None else 0.0


def deletion_order(pods: list[Obj]) -> list[Obj]:
    """Pods to delete first come first (Kubernetes' ActivePodsWithRanks, simplified)."""

    def rank(pod: Obj) -> tuple[Any, ...]:
        since = ready_since(pod)
        created = objects.parse_time(pod["metadata"].get("creationTimestamp"))
        return (
            bool((pod.get("spec") or {}).get("nodeName")),
            PHASE_RANK.get((pod.get("status") or {}).get("phase", "Pending"), 0),
            since is not None,
            -(since or 0.0),
            -(created.timestamp() if created else 0.0),
            pod["metadata"]["name"],
        )

    return sorted(pods, key=rank)


def replica_status(rs: Obj, pods: list[Obj], now: float) -> tuple[Obj, float | None]:
    """(status, seconds until a ready pod turns available) of a ReplicaSet over its active pods."""
    min_ready = int((rs.get("spec") or {}).get("minReadySeconds") or 0)
    template_labels = ((rs["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {}
    ready = available = labelled = 0
    wait: float | None = None
    for pod in pods:
        labels = pod["metadata"].get("labels") or {}
        if all(labels.get(k) == v for k, v in template_labels.items()):
            labelled += 1
        since = ready_since(pod)
        if since is None:
            continue
        ready += 1
        left = since + min_ready - now
        if min_ready == 0 or left < 0:
            available += 1
        else:
            wait = left if wait is None else min(wait, left)
    status: Obj = {"replicas": len(pods)}
    for field, value in (
        ("fullyLabeledReplicas", labelled),
        ("readyReplicas", ready),
        ("availableReplicas", available),
        ("observedGeneration", int(rs["metadata"].get("generation", 1))),
    ):
        if value:
            status[field] = value
    old_conditions = (rs.get("status") or {}).get("conditions")
    if old_conditions:
        status["conditions"] = old_conditions
    return status, wait


class ReplicaSetController:
    def __init__(
        self,
        store: kstore.Store,
        settings: csettings.ControllerSettings,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.rng = rng or random.Random()
        self.loop = reconciling.WorkLoop("replicaset", store, self.reconcile, settings)
        self.loop.watch(registry.REPLICASETS)
        self.loop.watch(registry.PODS, _owner_keys)

    async def run(self) -> None:
        await self.loop.run()

    def reconcile(self, key: reconciling.Key) -> float | None:
        namespace, name = key
        try:
            rs = self.store.get(registry.REPLICASETS, namespace, name)
        except kstore.NotFound:
            return None
        pods = self._active_pods(rs)
        want = rollout.replicas(rs)
        if not objects.is_terminating(rs):
            if len(pods) < want:
                for _ in range(want - len(pods)):
                    self._create_pod(rs)
                pods = self._active_pods(rs)
            elif len(pods) > want:
                for pod in deletion_order(pods)[: len(pods) - want]:
                    self._delete_pod(rs, pod)
                pods = self._active_pods(rs)
        status, wait = replica_status(rs, pods, objects.now().timestamp())
        if (rs.get("status") or {}) != status:
            updated = copy.deepcopy(rs)
            updated["status"] = status
            self.store.update(registry.REPLICASETS, updated, subresource="status")
        # Ready transition times have one-second resolution: look again just after
        return None if wait is None else wait + 0.05

    def _active_pods(self, rs: Obj) -> list[Obj]:
        uid = rs["metadata"]["uid"]
        pods = self.store.list(registry.PODS, rs["metadata"]["namespace"])[0]
        return [p for p in pods if objects.controller_uid(p) == uid and objects.pod_is_active(p)]

    def _pod_for(self, rs: Obj) -> Obj:
        template = copy.deepcopy(rs["spec"].get("template") or {})
        tmeta = template.get("metadata") or {}
        spec = template.get("spec") or {}
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("terminationGracePeriodSeconds", 30)
        spec.setdefault("dnsPolicy", "ClusterFirst")
        spec.setdefault("schedulerName", "default-scheduler")
        spec.setdefault("serviceAccountName", "default")
        spec["nodeName"] = self.settings.node_name
        meta: Obj = {
            "generateName": rs["metadata"]["name"] + "-",
            "namespace": rs["metadata"]["namespace"],
            "labels": dict(tmeta.get("labels") or {}),
            "ownerReferences": [objects.owner_reference(rs)],
        }
        if tmeta.get("annotations"):
            meta["annotations"] = dict(tmeta["annotations"])
        at = objects.rfc3339(objects.now())
        return {
            "metadata": meta,
            "spec": spec,
            "status": {
                "phase": "Pending",
                "conditions": [
                    {
                        "type": "PodScheduled",
                        "status": "True",
                        "lastProbeTime": None,
                        "lastTransitionTime": at,
                    }
                ],
                "qosClass": qos_class(spec),
            },
        }

    def _create_pod(self, rs: Obj) -> None:
        pod = self._pod_for(rs)
        for _ in range(10):
            suffix = "".join(self.rng.choices(rollout.SAFE_ALPHABET, k=5))
            pod["metadata"]["name"] = pod["metadata"]["generateName"] + suffix
            try:
                created = self.store.create(registry.PODS, pod)
            except kstore.AlreadyExists:
                continue
            events.record(
                self.store,
                rs,
                events.NORMAL,
                "SuccessfulCreate",
                f"Created pod: {created['metadata']['name']}",
                component=COMPONENT,
            )
            return
        log.error("replicaset %s: no free pod name after 10 tries", rs["metadata"]["name"])

    def _delete_pod(self, rs: Obj, pod: Obj) -> None:
        try:
            self.store.delete(registry.PODS, pod["metadata"]["namespace"], pod["metadata"]["name"])
        except kstore.NotFound:
            return
        events.record(
            self.store,
            rs,
            events.NORMAL,
            "SuccessfulDelete",
            f"Deleted pod: {pod['metadata']['name']}",
            component=COMPONENT,
        )


def qos_class(spec: Obj) -> str:
    """Kubernetes' pod QoS class from the containers' resources."""
    containers = list(spec.get("containers") or ())
    requests_any = False
    guaranteed = bool(containers)
    for container in containers:
        res = container.get("resources") or {}
        requests, limits = res.get("requests") or {}, res.get("limits") or {}
        if requests or limits:
            requests_any = True
        has_both = {"cpu", "memory"} <= set(limits)
        if not has_both or any(requests.get(k, limits[k]) != limits[k] for k in ("cpu", "memory")):
            guaranteed = False
    if guaranteed:
        return "Guaranteed"
    return "Burstable" if requests_any else "BestEffort"
