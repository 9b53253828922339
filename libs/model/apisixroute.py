"""The ``apisix.apache.org/v2`` ApisixRoute (ingress-controller CRD), for light checks and its CRD.

Sluice reads the route named by a Canary's ``routeRef`` and generates the canary route from
its first HTTP rule whose single backend is the apex service (``canary_rule``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from libs.model import meta

API_VERSION = "apisix.apache.org/v2"
KIND = "ApisixRoute"

ExprOp = Literal[
    "Equal",
    "NotEqual",
    "GreaterThan",
    "LessThan",
    "In",
    "NotIn",
    "RegexMatch",
    "RegexNotMatch",
    "RegexMatchCaseInsensitive",
    "RegexNotMatchCaseInsensitive",
]
Method = Literal["CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"]
NonEmpty = Annotated[str, msgspec.Meta(min_length=1, extra={"expected": "a non-empty string"})]
Path = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^/[a-zA-Z0-9\-._~%!$&'()+,;=:@/]*\*?$",
        extra={"expected": "a path starting with / (a trailing * matches a prefix)"},
    ),
]


class ExprSubject(meta.Model, frozen=True):
    """What an expression reads: a header, query argument, cookie or the path."""

    scope: Literal["Header", "Query", "Cookie", "Path"]
    name: str | None = None


class Expr(meta.Model, frozen=True):
    """One ``match.exprs`` entry: ``subject op value`` or ``subject op set``."""

    subject: ExprSubject
    op: ExprOp
    value: str | None = None
    set: tuple[str, ...] | None = None


class HttpMatch(meta.Model, frozen=True):
    """Request conditions of an HTTP rule."""

    paths: tuple[Path, ...]
    methods: tuple[Method, ...] = ()
    hosts: tuple[str, ...] = ()
    remote_addrs: tuple[str, ...] = ()
    exprs: tuple[Expr, ...] = ()
    filter_func: str | None = msgspec.field(default=None, name="filter_func")


class Backend(meta.Model, frozen=True):
    """A Kubernetes Service backend (same namespace) and its traffic weight."""

    service_name: NonEmpty
    service_port: meta.Port | str
    resolve_granularity: Literal["endpoint", "service"] | None = None
    weight: meta.NonNegative | None = None
    subset: str | None = None


class Upstream(meta.Model, frozen=True):
    """An ApisixUpstream reference (external upstreams) with a weight."""

    name: str
    weight: meta.NonNegative | None = None


class Plugin(meta.Model, frozen=True):
    """A plugin on the rule; ``config`` is the plugin's own JSON."""

    name: NonEmpty
    enable: bool
    config: dict[str, Any] | None = None
    secret_ref: str | None = None


class Timeout(meta.Model, frozen=True):
    """Upstream timeouts of a rule (durations such as ``60s``)."""

    connect: str | None = None
    send: str | None = None
    read: str | None = None


class Authentication(msgspec.Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    """Rule authentication (basicAuth, keyAuth, jwtAuth, ...); other keys are tolerated."""

    enable: bool
    type: str | None = None
    key_auth: dict[str, Any] | None = None
    jwt_auth: dict[str, Any] | None = None
    ldap_auth: dict[str, Any] | None = None


class HttpRule(meta.Model, frozen=True):
    """One ``spec.http[]`` rule."""

    name: NonEmpty
    match: HttpMatch
    priority: int | None = None
    timeout: Timeout | None = None
    backends: tuple[Backend, ...] = ()
    upstreams: tuple[Upstream, ...] = ()
    websocket: bool = False
    plugin_config_name: str | None = msgspec.field(default=None, name="plugin_config_name")
    plugin_config_namespace: str | None = msgspec.field(
        default=None, name="plugin_config_namespace"
    )
    plugins: tuple[Plugin, ...] = ()
    authentication: Authentication | None = None


class StreamMatch(meta.Model, frozen=True):
    """The ingress port (and SNI host) of a stream rule."""

    ingress_port: meta.Port
    host: str | None = None


class StreamBackend(meta.Model, frozen=True):
    """The single backend of a stream rule."""

    service_name: NonEmpty
    service_port: meta.Port | str
    resolve_granularity: Literal["endpoint", "service"] | None = None
    subset: str | None = None


class StreamRule(meta.Model, frozen=True):
    """One ``spec.stream[]`` (TCP/UDP) rule."""

    name: NonEmpty
    protocol: Literal["TCP", "UDP"]
    match: StreamMatch
    backend: StreamBackend
    plugins: tuple[Plugin, ...] = ()


class ApisixRouteSpec(meta.Model, frozen=True):
    """``spec`` of an ApisixRoute."""

    ingress_class_name: str | None = None
    http: tuple[HttpRule, ...] = ()
    stream: tuple[StreamRule, ...] = ()


class ApisixRouteStatus(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Status written by the ingress controller (kept loosely typed)."""

    conditions: tuple[dict[str, Any], ...] = ()


class ApisixRoute(meta.Object, frozen=True):
    """An ApisixRoute object."""

    spec: ApisixRouteSpec
    status: ApisixRouteStatus | None = None

    def canary_rule(self, apex_service: str) -> HttpRule | None:
        """The first HTTP rule whose single backend is ``apex_service`` (Flagger's choice)."""
        for rule in self.spec.http:
            if len(rule.backends) == 1 and rule.backends[0].service_name == apex_service:
                return rule
        return None


def canary_route_name(route_ref_name: str, apex_service: str) -> str:
    """Name of the generated canary route: ``<routeRef.name>-<apex>-canary``."""
    return f"{route_ref_name}-{apex_service}-canary"


def parse_apisix_route(obj: dict[str, Any]) -> ApisixRoute:
    """Validate and decode one ApisixRoute; ``InvalidInput`` lists every problem."""
    from libs.model import validation

    return validation.parse_one(obj, ApisixRoute)
