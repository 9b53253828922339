"""What Sluice puts on the user's APISIX route, as pure functions of the route and the command.

Weights: APISIX's ``traffic-split`` plugin with one rule whose weighted upstreams are the
canary (``upstream_id``, or an inline round-robin ``upstream`` of the canary's nodes) and the
stable side (``upstream_id`` of the stable upstream, or a weight alone: the route's own
upstream)::

    {"rules": [{"weighted_upstreams": [{"upstream_id": "canary", "weight": 10},
                                       {"weight": 90}]}]}

A/B testing (``SetWeights.match``): the rule gets ``match``, one entry per group (APISIX ORs
the entries and ANDs the ``vars`` inside one), so requests matching no group stay on the
route's own upstream:

=============  =====================================================
condition      ``vars`` entry
=============  =====================================================
header X       ``http_<x>`` (lower case, ``-`` as ``_``: NGINX's name)
query X        ``arg_X``
cookie X       ``cookie_X`` (case-sensitive, as APISIX matches it)
exact v        ``[var, "==", v]``
prefix v       ``[var, "~~", "^<escaped v>"]``
suffix v       ``[var, "~~", "<escaped v>$"]``
regex v        ``[var, "~~", v]`` (as written)
=============  =====================================================

Mirroring (``SetWeights.mirror_percent``): APISIX's ``proxy-mirror`` plugin copying that share
of the route's requests to the canary's first node (APISIX mirrors to one host).

Sluice owns exactly these two plugins on the route while a canary runs; what the route had
before (recorded at initialization) is put back when they are no longer needed.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from typing import Any

from libs import errors, messages
from libs.model import standalone
from services.traffic_shifter import capabilities

Obj = dict[str, Any]
SPLIT_PLUGIN = "traffic-split"
MIRROR_PLUGIN = "proxy-mirror"
OWNED_PLUGINS = (SPLIT_PLUGIN, MIRROR_PLUGIN)
VOLATILE_FIELDS = ("update_time",)
_OPS = {"exact": "==", "prefix": "~~", "suffix": "~~", "regex": "~~"}


# ----------------------------------------------------------------------------- A/B matching


def var_name(scope: str, name: str) -> str:
    """The APISIX (NGINX) variable holding a request's header, query argument or cookie."""
    match scope:
        case "header":
            return "http_" + name.lower().replace("-", "_")
        case "query":
            return f"arg_{name}"
        case "cookie":
            return f"cookie_{name}"
        case other:
            raise errors.InvalidInput(
                f"match: expected scope header, query or cookie, got {other!r}",
                path="match[].scope",
                expected="header|query|cookie",
            )


def var(condition: messages.MatchCondition) -> list[str]:
    """One A/B condition as a ``vars`` expression ``[variable, operator, value]``."""
    name = var_name(condition.scope, condition.name)
    op = _OPS.get(condition.op)
    if op is None:
        raise errors.InvalidInput(
            f"match: expected op exact, prefix, suffix or regex, got {condition.op!r}",
            path="match[].op",
            expected="exact|prefix|suffix|regex",
        )
    value = condition.value
    if condition.op == "prefix":
        value = "^" + re.escape(value)
    elif condition.op == "suffix":
        value = re.escape(value) + "$"
    return [name, op, value]


def match_entries(groups: Sequence[Sequence[messages.MatchCondition]]) -> list[Obj]:
    """The ``match`` of a traffic-split rule: one ``{"vars": [...]}`` per group."""
    return [{"vars": [var(c) for c in group]} for group in groups if group]


# ----------------------------------------------------------------------------- weights


def _inline(nodes: Mapping[str, int] | Sequence[Any]) -> Obj:
    return {"type": "roundrobin", "nodes": copy.deepcopy(nodes)}


def canary_upstream(target: standalone.ApisixTarget, weight: int) -> Obj:
    if target.canary.id is not None:
        return {"upstream_id": target.canary.id, "weight": weight}
    return {"upstream": _inline(target.canary.node_weights()), "weight": weight}


