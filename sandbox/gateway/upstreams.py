"""Upstreams as apisix-ingress-controller builds them: from Services, their ApisixUpstream, and
external ApisixUpstreams; pure functions over plain dicts.

* A backend's upstream (``translate_backend``) has the ready endpoint addresses of its Service
  (see ``translation``). An ApisixUpstream **named like the Service**, in its namespace,
  configures it: ``loadbalancer`` (``roundrobin``, ``chash`` with ``hashOn`` vars|header|cookie|
  consumer|vars_combinations and ``key``, ``ewma``, ``least_conn``), ``scheme``, ``retries``,
  ``timeout``, ``passHost``/``upstreamHost``, ``healthCheck`` (``checks``, the ``checks``
  module; run by ``health``); a ``portLevelSettings`` entry for the Service port
  replaces those settings whole. ``backends[].subset`` keeps only the endpoints of pods whose
  labels include the subset's ``labels``; a subset not listed keeps every endpoint, and a subset
  named without any ApisixUpstream gives no nodes (the controller's behaviour).
* ``http[].upstreams[]`` names an ApisixUpstream with ``externalNodes`` (``translate_external``):
  a ``Domain`` node is its name (an IP or a host name, resolved by the data plane per request as
  APISIX resolves domain nodes), a ``Service`` node the ``externalName`` of that ExternalName
  Service; the port defaults by scheme (http 80, https 443); weight default 100. The upstream is
  named ``<namespace>_<apisixupstream>``. One that does not exist, has no externalNodes, or
  names a missing or non-ExternalName Service raises ``ExternalUpstreamError``.

Bad settings raise ``TranslationError`` with the field path; the controller then rejects the
ApisixRoute whose backend uses that Service (``BackendNotFound``'s treatment).
"""

from __future__ import annotations

import dataclasses
import re
import zlib
from collections.abc import Mapping
from typing import Any

from sandbox.gateway import checks as health_checks

Obj = dict[str, Any]
Key = tuple[str, str]

DEFAULT_WEIGHT = 100  # apisix-ingress-controller's _defaultWeight
DEFAULT_UPSTREAM_TIMEOUT = 60.0  # seconds, APISIX's default connect/send/read timeout
LB_TYPES = ("roundrobin", "chash", "ewma", "least_conn")
HASH_ON = ("vars", "header", "cookie", "consumer", "vars_combinations")
SCHEMES = ("http", "https", "grpc", "grpcs")
SCHEME_PORTS = {"http": 80, "grpc": 80, "https": 443, "grpcs": 443}
PASS_HOST = ("pass", "node", "rewrite")


class TranslationError(Exception):
    """A rule that cannot become an APISIX route; the message names the field path."""


class BackendNotFound(TranslationError):
    """A backend's Service, or its port, does not exist: the whole ApisixRoute is rejected."""


class ExternalUpstreamError(TranslationError):
    """An ``upstreams[]`` entry the controller cannot translate (it skips it and logs)."""


@dataclasses.dataclass(frozen=True)
class Node:
    """One upstream node: ``host:port`` is what APISIX reports (``node`` label)."""

    host: str
    port: int
    # Where connections really go when ``host`` is a Service ClusterIP (kube-proxy emulation);
    # empty when the node is dialled directly.
    via: tuple[tuple[str, int], ...] = ()
    # The node's weight in its upstream (Admin API and external nodes; endpoints all weigh 100).
    weight: int = DEFAULT_WEIGHT

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclasses.dataclass(frozen=True)
class Timeout:
    connect: float = DEFAULT_UPSTREAM_TIMEOUT
    send: float = DEFAULT_UPSTREAM_TIMEOUT
    read: float = DEFAULT_UPSTREAM_TIMEOUT


@dataclasses.dataclass(frozen=True)
class Settings:
    """What an ApisixUpstream configures on an upstream (APISIX's defaults otherwise)."""

    type: str = "roundrobin"
    hash_on: str = "vars"
    key: str = ""
    scheme: str = "http"
    retries: int | None = None  # None: APISIX tries every node once (#nodes - 1 retries)
    timeout: Timeout | None = None  # None: the route's timeout, else APISIX's 60 s
    pass_host: str = "pass"
    upstream_host: str = ""
    checks: health_checks.Checks | None = None  # ``healthCheck`` (``checks``)

    def to_json(self) -> Obj:
        out: Obj = {"type": self.type, "scheme": self.scheme, "pass_host": self.pass_host}
        if self.type == "chash":
            out |= {"hash_on": self.hash_on, "key": self.key}
        if self.retries is not None:
            out["retries"] = self.retries
        if self.timeout is not None:
            out["timeout"] = dataclasses.asdict(self.timeout)
        if self.upstream_host:
            out["upstream_host"] = self.upstream_host
        if self.checks is not None:
            out["checks"] = self.checks.to_json()
        return out


