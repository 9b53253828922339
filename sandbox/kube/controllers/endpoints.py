"""The Endpoints controller, plus ClusterIP allocation for Services.

For each Service with a ``selector`` an Endpoints object of the same name lists the matching
pods that have an IP and are not terminating: Ready ones in ``subsets[].addresses``, the rest in
``notReadyAddresses`` (all in ``addresses`` with ``publishNotReadyAddresses``), each with a
``targetRef`` to its pod. Ports come from the Service's ``targetPort`` (a number, a container
port name looked up in each pod, or the Service port when unset); pods that resolve to the same
ports share a subset, as Kubernetes packs them. Services without a selector keep their
hand-written Endpoints; the Endpoints of a deleted Service are deleted.

A Service of type ClusterIP/NodePort/LoadBalancer without ``spec.clusterIP`` gets one from
``ClusterSettings.service_network`` (``clusterIP: None`` means headless and is left alone). A
real API server allocates it on create; here it appears an instant later.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Iterable
from typing import Any

from sandbox.kube import config as kconfig
from sandbox.kube import registry
from sandbox.kube import store as kstore
from sandbox.kube.controllers import ipam, objects, reconciling
from sandbox.kube.controllers import settings as csettings

log = logging.getLogger(__name__)

Obj = kstore.Obj


def resolve_port(service_port: Obj, pod: Obj) -> int | None:
    target = service_port.get("targetPort")
    if target is None or target == "":
        return int(service_port["port"])
    if isinstance(target, int) or str(target).isdigit():
        return int(target)
    for container in (pod.get("spec") or {}).get("containers") or ():
        for item in container.get("ports") or ():
            if item.get("name") == target and str(item.get("protocol") or "TCP") == str(
                service_port.get("protocol") or "TCP"
            ):
                return int(item["containerPort"])
    return None


def endpoint_subsets(service: Obj, pods: Iterable[Obj]) -> list[Obj]:
    """The ``subsets`` of a selector Service's Endpoints (pure)."""
    spec = service.get("spec") or {}
    selector = spec.get("selector") or {}
    publish_all = bool(spec.get("publishNotReadyAddresses"))
    groups: dict[str, tuple[list[Obj], list[Obj], list[Obj]]] = {}
    for pod in pods:
        meta, status = pod["metadata"], pod.get("status") or {}
        if not objects.map_selector_matches(selector, meta.get("labels") or {}):
            continue
        if not status.get("podIP") or not objects.pod_is_active(pod):
            continue
        ports: list[Obj] = []
        for sp in spec.get("ports") or ():
            number = resolve_port(sp, pod)
            if number is None:
                continue
            port: Obj = {"port": number, "protocol": sp.get("protocol") or "TCP"}
            if sp.get("name"):
                port["name"] = sp["name"]
            if sp.get("appProtocol"):
                port["appProtocol"] = sp["appProtocol"]
            ports.append(port)
        if spec.get("ports") and not ports:
            continue
        ports.sort(key=lambda p: (p.get("name", ""), p["port"]))
        address: Obj = {
            "ip": status["podIP"],
            "targetRef": {
                "kind": "Pod",
                "namespace": meta.get("namespace", ""),
                "name": meta["name"],
                "uid": meta.get("uid", ""),
            },
        }
        node = (pod.get("spec") or {}).get("nodeName")
        if node:
            address["nodeName"] = node
        group = groups.setdefault(repr(ports), ([], [], ports))
        (group[0] if publish_all or objects.pod_is_ready(pod) else group[1]).append(address)
    subsets = []
    for _key, (ready, not_ready, ports) in sorted(groups.items()):
        subset: Obj = {}
        if ready:
            subset["addresses"] = sorted(ready, key=lambda a: _ip_key(a["ip"]))
        if not_ready:
            subset["notReadyAddresses"] = sorted(not_ready, key=lambda a: _ip_key(a["ip"]))
        if ports:
            subset["ports"] = ports
        subsets.append(subset)
    return subsets


def _ip_key(ip: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in ip.split("."))
    except ValueError:
        return (0,)


class EndpointsController:
    def __init__(
        self,
        store: kstore.Store,
        cluster: kconfig.ClusterSettings,
        settings: csettings.ControllerSettings,
    ) -> None:
        self.store = store
        self.ips = ipam.IPAllocator(cluster.service_network, reserved=0)
        self._ip_owner: dict[reconciling.Key, str] = {}  # service key → uid holding an IP
        self.loop = reconciling.WorkLoop("endpoints", store, self.reconcile, settings)
        self.loop.watch(registry.SERVICES)
        self.loop.watch(registry.PODS, self._services_of_pod)

    async def run(self) -> None:
        await self.loop.run()

    def _services_of_pod(self, _event: str, pod: Obj) -> Iterable[reconciling.Key]:
        namespace = pod["metadata"].get("namespace", "")
        for svc in self.store.list(registry.SERVICES, namespace)[0]:
            if (svc.get("spec") or {}).get("selector"):
                yield (namespace, svc["metadata"]["name"])

    def reconcile(self, key: reconciling.Key) -> None:
        namespace, name = key
        try:
            service = self.store.get(registry.SERVICES, namespace, name)
        except kstore.NotFound:
            uid = self._ip_owner.pop(key, None)
            if uid is not None:
                self.ips.release(uid)
            with contextlib.suppress(kstore.NotFound):
                self.store.delete(registry.ENDPOINTS, namespace, name)
            return
        service = self._ensure_cluster_ip(key, service)
        spec = service.get("spec") or {}
        if not spec.get("selector") or spec.get("type") == "ExternalName":
            return
        if objects.is_terminating(service):
            return
        pods = self.store.list(registry.PODS, namespace)[0]
        subsets = endpoint_subsets(service, pods)
        labels = dict(service["metadata"].get("labels") or {})
        if spec.get("clusterIP") == "None":
            labels["service.kubernetes.io/headless"] = ""
        try:
            current = self.store.get(registry.ENDPOINTS, namespace, name)
        except kstore.NotFound:
            current = None
        wanted: Obj = {"metadata": {"name": name, "namespace": namespace, "labels": labels}}
        if subsets:
            wanted["subsets"] = subsets
        if current is None:
            self.store.create(registry.ENDPOINTS, wanted)
            return
        if (
            current.get("subsets") == wanted.get("subsets")
            and (current["metadata"].get("labels") or {}) == labels
        ):
            return
        updated = copy.deepcopy(current)
        updated["metadata"]["labels"] = labels
        updated.pop("subsets", None)
        if subsets:
            updated["subsets"] = subsets
        self.store.update(registry.ENDPOINTS, updated)

    def _ensure_cluster_ip(self, key: reconciling.Key, service: Obj) -> Obj:
        spec: dict[str, Any] = service.get("spec") or {}
        uid = service["metadata"]["uid"]
        previous = self._ip_owner.get(key)
        if previous is not None and previous != uid:  # the Service was replaced
            self.ips.release(previous)
            self._ip_owner.pop(key, None)
        if spec.get("type") == "ExternalName":
            return service
        current = spec.get("clusterIP")
        if current:
            if current != "None" and self.ips.reserve(uid, current):
                self._ip_owner[key] = uid
            return service
        ip = self.ips.allocate(uid)
        self._ip_owner[key] = uid
        updated = copy.deepcopy(service)
        updated.setdefault("spec", {})["clusterIP"] = ip
        updated["spec"]["clusterIPs"] = [ip]
        updated["spec"].setdefault("type", "ClusterIP")
        return self.store.update(registry.SERVICES, updated)