def stable_upstream(target: standalone.ApisixTarget, weight: int) -> Obj:
    stable = target.stable
    if stable is None:
        return {"weight": weight}  # the route's own upstream
    if stable.id is not None:
        return {"upstream_id": stable.id, "weight": weight}
    return {"upstream": _inline(stable.node_weights()), "weight": weight}


def stable_is_route_upstream(target: standalone.ApisixTarget, route: Obj) -> bool:
    """Whether the route's own upstream is the stable side (no split needed at 100/0)."""
    stable = target.stable
    if stable is None:
        return True
    return stable.id is not None and str(route.get("upstream_id", "")) == stable.id


def split_plugin(
    target: standalone.ApisixTarget,
    weights: capabilities.Weights,
    groups: Sequence[Sequence[messages.MatchCondition]] = (),
) -> Obj:
    """Sluice's ``traffic-split`` configuration for ``weights``."""
    rule: Obj = {}
    entries = match_entries(groups)
    if entries:
        rule["match"] = entries
    rule["weighted_upstreams"] = [
        canary_upstream(target, weights.canary),
        stable_upstream(target, weights.primary),
    ]
    return {"rules": [rule]}


def _is_canary(entry: Obj, target: standalone.ApisixTarget) -> bool:
    if target.canary.id is not None:
        return str(entry.get("upstream_id", "")) == target.canary.id
    upstream = entry.get("upstream")
    return isinstance(upstream, dict) and node_weights(upstream.get("nodes")) == (
        target.canary.node_weights()
    )


def weights_of(plugin: Obj, target: standalone.ApisixTarget, route_id: str) -> capabilities.Weights:
    """The split a ``traffic-split`` configuration carries between the canary and the rest;
    a configuration that is not Sluice's, or whose rules disagree, is a ``Conflict``."""
    found: set[capabilities.Weights] = set()
    rules = plugin.get("rules")
    if not isinstance(rules, list) or not rules:
        raise errors.Conflict(f"the traffic-split plugin of route {route_id} has no rules")
    for rule in rules:
        upstreams = rule.get("weighted_upstreams") if isinstance(rule, dict) else None
        if not isinstance(upstreams, list):
            raise errors.Conflict(
                f"a traffic-split rule of route {route_id} has no weighted_upstreams"
            )
        canary = primary = 0
        seen_canary = False
        for entry in upstreams:
            weight = int(entry.get("weight", 0)) if isinstance(entry, dict) else 0
            if isinstance(entry, dict) and _is_canary(entry, target):
                canary += weight
                seen_canary = True
            else:
                primary += weight
        if not seen_canary:
            raise errors.Conflict(
                f"the traffic-split plugin of route {route_id} does not send to the canary "
                "upstream: another writer changed it"
            )
        found.add(capabilities.Weights(primary=primary, canary=canary))
    if len(found) > 1:
        shown = ", ".join(sorted(str(w) for w in found))
        raise errors.Conflict(f"the traffic-split rules of route {route_id} disagree: {shown}")
    return found.pop()


# ----------------------------------------------------------------------------- mirroring


def node_weights(nodes: Any) -> dict[str, int]:
    """An upstream's ``nodes`` (hash or array form) as ``{"host:port": weight}``."""
    if isinstance(nodes, dict):
        return {str(k): int(v) for k, v in nodes.items()}
    found: dict[str, int] = {}
    if isinstance(nodes, list):
        for node in nodes:
            if isinstance(node, dict) and "host" in node:
                host = str(node["host"])
                if ":" in host and not host.startswith("["):
                    host = f"[{host}]"  # IPv6
                found[f"{host}:{node.get('port', 80)}"] = int(node.get("weight", 1))
    return found


def first_node(nodes: Any) -> str | None:
    """The first node with a weight above 0 (the first at all when every weight is 0)."""
    weighted = node_weights(nodes)
    for node, weight in weighted.items():
        if weight > 0:
            return node
    return next(iter(weighted), None)


def mirror_plugin(node: str, percent: int) -> Obj:
    if not 0 < percent <= 100:
        raise errors.InvalidInput(
            f"mirror_percent: expected 1..100, got {percent}", path="mirror_percent"
        )
    return {"host": f"http://{node}", "sample_ratio": percent / 100}