DEFAULT_SETTINGS = Settings()


@dataclasses.dataclass(frozen=True)
class WeightedUpstream:
    upstream: Upstream
    weight: int


@dataclasses.dataclass(frozen=True)
class Upstream:
    name: str
    service: str  # the Service, or the ApisixUpstream of an external upstream
    service_port: int | str  # as written in the backend (0 for an external upstream)
    resolve_granularity: str  # "endpoints" or "service" ("" for an external upstream)
    subset: str
    nodes: tuple[Node, ...]
    error: str = ""  # why there are no nodes
    settings: Settings = DEFAULT_SETTINGS
    external: bool = False  # from an ApisixUpstream's externalNodes

    @property
    def id(self) -> str:
        return gen_id(self.name)


def gen_id(raw: str) -> str:
    """apisix-ingress-controller's ``id.GenID``: CRC-32 (IEEE) of the name, lowercase hex."""
    return format(zlib.crc32(raw.encode()), "x") if raw else ""


def compose_upstream_name(
    namespace: str, service: str, subset: str, port: int, granularity: str
) -> str:
    parts = [namespace, service] + ([subset] if subset else []) + [str(port)]
    if granularity == "service":
        parts.append("service")
    return "_".join(parts)


def compose_external_upstream_name(namespace: str, apisixupstream: str) -> str:
    return f"{namespace}_{apisixupstream}"


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str, path: str) -> float:
    """A Go ``time.Duration`` string (``"5s"``, ``"1m30s"``, ``"500ms"``) in seconds."""
    pos, total = 0, 0.0
    text = text.strip()
    while pos < len(text):
        m = _DURATION_PART.match(text, pos)
        if not m:
            raise TranslationError(f"Expected a duration such as '5s', got {text!r} - at {path}")
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if not text:
        raise TranslationError(f"Expected a duration such as '5s', got '' - at {path}")
    return total


def parse_timeout(spec: Obj | None, path: str) -> Timeout | None:
    """``{connect, send, read}`` durations; unset or zero ones stay at APISIX's 60 s."""
    if not spec:
        return None
    if not isinstance(spec, Mapping):
        raise TranslationError(f"Expected an object, got {spec!r} - at {path}")
    values = {}
    for field in ("connect", "send", "read"):
        if spec.get(field):
            seconds = parse_duration(str(spec[field]), f"{path}.{field}")
            if seconds > 0:
                values[field] = seconds
    return Timeout(**values)


def parse_settings(config: Obj, path: str) -> Settings:
    """An ApisixUpstream's (or one of its ``portLevelSettings``') upstream settings."""
    lb = config.get("loadbalancer") or {}
    if not isinstance(lb, Mapping):
        raise TranslationError(f"Expected an object, got {lb!r} - at {path}.loadbalancer")
    lb_type = lb.get("type") or "roundrobin"
    if lb_type not in LB_TYPES:
        raise TranslationError(
            f"Expected loadbalancer type one of {'|'.join(LB_TYPES)}, got {lb_type!r}"
            f" - at {path}.loadbalancer.type"
        )
    hash_on, key = "vars", ""
    if lb_type == "chash":
        hash_on = lb.get("hashOn") or "vars"
        if hash_on not in HASH_ON:
            raise TranslationError(
                f"Expected hashOn one of {'|'.join(HASH_ON)}, got {hash_on!r}"
                f" - at {path}.loadbalancer.hashOn"
            )
        key = str(lb.get("key") or "")
        if not key:
            raise TranslationError(f"Expected a key for type chash - at {path}.loadbalancer.key")
    scheme = config.get("scheme") or "http"
    if scheme not in SCHEMES:
        raise TranslationError(
            f"Expected scheme one of {'|'.join(SCHEMES)}, got {scheme!r} - at {path}.scheme"
        )
    retries = config.get("retries")
    if retries is not None and (
        isinstance(retries, bool) or not isinstance(retries, int) or retries < 0
    ):
        raise TranslationError(f"Expected an integer >= 0, got {retries!r} - at {path}.retries")
    pass_host = config.get("passHost") or "pass"
    if pass_host not in PASS_HOST:
        raise TranslationError(
            f"Expected passHost one of {'|'.join(PASS_HOST)}, got {pass_host!r} - at {path}.passHost"
        )
    upstream_host = str(config.get("upstreamHost") or "")
    if pass_host == "rewrite" and not upstream_host:
        raise TranslationError(
            f"Expected an upstreamHost for passHost rewrite - at {path}.upstreamHost"
        )
    try:
        checks = health_checks.parse_checks(
            config.get("healthCheck"), f"{path}.healthCheck", parse_duration
        )
    except health_checks.CheckError as e:
        raise TranslationError(str(e)) from e
    return Settings(
        type=lb_type,
        hash_on=hash_on,
        key=key,
        scheme=scheme,
        retries=retries,
        timeout=parse_timeout(config.get("timeout"), f"{path}.timeout"),
        pass_host=pass_host,
        upstream_host=upstream_host,
        checks=checks,
    )


