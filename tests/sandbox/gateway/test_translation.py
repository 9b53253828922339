"""The pure ApisixRoute → APISIX route translation (apisix-ingress-controller semantics)."""

from __future__ import annotations

import zlib

import pytest

from sandbox.gateway import translation
from sandbox.gateway.translation import Expr, Node
from tests.sandbox.gateway.objects import apisix_route, backend, by_key, endpoints, rule, service

SERVICES = by_key(
    service("podinfo"),
    service("podinfo-primary", cluster_ip="10.96.0.11"),
    service("podinfo-canary", cluster_ip="10.96.0.12"),
    service("named", ports=[("http", 80, "http"), ("metrics", 9797, 9797)]),
    service("headless", cluster_ip="None"),
)
ENDPOINTS = by_key(
    endpoints("podinfo", addresses=["10.0.0.1", "10.0.0.2"]),
    endpoints("podinfo-primary", addresses=["10.0.1.1"]),
    endpoints("podinfo-canary", addresses=["10.0.2.1", "10.0.2.2"], not_ready=["10.0.2.3"]),
    endpoints("named", addresses=["10.0.3.1"], ports=[("http", 9898), ("metrics", 9797)]),
    endpoints("headless", addresses=["10.0.4.1"]),
)


def one(ar: dict, services=SERVICES, eps=ENDPOINTS) -> translation.Route:
    table = translation.translate([ar], services, eps)
    assert not table.errors, table.errors
    assert len(table.routes) == 1
    return table.routes[0]


def test_route_named_namespace_apisixroute_rule_with_crc32_id():
    route = one(apisix_route("podinfo-podinfo-canary", [rule("podinfo")]))
    assert route.name == "test_podinfo-podinfo-canary_podinfo"
    assert route.id == format(zlib.crc32(b"test_podinfo-podinfo-canary_podinfo"), "x")
    assert (route.namespace, route.apisixroute, route.rule) == (
        "test",
        "podinfo-podinfo-canary",
        "podinfo",
    )


def test_every_rule_becomes_a_route_sorted_by_name():
    ar = apisix_route("podinfo", [rule("b"), rule("a")])
    table = translation.translate([ar], SERVICES, ENDPOINTS)
    assert [r.name for r in table.routes] == ["test_podinfo_a", "test_podinfo_b"]


def test_match_fields_copied():
    route = one(
        apisix_route(
            "r",
            [
                rule(
                    paths=["/api/*", "/exact"],
                    priority=7,
                    match={
                        "hosts": ["App.Example.com", "*.example.org"],
                        "methods": ["get", "POST"],
                        "remoteAddrs": ["10.0.0.0/8", "127.0.0.1"],
                    },
                )
            ],
        )
    )
    assert route.uris == ("/api/*", "/exact")
    assert route.hosts == ("app.example.com", "*.example.org")
    assert route.methods == ("GET", "POST")
    assert route.remote_addrs == ("10.0.0.0/8", "127.0.0.1")
    assert route.priority == 7


def test_priority_defaults_to_zero_and_timeout_to_none():
    route = one(apisix_route("r", [rule()]))
    assert route.priority == 0
    assert route.timeout is None


def test_timeout_durations_with_defaults_for_missing_fields():
    route = one(apisix_route("r", [rule(timeout={"connect": "2s", "read": "1m30s"})]))
    assert route.timeout == translation.Timeout(connect=2.0, send=60.0, read=90.0)


@pytest.mark.parametrize(
    ("subject", "var"),
    [
        ({"scope": "Header", "name": "X-Canary-Flag"}, "http_x_canary_flag"),
        ({"scope": "Query", "name": "User"}, "arg_user"),
        ({"scope": "Cookie", "name": "Canary"}, "cookie_Canary"),
        ({"scope": "Path"}, "uri"),
    ],
)
def test_expr_subjects(subject, var):
    route = one(
        apisix_route(
            "r", [rule(match={"exprs": [{"subject": subject, "op": "Equal", "value": "v"}]})]
        )
    )
    assert route.vars == (Expr(var, "==", "v"),)


