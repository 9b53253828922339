"""Admin API routes and upstreams → the data plane's ``translation.Route``, as a pure function.

``routes(route_values, upstream_of)`` turns the stored (already checked) values into routes
of the same ``RouteTable`` the ApisixRoute sync fills, so one router and one proxy serve both:

* ``uri`` / ``uris`` (exact, or prefix when ending with ``*``), ``host`` / ``hosts``,
  ``methods``, ``remote_addr(s)``, ``vars``, ``priority``, ``timeout``; a route with
  ``status: 0`` is left out, as APISIX leaves it out;
* the route's upstream: inline ``upstream``, or ``upstream_id``; its nodes with their weights
  (smooth weighted round-robin when they differ). A route with neither (plugins only) gets an
  upstream without nodes, answered 503;
* ``traffic-split``: each rule with its ``match`` (entries OR, vars inside AND) and its
  ``weighted_upstreams`` (``upstream_id``, inline ``upstream``, or weight only = the route's
  upstream; weight default 1), kept as ``translation.SplitRule``; the data plane uses the
  first rule that matches, and the route's upstream when none does;
* ``prometheus`` records the route (``route`` label: its id, or its name with
  ``prefer_name: true``); ``proxy-mirror`` copies requests as for ApisixRoutes (``mirroring``;
  its host is dialled as written).

Upstreams are named ``upstream/<id>`` (their ``service`` is the id), inline ones
``route/<id>`` and ``route/<id>/traffic-split/<rule>/<entry>``: the data plane keys its
balancers by these names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sandbox.gateway import admin_schema, mirroring, translation

Obj = dict[str, Any]
NO_UPSTREAM = "missing upstream configuration in Route or Service"
DEFAULT_SPLIT_WEIGHT = 1  # traffic-split's weight default


def upstream(name: str, service: str, conf: Mapping[str, Any] | None) -> translation.Upstream:
    """One Admin API upstream object (checked) as the data plane's upstream."""
    if conf is None:
        return translation.Upstream(
            name=name,
            service=service,
            service_port=0,
            resolve_granularity="node",
            subset="",
            nodes=(),
            error=NO_UPSTREAM if not service else f"upstream {service} not found",
        )
    nodes = admin_schema.nodes(conf.get("nodes") or [])
    return translation.Upstream(
        name=name,
        service=service,
        service_port=0,
        resolve_granularity="node",
        subset="",
        nodes=nodes,
        error="" if nodes else "no valid upstream node",
    )


def _timeout(conf: Mapping[str, Any] | None) -> translation.Timeout | None:
    if not conf:
        return None
    return translation.Timeout(
        **{k: float(conf[k]) for k in ("connect", "send", "read") if k in conf}
    )


def route(value: Mapping[str, Any], upstream_of: Callable[[str], Obj | None]) -> translation.Route:
    route_id = str(value["id"])

    def resolve(up_id: Any, inline: Mapping[str, Any] | None, name: str) -> translation.Upstream:
        if up_id is not None:
            return upstream(f"upstream/{up_id}", str(up_id), upstream_of(str(up_id)))
        return upstream(name, "", inline) if inline is not None else upstream(name, "", None)

    own = resolve(value.get("upstream_id"), value.get("upstream"), f"route/{route_id}")
    own_conf = value.get("upstream") or (
        upstream_of(str(value["upstream_id"])) if value.get("upstream_id") is not None else None
    )
    plugins: Obj = dict(value.get("plugins") or {})

    rules: list[translation.SplitRule] = []
    split = plugins.get(admin_schema.SPLIT) or {}
    for i, rule in enumerate(split.get("rules") or []):
        entries = rule.get("weighted_upstreams") or [{"weight": DEFAULT_SPLIT_WEIGHT}]
        weighted = tuple(
            translation.WeightedUpstream(
                own
                if entry.get("upstream_id") is None and entry.get("upstream") is None
                else resolve(
                    entry.get("upstream_id"),
                    entry.get("upstream"),
                    f"route/{route_id}/traffic-split/{i}/{j}",
                ),
                int(entry.get("weight", DEFAULT_SPLIT_WEIGHT)),
            )
            for j, entry in enumerate(entries)
        )
        match = tuple(admin_schema.exprs(m.get("vars") or []) for m in rule.get("match") or [])
        rules.append(translation.SplitRule(match=match, weighted_upstreams=weighted))

    mirror = None
    if mirroring.PLUGIN in plugins:
        mirror = mirroring.parse(plugins[mirroring.PLUGIN], "$.plugins.proxy-mirror", {}, {})

    uris = (value["uri"],) if "uri" in value else tuple(value.get("uris") or ())
    hosts = (value["host"],) if "host" in value else tuple(value.get("hosts") or ())
    remote = (
        (value["remote_addr"],)
        if "remote_addr" in value
        else tuple(value.get("remote_addrs") or ())
    )
    return translation.Route(
        name=str(value.get("name") or ""),
        namespace="",
        apisixroute="",
        rule="",
        priority=int(value.get("priority") or 0),
        uris=uris,
        hosts=tuple(h.lower() for h in hosts),
        methods=tuple(m.upper() for m in value.get("methods") or ()),
        remote_addrs=remote,
        vars=admin_schema.exprs(value.get("vars") or []),
        plugins=plugins,
        upstream=own,
        weighted_upstreams=(),
        timeout=_timeout(value.get("timeout")) or _timeout((own_conf or {}).get("timeout")),
        mirror=mirror,
        admin_id=route_id,
        split_rules=tuple(rules),
    )


def routes(
    route_values: Iterable[Mapping[str, Any]], upstream_of: Callable[[str], Obj | None]
) -> tuple[translation.Route, ...]:
    """The enabled routes, by id."""
    out = [route(v, upstream_of) for v in route_values if v.get("status", 1) != 0]
    out.sort(key=lambda r: r.admin_id)
    return tuple(out)
