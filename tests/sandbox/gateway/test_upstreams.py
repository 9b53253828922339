"""ApisixUpstream in the pure translation: Service settings, subsets, external upstreams, and
how ``backends[]`` and ``upstreams[]`` combine (apisix-ingress-controller semantics)."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.gateway import translation, upstreams
from tests.sandbox.gateway.objects import apisix_route, backend, by_key, endpoints, rule, service

Obj = dict[str, Any]
SERVICES = by_key(
    service("podinfo"),
    service("podinfo-canary", cluster_ip="10.96.0.12"),
    service("multi", ports=[("http", 80, 9898), ("admin", 8080, 8080)]),
    {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "ext-svc", "namespace": "test"},
        "spec": {"type": "ExternalName", "externalName": "httpbin.example.org"},
    },
)
ENDPOINTS = by_key(
    endpoints("podinfo", addresses=["10.0.0.1", "10.0.0.2", "10.0.0.3"]),
    endpoints("podinfo-canary", addresses=["10.0.2.1"]),
    endpoints("multi", addresses=["10.0.5.1"], ports=[("http", 9898), ("admin", 8080)]),
)
PODS = by_key(
    *(
        {
            "metadata": {"name": f"podinfo-{i}", "namespace": "test", "labels": labels},
            "status": {"podIP": f"10.0.0.{i}"},
        }
        for i, labels in (
            (1, {"app": "podinfo", "version": "v1"}),
            (2, {"app": "podinfo", "version": "v2"}),
            (3, {"app": "podinfo", "version": "v2"}),
        )
    )
)


def apisix_upstream(name: str, namespace: str = "test", **spec: Any) -> Obj:
    return {
        "apiVersion": "apisix.apache.org/v2",
        "kind": "ApisixUpstream",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def ext_rule(name: str = "podinfo", **extra: Any) -> Obj:
    """A rule with ``upstreams[]`` and no ``backends`` (``rule`` always adds one)."""
    out = rule(name, **extra)
    del out["backends"]
    return out


def table(ar: Obj, *aus: Obj, pods: dict | None = None) -> translation.RouteTable:
    return translation.translate(
        [ar], SERVICES, ENDPOINTS, apisix_upstreams=by_key(*aus), pods=pods or PODS
    )


def one(ar: Obj, *aus: Obj) -> translation.Route:
    result = table(ar, *aus)
    assert not result.errors, result.errors
    assert len(result.routes) == 1
    return result.routes[0]


EXTERNAL = apisix_upstream(
    "httpbin",
    externalNodes=[
        {"type": "Domain", "name": "localhost", "weight": 30},
        {"type": "Domain", "name": "127.0.0.9", "port": 8080},
    ],
)
EXTERNAL2 = apisix_upstream(
    "other", scheme="https", externalNodes=[{"type": "Service", "name": "ext-svc"}]
)


# --- a Service's own ApisixUpstream -------------------------------------------------------------


def test_without_apisix_upstream_apisix_defaults():
    route = one(apisix_route("r", [rule()]))
    assert route.upstream.settings == upstreams.Settings()
    assert route.to_json()["upstreams"][0]["type"] == "roundrobin"


def test_apisix_upstream_named_like_the_service_configures_its_upstream():
    au = apisix_upstream(
        "podinfo",
        loadbalancer={"type": "chash", "hashOn": "header", "key": "X-User"},
        scheme="https",
        retries=2,
        timeout={"connect": "1s", "read": "500ms"},
        passHost="rewrite",
        upstreamHost="internal.example.com",
    )
    route = one(apisix_route("r", [rule()]), au)
    assert route.upstream.settings == upstreams.Settings(
        type="chash",
        hash_on="header",
        key="X-User",
        scheme="https",
        retries=2,
        timeout=upstreams.Timeout(connect=1.0, read=0.5),
        pass_host="rewrite",
        upstream_host="internal.example.com",
    )
    shown = route.to_json()["upstreams"][0]
    assert (shown["type"], shown["hash_on"], shown["key"], shown["retries"]) == (
        "chash",
        "header",
        "X-User",
        2,
    )


def test_apisix_upstream_of_another_service_or_namespace_plays_no_part():
    aus = (
        apisix_upstream("podinfo-canary", retries=5),
        apisix_upstream("podinfo", namespace="other", retries=5),
    )
    assert one(apisix_route("r", [rule()]), *aus).upstream.settings.retries is None


def test_port_level_settings_replace_the_settings_for_that_port():
    au = apisix_upstream(
        "multi",
        retries=1,
        portLevelSettings=[{"port": 8080, "loadbalancer": {"type": "least_conn"}}],
    )
    ar = apisix_route(
        "r",
        [
            rule("http", paths=["/a"], backends=[backend("multi", 80)]),
            rule("admin", paths=["/b"], backends=[backend("multi", "admin")]),
        ],
    )
    result = table(ar, au)
    http, admin = result.routes[1], result.routes[0]
    assert http.upstream.settings == upstreams.Settings(retries=1)
    assert admin.upstream.settings == upstreams.Settings(type="least_conn")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"loadbalancer": {"type": "random"}}, "$.spec.loadbalancer.type"),
        ({"loadbalancer": {"type": "chash", "hashOn": "header"}}, "$.spec.loadbalancer.key"),
        ({"loadbalancer": {"type": "chash", "hashOn": "ip", "key": "k"}}, "hashOn"),
        ({"scheme": "ftp"}, "$.spec.scheme"),
        ({"retries": -1}, "$.spec.retries"),
        ({"passHost": "rewrite"}, "$.spec.upstreamHost"),
        ({"timeout": {"read": "soon"}}, "$.spec.timeout.read"),
    ],
)
def test_bad_settings_reject_the_apisixroute_naming_the_field(spec, message):
    result = table(apisix_route("r", [rule()]), apisix_upstream("podinfo", **spec))
    assert result.routes == ()
    assert "ApisixUpstream test/podinfo" in result.errors[0]
    assert message in result.errors[0]


# --- subsets ------------------------------------------------------------------------------------


SUBSETS = apisix_upstream(
    "podinfo",
    subsets=[{"name": "v2", "labels": {"version": "v2"}}, {"name": "none", "labels": {"x": "y"}}],
)


def test_subset_keeps_the_endpoints_of_pods_with_its_labels():
    route = one(apisix_route("r", [rule(backends=[backend("podinfo", subset="v2")])]), SUBSETS)
    assert route.upstream.name == "test_podinfo_v2_80"
    assert [n.host for n in route.upstream.nodes] == ["10.0.0.2", "10.0.0.3"]


def test_subset_without_matching_pods_has_no_nodes():
    route = one(apisix_route("r", [rule(backends=[backend("podinfo", subset="none")])]), SUBSETS)
    assert route.upstream.nodes == ()
    assert "subset none" in route.upstream.error


def test_subset_not_listed_keeps_every_endpoint():
    route = one(apisix_route("r", [rule(backends=[backend("podinfo", subset="v9")])]), SUBSETS)
    assert len(route.upstream.nodes) == 3


def test_subset_without_any_apisix_upstream_has_no_nodes():
    route = one(apisix_route("r", [rule(backends=[backend("podinfo", subset="v2")])]))
    assert route.upstream.nodes == ()


def test_subsets_split_by_weight():
    ar = apisix_route(
        "r",
        [
            rule(
                backends=[
                    backend("podinfo", subset="v2", weight=10),
                    backend("podinfo", weight=90),
                ]
            )
        ],
    )
    route = one(ar, SUBSETS)
    assert [(b.upstream.name, b.weight) for b in route.backends()] == [
        ("test_podinfo_v2_80", 10),
        ("test_podinfo_80", 90),
    ]


# --- external upstreams and how they combine with backends ------------------------------------


def test_upstreams_only_one_is_the_route_upstream():
    route = one(apisix_route("r", [ext_rule(upstreams=[{"name": "httpbin"}])]), EXTERNAL)
    up = route.upstream
    assert (up.name, up.external, route.weighted_upstreams) == ("test_httpbin", True, ())
    assert [(n.host, n.port, n.weight) for n in up.nodes] == [
        ("localhost", 80, 30),
        ("127.0.0.9", 8080, 100),
    ]
    assert route.to_json()["upstream_id"] == upstreams.gen_id("test_httpbin")


def test_service_node_is_the_external_name_with_the_scheme_port():
    route = one(apisix_route("r", [ext_rule(upstreams=[{"name": "other"}])]), EXTERNAL2)
    assert [(n.host, n.port) for n in route.upstream.nodes] == [("httpbin.example.org", 443)]
    assert route.upstream.settings.scheme == "https"


def test_upstreams_only_several_first_weight_first():
    ar = apisix_route(
        "r",
        [ext_rule(upstreams=[{"name": "httpbin", "weight": 20}, {"name": "other"}])],
    )
    route = one(ar, EXTERNAL, EXTERNAL2)
    split = route.to_json()["plugins"]["traffic-split"]["rules"][0]["weighted_upstreams"]
    assert split == [{"weight": 20}, {"upstream_id": upstreams.gen_id("test_other"), "weight": 100}]
    assert route.weights() == {"httpbin": 20, "other": 100}


def test_backend_and_upstream_mixed():
    ar = apisix_route(
        "r",
        [
            rule(
                backends=[backend("podinfo", weight=70)],
                upstreams=[{"name": "httpbin", "weight": 30}],
            )
        ],
    )
    route = one(ar, EXTERNAL)
    assert route.upstream.service == "podinfo"
    split = route.to_json()["plugins"]["traffic-split"]["rules"][0]["weighted_upstreams"]
    assert split == [
        {"weight": 70},
        {"upstream_id": upstreams.gen_id("test_httpbin"), "weight": 30},
    ]
    assert route.weights() == {"podinfo": 70, "httpbin": 30}


def test_backends_and_upstreams_mixed_backends_entries_first():
    ar = apisix_route(
        "r",
        [
            rule(
                backends=[backend("podinfo", weight=50), backend("podinfo-canary", weight=20)],
                upstreams=[{"name": "httpbin"}],
            )
        ],
    )
    route = one(ar, EXTERNAL)
    split = route.to_json()["plugins"]["traffic-split"]["rules"][0]["weighted_upstreams"]
    canary_id = upstreams.gen_id("test_podinfo-canary_80")
    assert split == [
        {"upstream_id": canary_id, "weight": 20},
        {"weight": 50},
        {"upstream_id": upstreams.gen_id("test_httpbin"), "weight": 100},
    ]
    assert [b.upstream.service for b in route.backends()] == [
        "podinfo",
        "podinfo-canary",
        "httpbin",
    ]


@pytest.mark.parametrize(
    ("aus", "fragment"),
    [
        ((), "ApisixUpstream test/httpbin not found - at test/r: $.spec.http[0].upstreams[0].name"),
        ((apisix_upstream("httpbin"),), "has no externalNodes"),
        (
            (apisix_upstream("httpbin", externalNodes=[{"type": "Service", "name": "podinfo"}]),),
            "not an ExternalName service",
        ),
        (
            (apisix_upstream("httpbin", externalNodes=[{"type": "Service", "name": "nope"}]),),
            "service test/nope not found",
        ),
        (
            (apisix_upstream("httpbin", externalNodes=[{"type": "Domain", "name": "Bad_Host"}]),),
            "externalNodes[0].name",
        ),
    ],
)
def test_mixed_untranslatable_upstream_is_skipped_with_the_reason_in_the_status(aus, fragment):
    ar = apisix_route("r", [rule(backends=[backend("podinfo")], upstreams=[{"name": "httpbin"}])])
    result = table(ar, *aus)
    assert [r.upstream.service for r in result.routes] == ["podinfo"]
    assert result.routes[0].weighted_upstreams == ()
    (status,) = result.statuses
    assert not status.ok
    assert not status.rejected
    assert fragment in status.errors[0]
    assert "(skipped)" in status.errors[0]


def test_upstreams_only_missing_first_upstream_leaves_the_rule_out():
    ar = apisix_route(
        "r",
        [
            ext_rule("a", paths=["/a"], upstreams=[{"name": "missing"}, {"name": "httpbin"}]),
            rule("b", paths=["/b"]),
        ],
    )
    result = table(ar, EXTERNAL)
    assert [r.rule for r in result.routes] == ["b"]
    (status,) = result.statuses
    assert "ApisixUpstream test/missing not found" in status.errors[0]
    assert "does not exist in APISIX" in status.errors[0]


def test_upstreams_only_later_missing_upstream_is_skipped():
    ar = apisix_route("r", [ext_rule(upstreams=[{"name": "httpbin"}, {"name": "missing"}])])
    result = table(ar, EXTERNAL)
    assert result.routes[0].upstream.name == "test_httpbin"
    assert result.routes[0].weighted_upstreams == ()
    assert "missing not found" in result.statuses[0].errors[0]


def test_neither_backends_nor_upstreams_is_an_error():
    result = table(apisix_route("r", [ext_rule()]))
    assert "Expected at least one backend or upstream" in result.errors[0]