# ----------------------------------------------------------------------------- writes


def plugins_of(route: Obj) -> Obj:
    plugins = route.get("plugins")
    return dict(plugins) if isinstance(plugins, dict) else {}


def plugins_write(
    route: Obj, wanted: Mapping[str, Obj | None], original: Obj
) -> tuple[str, Any] | None:
    """The one Admin API PATCH turning ``route``'s owned plugins into ``wanted`` (``None``:
    absent), as ``(sub_path, body)``; None when nothing changes.

    One plugin set to a value: a sub-path PATCH of ``plugins/<name>`` (replaced whole).
    Only removals: a merge PATCH with ``null`` for each (and ``plugins: null`` when nothing
    is left of a ``plugins`` map the original route did not have). Otherwise: the whole
    ``plugins`` map at its sub-path. Never two writes, so no half-applied route."""
    current = plugins_of(route)
    changes = {
        name: value
        for name, value in wanted.items()
        if (name in current if value is None else not carries(current.get(name), value))
    }
    if not changes:
        return None
    result = {k: v for k, v in current.items() if not (k in changes and changes[k] is None)}
    result.update({k: v for k, v in changes.items() if v is not None})
    if not result and "plugins" not in original:
        return "", {"plugins": None}
    sets = {k: v for k, v in changes.items() if v is not None}
    if not sets:
        return "", {"plugins": {k: None for k in changes}}
    if len(changes) == 1:
        ((name, value),) = sets.items()
        return f"plugins/{name}", value
    return "plugins", result


def without_volatile(value: Obj, ignore: Sequence[tuple[str, ...]] = ()) -> Obj:
    """``value`` without the fields APISIX rewrites on every write (and ``ignore`` paths)."""
    stripped = copy.deepcopy(value)
    for field in VOLATILE_FIELDS:
        stripped.pop(field, None)
    for path in ignore:
        parent: Any = stripped
        for part in path[:-1]:
            parent = parent.get(part) if isinstance(parent, dict) else None
        if isinstance(parent, dict):
            parent.pop(path[-1], None)
    return stripped


def differences(left: Obj, right: Obj) -> list[str]:
    """Top-level fields (``plugins.<name>`` for plugins) where two route values differ."""
    fields = []
    for key in sorted(set(left) | set(right)):
        if key == "plugins":
            lp, rp = plugins_of(left), plugins_of(right)
            fields += [f"plugins.{n}" for n in sorted(set(lp) | set(rp)) if lp.get(n) != rp.get(n)]
            if (key in left) != (key in right) and not (lp or rp):
                fields.append("plugins")
        elif left.get(key) != right.get(key):
            fields.append(key)
    return fields


def carries(actual: Any, wanted: Any) -> bool:
    """Whether ``actual`` (as APISIX stores it) holds everything of ``wanted``: the same
    values, maps with at least the wanted keys (APISIX may add a schema's defaults)."""
    if isinstance(wanted, dict):
        return isinstance(actual, dict) and all(
            key in actual and carries(actual[key], value) for key, value in wanted.items()
        )
    if isinstance(wanted, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(wanted)
            and all(carries(a, w) for a, w in zip(actual, wanted, strict=True))
        )
    return bool(actual == wanted)


def unowned(value: Obj) -> Obj:
    """A route value without Sluice's plugins (and without a ``plugins`` map left empty)."""
    stripped = without_volatile(value)
    plugins = {k: v for k, v in plugins_of(value).items() if k not in OWNED_PLUGINS}
    if plugins:
        stripped["plugins"] = plugins
    else:
        stripped.pop("plugins", None)
    return stripped


def applied(after: Obj, before: Obj, wanted: Mapping[str, Obj | None]) -> list[str]:
    """What keeps ``after`` from being ``before`` with the owned plugins at ``wanted``: the
    fields that differ (empty: the write landed and nobody else wrote)."""
    wrong = differences(unowned(after), unowned(before))
    plugins = plugins_of(after)
    for name, value in wanted.items():
        ok = name not in plugins if value is None else carries(plugins.get(name), value)
        if not ok:
            wrong.append(f"plugins.{name}")
    return wrong
