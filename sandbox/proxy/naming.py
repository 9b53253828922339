"""In-cluster names → endpoint addresses: what cluster DNS + kube-proxy do for a pod.

Which hosts are in-cluster names (the rest are dialled as they are):

* ``<service>.<namespace>.svc.cluster.local`` and ``<service>.<namespace>.svc``;
* ``<service>.<namespace>`` — any two-label host, as a pod's DNS search list
  (``<ns>.svc.cluster.local svc.cluster.local cluster.local``) makes it one. The sandbox has no
  outside network, so a two-label host that is not a Service is an error, not an outside site;
* not IP literals, not ``localhost``, not single labels, not other dotted names.

Resolution (pure; ``resolve`` is given the watched Services and Endpoints): the URL's port (80
when absent) must be one of the Service's ports; the addresses are the ready addresses of its
Endpoints on the port named like that Service port (kube-proxy's rule). ``ExternalName``
Services resolve to their ``externalName`` and the same port.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping
from typing import Any

Obj = dict[str, Any]
Key = tuple[str, str]


class ResolveError(Exception):
    """An in-cluster name that does not lead to an endpoint; ``status`` is the HTTP answer."""

    def __init__(self, message: str, status: int = 502) -> None:
        super().__init__(message)
        self.status = status


@dataclasses.dataclass(frozen=True)
class ServiceName:
    service: str
    namespace: str

    def __str__(self) -> str:
        return f"{self.service}.{self.namespace}"


def cluster_name(host: str) -> ServiceName | None:
    """The Service a host names, or ``None`` when the host is not an in-cluster name."""
    host = host.rstrip(".").lower()
    if not host or host == "localhost":
        return None
    try:
        ipaddress.ip_address(host.strip("[]"))
        return None
    except ValueError:
        pass
    labels = host.split(".")
    if labels[2:] == ["svc", "cluster", "local"] and len(labels) == 5:
        return ServiceName(labels[0], labels[1])
    if labels[2:] == ["svc"] and len(labels) == 3:
        return ServiceName(labels[0], labels[1])
    if len(labels) == 2 and all(labels):
        return ServiceName(labels[0], labels[1])
    return None


def resolve(
    name: ServiceName,
    port: int,
    services: Mapping[Key, Obj],
    endpoints: Mapping[Key, Obj],
) -> list[tuple[str, int]]:
    """The addresses behind ``name:port``; ``ResolveError`` says why there are none."""
    service = services.get((name.namespace, name.service))
    if service is None:
        raise ResolveError(
            f"no service {name.service!r} in namespace {name.namespace!r} (host {name})"
        )
    spec = service.get("spec") or {}
    if spec.get("type") == "ExternalName" and spec.get("externalName"):
        return [(str(spec["externalName"]), port)]
    svc_port = next((p for p in spec.get("ports") or [] if p.get("port") == port), None)
    if svc_port is None:
        known = [p.get("port") for p in spec.get("ports") or []]
        raise ResolveError(
            f"service {name.namespace}/{name.service} has no port {port} (ports: {known})"
        )
    port_name = svc_port.get("name") or ""
    addresses: list[tuple[str, int]] = []
    for subset in (endpoints.get((name.namespace, name.service)) or {}).get("subsets") or []:
        ports = [p for p in subset.get("ports") or [] if (p.get("name") or "") == port_name]
        if not ports:
            continue
        for address in subset.get("addresses") or []:
            if address.get("ip"):
                addresses.append((address["ip"], int(ports[0]["port"])))
    if not addresses:
        raise ResolveError(
            f"service {name.namespace}/{name.service} port {port} has no ready endpoints",
            status=503,
        )
    return addresses
