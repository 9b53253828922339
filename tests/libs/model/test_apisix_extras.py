"""ApisixUpstream and ApisixPluginConfig: decoding, field-path errors, and their CRDs."""

from __future__ import annotations

from typing import Any

import pytest

from libs import errors
from libs.model import apisixpluginconfig, apisixupstream, crds

Obj = dict[str, Any]


def upstream(**spec: Any) -> Obj:
    return {
        "apiVersion": "apisix.apache.org/v2",
        "kind": "ApisixUpstream",
        "metadata": {"name": "httpbin", "namespace": "test"},
        "spec": spec,
    }


def plugin_config(*plugins: Obj) -> Obj:
    return {
        "apiVersion": "apisix.apache.org/v2",
        "kind": "ApisixPluginConfig",
        "metadata": {"name": "shared", "namespace": "test"},
        "spec": {"plugins": list(plugins)},
    }


def test_full_apisix_upstream_decodes() -> None:
    au = apisixupstream.parse_apisix_upstream(
        upstream(
            externalNodes=[
                {"type": "Domain", "name": "httpbin.org", "weight": 10, "port": 8080},
                {"type": "Service", "name": "ext"},
            ],
            loadbalancer={"type": "chash", "hashOn": "header", "key": "X-User"},
            scheme="https",
            retries=3,
            timeout={"connect": "1s", "send": "2s", "read": "3s"},
            passHost="rewrite",
            upstreamHost="example.com",
            subsets=[{"name": "v2", "labels": {"version": "v2"}}],
            portLevelSettings=[{"port": 80, "scheme": "http", "retries": 1}],
            healthCheck={"active": {"httpPath": "/healthz", "anything": [1, 2]}},
        )
    )
    spec = au.spec
    assert spec.external_nodes[0].port == 8080
    assert spec.external_nodes[1].type == "Service"
    assert spec.loadbalancer is not None
    assert spec.loadbalancer.hash_on == "header"
    assert spec.subsets[0].labels == {"version": "v2"}
    assert spec.port_level_settings[0].retries == 1
    assert spec.health_check == {"active": {"httpPath": "/healthz", "anything": [1, 2]}}


@pytest.mark.parametrize(
    ("spec", "path", "fragment"),
    [
        ({"externalNodes": [{"type": "IP", "name": "x"}]}, "spec.externalNodes[0].type", "Domain"),
        ({"externalNodes": [{"name": "x", "port": 0}]}, "spec.externalNodes[0].port", "port"),
        ({"externalNodes": [{"name": ""}]}, "spec.externalNodes[0].name", "non-empty"),
        ({"loadbalancer": {"type": "random"}}, "spec.loadbalancer.type", "roundrobin"),
        ({"loadbalancer": {"type": "chash", "hashOn": "vars"}}, "spec.loadbalancer.key", "chash"),
        ({"retries": -1}, "spec.retries", ">= 0"),
        ({"scheme": "ftp"}, "spec.scheme", "https"),
        ({"passHost": "rewrite"}, "spec.upstreamHost", "rewrite"),
        ({"subsets": [{"name": "v1"}]}, "spec.subsets[0].labels", ""),
        (
            {"portLevelSettings": [{"port": 80, "loadbalancer": {"type": "chash"}}]},
            "spec.portLevelSettings[0].loadbalancer.key",
            "chash",
        ),
        ({"retry": 1}, "spec.retry", "retries"),
    ],
)
def test_apisix_upstream_errors_name_the_field(spec: Obj, path: str, fragment: str) -> None:
    with pytest.raises(errors.InvalidInput) as info:
        apisixupstream.parse_apisix_upstream(upstream(**spec))
    assert info.value.path == path, str(info.value)
    assert fragment in str(info.value)


def test_plugin_config_decodes() -> None:
    pc = apisixpluginconfig.parse_apisix_plugin_config(
        plugin_config({"name": "proxy-rewrite", "enable": True, "config": {"uri": "/x"}})
    )
    assert pc.spec.plugins[0].config == {"uri": "/x"}


@pytest.mark.parametrize(
    ("plugin", "path"),
    [
        ({"name": "cors", "enable": "yes"}, "spec.plugins[0].enable"),
        ({"enable": True}, "spec.plugins[0].name"),
        ({"name": "cors", "enable": True, "config": []}, "spec.plugins[0].config"),
    ],
)
def test_plugin_config_errors_name_the_field(plugin: Obj, path: str) -> None:
    with pytest.raises(errors.InvalidInput) as info:
        apisixpluginconfig.parse_apisix_plugin_config(plugin_config(plugin))
    assert info.value.path == path, str(info.value)


def test_crds_have_the_controllers_names_and_columns() -> None:
    au, apc = crds.apisix_upstream_crd(), crds.apisix_plugin_config_crd()
    assert au["metadata"]["name"] == "apisixupstreams.apisix.apache.org"
    assert au["spec"]["names"]["shortNames"] == ["au"]
    assert apc["spec"]["names"]["shortNames"] == ["apc"]
    assert au["spec"]["versions"][0]["name"] == "v2"
    columns = apc["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [(c["name"], c["jsonPath"]) for c in columns] == [("Age", ".metadata.creationTimestamp")]
    spec = au["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["properties"]["healthCheck"]["x-kubernetes-preserve-unknown-fields"] is True
    assert sorted(spec["properties"]["loadbalancer"]["properties"]["type"]["enum"]) == [
        "chash",
        "ewma",
        "least_conn",
        "roundrobin",
    ]
