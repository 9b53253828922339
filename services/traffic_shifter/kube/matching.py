"""What the canary ApisixRoute adds to the user's rule for A/B testing and traffic mirroring.

A/B testing (``SetWeights.match``): one rule per match group, the user's rule with the group's
conditions appended to its ``match.exprs`` (all exprs of a rule must hold, the rules of a
route are alternatives, so the groups are OR-ed and the conditions of a group AND-ed, as
Flagger's ``analysis.match`` means). A request matching no group is not taken by the canary
route and falls through to the user's own route (the apex Service, i.e. the primary pods).

=========  ===========================================
condition  ApisixRoute expr
=========  ===========================================
header X   ``subject: {scope: Header, name: X}``
query X    ``subject: {scope: Query, name: X}``
exact v    ``op: Equal, value: v``
prefix v   ``op: RegexMatch, value: ^<escaped v>``
suffix v   ``op: RegexMatch, value: <escaped v>$``
regex v    ``op: RegexMatch, value: v`` (as written)
=========  ===========================================

Mirroring (``SetWeights.mirror_percent``): APISIX's ``proxy-mirror`` plugin on every rule,
copying that share of the rule's requests to the canary Service by its cluster DNS name (the
copies' responses are discarded by APISIX). The user's other plugins stay; a ``proxy-mirror``
the user had on the rule is replaced while Sluice mirrors (a route has one config per plugin).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from typing import Any

from libs import errors, messages

Obj = dict[str, Any]
MIRROR_PLUGIN = "proxy-mirror"
SCOPES = {"header": "Header", "query": "Query"}


def expr(condition: messages.MatchCondition) -> Obj:
    """One A/B condition as an ApisixRoute ``match.exprs`` entry."""
    scope = SCOPES.get(condition.scope)
    if scope is None:
        raise errors.InvalidInput(
            f"match: expected scope header or query, got {condition.scope!r}",
            path="match[].scope",
            expected="header|query",
        )
    value = condition.value
    match condition.op:
        case "exact":
            op = "Equal"
        case "prefix":
            op, value = "RegexMatch", "^" + re.escape(value)
        case "suffix":
            op, value = "RegexMatch", re.escape(value) + "$"
        case "regex":
            op = "RegexMatch"
        case other:
            raise errors.InvalidInput(
                f"match: expected op exact, prefix, suffix or regex, got {other!r}",
                path="match[].op",
                expected="exact|prefix|suffix|regex",
            )
    return {"subject": {"scope": scope, "name": condition.name}, "op": op, "value": value}


def ab_rule_name(rule: str, index: int) -> str:
    return f"{rule}-ab-{index}"


def ab_rules(rule: Obj, groups: Sequence[Sequence[messages.MatchCondition]]) -> list[Obj]:
    """The canary rule once per match group (``<rule>-ab-<i>``), each with the group's exprs
    after the user's own; ``[rule]`` without groups."""
    if not groups:
        return [rule]
    rules = []
    for index, group in enumerate(groups):
        copied = copy.deepcopy(rule)
        copied["name"] = ab_rule_name(rule["name"], index)
        match = copied.setdefault("match", {})
        match["exprs"] = [*(match.get("exprs") or []), *(expr(c) for c in group)]
        rules.append(copied)
    return rules


def mirror_host(service: str, namespace: str, port: int) -> str:
    return f"http://{service}.{namespace}.svc.cluster.local:{port}"


def mirror_plugin(host: str, percent: int) -> Obj:
    if not 0 < percent <= 100:
        raise errors.InvalidInput(
            f"mirror_percent: expected 0..100, got {percent}", path="mirror_percent"
        )
    return {
        "name": MIRROR_PLUGIN,
        "enable": True,
        "config": {"host": host, "sample_ratio": percent / 100},
    }


def with_mirror(rule: Obj, plugin: Obj) -> None:
    """Put ``plugin`` on the rule in place of any ``proxy-mirror`` it has, after the others."""
    others = [p for p in rule.get("plugins") or [] if p.get("name") != MIRROR_PLUGIN]
    rule["plugins"] = [*others, plugin]
