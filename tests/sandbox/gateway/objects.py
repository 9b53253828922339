"""Builders of the Kubernetes objects the gateway tests feed to the translation and the cluster."""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]


def service(
    name: str,
    namespace: str = "test",
    ports: list[tuple[str, int, int | str]] | None = None,
    cluster_ip: str = "10.96.0.10",
) -> Obj:
    """``ports``: (name, port, targetPort) triples; default one unnamed port 80 → 9898."""
    ports = ports if ports is not None else [("", 80, 9898)]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "clusterIP": cluster_ip,
            "ports": [
                {
                    k: v
                    for k, v in (
                        ("name", pname),
                        ("port", port),
                        ("targetPort", target),
                        ("protocol", "TCP"),
                    )
                    if v != ""
                }
                for pname, port, target in ports
            ],
        },
    }


def endpoints(
    name: str,
    namespace: str = "test",
    addresses: list[str] | None = None,
    ports: list[tuple[str, int]] | None = None,
    not_ready: list[str] | None = None,
) -> Obj:
    """``ports``: (name, port) pairs; default one unnamed port 9898."""
    ports = ports if ports is not None else [("", 9898)]
    subset: Obj = {
        "addresses": [{"ip": ip} for ip in addresses or []],
        "ports": [
            {k: v for k, v in (("name", pname), ("port", port), ("protocol", "TCP")) if v != ""}
            for pname, port in ports
        ],
    }
    if not_ready:
        subset["notReadyAddresses"] = [{"ip": ip} for ip in not_ready]
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": name, "namespace": namespace},
        "subsets": [subset] if (addresses or not_ready) else [],
    }


def backend(
    service_name: str, port: int | str = 80, weight: int | None = None, **extra: Any
) -> Obj:
    out: Obj = {"serviceName": service_name, "servicePort": port, **extra}
    if weight is not None:
        out["weight"] = weight
    return out


def rule(
    name: str = "podinfo",
    paths: list[str] | None = None,
    backends: list[Obj] | None = None,
    prometheus: bool = True,
    **extra: Any,
) -> Obj:
    match = {"paths": paths or ["/*"]}
    match.update(extra.pop("match", {}))
    out: Obj = {"name": name, "match": match, "backends": backends or [backend("podinfo")], **extra}
    if prometheus:
        out.setdefault("plugins", []).append(
            {
                "name": "prometheus",
                "enable": True,
                "config": {"disable": False, "prefer_name": True},
            }
        )
    return out


def apisix_route(name: str, rules: list[Obj], namespace: str = "test") -> Obj:
    return {
        "apiVersion": "apisix.apache.org/v2",
        "kind": "ApisixRoute",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"http": rules},
    }


def by_key(*objs: Obj) -> dict[tuple[str, str], Obj]:
    return {(o["metadata"].get("namespace", ""), o["metadata"]["name"]): o for o in objs}
