"""Request → route: radixtree_host_uri order, hosts, paths, methods, remote addrs and vars."""

from __future__ import annotations

import pytest

from sandbox.gateway import matching, translation
from tests.sandbox.gateway.objects import apisix_route, by_key, endpoints, rule, service

SERVICES = by_key(service("podinfo"))
ENDPOINTS = by_key(endpoints("podinfo", addresses=["10.0.0.1"]))


def router(*rules: dict) -> matching.Router:
    table = translation.translate([apisix_route("r", list(rules))], SERVICES, ENDPOINTS)
    assert not table.errors, table.errors
    return matching.Router(table)


def req(
    uri: str = "/",
    host: str = "app.example.com",
    method: str = "GET",
    query: str = "",
    headers: dict[str, str] | None = None,
    remote: str = "127.0.0.1",
) -> matching.Request:
    return matching.Request.build(method, host, uri, query, headers or {}, remote)


def matched(r: matching.Router, request: matching.Request) -> str | None:
    found = r.match(request)
    return found.route.rule if found else None


# -- paths -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "uri", "ok"),
    [
        ("/api", "/api", True),
        ("/api", "/api/", False),
        ("/api", "/apix", False),
        ("/api*", "/apix", True),
        ("/api/*", "/api/v1/x", True),
        ("/api/*", "/api/", True),
        ("/api/*", "/api", False),
        ("/*", "/", True),
        ("/*", "/anything/at/all", True),
    ],
)
def test_exact_and_prefix_paths(pattern, uri, ok):
    assert (matched(router(rule("a", paths=[pattern])), req(uri)) == "a") is ok


def test_exact_path_beats_prefix_whatever_the_priority():
    r = router(rule("prefix", paths=["/api/*"], priority=100), rule("exact", paths=["/api/info"]))
    assert matched(r, req("/api/info")) == "exact"
    assert matched(r, req("/api/other")) == "prefix"


def test_longer_prefix_beats_shorter_whatever_the_priority():
    r = router(rule("short", paths=["/api/*"], priority=100), rule("long", paths=["/api/v1/*"]))
    assert matched(r, req("/api/v1/users")) == "long"
    assert matched(r, req("/api/v2/users")) == "short"


def test_same_path_higher_priority_wins():
    r = router(rule("low", paths=["/*"], priority=0), rule("high", paths=["/*"], priority=10000))
    assert matched(r, req("/")) == "high"


def test_same_path_same_priority_is_stable_by_name():
    r = router(rule("b", paths=["/*"]), rule("a", paths=["/*"]))
    assert matched(r, req("/")) == "a"


def test_matched_uri_is_the_pattern():
    found = router(rule("a", paths=["/exact", "/api/*"])).match(req("/api/x"))
    assert found is not None
    assert found.matched_uri == "/api/*"


# -- hosts -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "host", "ok"),
    [
        ("app.example.com", "app.example.com", True),
        ("app.example.com", "APP.Example.com:8080", True),
        ("app.example.com", "other.example.com", False),
        ("*.example.com", "app.example.com", True),
        ("*.example.com", "a.b.example.com", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", "app.example.org", False),
    ],
)
def test_exact_and_wildcard_hosts(pattern, host, ok):
    r = router(rule("a", match={"hosts": [pattern]}))
    assert (matched(r, req(host=host)) == "a") is ok


def test_routes_with_a_matching_host_come_before_host_less_routes():
    r = router(
        rule("any", paths=["/api/info"], priority=100),  # exact path, no host
        rule("host", paths=["/*"], match={"hosts": ["app.example.com"]}),
    )
    assert matched(r, req("/api/info", host="app.example.com")) == "host"
    assert matched(r, req("/api/info", host="other")) == "any"


def test_exact_host_before_wildcard_and_longer_wildcard_first():
    r = router(
        rule("wide", match={"hosts": ["*.com"]}),
        rule("wild", match={"hosts": ["*.example.com"]}),
        rule("exact", match={"hosts": ["app.example.com"]}),
    )
    assert matched(r, req(host="app.example.com")) == "exact"
    assert matched(r, req(host="x.example.com")) == "wild"
    assert matched(r, req(host="x.other.com")) == "wide"


def test_matched_host_is_the_pattern_or_empty():
    r = router(rule("w", match={"hosts": ["*.example.com"]}))
    found = r.match(req(host="a.example.com"))
    assert found is not None
    assert found.matched_host == "*.example.com"
    found = router(rule("e", match={"hosts": ["a.example.com"]})).match(req(host="a.example.com"))
    assert found is not None
    assert found.matched_host == "a.example.com"
    found = router(rule("n")).match(req())
    assert found is not None
    assert found.matched_host == ""


def test_host_route_failing_other_conditions_falls_through_to_host_less():
    r = router(
        rule("host-post", match={"hosts": ["app.example.com"], "methods": ["POST"]}),
        rule("fallback"),
    )
    assert matched(r, req(host="app.example.com", method="GET")) == "fallback"
    assert matched(r, req(host="app.example.com", method="POST")) == "host-post"


# -- methods, remote addrs ---------------------------------------------------------------------


def test_methods():
    r = router(rule("a", match={"methods": ["GET", "POST"]}))
    assert matched(r, req(method="get")) == "a"
    assert matched(r, req(method="DELETE")) is None


@pytest.mark.parametrize(
    ("remote", "ok"), [("10.1.2.3", True), ("192.168.0.5", True), ("192.168.0.6", False)]
)
def test_remote_addrs(remote, ok):
    r = router(rule("a", match={"remoteAddrs": ["10.0.0.0/8", "192.168.0.5"]}))
    assert (matched(r, req(remote=remote)) == "a") is ok