@pytest.mark.parametrize(
    ("op", "vars_form"),
    [
        ("Equal", ["http_x", "==", "1"]),
        ("NotEqual", ["http_x", "~=", "1"]),
        ("GreaterThan", ["http_x", ">", "1"]),
        ("LessThan", ["http_x", "<", "1"]),
        ("RegexMatch", ["http_x", "~~", "1"]),
        ("RegexMatchCaseInsensitive", ["http_x", "~*", "1"]),
        ("RegexNotMatch", ["http_x", "!", "~~", "1"]),
        ("RegexNotMatchCaseInsensitive", ["http_x", "!", "~*", "1"]),
        ("In", ["http_x", "in", ["1", "2"]]),
        ("NotIn", ["http_x", "!", "in", ["1", "2"]]),
    ],
)
def test_expr_operators_as_apisix_vars(op, vars_form):
    expr = {"subject": {"scope": "Header", "name": "x"}, "op": op}
    expr |= {"set": ["1", "2"]} if op in ("In", "NotIn") else {"value": "1"}
    route = one(apisix_route("r", [rule(match={"exprs": [expr]})]))
    assert [e.to_vars() for e in route.vars] == [vars_form]


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ({"subject": {"scope": "Body", "name": "x"}, "op": "Equal", "value": "1"}, "scope"),
        ({"subject": {"scope": "Header"}, "op": "Equal", "value": "1"}, "subject name"),
        ({"subject": {"scope": "Header", "name": "x"}, "op": "Like", "value": "1"}, "op one of"),
        ({"subject": {"scope": "Header", "name": "x"}, "op": "In", "value": "1"}, "set"),
        ({"subject": {"scope": "Header", "name": "x"}, "op": "Equal"}, "value"),
        (
            {"subject": {"scope": "Header", "name": "x"}, "op": "RegexMatch", "value": "("},
            "regular expression",
        ),
    ],
)
def test_bad_exprs_skip_the_rule_with_a_field_path(expr, message):
    ar = apisix_route("r", [rule("bad", match={"exprs": [expr]}), rule("good")])
    table = translation.translate([ar], SERVICES, ENDPOINTS)
    assert [r.name for r in table.routes] == ["test_r_good"]
    assert len(table.errors) == 1
    assert message in table.errors[0]
    assert "test/r: $.spec.http[0].match.exprs[0]" in table.errors[0]


@pytest.mark.parametrize(
    ("bad_rule", "message"),
    [
        (
            {"name": "x", "match": {"paths": []}, "backends": [backend("podinfo")]},
            "at least one path",
        ),
        (
            {"name": "x", "match": {"paths": ["api"]}, "backends": [backend("podinfo")]},
            "starting with '/'",
        ),
        ({"name": "x", "match": {"paths": ["/"]}, "backends": []}, "at least one backend"),
        ({"match": {"paths": ["/"]}, "backends": [backend("podinfo")]}, "rule name"),
        (
            {
                "name": "x",
                "match": {"paths": ["/"], "remoteAddrs": ["nope"]},
                "backends": [backend("podinfo")],
            },
            "IP or CIDR",
        ),
        (
            {"name": "x", "match": {"paths": ["/"]}, "backends": [backend("podinfo", weight=-1)]},
            "non-negative int",
        ),
        (
            {
                "name": "x",
                "match": {"paths": ["/"]},
                "backends": [backend("podinfo", resolveGranularity="pod")],
            },
            "resolveGranularity",
        ),
        (
            {
                "name": "x",
                "match": {"paths": ["/"]},
                "backends": [backend("podinfo")],
                "timeout": {"read": "soon"},
            },
            "duration",
        ),
    ],
)
def test_invalid_rules_are_reported(bad_rule, message):
    table = translation.translate([apisix_route("r", [bad_rule])], SERVICES, ENDPOINTS)
    assert table.routes == ()
    assert message in table.errors[0]


def test_duplicated_rule_name_is_reported_and_first_kept():
    table = translation.translate(
        [apisix_route("r", [rule("a"), rule("a", paths=["/other"])])], SERVICES, ENDPOINTS
    )
    assert [r.uris for r in table.routes] == [("/*",)]
    assert "duplicated" in table.errors[0]


