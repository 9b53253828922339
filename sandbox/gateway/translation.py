"""ApisixRoute → APISIX routes: the apisix-ingress-controller's translation, as a pure function.

``translate(apisix_routes, services, endpoints)`` turns the cluster's objects into a
``RouteTable``; nothing here does I/O, so it is tested with plain dicts. What is copied from
apisix-ingress-controller (``pkg/kube/translation/apisix_route.go``, v2 API):

* one APISIX route per ``spec.http[]`` rule, named ``<namespace>_<apisixroute>_<rule name>``;
  its id is ``crc32(name)`` in lowercase hex (``pkg/id.GenID``). The prometheus plugin reports
  the name as the ``route`` label when its config has ``prefer_name: true``, else the id;
* ``match.paths`` → ``uris`` (exact, or prefix when ending with ``*``), ``match.hosts`` → ``hosts``
  (exact or ``*.suffix``), ``match.methods``, ``match.remoteAddrs``, ``priority`` (default 0);
* ``match.exprs`` → ``vars``: Header ``X-Foo`` → ``http_x_foo``, Query ``Foo`` → ``arg_foo``,
  Cookie ``foo`` → ``cookie_foo`` (case kept), Path → ``uri``; ops Equal ``==``, NotEqual ``~=``,
  GreaterThan ``>``, LessThan ``<``, In ``in``, NotIn ``! in``, RegexMatch ``~~``,
  RegexMatchCaseInsensitive ``~*``, RegexNotMatch ``! ~~``, RegexNotMatchCaseInsensitive ``! ~*``;
* ``plugins[]``: only entries with ``enable: true`` reach APISIX. Four have an effect here:
  ``prometheus`` (metrics are recorded for routes that carry it, unless its config says
  ``disable: true``) and ``proxy-mirror`` (``mirroring``: its config is checked against
  APISIX's schema — a bad one makes the rule untranslatable — and its host resolved), and
  ``proxy-rewrite`` and ``limit-count`` (``plugins``, checked the same way); the others are
  kept in the table for inspection;
* ``backends[]``: the first backend is the route's upstream; with more than one backend the
  others and the first's weight form the ``traffic-split`` plugin's ``weighted_upstreams``
  (weight default 100). With a single backend its weight plays no part, as in APISIX;
* an upstream is named ``<namespace>_<service>[_<subset>]_<service port>[_service]``; its
  nodes are the ready addresses of the Service's Endpoints on the endpoints port whose name
  equals the Service port's name (``resolveGranularity: endpoints``, the default), or the one
  node ``<clusterIP>:<service port>`` (``resolveGranularity: service``) which the data plane
  dials through the endpoints, as kube-proxy would.

ApisixUpstreams (``upstreams``): one named like a backend's Service configures its upstream
(load balancer, retries, timeouts, scheme, Host, subsets); ``upstreams[]`` names external ones,
combined with ``backends[]`` into traffic-split as the controller does (``backends``).
``plugin_config_name`` adds an ApisixPluginConfig's plugins, the rule's own winning on a name
clash (``pluginconfigs``); the plugins with an effect here act whichever object they came from.

A backend whose Service does not exist, or does not define the backend's port, rejects the
whole ApisixRoute, as the controller does: none of its rules reach the route table, and its
status says why (``RouteTable.statuses``, written back by ``statuses``). A Service without
ready endpoints (or a headless one resolved by ``service``) gives an upstream without nodes
(``error`` says why), answered 503 as APISIX answers such an upstream. Where the sandbox is
more lenient than the controller: any other rule that cannot be translated (no paths, no
backends, bad expr, duplicated name) is skipped and reported in ``RouteTable.errors`` and the
ApisixRoute's status, while the other rules of the ApisixRoute stay.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any

from sandbox.gateway import backends, mirroring, pluginconfigs, upstreams
from sandbox.gateway import plugins as route_plugins

Obj = dict[str, Any]
Key = tuple[str, str]

# Moved to ``upstreams``; kept here under their old names for the other modules.
DEFAULT_WEIGHT = upstreams.DEFAULT_WEIGHT
DEFAULT_UPSTREAM_TIMEOUT = upstreams.DEFAULT_UPSTREAM_TIMEOUT
TranslationError = upstreams.TranslationError
BackendNotFound = upstreams.BackendNotFound
Node = upstreams.Node
Upstream = upstreams.Upstream
Timeout = upstreams.Timeout
gen_id = upstreams.gen_id
compose_upstream_name = upstreams.compose_upstream_name
parse_duration = upstreams.parse_duration
translate_backend = upstreams.translate_backend
WeightedUpstream = upstreams.WeightedUpstream

_SCOPES = {"Header", "Query", "Cookie", "Path"}
OPERATORS: Mapping[str, tuple[bool, str]] = {  # ApisixRoute op -> (inverted, lua-resty-expr op)
    "Equal": (False, "=="),
    "NotEqual": (False, "~="),
    "GreaterThan": (False, ">"),
    "LessThan": (False, "<"),
    "In": (False, "in"),
    "NotIn": (True, "in"),
    "RegexMatch": (False, "~~"),
    "RegexMatchCaseInsensitive": (False, "~*"),
    "RegexNotMatch": (True, "~~"),
    "RegexNotMatchCaseInsensitive": (True, "~*"),
}


@dataclasses.dataclass(frozen=True)
class SplitRule:
    """One ``traffic-split`` rule of a route set through the Admin API: when ``match`` is empty
    or any of its entries holds (all the entry's vars), requests are shared by smooth weighted
    round-robin among ``weighted_upstreams`` (a weight-only entry carries the route's own
    upstream)."""

    match: tuple[tuple[Expr, ...], ...]
    weighted_upstreams: tuple[WeightedUpstream, ...]


@dataclasses.dataclass(frozen=True)
class Expr:
    """One ``vars`` entry: ``[var, op, value]`` or ``[var, "!", op, value]``."""

    var: str
    op: str  # lua-resty-expr operator
    value: str | tuple[str, ...]
    invert: bool = False

    def to_vars(self) -> list[Any]:
        value = list(self.value) if isinstance(self.value, tuple) else self.value
        return [self.var, "!", self.op, value] if self.invert else [self.var, self.op, value]


@dataclasses.dataclass(frozen=True)
class Route:
    name: str
    namespace: str
    apisixroute: str
    rule: str
    priority: int
    uris: tuple[str, ...]
    hosts: tuple[str, ...]
    methods: tuple[str, ...]
    remote_addrs: tuple[str, ...]
    vars: tuple[Expr, ...]
    plugins: Mapping[str, Any]  # enabled plugins only, name -> config, as APISIX gets them
    upstream: Upstream  # the route's own upstream: the first backend
    # traffic-split weighted_upstreams: the other backends, then the first backend's weight.
    # Empty with a single backend.
    weighted_upstreams: tuple[WeightedUpstream, ...]
    timeout: Timeout | None
    disabled_plugins: tuple[str, ...] = ()  # listed with enable: false (not sent to APISIX)
    mirror: mirroring.Mirror | None = None  # the proxy-mirror plugin, when enabled
    # proxy-rewrite and limit-count, when enabled (``route_plugins``)
    effects: route_plugins.Effects = dataclasses.field(default_factory=route_plugins.Effects)
    # Routes set through the Admin API: their id, and traffic-split's rules as configured
    # (such routes leave ``weighted_upstreams`` empty).
    admin_id: str = ""
    split_rules: tuple[SplitRule, ...] = ()
    plugin_config_id: str = ""  # the ApisixPluginConfig's APISIX id, when the rule names one

    @property
    def id(self) -> str:
        return self.admin_id or gen_id(self.name)

    @property
    def key(self) -> str:
        """Unique in a table: the name of a synced route, ``admin/<id>`` for an Admin API one."""
        return f"admin/{self.admin_id}" if self.admin_id else self.name

    @property
    def prometheus(self) -> bool:
        conf = self.plugins.get("prometheus")
        if conf is None:
            return False
        conf = conf if isinstance(conf, Mapping) else {}
        meta = conf.get("_meta")
        meta_disabled = isinstance(meta, Mapping) and meta.get("disable") is True
        return not (conf.get("disable") is True or meta_disabled)

    @property
    def metric_route_label(self) -> str:
        conf = self.plugins.get("prometheus")
        if isinstance(conf, Mapping) and conf.get("prefer_name") is True:
            return self.name or self.id
        return self.id

    def backends(self) -> tuple[WeightedUpstream, ...]:
        """Where requests go, the route's own upstream first, with traffic-split's weights
        (its weight-only entry is the one carrying ``upstream``)."""
        if not self.weighted_upstreams:
            return (WeightedUpstream(self.upstream, DEFAULT_WEIGHT),)
        own = [w for w in self.weighted_upstreams if w.upstream is self.upstream]
        others = [w for w in self.weighted_upstreams if w.upstream is not self.upstream]
        return (*own[:1], *others)

    def weights(self) -> dict[str, int]:
        """Service name → weight, the handiest view for tests (``wait_synced`` predicates)."""
        if not self.weighted_upstreams:
            return {self.upstream.service: DEFAULT_WEIGHT}
        return {b.upstream.service: b.weight for b in self.backends()}

    def to_json(self) -> Obj:
        """The route as APISIX's Admin API would show it, plus the resolved upstreams."""

        def upstream_json(up: Upstream) -> Obj:
            out: Obj = {
                "id": up.id,
                "name": up.name,
                "type": "roundrobin",
                "nodes": [{"host": n.host, "port": n.port, "weight": n.weight} for n in up.nodes],
            } | up.settings.to_json()
            if up.error:
                out["error"] = up.error
            return out

        plugins = dict(self.plugins)
        if self.weighted_upstreams:
            plugins["traffic-split"] = {
                "rules": [
                    {
                        "weighted_upstreams": [
                            {"upstream_id": w.upstream.id, "weight": w.weight}
                            if w.upstream is not self.upstream
                            else {"weight": w.weight}
                            for w in self.weighted_upstreams
                        ]
                    }
                ]
            }
        out: Obj = {
            "id": self.id,
            "name": self.name,
            "priority": self.priority,
            "uris": list(self.uris),
            "plugins": plugins,
            "upstream_id": self.upstream.id,
            "status": 1,
            "labels": {
                "namespace": self.namespace,
                "apisixroute": self.apisixroute,
                "rule": self.rule,
            },
        }
        if self.admin_id:  # as set through the Admin API (plugins as configured)
            out["source"] = "admin"
            del out["labels"]
            if self.split_rules:
                out["split_rules"] = [
                    {
                        "match": [[e.to_vars() for e in entry] for entry in rule.match],
                        "weighted_upstreams": [
                            {"upstream": w.upstream.name, "weight": w.weight}
                            for w in rule.weighted_upstreams
                        ],
                    }
                    for rule in self.split_rules
                ]
        for key, value in (
            ("hosts", self.hosts),
            ("methods", self.methods),
            ("remote_addrs", self.remote_addrs),
        ):
            if value:
                out[key] = list(value)
        if self.vars:
            out["vars"] = [e.to_vars() for e in self.vars]
        if self.timeout:
            out["timeout"] = dataclasses.asdict(self.timeout)
        if self.disabled_plugins:
            out["disabled_plugins"] = list(self.disabled_plugins)
        if self.plugin_config_id:
            out["plugin_config_id"] = self.plugin_config_id
        if self.mirror is not None:
            out["mirror"] = {
                "targets": [{"host": h, "port": p} for h, p in self.mirror.targets],
                **({"error": self.mirror.error} if self.mirror.error else {}),
            }
        out["upstreams"] = [
            upstream_json(w.upstream) | {"weight": w.weight} for w in self.backends()
        ]
        out["weights"] = self.weights()
        return out


@dataclasses.dataclass(frozen=True)
class RouteStatus:
    """How one ApisixRoute's translation went, at the generation it was translated from."""

    namespace: str
    name: str
    uid: str
    generation: int
    errors: tuple[str, ...] = ()
    rejected: bool = False  # none of its rules reached the table

    @property
    def key(self) -> Key:
        return (self.namespace, self.name)

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclasses.dataclass(frozen=True)
class RouteTable:
    routes: tuple[Route, ...] = ()
    errors: tuple[str, ...] = ()
    statuses: tuple[RouteStatus, ...] = ()  # one per ApisixRoute translated

    def get(self, name: str) -> Route | None:
        for route in self.routes:
            if route.name == name:
                return route
        return None

    def names(self) -> set[str]:
        return {r.name for r in self.routes}

    def to_json(self) -> Obj:
        return {"routes": [r.to_json() for r in self.routes], "errors": list(self.errors)}


def compose_route_name(namespace: str, apisixroute: str, rule: str) -> str:
    return f"{namespace}_{apisixroute}_{rule}"


def translate(
    apisix_routes: Iterable[Obj],
    services: Mapping[Key, Obj],
    endpoints: Mapping[Key, Obj],
    apisix_upstreams: Mapping[Key, Obj] | None = None,
    plugin_configs: Mapping[Key, Obj] | None = None,
    pods: Mapping[Key, Obj] | None = None,
) -> RouteTable:
    """All routes of all ApisixRoutes, ordered by name (matching order is ``matching``'s job).
    ``apisix_upstreams``, ``plugin_configs`` and ``pods`` are keyed by (namespace, name)."""
    pod_labels = upstreams.pod_labels_by_ip(pods or {})
    routes: list[Route] = []
    errors: list[str] = []
    statuses: list[RouteStatus] = []
    for ar in apisix_routes:
        meta = ar.get("metadata") or {}
        namespace, name = meta.get("namespace") or "default", meta.get("name") or ""
        if meta.get("deletionTimestamp"):
            continue
        http = (ar.get("spec") or {}).get("http") or []
        seen: set[str] = set()
        own_routes: list[Route] = []
        own_errors: list[str] = []
        rejected = False
        for index, rule in enumerate(http):
            path = f"{namespace}/{name}: $.spec.http[{index}]"
            try:
                rule_name = rule.get("name") or ""
                if not rule_name:
                    raise TranslationError(f"Expected a rule name - at {path}.name")
                if rule_name in seen:
                    raise TranslationError(
                        f"duplicated route rule name {rule_name!r} - at {path}.name"
                    )
                seen.add(rule_name)
                own_routes.append(
                    translate_rule(
                        namespace,
                        name,
                        rule,
                        services,
                        endpoints,
                        path,
                        apisix_upstreams=apisix_upstreams,
                        plugin_configs=plugin_configs,
                        pods=pod_labels,
                        warnings=own_errors,
                    )
                )
            except BackendNotFound as e:
                own_errors.append(str(e))
                rejected = True
            except TranslationError as e:
                own_errors.append(str(e))
        if rejected:
            own_routes = []
        routes.extend(own_routes)
        errors.extend(own_errors)
        statuses.append(
            RouteStatus(
                namespace=namespace,
                name=name,
                uid=meta.get("uid") or "",
                generation=int(meta.get("generation") or 0),
                errors=tuple(own_errors),
                rejected=rejected,
            )
        )
    routes.sort(key=lambda r: r.name)
    return RouteTable(tuple(routes), tuple(errors), tuple(statuses))


def translate_rule(
    namespace: str,
    apisixroute: str,
    rule: Obj,
    services: Mapping[Key, Obj],
    endpoints: Mapping[Key, Obj],
    path: str = "$.spec.http[]",
    *,
    apisix_upstreams: Mapping[Key, Obj] | None = None,
    plugin_configs: Mapping[Key, Obj] | None = None,
    pods: Mapping[Key, Mapping[str, str]] | None = None,
    warnings: list[str] | None = None,
) -> Route:
    """One rule's route. ``pods`` is ``upstreams.pod_labels_by_ip``'s map; ``upstreams[]``
    entries the controller skips are reported in ``warnings``."""
    match = rule.get("match") or {}
    uris = tuple(_strings(match.get("paths"), f"{path}.match.paths"))
    if not uris:
        raise TranslationError(f"Expected at least one path - at {path}.match.paths")
    for i, uri in enumerate(uris):
        if not uri.startswith("/"):
            raise TranslationError(
                f"Expected a path starting with '/', got {uri!r} - at {path}.match.paths[{i}]"
            )
    hosts = tuple(h.lower() for h in _strings(match.get("hosts"), f"{path}.match.hosts"))
    methods = tuple(m.upper() for m in _strings(match.get("methods"), f"{path}.match.methods"))
    remote_addrs = tuple(_strings(match.get("remoteAddrs"), f"{path}.match.remoteAddrs"))
    for i, addr in enumerate(remote_addrs):
        try:
            ipaddress.ip_network(addr, strict=False)
        except ValueError as e:
            raise TranslationError(
                f"Expected an IP or CIDR, got {addr!r} - at {path}.match.remoteAddrs[{i}]"
            ) from e
    exprs = tuple(
        translate_expr(expr, f"{path}.match.exprs[{i}]")
        for i, expr in enumerate(match.get("exprs") or [])
    )

    entries, plugin_config_id = pluginconfigs.merged(namespace, rule, plugin_configs or {}, path)
    plugins: dict[str, Any] = {}
    paths: dict[str, str] = {}  # the last one listed is the one APISIX gets
    disabled: list[str] = []
    for entry in entries:
        if entry.enable:
            plugins[entry.name] = entry.config or {}
            paths[entry.name] = entry.path
        else:
            disabled.append(entry.name)

    mirror = None
    if mirroring.PLUGIN in plugins:
        try:
            mirror = mirroring.parse(
                plugins[mirroring.PLUGIN], paths[mirroring.PLUGIN], services, endpoints
            )
        except mirroring.ConfigError as e:
            raise TranslationError(str(e)) from e

    try:
        effects = route_plugins.parse(plugins, paths)
    except route_plugins.ConfigError as e:
        raise TranslationError(str(e)) from e

    own, weighted = backends.targets(
        namespace,
        rule,
        services,
        endpoints,
        apisix_upstreams or {},
        pods or {},
        path,
        warnings if warnings is not None else [],
    )

    try:
        priority = int(rule.get("priority") or 0)
    except (TypeError, ValueError) as e:
        raise TranslationError(
            f"Expected int, got {rule.get('priority')!r} - at {path}.priority"
        ) from e

    rule_name = rule.get("name") or ""
    return Route(
        name=compose_route_name(namespace, apisixroute, rule_name),
        namespace=namespace,
        apisixroute=apisixroute,
        rule=rule_name,
        priority=priority,
        uris=uris,
        hosts=hosts,
        methods=methods,
        remote_addrs=remote_addrs,
        vars=exprs,
        plugins=plugins,
        upstream=own,
        weighted_upstreams=weighted,
        timeout=upstreams.parse_timeout(rule.get("timeout"), f"{path}.timeout"),
        disabled_plugins=tuple(disabled),
        mirror=mirror,
        effects=effects,
        plugin_config_id=plugin_config_id,
    )


def translate_expr(expr: Obj, path: str) -> Expr:
    subject = expr.get("subject") or {}
    scope, name = subject.get("scope") or "", subject.get("name") or ""
    if scope not in _SCOPES:
        raise TranslationError(
            f"Expected scope one of Header|Query|Cookie|Path, got {scope!r} - at {path}.subject.scope"
        )
    if not name and scope != "Path":
        raise TranslationError(
            f"Expected a subject name for scope {scope} - at {path}.subject.name"
        )
    if scope == "Header":
        var = "http_" + name.lower().replace("-", "_")
    elif scope == "Query":
        var = "arg_" + name.lower()
    elif scope == "Cookie":
        var = "cookie_" + name
    else:
        var = "uri"
    op = expr.get("op") or ""
    if op not in OPERATORS:
        raise TranslationError(
            f"Expected op one of {'|'.join(OPERATORS)}, got {op!r} - at {path}.op"
        )
    invert, lua_op = OPERATORS[op]
    value: str | tuple[str, ...]
    if op in ("In", "NotIn"):
        if expr.get("set") is None:
            raise TranslationError(f"Expected a set for op {op} - at {path}.set")
        value = tuple(str(v) for v in expr["set"])
    elif expr.get("value") is not None:
        value = str(expr["value"])
    else:
        raise TranslationError(f"Expected a value for op {op} - at {path}.value")
    if lua_op in ("~~", "~*"):
        try:
            re.compile(str(value))
        except re.error as e:
            raise TranslationError(
                f"Expected a regular expression, got {value!r} ({e}) - at {path}.value"
            ) from e
    return Expr(var=var, op=lua_op, value=value, invert=invert)


def _strings(value: Any, path: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TranslationError(f"Expected a list of strings, got {value!r} - at {path}")
    return value
