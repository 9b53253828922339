"""The ``apisix.apache.org/v2`` ApisixUpstream (ingress-controller CRD), for its CRD and checks.

An ApisixUpstream either configures the upstreams of the Service of the same name (load
balancer, retries, timeouts, scheme, Host passing, subsets by pod labels, per-port settings)
or, with ``externalNodes``, is an upstream of its own that ApisixRoute rules name in
``http[].upstreams[]``: Domain nodes (a host name or IP) and ExternalName Services.
``healthCheck`` is kept free-form.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from libs import errors
from libs.model import meta, structural
from libs.model.apisixroute import NonEmpty


class ExternalNode(meta.Model, frozen=True):
    """One external node: a Domain (host name or IP) or an ExternalName Service."""

    name: NonEmpty
    type: Literal["Domain", "Service"] = "Domain"
    weight: meta.NonNegative | None = None
    port: meta.Port | None = None


class LoadBalancer(meta.Model, frozen=True):
    """How a node is picked; ``hashOn`` and ``key`` are for ``chash``."""

    type: Literal["roundrobin", "chash", "ewma", "least_conn"]
    hash_on: Literal["vars", "header", "cookie", "consumer", "vars_combinations"] | None = None
    key: str | None = None


class UpstreamTimeout(meta.Model, frozen=True):
    """Connect, send and read timeouts (durations such as ``5s``)."""

    connect: str | None = None
    send: str | None = None
    read: str | None = None


class Subset(meta.Model, frozen=True):
    """A named group of the Service's pods, chosen by labels (``backends[].subset``)."""

    name: NonEmpty
    labels: dict[str, str]


class Discovery(meta.Model, frozen=True):
    """Service discovery by APISIX itself (kept for completeness; the sandbox has none)."""

    service_name: NonEmpty
    type: NonEmpty
    args: dict[str, str] | None = None


class UpstreamSettings(meta.Model, frozen=True):
    """How APISIX reaches the upstream: the settings an object and each port may carry."""

    loadbalancer: LoadBalancer | None = None
    scheme: Literal["http", "https", "grpc", "grpcs"] | None = None
    retries: meta.NonNegative | None = None
    timeout: UpstreamTimeout | None = None
    health_check: dict[str, Any] | None = None
    tls_secret: dict[str, Any] | None = None
    subsets: tuple[Subset, ...] = ()
    pass_host: Literal["pass", "node", "rewrite"] | None = None
    upstream_host: str | None = None


class PortLevelSettings(UpstreamSettings, frozen=True, kw_only=True):
    """Settings for one Service port, overriding the object's own."""

    port: meta.Port


class ApisixUpstreamSpec(UpstreamSettings, frozen=True, kw_only=True):
    """``spec`` of an ApisixUpstream."""

    ingress_class_name: str | None = None
    external_nodes: tuple[ExternalNode, ...] = ()
    discovery: Discovery | None = None
    port_level_settings: tuple[PortLevelSettings, ...] = ()


class ApisixUpstreamStatus(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Status written by the ingress controller (kept loosely typed)."""

    conditions: tuple[dict[str, Any], ...] = ()


class ApisixUpstream(meta.Object, frozen=True):
    """An ApisixUpstream object."""

    spec: ApisixUpstreamSpec
    status: ApisixUpstreamStatus | None = None


def parse_apisix_upstream(obj: dict[str, Any]) -> ApisixUpstream:
    """Validate and decode one ApisixUpstream; ``InvalidInput`` lists every problem, each
    with its field path (``spec.externalNodes[0].type: expected one of ...``)."""
    issues, cleaned = structural.check(obj, ApisixUpstream)
    messages = [f"{i.path}: {i.message}" for i in issues]
    spec = obj.get("spec") if isinstance(obj, dict) else None
    if isinstance(spec, dict):
        messages += [f"spec.{m}" for m in _semantic(spec)]
        for i, settings in enumerate(spec.get("portLevelSettings") or []):
            if isinstance(settings, dict):
                messages += [f"spec.portLevelSettings[{i}].{m}" for m in _semantic(settings)]
    if messages or cleaned is None:
        first = messages[0] if messages else ": invalid object"
        path, _, expected = first.partition(": ")
        raise errors.InvalidInput("\n".join(messages) or first, path=path, expected=expected)
    result: ApisixUpstream = structural.decode(cleaned, ApisixUpstream)
    return result


def _semantic(config: dict[str, Any]) -> list[str]:
    """Rules beyond the structure: chash needs ``key``; ``rewrite`` needs ``upstreamHost``."""
    out = []
    lb = config.get("loadbalancer")
    if isinstance(lb, dict) and lb.get("type") == "chash" and not lb.get("key"):
        out.append("loadbalancer.key: expected a key for type chash")
    if config.get("passHost") == "rewrite" and not config.get("upstreamHost"):
        out.append("upstreamHost: expected a host for passHost rewrite")
    return out