def _apisix_upstream_path(au: Obj) -> str:
    meta = au.get("metadata") or {}
    return f"ApisixUpstream {meta.get('namespace') or 'default'}/{meta.get('name') or ''}: $.spec"


def service_settings(au: Obj | None, port: int) -> Settings:
    """The settings the ApisixUpstream named like a Service gives that Service's ``port``."""
    if au is None:
        return DEFAULT_SETTINGS
    spec = au.get("spec") or {}
    path = _apisix_upstream_path(au)
    for i, pls in enumerate(spec.get("portLevelSettings") or []):
        if isinstance(pls, Mapping) and pls.get("port") == port:
            return parse_settings(dict(pls), f"{path}.portLevelSettings[{i}]")
    return parse_settings(spec, path)


def subset_labels(au: Obj | None, subset: str) -> Mapping[str, str] | None:
    """The labels of ``subset`` in the ApisixUpstream (None: not listed, keep every node)."""
    for entry in ((au or {}).get("spec") or {}).get("subsets") or []:
        if isinstance(entry, Mapping) and entry.get("name") == subset:
            labels = entry.get("labels") or {}
            return {str(k): str(v) for k, v in labels.items()}
    return None


def pod_labels_by_ip(pods: Mapping[Key, Obj]) -> dict[Key, Mapping[str, str]]:
    """(namespace, pod IP) → the pod's labels, as the controller's pod cache finds them."""
    out: dict[Key, Mapping[str, str]] = {}
    for (namespace, _), pod in pods.items():
        ip = (pod.get("status") or {}).get("podIP")
        if ip:
            out[(namespace, ip)] = (pod.get("metadata") or {}).get("labels") or {}
    return out


def translate_backend(
    namespace: str,
    backend: Obj,
    services: Mapping[Key, Obj],
    endpoints: Mapping[Key, Obj],
    path: str,
    apisix_upstreams: Mapping[Key, Obj] | None = None,
    pods: Mapping[Key, Mapping[str, str]] | None = None,
) -> Upstream:
    """A backend's upstream; ``pods`` is ``pod_labels_by_ip``'s map (for subsets)."""
    service_name = backend.get("serviceName") or ""
    if not service_name:
        raise TranslationError(f"Expected a serviceName - at {path}.serviceName")
    port_ref = backend.get("servicePort")
    if port_ref is None or port_ref == "":
        raise TranslationError(f"Expected a servicePort (number or name) - at {path}.servicePort")
    if isinstance(port_ref, str) and port_ref.isdigit():
        port_ref = int(port_ref)
    granularity = backend.get("resolveGranularity") or "endpoints"
    if granularity not in ("endpoints", "service"):
        raise TranslationError(
            f"Expected resolveGranularity endpoints|service, got {granularity!r} - at {path}.resolveGranularity"
        )
    subset = backend.get("subset") or ""

    service = services.get((namespace, service_name))
    if service is None:
        raise BackendNotFound(
            f"service {namespace}/{service_name} not found - at {path}.serviceName"
        )
    svc_port = _service_port(service, port_ref)
    if svc_port is None:
        raise BackendNotFound(
            f"port {port_ref!r} not defined in service {namespace}/{service_name}"
            f" - at {path}.servicePort"
        )
    number = int(svc_port.get("port") or 0)
    name = compose_upstream_name(namespace, service_name, subset, number, granularity)
    au = (apisix_upstreams or {}).get((namespace, service_name))
    settings = service_settings(au, number)
    pod_nodes = _endpoint_nodes(
        endpoints.get((namespace, service_name)), svc_port.get("name") or ""
    )
    if subset:
        labels = subset_labels(au, subset)
        if au is None:
            pod_nodes = ()
        elif labels is not None:
            found = pods or {}
            pod_nodes = tuple(
                n
                for n in pod_nodes
                if all(found.get((namespace, n.host), {}).get(k) == v for k, v in labels.items())
                and (namespace, n.host) in found
            )
    error = (
        ""
        if pod_nodes
        else f"no ready endpoints for service {namespace}/{service_name} port {number}"
        + (f" subset {subset}" if subset else "")
    )
    nodes = pod_nodes
    if granularity == "service":
        cluster_ip = (service.get("spec") or {}).get("clusterIP") or ""
        if not cluster_ip or cluster_ip == "None":
            nodes, error = (), f"service {namespace}/{service_name} has no clusterIP"
        else:
            via = tuple((n.host, n.port) for n in pod_nodes)
            nodes = (Node(cluster_ip, number, via),)
            error = ""  # APISIX sees its one node; an empty Service refuses connections (502)
    return Upstream(
        name=name,
        service=service_name,
        service_port=port_ref,
        resolve_granularity=granularity,
        subset=subset,
        nodes=nodes,
        error=error,
        settings=settings,
    )