def test_nothing_matches():
    assert router(rule("a", paths=["/api/*"])).match(req("/other")) is None
    assert matching.Router(translation.RouteTable()).match(req()) is None


# -- vars --------------------------------------------------------------------------------------


def expr(scope: str, op: str, value=None, name: str | None = "x-canary", set_=None) -> dict:
    out: dict = {"subject": {"scope": scope} | ({"name": name} if name else {}), "op": op}
    if set_ is not None:
        out["set"] = set_
    if value is not None:
        out["value"] = value
    return out


@pytest.mark.parametrize(
    ("ex", "headers", "ok"),
    [
        (expr("Header", "Equal", "always"), {"X-Canary": "always"}, True),
        (expr("Header", "Equal", "always"), {"x-canary": "Always"}, False),
        (expr("Header", "Equal", "always"), {}, False),
        (expr("Header", "NotEqual", "always"), {"X-Canary": "never"}, True),
        (expr("Header", "NotEqual", "always"), {}, True),
        (expr("Header", "NotEqual", "always"), {"X-Canary": "always"}, False),
        (expr("Header", "GreaterThan", "10"), {"X-Canary": "11"}, True),
        (expr("Header", "GreaterThan", "10"), {"X-Canary": "9.5"}, False),
        (expr("Header", "GreaterThan", "10"), {"X-Canary": "abc"}, False),
        (expr("Header", "LessThan", "10"), {"X-Canary": "9.5"}, True),
        (expr("Header", "LessThan", "10"), {}, False),
        (expr("Header", "In", set_=["a", "b"]), {"X-Canary": "b"}, True),
        (expr("Header", "In", set_=["a", "b"]), {"X-Canary": "c"}, False),
        (expr("Header", "NotIn", set_=["a", "b"]), {"X-Canary": "c"}, True),
        (expr("Header", "NotIn", set_=["a", "b"]), {}, True),
        (expr("Header", "NotIn", set_=["a", "b"]), {"X-Canary": "a"}, False),
        (expr("Header", "RegexMatch", "^insider-\\d+$"), {"X-Canary": "insider-42"}, True),
        (expr("Header", "RegexMatch", "insider"), {"X-Canary": "an INSIDER"}, False),
        (expr("Header", "RegexMatch", "insider"), {}, False),
        (expr("Header", "RegexMatchCaseInsensitive", "insider"), {"X-Canary": "an INSIDER"}, True),
        (expr("Header", "RegexNotMatch", "side"), {"X-Canary": "outsider"}, False),
        (expr("Header", "RegexNotMatch", "^insider"), {"X-Canary": "outsider"}, True),
        (expr("Header", "RegexNotMatch", "insider"), {}, True),
        (
            expr("Header", "RegexNotMatchCaseInsensitive", "^INSIDER"),
            {"X-Canary": "insider"},
            False,
        ),
        (expr("Header", "RegexNotMatchCaseInsensitive", "^INSIDER"), {"X-Canary": "other"}, True),
    ],
)
def test_header_exprs(ex, headers, ok):
    r = router(rule("a", match={"exprs": [ex]}))
    assert (matched(r, req(headers=headers)) == "a") is ok


@pytest.mark.parametrize(
    ("query", "ok"),
    [
        ("user=beta", True),
        ("USER=beta", True),
        ("a=1&user=beta", True),
        ("user=alpha", False),
        ("", False),
        ("user=beta%20x", False),
    ],
)
def test_query_expr_on_raw_value(query, ok):
    r = router(rule("a", match={"exprs": [expr("Query", "Equal", "beta", name="User")]}))
    assert (matched(r, req(query=query)) == "a") is ok


@pytest.mark.parametrize(
    ("cookie", "ok"),
    [
        ("canary=always", True),
        ("a=1; canary=always; b=2", True),
        ("canary=never", False),
        (None, False),
    ],
)
def test_cookie_expr(cookie, ok):
    r = router(rule("a", match={"exprs": [expr("Cookie", "Equal", "always", name="canary")]}))
    headers = {"Cookie": cookie} if cookie else {}
    assert (matched(r, req(headers=headers)) == "a") is ok


def test_path_expr():
    r = router(
        rule("a", match={"exprs": [expr("Path", "RegexMatch", "^/api/v[0-9]+/", name=None)]})
    )
    assert matched(r, req("/api/v2/x")) == "a"
    assert matched(r, req("/api/latest/x")) is None


def test_all_exprs_must_hold():
    r = router(
        rule(
            "a",
            match={
                "exprs": [
                    expr("Header", "Equal", "always"),
                    expr("Query", "Equal", "1", name="beta"),
                ]
            },
        )
    )
    assert matched(r, req(headers={"X-Canary": "always"}, query="beta=1")) == "a"
    assert matched(r, req(headers={"X-Canary": "always"})) is None


def test_ab_route_with_higher_priority_and_fallback():
    """Sluice's A/B shape: header route (priority+1) before the plain route on the same path."""
    r = router(
        rule("primary", paths=["/*"], priority=10000),
        rule(
            "ab",
            paths=["/*"],
            priority=10001,
            match={"exprs": [expr("Header", "Equal", "insider", name="x-user")]},
        ),
    )
    assert matched(r, req(headers={"X-User": "insider"})) == "ab"
    assert matched(r, req(headers={"X-User": "other"})) == "primary"


@pytest.mark.parametrize(
    ("host", "stripped"),
    [
        ("a.example.com:8080", "a.example.com"),
        ("a.example.com", "a.example.com"),
        ("[::1]:80", "[::1]"),
        ("::1", "::1"),
    ],
)
def test_strip_port(host, stripped):
    assert matching.strip_port(host) == stripped
