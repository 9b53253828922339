"""``plugin_config_name`` in the pure translation: APISIX's merge of an ApisixPluginConfig's
plugins with the rule's own, and the controller's treatment of a missing one."""

from __future__ import annotations

from typing import Any

from sandbox.gateway import pluginconfigs, translation, upstreams
from tests.sandbox.gateway.objects import apisix_route, by_key, rule
from tests.sandbox.gateway.test_upstreams import ENDPOINTS, SERVICES

Obj = dict[str, Any]


def plugin_config(name: str, plugins: list[Obj], namespace: str = "test") -> Obj:
    return {
        "apiVersion": "apisix.apache.org/v2",
        "kind": "ApisixPluginConfig",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"plugins": plugins},
    }


SHARED = plugin_config(
    "shared",
    [
        {"name": "proxy-rewrite", "enable": True, "config": {"uri": "/shared"}},
        {"name": "limit-count", "enable": True, "config": {"count": 5, "time_window": 60}},
        {"name": "cors", "enable": True},
        {"name": "echo", "enable": False, "config": {}},
    ],
)


def table(ar: Obj, *pcs: Obj) -> translation.RouteTable:
    return translation.translate([ar], SERVICES, ENDPOINTS, plugin_configs=by_key(*pcs))


def one(ar: Obj, *pcs: Obj) -> translation.Route:
    result = table(ar, *pcs)
    assert not result.errors, result.errors
    return result.routes[0]


def test_route_gets_the_enabled_plugins_of_its_plugin_config():
    route = one(apisix_route("r", [rule(plugin_config_name="shared")]), SHARED)
    assert set(route.plugins) == {"prometheus", "proxy-rewrite", "limit-count", "cors"}
    assert route.effects.rewrite is not None
    assert route.effects.rewrite.uri == "/shared"
    assert route.effects.limit is not None
    assert route.effects.limit.count == 5
    expected_id = upstreams.gen_id("test_shared")
    assert route.plugin_config_id == expected_id
    assert route.to_json()["plugin_config_id"] == expected_id


def test_the_rules_own_plugin_wins_on_a_name_clash():
    own = {"name": "proxy-rewrite", "enable": True, "config": {"uri": "/own"}}
    route = one(apisix_route("r", [rule(plugin_config_name="shared", plugins=[own])]), SHARED)
    assert route.effects.rewrite is not None
    assert route.effects.rewrite.uri == "/own"
    assert route.effects.limit is not None  # the plugin config's other plugins stay


def test_a_plugin_disabled_on_the_rule_still_comes_from_the_plugin_config():
    off = {"name": "limit-count", "enable": False}
    route = one(apisix_route("r", [rule(plugin_config_name="shared", plugins=[off])]), SHARED)
    assert route.effects.limit is not None


def test_plugin_config_namespace_defaults_to_the_routes():
    other = plugin_config("shared", [{"name": "cors", "enable": True}], namespace="other")
    route = one(
        apisix_route("r", [rule(plugin_config_name="shared", plugin_config_namespace="other")]),
        SHARED,
        other,
    )
    assert "proxy-rewrite" not in route.plugins
    assert "cors" in route.plugins
    assert route.plugin_config_id == upstreams.gen_id("other_shared")


def test_prometheus_from_the_plugin_config_records_metrics():
    pc = plugin_config(
        "metrics", [{"name": "prometheus", "enable": True, "config": {"prefer_name": True}}]
    )
    ar = apisix_route("r", [rule(plugin_config_name="metrics", prometheus=False)])
    route = one(ar, pc)
    assert route.prometheus
    assert route.metric_route_label == "test_r_podinfo"


def test_proxy_mirror_from_the_plugin_config_is_parsed():
    pc = plugin_config(
        "mirror",
        [{"name": "proxy-mirror", "enable": True, "config": {"host": "http://127.0.0.1:9"}}],
    )
    route = one(apisix_route("r", [rule(plugin_config_name="mirror")]), pc)
    assert route.mirror is not None
    assert route.mirror.targets == (("127.0.0.1", 9),)


def test_bad_plugin_config_schema_names_the_apisix_plugin_config():
    pc = plugin_config(
        "bad", [{"name": "limit-count", "enable": True, "config": {"count": -1, "time_window": 1}}]
    )
    result = table(apisix_route("r", [rule(plugin_config_name="bad")]), pc)
    assert result.routes == ()
    assert "ApisixPluginConfig test/bad: $.spec.plugins[0].config.count" in result.errors[0]


def test_missing_plugin_config_leaves_the_rule_out_with_the_reason():
    ar = apisix_route(
        "r", [rule("a", paths=["/a"], plugin_config_name="nope"), rule("b", paths=["/b"])]
    )
    result = table(ar, SHARED)
    assert [r.rule for r in result.routes] == ["b"]
    (status,) = result.statuses
    assert not status.rejected
    assert status.errors == (
        "ApisixPluginConfig test/nope not found - at test/r: $.spec.http[0].plugin_config_name",
    )


def test_reference():
    assert pluginconfigs.reference("ns", {}) is None
    assert pluginconfigs.reference("ns", {"plugin_config_name": "a"}) == ("ns", "a")
