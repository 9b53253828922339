"""The canary ApisixRoute (Flagger's ``pkg/router/apisix.go``): ``TrafficRouter`` for APISIX
driven by its ingress controller.

From the user's ApisixRoute (the Canary's ``routeRef``) the first HTTP rule whose single
backend is the apex Service is copied into ``<routeRef.name>-<apex>-canary``:

* that one rule, ``priority: 10000`` (so it wins over the user's route for the same host and
  path), everything else of the rule as the user wrote it (match, plugins, timeout,
  authentication, ...), ``websocket`` as written (``false`` when absent, as Flagger's Go
  types write it);
* backends ``<apex>-primary`` (the user's backend renamed) and ``<apex>-canary`` with the same
  ``servicePort``, ``resolveGranularity`` and ``subset``, weighted;
* ``spec.ingressClassName`` of the user's route, its labels and annotations (not Flux's
  ``toolkit.fluxcd.io`` keys, not kubectl's last-applied record), the Canary as controller.

Where Sluice goes further than Flagger's APISIX router (``matching``): for A/B testing the
rule is repeated once per match group with the group's conditions added to its
``match.exprs`` (rules ``<rule>-ab-<i>``), so only matching requests take the canary route;
for traffic mirroring every rule gets APISIX's ``proxy-mirror`` plugin pointed at the canary
Service. Both follow the command: a changed match or mirror share re-syncs the route, no
match and no mirroring give Flagger's route exactly. And the apex's ApisixUpstream, if any, is
copied to the primary and canary Services (``upstreams``), so its settings keep applying.

The user's route is never written. Re-syncing keeps the weights the canary route has;
``set_weights`` changes only the weights, the same on every rule carrying the primary
backend. A route without such a rule is ``InvalidInput`` naming the route and the Service.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from libs import errors, messages
from libs.adapters import kubernetes
from libs.model import apisixroute
from libs.model import canary as canary_model
from services.traffic_shifter import capabilities
from services.traffic_shifter.kube import matching, objects, upstreams

Obj = dict[str, Any]
PRIORITY = 10000
DEFAULT_WEIGHT = 100  # the ingress controller's weight for a backend that sets none
BACKEND_FIELDS = ("servicePort", "resolveGranularity", "subset")


def source_rule(route: Obj, apex: str) -> Obj | None:
    """The first HTTP rule whose single backend is ``apex`` (``ApisixRoute.canary_rule``)."""
    for rule in (route.get("spec") or {}).get("http") or []:
        backends = rule.get("backends") or []
        if len(backends) == 1 and backends[0].get("serviceName") == apex:
            return dict(rule)
    return None


def split_rules(route: Obj, primary: str) -> list[Obj]:
    """The rules of a canary route that carry the primary backend (one, or one per A/B group)."""
    return [
        rule
        for rule in (route.get("spec") or {}).get("http") or []
        if any(b.get("serviceName") == primary for b in rule.get("backends") or [])
    ]


def _set_map(meta: Obj, key: str, value: dict[str, str]) -> None:
    if value:
        meta[key] = value
    else:
        meta.pop(key, None)


def canary_route(
    canary: canary_model.Canary,
    user_route: Obj,
    rule: Obj,
    apex: str,
    match: Sequence[Sequence[messages.MatchCondition]] = (),
    mirror_percent: int = 0,
) -> Obj:
    """The canary route as created (primary 100, canary 0): Flagger's one rule, or one rule
    per A/B ``match`` group; with ``mirror_percent`` each rule mirrors to the canary."""
    rule = copy.deepcopy(rule)
    backend = rule["backends"][0]
    primary_backend = {**backend, "serviceName": f"{apex}-primary", "weight": 100}
    canary_backend: Obj = {"serviceName": f"{apex}-canary"}
    canary_backend.update({f: backend[f] for f in BACKEND_FIELDS if f in backend})
    canary_backend["weight"] = 0
    rule["priority"] = PRIORITY
    rule["backends"] = [primary_backend, canary_backend]
    rule.setdefault("websocket", False)
    rules = matching.ab_rules(rule, match)
    if mirror_percent:
        host = matching.mirror_host(f"{apex}-canary", canary.namespace, canary.spec.service.port)
        for each in rules:
            matching.with_mirror(each, matching.mirror_plugin(host, mirror_percent))
    spec: Obj = {"http": rules}
    user_spec = user_route.get("spec") or {}
    if user_spec.get("ingressClassName"):
        spec["ingressClassName"] = user_spec["ingressClassName"]
    user_meta = user_route.get("metadata") or {}
    metadata: Obj = {
        "name": apisixroute.canary_route_name(user_meta["name"], apex),
        "namespace": canary.namespace,
        "ownerReferences": [objects.owner_reference(canary)],
    }
    _set_map(metadata, "labels", objects.filter_metadata(user_meta.get("labels")))
    _set_map(metadata, "annotations", objects.copied_annotations(user_meta.get("annotations")))
    return {
        "apiVersion": apisixroute.API_VERSION,
        "kind": apisixroute.KIND,
        "metadata": metadata,
        "spec": spec,
    }


def _rule_weights(rule: Obj, primary: str, canary: str) -> capabilities.Weights:
    weights = {
        b.get("serviceName"): b.get("weight", DEFAULT_WEIGHT) for b in rule.get("backends") or []
    }
    return capabilities.Weights(primary=int(weights[primary]), canary=int(weights.get(canary, 0)))


def weights_of(route: Obj, primary: str, canary: str) -> capabilities.Weights | None:
    """The split of the rules carrying ``primary`` (``None`` without such a rule); a route
    whose rules disagree is a ``Conflict``: something else wrote it."""
    found = {_rule_weights(rule, primary, canary) for rule in split_rules(route, primary)}
    if len(found) > 1:
        name = (route.get("metadata") or {}).get("name", "")
        shown = ", ".join(sorted(str(w) for w in found))
        raise errors.Conflict(f"the rules of ApisixRoute {name} carry different weights: {shown}")
    return found.pop() if found else None


def _weighted(route: Obj, primary: str, canary: str, weights: capabilities.Weights) -> Obj:
    route = copy.deepcopy(route)
    for rule in split_rules(route, primary):
        for backend in rule["backends"]:
            if backend.get("serviceName") == primary:
                backend["weight"] = weights.primary
            elif backend.get("serviceName") == canary:
                backend["weight"] = weights.canary
    return route


class ApisixRoutes:
    """``TrafficRouter`` writing ``apisix.apache.org/v2`` ApisixRoutes."""

    def __init__(self, store: objects.Objects) -> None:
        self.store = store

    @staticmethod
    def _names(command: messages.SetWeights) -> tuple[str, str, str]:
        apex = command.service
        return (
            apisixroute.canary_route_name(command.route, apex),
            f"{apex}-primary",
            f"{apex}-canary",
        )

    async def reconcile(self, command: messages.SetWeights) -> str:
        canary = await self.store.canary(command.canary)
        namespace = canary.namespace
        try:
            user_route = await self.store.kube.get(
                kubernetes.APISIX_ROUTES, namespace, command.route
            )
        except errors.NotFound as exc:
            raise errors.NotFound(
                f"ApisixRoute {namespace}/{command.route} (the canary's routeRef) not found"
            ) from exc
        rule = source_rule(user_route, command.service)
        if rule is None:
            raise errors.InvalidInput(
                f"ApisixRoute {namespace}/{command.route} has no HTTP rule whose single backend "
                f"is the Service {command.service!r}; the canary route is built from such a rule",
                path="spec.http[].backends",
                expected=f"a rule with exactly one backend, serviceName {command.service}",
            )
        desired = canary_route(
            canary, user_route, rule, command.service, command.match, command.mirror_percent
        )
        name, primary, canary_service = self._names(command)
        # the apex's ApisixUpstream settings first, so the route never reaches the Services
        # without them
        await upstreams.follow(self.store, canary, command.service)

        def build(current: Obj | None) -> Obj | None:
            return _resync(canary, desired, current, primary, canary_service)

        await self.store.ensure(kubernetes.APISIX_ROUTES, namespace, name, build)
        return name

    async def set_weights(
        self, command: messages.SetWeights, weights: capabilities.Weights
    ) -> None:
        name, primary, canary_service = self._names(command)
        namespace = command.canary.namespace

        def build(current: Obj | None) -> Obj | None:
            if current is None:
                return None  # ensure() says it does not exist
            if not split_rules(current, primary):
                raise errors.InvalidInput(
                    f"ApisixRoute {namespace}/{name} has no backend {primary}", path="spec.http"
                )
            updated = _weighted(current, primary, canary_service, weights)
            return None if updated == current else updated

        await self.store.ensure(kubernetes.APISIX_ROUTES, namespace, name, build)

    async def get_weights(self, command: messages.SetWeights) -> capabilities.Weights:
        name, primary, canary_service = self._names(command)
        route = await self.store.kube.get(kubernetes.APISIX_ROUTES, command.canary.namespace, name)
        weights = weights_of(route, primary, canary_service)
        if weights is None:
            raise errors.InvalidInput(
                f"ApisixRoute {command.canary.namespace}/{name} has no backend {primary}",
                path="spec.http",
            )
        return weights


def _resync(
    canary: canary_model.Canary,
    desired: Obj,
    current: Obj | None,
    primary: str,
    canary_service: str,
) -> Obj | None:
    if current is None:
        return desired
    rules = split_rules(current, primary)
    # the first rule's split when the rules disagree: the new spec carries one split again
    kept = _rule_weights(rules[0], primary, canary_service) if rules else None
    wanted = _weighted(desired, primary, canary_service, kept) if kept is not None else desired
    updated = copy.deepcopy(current)
    updated["spec"] = wanted["spec"]
    meta = objects.meta(updated)
    _set_map(meta, "labels", wanted["metadata"].get("labels") or {})
    _set_map(meta, "annotations", wanted["metadata"].get("annotations") or {})
    meta["ownerReferences"] = objects.with_owner(meta.get("ownerReferences") or [], canary)
    return None if updated == current else updated