def translate_external(
    namespace: str,
    name: str,
    apisix_upstreams: Mapping[Key, Obj],
    services: Mapping[Key, Obj],
    path: str,
) -> Upstream:
    """The upstream of the ApisixUpstream ``namespace/name`` named in ``upstreams[]``."""
    au = apisix_upstreams.get((namespace, name))
    if au is None:
        raise ExternalUpstreamError(f"ApisixUpstream {namespace}/{name} not found - at {path}.name")
    spec = au.get("spec") or {}
    external = spec.get("externalNodes") or []
    if not external:
        raise ExternalUpstreamError(
            f"ApisixUpstream {namespace}/{name} has no externalNodes - at {path}.name"
        )
    au_path = _apisix_upstream_path(au)
    settings = parse_settings(spec, au_path)
    nodes: list[Node] = []
    for i, entry in enumerate(external):
        at = f"{au_path}.externalNodes[{i}]"
        node_type, node_name = entry.get("type") or "Domain", str(entry.get("name") or "")
        weight = entry.get("weight", DEFAULT_WEIGHT)
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
            raise ExternalUpstreamError(
                f"Expected an integer >= 0, got {weight!r} - at {at}.weight"
            )
        port = entry.get("port") or SCHEME_PORTS[settings.scheme]
        if node_type == "Domain":
            if not _HOST.match(node_name):
                raise ExternalUpstreamError(
                    f"Expected a lowercase RFC 1123 host name or IP, got {node_name!r} - at {at}.name"
                )
            host = node_name
        elif node_type == "Service":
            svc = services.get((namespace, node_name))
            if svc is None:
                raise ExternalUpstreamError(
                    f"service {namespace}/{node_name} not found - at {at}.name"
                )
            svc_spec = svc.get("spec") or {}
            if svc_spec.get("type") != "ExternalName" or not svc_spec.get("externalName"):
                raise ExternalUpstreamError(
                    f"service {namespace}/{node_name} is not an ExternalName service - at {at}.name"
                )
            host = str(svc_spec["externalName"])
        else:
            raise ExternalUpstreamError(
                f"Expected type Domain|Service, got {node_type!r} - at {at}.type"
            )
        nodes.append(Node(host, int(port), weight=weight))
    return Upstream(
        name=compose_external_upstream_name(namespace, name),
        service=name,
        service_port=0,
        resolve_granularity="",
        subset="",
        nodes=tuple(nodes),
        settings=settings,
        external=True,
    )


_HOST = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _service_port(service: Obj, port_ref: int | str) -> Obj | None:
    for port in (service.get("spec") or {}).get("ports") or []:
        if isinstance(port_ref, int) and port.get("port") == port_ref:
            return port  # type: ignore[no-any-return]
        if isinstance(port_ref, str) and port.get("name") == port_ref:
            return port  # type: ignore[no-any-return]
    return None


def _endpoint_nodes(ep: Obj | None, port_name: str) -> tuple[Node, ...]:
    """Ready addresses on the endpoints port named like the Service port (all subsets)."""
    if not ep:
        return ()
    nodes: list[Node] = []
    for subset in ep.get("subsets") or []:
        ports = [p for p in subset.get("ports") or [] if (p.get("name") or "") == port_name]
        if not ports:
            continue
        for address in subset.get("addresses") or []:
            ip = address.get("ip")
            if ip:
                nodes.append(Node(ip, int(ports[0]["port"])))
    return tuple(nodes)
