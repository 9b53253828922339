"""SetWeights on the simulated cluster: the canary ApisixRoute exactly as Flagger's APISIX router
builds it, weights set and read back, re-syncs, idempotency, and routes it cannot use."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from libs import errors, messages
from libs.adapters import kubernetes
from services.traffic_shifter import capabilities, handlers
from services.traffic_shifter.kube import objects

from .conftest import CANARY, Official, deployment, manifest, set_weights

pytestmark = pytest.mark.integration

ROUTE = "podinfo-podinfo-canary"

# What Flagger's ApisixRouter.Reconcile creates for tests/data/manifests/podinfo-apisixroute.yaml
# and podinfo-canary.yaml (apex podinfo): the rule "method" alone, priority 10000, the apex
# backend renamed to the primary at weight 100 plus the canary at 0 with the same servicePort,
# Go's always-written `websocket: false`; the route's (empty) labels and annotations.
FLAGGER_SPEC: dict[str, Any] = {
    "http": [
        {
            "name": "method",
            "priority": 10000,
            "match": {"hosts": ["app.example.com"], "methods": ["GET"], "paths": ["/*"]},
            "backends": [
                {"serviceName": "podinfo-primary", "servicePort": 80, "weight": 100},
                {"serviceName": "podinfo-canary", "servicePort": 80, "weight": 0},
            ],
            "websocket": False,
            "plugins": [
                {
                    "name": "prometheus",
                    "enable": True,
                    "config": {"disable": False, "prefer_name": True},
                }
            ],
        }
    ]
}


def owner(canary: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "name": "podinfo",
        "uid": canary["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def weights_of(route: dict[str, Any]) -> dict[str, int]:
    return {b["serviceName"]: b["weight"] for b in route["spec"]["http"][0]["backends"]}


async def test_the_canary_route_is_flaggers_and_carries_the_weights(
    platform: capabilities.Platform, official: Official, seed: dict[str, Any]
) -> None:
    shifter = handlers.Shifter(platform)
    user_before = await official.get("ApisixRoute", "podinfo")

    reply = await shifter.set_weights(set_weights(100, 0))
    assert reply == messages.WeightsApplied(
        canary=CANARY, route=ROUTE, primary_weight=100, canary_weight=0
    )
    route = await official.get("ApisixRoute", ROUTE)
    assert route["spec"] == FLAGGER_SPEC
    meta = route["metadata"]
    assert (meta["name"], meta["namespace"]) == (ROUTE, "test")
    assert meta["ownerReferences"] == [owner(seed)]
    assert not meta.get("labels")
    assert not meta.get("annotations")

    reply = await shifter.set_weights(set_weights(90, 10))
    assert (reply.route, reply.primary_weight, reply.canary_weight) == (ROUTE, 90, 10)
    route = await official.get("ApisixRoute", ROUTE)
    assert weights_of(route) == {"podinfo-primary": 90, "podinfo-canary": 10}
    expected = copy.deepcopy(FLAGGER_SPEC)
    expected["http"][0]["backends"][0]["weight"] = 90
    expected["http"][0]["backends"][1]["weight"] = 10
    assert route["spec"] == expected

    # the same weights again write nothing; the user's route is never written
    before = await official.versions(("ApisixRoute", ROUTE))
    assert await shifter.set_weights(set_weights(90, 10)) == reply
    assert await official.versions(("ApisixRoute", ROUTE)) == before
    user_after = await official.get("ApisixRoute", "podinfo")
    assert user_after["metadata"]["resourceVersion"] == user_before["metadata"]["resourceVersion"]
    assert user_after["spec"] == manifest("podinfo-apisixroute.yaml")["spec"]


async def test_a_changed_user_route_is_resynced_keeping_the_weights(
    platform: capabilities.Platform, official: Official
) -> None:
    user = manifest("podinfo-apisixroute.yaml")
    method = user["spec"]["http"][0]
    method["backends"][0].update(servicePort="http", resolveGranularity="service", subset="v1")
    user["spec"]["http"] = [
        # skipped: more than one backend, or not the apex
        {
            **copy.deepcopy(method),
            "name": "split",
            "backends": [
                {"serviceName": "podinfo", "servicePort": 80},
                {"serviceName": "other", "servicePort": 80},
            ],
        },
        {
            **copy.deepcopy(method),
            "name": "other",
            "backends": [
                {"serviceName": "other", "servicePort": 80},
            ],
        },
        method,
    ]
    user["spec"]["ingressClassName"] = "apisix"
    user["metadata"]["labels"] = {"team": "web", "kustomize.toolkit.fluxcd.io/name": "apps"}
    user["metadata"]["annotations"] = {"example.com/owner": "web", "toolkit.fluxcd.io/x": "y"}
    _, _, canary = await official.create(deployment(), user, manifest("podinfo-canary.yaml"))
    shifter = handlers.Shifter(platform)

    await shifter.set_weights(set_weights(70, 30))
    route = await official.get("ApisixRoute", ROUTE)
    assert route["spec"]["ingressClassName"] == "apisix"
    assert [r["name"] for r in route["spec"]["http"]] == ["method"]
    assert route["spec"]["http"][0]["backends"] == [
        {
            "serviceName": "podinfo-primary",
            "servicePort": "http",
            "resolveGranularity": "service",
            "subset": "v1",
            "weight": 70,
        },
        {
            "serviceName": "podinfo-canary",
            "servicePort": "http",
            "resolveGranularity": "service",
            "subset": "v1",
            "weight": 30,
        },
    ]
    assert route["metadata"]["labels"] == {"team": "web"}
    # Flux's own keys are not copied (Flagger's filterMetadata)
    assert route["metadata"]["annotations"] == {"example.com/owner": "web"}

    # the user changes the rule: the next command re-syncs it and keeps 70/30
    await official.patch(
        "ApisixRoute",
        "podinfo",
        {
            "spec": {
                "http": [{**method, "match": {"hosts": ["new.example.com"], "paths": ["/v2/*"]}}]
            }
        },
    )
    await shifter.set_weights(set_weights(70, 30))
    route = await official.get("ApisixRoute", ROUTE)
    rule = route["spec"]["http"][0]
    assert rule["match"] == {"hosts": ["new.example.com"], "paths": ["/v2/*"]}
    assert weights_of(route) == {"podinfo-primary": 70, "podinfo-canary": 30}
    assert route["metadata"]["ownerReferences"] == [owner(canary)]


async def test_a_route_without_a_rule_for_the_apex_is_a_permanent_error_naming_it(
    platform: capabilities.Platform, official: Official
) -> None:
    user = manifest("podinfo-apisixroute.yaml")
    user["spec"]["http"][0]["backends"] = [{"serviceName": "elsewhere", "servicePort": 80}]
    await official.create(deployment(), user, manifest("podinfo-canary.yaml"))
    shifter = handlers.Shifter(platform)
    with pytest.raises(errors.InvalidInput) as caught:
        await shifter.set_weights(set_weights(100, 0))
    assert not caught.value.temporary
    assert str(caught.value) == (
        "ApisixRoute test/podinfo has no HTTP rule whose single backend is the Service "
        "'podinfo'; the canary route is built from such a rule"
    )
    assert not await official.exists("ApisixRoute", ROUTE)

    with pytest.raises(
        errors.NotFound, match=r"ApisixRoute test/missing \(the canary's routeRef\)"
    ):
        await shifter.set_weights(set_weights(100, 0, route="missing"))


class FlakyKube:
    """A Kube whose next ``fail`` replaces lose the compare-and-set, as when another writer
    got there first."""

    def __init__(self, real: kubernetes.Kube, fail: int) -> None:
        self.real = real
        self.fail = fail
        self.replaces = 0

    async def get(self, *args: Any) -> dict[str, Any]:
        return await self.real.get(*args)

    async def create(self, *args: Any) -> dict[str, Any]:
        return await self.real.create(*args)

    async def replace(self, *args: Any) -> dict[str, Any]:
        self.replaces += 1
        if self.fail:
            self.fail -= 1
            raise errors.Conflict("the object has been modified")
        return await self.real.replace(*args)


@pytest.mark.parametrize(("fail", "succeeds"), [(3, True), (4, False)])
async def test_conflicts_are_retried_a_few_times_then_go_through(
    kube_client: kubernetes.Kube, official: Official, fail: int, succeeds: bool
) -> None:
    await official.create(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "1"}}
    )
    flaky = FlakyKube(kube_client, fail)
    store = objects.Objects(flaky, objects.Options(conflict_attempts=4))  # type: ignore[arg-type]

    def build(current: dict[str, Any] | None) -> dict[str, Any] | None:
        assert current is not None
        return {**current, "data": {"k": "2"}}

    if succeeds:
        await store.ensure(kubernetes.CONFIGMAPS, "test", "c", build)
        assert (await official.get("ConfigMap", "c"))["data"] == {"k": "2"}
    else:
        with pytest.raises(errors.Conflict):
            await store.ensure(kubernetes.CONFIGMAPS, "test", "c", build)
        assert (await official.get("ConfigMap", "c"))["data"] == {"k": "1"}
    assert flaky.replaces == 4


async def test_replace_is_a_compare_and_set(kube_client: kubernetes.Kube) -> None:
    created = await kube_client.create(
        kubernetes.CONFIGMAPS,
        "test",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "1"}},
    )
    replaced = await kube_client.replace(
        kubernetes.CONFIGMAPS, "test", "c", {**created, "data": {"k": "2"}}
    )
    assert replaced["data"] == {"k": "2"}
    with pytest.raises(errors.Conflict) as caught:  # created's resourceVersion is stale now
        await kube_client.replace(
            kubernetes.CONFIGMAPS, "test", "c", {**created, "data": {"k": "3"}}
        )
    assert isinstance(caught.value.__cause__, ApiException)
    assert caught.value.__cause__.status == 409
    route = manifest("podinfo-apisixroute.yaml")
    route["metadata"]["name"] = "missing"
    with pytest.raises(errors.NotFound):
        await kube_client.replace(kubernetes.APISIX_ROUTES, "test", "missing", route)


def apisix_upstream(name: str, spec: dict[str, Any], **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apisix.apache.org/v2",
        "kind": "ApisixUpstream",
        "metadata": {"name": name, "namespace": "test", **meta},
        "spec": spec,
    }


async def test_the_apex_apisix_upstream_follows_to_the_primary_and_canary_services(
    platform: capabilities.Platform, official: Official, seed: dict[str, Any]
) -> None:
    """The user's settings for the apex Service (retries, timeouts, load balancer) keep
    applying once the canary route sends its traffic to the -primary and -canary Services."""
    shifter = handlers.Shifter(platform)
    settings = {
        "retries": 2,
        "timeout": {"connect": "2s", "read": "10s"},
        "loadbalancer": {"type": "chash", "hashOn": "header", "key": "x-user"},
    }
    await official.create(apisix_upstream("podinfo", settings, labels={"team": "web"}))
    # the user's own ApisixUpstream of a copy's name is theirs: never written
    await official.create(apisix_upstream("podinfo-canary", {"retries": 5}))

    await shifter.set_weights(set_weights(100, 0))
    primary = await official.get("ApisixUpstream", "podinfo-primary")
    assert primary["spec"] == settings
    assert primary["metadata"]["ownerReferences"] == [owner(seed)]
    users = await official.get("ApisixUpstream", "podinfo-canary")
    assert users["spec"] == {"retries": 5}
    assert not users["metadata"].get("ownerReferences")

    # a change of the user's follows at the next step; the same again writes nothing
    await official.patch("ApisixUpstream", "podinfo", {"spec": {"retries": 3}})
    await shifter.set_weights(set_weights(90, 10))
    primary = await official.get("ApisixUpstream", "podinfo-primary")
    assert primary["spec"] == {**settings, "retries": 3}
    before = primary["metadata"]["resourceVersion"]
    await shifter.set_weights(set_weights(90, 10))
    again = await official.get("ApisixUpstream", "podinfo-primary")
    assert again["metadata"]["resourceVersion"] == before

    # the user's gone: the copy falls back to APISIX's defaults (nothing is deleted)
    await official.delete_custom("ApisixUpstream", "podinfo")
    await shifter.set_weights(set_weights(80, 20))
    primary = await official.get("ApisixUpstream", "podinfo-primary")
    assert not primary.get("spec")


async def test_without_an_apex_apisix_upstream_no_copy_is_made(
    platform: capabilities.Platform, official: Official, seed: dict[str, Any]
) -> None:
    shifter = handlers.Shifter(platform)
    await shifter.set_weights(set_weights(100, 0))
    assert not await official.exists("ApisixUpstream", "podinfo-primary")
    assert not await official.exists("ApisixUpstream", "podinfo-canary")
