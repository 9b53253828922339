"""The canary ApisixRoute for A/B testing (one rule per match group) and traffic mirroring
(``proxy-mirror`` to the canary Service): built from the command, re-synced when it changes,
weights kept the same on every rule."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from libs import errors, messages
from libs.model import canary as canary_model
from services.traffic_shifter import capabilities, handlers
from services.traffic_shifter.kube import matching, routes

from .conftest import CANARY, Official, manifest, set_weights
from .test_routes import FLAGGER_SPEC, ROUTE

HEADER = messages.MatchCondition(scope="header", name="x-canary", op="exact", value="insider")
COOKIE = messages.MatchCondition(
    scope="header", name="cookie", op="regex", value="^(.*?;)?(canary=always)(;.*)?$"
)
PROMETHEUS = FLAGGER_SPEC["http"][0]["plugins"][0]
MIRROR_HOST = "http://podinfo-canary.test.svc.cluster.local:80"


def canary() -> canary_model.Canary:
    raw = manifest("podinfo-canary.yaml")
    raw["metadata"]["uid"] = "0000-uid"
    return canary_model.parse_canary(raw)


def user_rule() -> dict[str, Any]:
    rule: dict[str, Any] = manifest("podinfo-apisixroute.yaml")["spec"]["http"][0]
    return rule


def build(
    match: list[list[messages.MatchCondition]] | None = None, mirror: int = 0
) -> dict[str, Any]:
    user = manifest("podinfo-apisixroute.yaml")
    return routes.canary_route(canary(), user, user_rule(), "podinfo", match or [], mirror)


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (
            messages.MatchCondition(scope="header", name="x-canary", op="exact", value="a.b"),
            {"subject": {"scope": "Header", "name": "x-canary"}, "op": "Equal", "value": "a.b"},
        ),
        (
            messages.MatchCondition(scope="query", name="beta", op="prefix", value="a.b+"),
            {
                "subject": {"scope": "Query", "name": "beta"},
                "op": "RegexMatch",
                "value": r"^a\.b\+",
            },
        ),
        (
            messages.MatchCondition(scope="header", name="user-agent", op="suffix", value="(x)"),
            {
                "subject": {"scope": "Header", "name": "user-agent"},
                "op": "RegexMatch",
                "value": r"\(x\)$",
            },
        ),
        (
            COOKIE,
            {
                "subject": {"scope": "Header", "name": "cookie"},
                "op": "RegexMatch",
                "value": "^(.*?;)?(canary=always)(;.*)?$",
            },
        ),
    ],
)
def test_conditions_become_apisixroute_exprs(
    condition: messages.MatchCondition, expected: dict[str, Any]
) -> None:
    assert matching.expr(condition) == expected


@pytest.mark.parametrize(
    "condition",
    [
        messages.MatchCondition(scope="cookie", name="c", op="exact", value="v"),
        messages.MatchCondition(scope="header", name="h", op="glob", value="v*"),
    ],
)
def test_conditions_apisix_cannot_take_are_invalid_input(
    condition: messages.MatchCondition,
) -> None:
    with pytest.raises(errors.InvalidInput):
        matching.expr(condition)


def test_no_match_and_no_mirror_is_flaggers_route() -> None:
    assert build()["spec"] == FLAGGER_SPEC


def test_one_rule_per_match_group_with_the_users_exprs_first() -> None:
    user_expr = {"subject": {"scope": "Path"}, "op": "RegexMatch", "value": "^/api"}
    user = manifest("podinfo-apisixroute.yaml")
    rule = user_rule()
    rule["match"]["exprs"] = [user_expr]
    both = [HEADER, messages.MatchCondition(scope="query", name="beta", op="exact", value="1")]
    built = routes.canary_route(canary(), user, rule, "podinfo", [both, [COOKIE]])
    rules = built["spec"]["http"]
    assert [r["name"] for r in rules] == ["method-ab-0", "method-ab-1"]
    assert [r["match"]["exprs"] for r in rules] == [
        [user_expr, matching.expr(both[0]), matching.expr(both[1])],
        [user_expr, matching.expr(COOKIE)],
    ]
    for r in rules:  # everything else is Flagger's rule
        expected = copy.deepcopy(FLAGGER_SPEC["http"][0])
        expected["match"]["exprs"] = r["match"]["exprs"]
        assert r == {**expected, "name": r["name"]}
    assert rule["match"]["exprs"] == [user_expr]  # the user's rule is not changed


def test_mirroring_adds_proxy_mirror_after_the_users_plugins_on_every_rule() -> None:
    plugin = {
        "name": "proxy-mirror",
        "enable": True,
        "config": {"host": MIRROR_HOST, "sample_ratio": 0.5},
    }
    assert build(mirror=50)["spec"]["http"][0]["plugins"] == [PROMETHEUS, plugin]
    rules = build([[HEADER], [COOKIE]], mirror=100)["spec"]["http"]
    full = {**plugin, "config": {"host": MIRROR_HOST, "sample_ratio": 1.0}}
    assert [r["plugins"] for r in rules] == [[PROMETHEUS, full], [PROMETHEUS, full]]

    # the user's own proxy-mirror is replaced while Sluice mirrors, kept otherwise
    user = manifest("podinfo-apisixroute.yaml")
    rule = user_rule()
    theirs = {"name": "proxy-mirror", "enable": True, "config": {"host": "http://audit:8080"}}
    rule["plugins"].insert(0, theirs)
    mirrored = routes.canary_route(canary(), user, rule, "podinfo", [], 50)
    assert mirrored["spec"]["http"][0]["plugins"] == [PROMETHEUS, plugin]
    plain = routes.canary_route(canary(), user, rule, "podinfo", [], 0)
    assert plain["spec"]["http"][0]["plugins"] == [theirs, PROMETHEUS]


def test_weights_are_read_from_every_rule_and_must_agree() -> None:
    route = build([[HEADER], [COOKIE]])
    weighted = routes._weighted(
        route, "podinfo-primary", "podinfo-canary", capabilities.Weights(0, 100)
    )
    for rule in weighted["spec"]["http"]:
        assert [b["weight"] for b in rule["backends"]] == [0, 100]
    assert routes.weights_of(weighted, "podinfo-primary", "podinfo-canary") == capabilities.Weights(
        0, 100
    )
    weighted["spec"]["http"][1]["backends"][0]["weight"] = 100
    weighted["spec"]["http"][1]["backends"][1]["weight"] = 0
    with pytest.raises(errors.Conflict, match="different weights: 0/100, 100/0"):
        routes.weights_of(weighted, "podinfo-primary", "podinfo-canary")
    assert routes.weights_of(route, "elsewhere", "podinfo-canary") is None


# ----------------------------------------------------------------- on the simulated cluster


def backends(route: dict[str, Any]) -> list[dict[str, int]]:
    return [{b["serviceName"]: b["weight"] for b in r["backends"]} for r in route["spec"]["http"]]


@pytest.mark.integration
async def test_the_route_follows_the_match_and_mirror_of_each_command(
    platform: capabilities.Platform, official: Official, seed: dict[str, Any]
) -> None:
    shifter = handlers.Shifter(platform)
    reply = await shifter.set_weights(set_weights(100, 0, match=[[HEADER], [COOKIE]]))
    assert reply == messages.WeightsApplied(
        canary=CANARY, route=ROUTE, primary_weight=100, canary_weight=0
    )
    route = await official.get("ApisixRoute", ROUTE)
    assert route["spec"] == build([[HEADER], [COOKIE]])["spec"]

    reply = await shifter.set_weights(set_weights(0, 100, match=[[HEADER], [COOKIE]]))
    assert (reply.primary_weight, reply.canary_weight) == (0, 100)
    route = await official.get("ApisixRoute", ROUTE)
    assert backends(route) == [{"podinfo-primary": 0, "podinfo-canary": 100}] * 2
    before = await official.versions(("ApisixRoute", ROUTE))
    await shifter.set_weights(set_weights(0, 100, match=[[HEADER], [COOKIE]]))
    assert await official.versions(("ApisixRoute", ROUTE)) == before

    # the user edits the match: one group now; the route follows and keeps 0/100
    await shifter.set_weights(set_weights(0, 100, match=[[COOKIE]]))
    route = await official.get("ApisixRoute", ROUTE)
    assert [r["name"] for r in route["spec"]["http"]] == ["method-ab-0"]
    assert route["spec"]["http"][0]["match"]["exprs"] == [matching.expr(COOKIE)]
    assert backends(route) == [{"podinfo-primary": 0, "podinfo-canary": 100}]

    # mirroring on (blue/green iterations at 100/0), then off; the weights apply as given
    await shifter.set_weights(set_weights(100, 0, mirror_percent=50))
    route = await official.get("ApisixRoute", ROUTE)
    rule = route["spec"]["http"][0]
    assert rule["name"] == "method"
    assert rule["plugins"][-1] == {
        "name": "proxy-mirror",
        "enable": True,
        "config": {"host": MIRROR_HOST, "sample_ratio": 0.5},
    }
    assert backends(route) == [{"podinfo-primary": 100, "podinfo-canary": 0}]
    await shifter.set_weights(set_weights(0, 100))
    route = await official.get("ApisixRoute", ROUTE)
    assert route["spec"]["http"][0]["plugins"] == [PROMETHEUS]
    expected = copy.deepcopy(FLAGGER_SPEC)
    expected["http"][0]["backends"][0]["weight"] = 0
    expected["http"][0]["backends"][1]["weight"] = 100
    assert route["spec"] == expected


@pytest.mark.integration
async def test_rules_another_writer_set_apart_are_reported_not_guessed(
    platform: capabilities.Platform, official: Official, seed: dict[str, Any]
) -> None:
    command = set_weights(100, 0, match=[[HEADER], [COOKIE]])
    await handlers.Shifter(platform).set_weights(command)
    route = await official.get("ApisixRoute", ROUTE)
    http = route["spec"]["http"]
    http[1]["backends"][0]["weight"], http[1]["backends"][1]["weight"] = 40, 60
    await official.patch("ApisixRoute", ROUTE, {"spec": {"http": http}})
    with pytest.raises(errors.Conflict, match="different weights"):
        await platform.router.get_weights(command)
    # the next command makes them one split again (the first rule's, then the wanted one)
    await handlers.Shifter(platform).set_weights(set_weights(0, 100, match=[[HEADER], [COOKIE]]))
    route = await official.get("ApisixRoute", ROUTE)
    assert backends(route) == [{"podinfo-primary": 0, "podinfo-canary": 100}] * 2