def test_deleted_apisixroute_is_ignored():
    ar = apisix_route("r", [rule()])
    ar["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    assert translation.translate([ar], SERVICES, ENDPOINTS).routes == ()


# -- plugins -----------------------------------------------------------------------------------


def test_prometheus_enabled_with_prefer_name_reports_the_name():
    route = one(apisix_route("r", [rule()]))
    assert route.prometheus
    assert route.metric_route_label == "test_r_podinfo"


def test_prometheus_without_prefer_name_reports_the_id():
    r = rule(prometheus=False, plugins=[{"name": "prometheus", "enable": True}])
    route = one(apisix_route("r", [r]))
    assert route.prometheus
    assert route.metric_route_label == route.id


@pytest.mark.parametrize(
    "plugins",
    [
        [],
        [{"name": "prometheus", "enable": False, "config": {"prefer_name": True}}],
        [{"name": "prometheus", "enable": True, "config": {"disable": True}}],
        [{"name": "prometheus", "enable": True, "config": {"_meta": {"disable": True}}}],
    ],
)
def test_prometheus_not_recording(plugins):
    route = one(apisix_route("r", [rule(prometheus=False, plugins=plugins)]))
    assert not route.prometheus


def test_other_plugins_kept_disabled_ones_listed():
    plugins = [
        {"name": "cors", "enable": True},
        {"name": "limit-count", "enable": False, "config": {"count": 1}},
        {"name": "proxy-rewrite", "enable": True, "config": {"uri": "/x"}},
    ]
    route = one(apisix_route("r", [rule(prometheus=False, plugins=plugins)]))
    assert dict(route.plugins) == {"cors": {}, "proxy-rewrite": {"uri": "/x"}}
    assert route.disabled_plugins == ("limit-count",)
    assert not route.prometheus


# -- backends ----------------------------------------------------------------------------------


def test_single_backend_endpoints_granularity():
    route = one(apisix_route("r", [rule(backends=[backend("podinfo")])]))
    assert route.upstream.name == "test_podinfo_80"
    assert route.upstream.nodes == (Node("10.0.0.1", 9898), Node("10.0.0.2", 9898))
    assert route.weighted_upstreams == ()
    assert route.weights() == {"podinfo": 100}


def test_single_backend_weight_plays_no_part():
    route = one(apisix_route("r", [rule(backends=[backend("podinfo", weight=0)])]))
    assert route.weights() == {"podinfo": 100}
    assert [b.weight for b in route.backends()] == [100]


def test_two_backends_form_traffic_split_first_backend_last():
    route = one(
        apisix_route(
            "r",
            [
                rule(
                    backends=[
                        backend("podinfo-primary", weight=70),
                        backend("podinfo-canary", weight=30),
                    ]
                )
            ],
        )
    )
    assert route.upstream.service == "podinfo-primary"
    assert [(w.upstream.service, w.weight) for w in route.weighted_upstreams] == [
        ("podinfo-canary", 30),
        ("podinfo-primary", 70),
    ]
    assert route.weights() == {"podinfo-primary": 70, "podinfo-canary": 30}
    split = route.to_json()["plugins"]["traffic-split"]["rules"][0]["weighted_upstreams"]
    assert split == [
        {"upstream_id": translation.gen_id("test_podinfo-canary_80"), "weight": 30},
        {"weight": 70},
    ]


def test_missing_weights_default_to_100():
    route = one(
        apisix_route(
            "r", [rule(backends=[backend("podinfo-primary"), backend("podinfo-canary", weight=0)])]
        )
    )
    assert route.weights() == {"podinfo-primary": 100, "podinfo-canary": 0}


def test_not_ready_addresses_are_not_nodes():
    route = one(apisix_route("r", [rule(backends=[backend("podinfo-canary")])]))
    assert [n.host for n in route.upstream.nodes] == ["10.0.2.1", "10.0.2.2"]


@pytest.mark.parametrize("port", [80, "http", "80"])
def test_service_port_by_number_or_name_resolves_the_named_endpoints_port(port):
    route = one(apisix_route("r", [rule(backends=[backend("named", port=port)])]))
    assert route.upstream.nodes == (Node("10.0.3.1", 9898),)
    assert route.upstream.name == "test_named_80"


def test_second_named_port():
    route = one(apisix_route("r", [rule(backends=[backend("named", port="metrics")])]))
    assert route.upstream.nodes == (Node("10.0.3.1", 9797),)
    assert route.upstream.name == "test_named_9797"


def test_service_granularity_uses_the_cluster_ip_dialled_through_endpoints():
    route = one(
        apisix_route("r", [rule(backends=[backend("podinfo", resolveGranularity="service")])])
    )
    assert route.upstream.name == "test_podinfo_80_service"
    assert route.upstream.nodes == (
        Node("10.96.0.10", 80, (("10.0.0.1", 9898), ("10.0.0.2", 9898))),
    )


def test_subset_in_upstream_name():
    route = one(apisix_route("r", [rule(backends=[backend("podinfo", subset="v2")])]))
    assert route.upstream.name == "test_podinfo_v2_80"


@pytest.mark.parametrize(
    ("bk", "services", "eps", "error"),
    [
        (backend("podinfo"), SERVICES, {}, "no ready endpoints"),
        (
            backend("podinfo"),
            SERVICES,
            by_key(endpoints("podinfo", not_ready=["10.0.0.9"])),
            "no ready endpoints",
        ),
        (
            backend("named", port="metrics"),
            SERVICES,
            by_key(endpoints("named", addresses=["10.0.3.1"], ports=[("http", 9898)])),
            "no ready endpoints",
        ),
        (backend("headless", resolveGranularity="service"), SERVICES, ENDPOINTS, "no clusterIP"),
    ],
)
def test_backend_without_nodes_keeps_the_route_with_an_error(bk, services, eps, error):
    route = one(apisix_route("r", [rule(backends=[bk])]), services, eps)
    assert route.upstream.nodes == ()
    assert error in route.upstream.error


@pytest.mark.parametrize(
    ("bk", "error"),
    [
        (backend("nope"), "service test/nope not found - at test/r: $.spec.http[1].backends[1]"),
        (backend("podinfo", port=81), "port 81 not defined in service test/podinfo"),
        (backend("podinfo", port="grpc"), "port 'grpc' not defined in service test/podinfo"),
    ],
)
def test_missing_backend_service_or_port_rejects_the_whole_apisixroute(bk, error):
    ar = apisix_route("r", [rule("good"), rule("bad", backends=[backend("podinfo"), bk])])
    table = translation.translate([ar], SERVICES, ENDPOINTS)
    assert table.routes == ()
    assert len(table.errors) == 1
    assert error in table.errors[0]
    (status,) = table.statuses
    assert (status.key, status.rejected, status.ok) == (("test", "r"), True, False)


def test_a_rejected_apisixroute_leaves_the_others_alone():
    table = translation.translate(
        [
            apisix_route("bad", [rule(backends=[backend("nope")])]),
            apisix_route("good", [rule()]),
        ],
        SERVICES,
        ENDPOINTS,
    )
    assert [r.name for r in table.routes] == ["test_good_podinfo"]
    assert [(s.name, s.ok) for s in table.statuses] == [("bad", False), ("good", True)]


def test_other_namespace_services_are_not_used():
    ar = apisix_route("r", [rule(backends=[backend("podinfo")])], namespace="prod")
    table = translation.translate([ar], SERVICES, ENDPOINTS)
    assert table.routes == ()
    assert "service prod/podinfo not found" in table.errors[0]


def test_route_json_is_what_apisix_admin_would_show():
    route = one(
        apisix_route(
            "r",
            [
                rule(
                    match={
                        "hosts": ["a.example.com"],
                        "exprs": [
                            {
                                "subject": {"scope": "Header", "name": "x-canary"},
                                "op": "Equal",
                                "value": "always",
                            }
                        ],
                    },
                    priority=5,
                )
            ],
        )
    )
    body = route.to_json()
    assert body["name"] == "test_r_podinfo"
    assert body["hosts"] == ["a.example.com"]
    assert body["vars"] == [["http_x_canary", "==", "always"]]
    assert body["priority"] == 5
    assert body["plugins"]["prometheus"] == {"disable": False, "prefer_name": True}
    assert body["upstreams"][0]["nodes"] == [
        {"host": "10.0.0.1", "port": 9898, "weight": 100},
        {"host": "10.0.0.2", "port": 9898, "weight": 100},
    ]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5s", 5.0), ("500ms", 0.5), ("1m30s", 90.0), ("1h", 3600.0), ("1.5s", 1.5)],
)
def test_parse_duration(text, seconds):
    assert translation.parse_duration(text, "$") == pytest.approx(seconds)
