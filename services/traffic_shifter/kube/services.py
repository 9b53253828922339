"""The apex, primary and canary Services (Flagger's ``pkg/router/kubernetes_default.go``).

=====================  ==========================  =============================
Service                selects pods labelled       labels (plus spec.service.<x>)
=====================  ==========================  =============================
``<svc>-canary``       ``<label>: <value>``        ``<label>: <svc>-canary``
``<svc>-primary``      ``<label>: <value>-primary`` ``<label>: <svc>-primary``
``<svc>`` (apex)       ``<label>: <value>-primary`` ``<label>: <svc>``
=====================  ==========================  =============================

``<label>``/``<value>`` is the target's selector label (the first of ``app``, ``name``,
``app.kubernetes.io/name`` its ``matchLabels`` has). One port: ``spec.service.portName``
(default ``http``), TCP, ``port``, ``targetPort`` (default the port), ``appProtocol`` when
set; with ``portDiscovery`` also every other container port. ClusterIP, or headless.

A missing Service is created owned by the Canary. An existing one gets the wanted ports
(node ports kept) and selector; its labels and annotations are managed only when the Canary
owns it (keys listed in ``unmanagedMetadata`` keep their values) — so a user's own apex
Service is taken over for routing but never owned, and deleting the Canary leaves it in place.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from libs.adapters import kubernetes
from libs.model import canary as canary_model
from libs.model import meta as meta_model
from services.traffic_shifter.kube import objects

Obj = dict[str, Any]
SIDECARS = frozenset({"istio-proxy", "envoy"})


@dataclasses.dataclass(frozen=True)
class Selector:
    """The target's selector label and value."""

    label: str
    value: str

    @property
    def primary(self) -> str:
        return f"{self.value}-primary"


def discovered_ports(target_port: int | str, pod_spec: Obj) -> dict[str, int]:
    """``portDiscovery``: every container port but the service's own (Flagger's ``getPorts``)."""
    ports: dict[str, int] = {}
    for container in pod_spec.get("containers") or []:
        if container.get("name") in SIDECARS:
            continue
        for i, port in enumerate(container.get("ports") or []):
            number = port.get("containerPort")
            if not isinstance(number, int):
                continue
            if isinstance(target_port, int) and number == target_port:
                continue
            if isinstance(target_port, str) and port.get("name") == target_port:
                continue
            ports[port.get("name") or f"tcp-{container.get('name')}-{i}"] = number
    return ports


def ports(
    canary: canary_model.Canary, port: int, target_port: int | str, extra: dict[str, int]
) -> list[Obj]:
    main: Obj = {
        "name": canary.port_name(),
        "protocol": "TCP",
        "port": port,
        "targetPort": target_port,
    }
    if canary.spec.service.app_protocol:
        main["appProtocol"] = canary.spec.service.app_protocol
    others = [
        {"name": name, "protocol": "TCP", "port": number, "targetPort": number}
        for name, number in sorted(extra.items())
    ]
    return [main, *others]


def _port_key(port: Obj) -> tuple[Any, ...]:
    return tuple(
        port.get(k) for k in ("port", "name", "protocol", "targetPort", "appProtocol", "nodePort")
    )


def _same_ports(a: list[Obj], b: list[Obj]) -> bool:
    return sorted(map(_port_key, a)) == sorted(map(_port_key, b))


def desired_service(
    canary: canary_model.Canary,
    name: str,
    selector: dict[str, str],
    service_ports: list[Obj],
    metadata: meta_model.ServiceMetadata | None,
    label: str,
    current: Obj | None,
) -> Obj | None:
    """What Service ``name`` should be, given what it is (None: as it is)."""
    labels = {**(metadata.labels if metadata else {}), label: name}
    annotations = objects.filter_metadata(metadata.annotations if metadata else {})
    spec = canary.spec.service
    if current is None:
        body: Obj = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": name,
                "namespace": canary.namespace,
                "labels": labels,
                "annotations": annotations,
                "ownerReferences": [objects.owner_reference(canary)],
            },
            "spec": {"type": "ClusterIP", "selector": selector, "ports": service_ports},
        }
        if spec.headless:
            body["spec"]["clusterIP"] = "None"
        if spec.traffic_distribution:
            body["spec"]["trafficDistribution"] = spec.traffic_distribution
        return body

    updated = copy.deepcopy(current)
    current_spec = current.get("spec") or {}
    node_ports = {
        p.get("name"): p["nodePort"] for p in current_spec.get("ports") or [] if p.get("nodePort")
    }
    wanted_ports = [
        {**p, "nodePort": node_ports[p["name"]]} if p["name"] in node_ports else p
        for p in service_ports
    ]
    changed = False
    if (
        not _same_ports(wanted_ports, current_spec.get("ports") or [])
        or (current_spec.get("selector") or {}) != selector
    ):
        updated.setdefault("spec", {})["ports"] = wanted_ports
        updated["spec"]["selector"] = selector
        changed = True
    meta = objects.meta(updated)
    if objects.owned_by(current, canary):
        unmanaged = spec.unmanaged_metadata
        for key in unmanaged.annotations if unmanaged else ():
            if key in (meta.get("annotations") or {}):
                annotations[key] = meta["annotations"][key]
        for key in unmanaged.labels if unmanaged else ():
            if key in (meta.get("labels") or {}):
                labels[key] = meta["labels"][key]
        if (meta.get("annotations") or {}) != annotations:
            meta["annotations"] = annotations
            changed = True
        if (meta.get("labels") or {}) != labels:
            meta["labels"] = labels
            changed = True
    if not changed:
        return None
    meta["annotations"] = objects.filter_metadata(meta.get("annotations"))
    return updated


async def reconcile(
    store: objects.Objects,
    canary: canary_model.Canary,
    name: str,
    pods: str,
    selector: Selector,
    service_ports: list[Obj],
    metadata: meta_model.ServiceMetadata | None,
) -> Obj:
    """Make Service ``name`` select pods labelled ``<label>: <pods>``."""

    def build(current: Obj | None) -> Obj | None:
        return desired_service(
            canary, name, {selector.label: pods}, service_ports, metadata, selector.label, current
        )

    return await store.ensure(kubernetes.SERVICES, canary.namespace, name, build)
