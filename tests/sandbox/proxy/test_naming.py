"""Which hosts are in-cluster names, and how they resolve through Services and Endpoints."""

from __future__ import annotations

import pytest

from sandbox.proxy import naming
from tests.sandbox.gateway.objects import by_key, endpoints, service

SERVICES = by_key(
    service("podinfo", "test", ports=[("http", 80, "http"), ("grpc", 9999, 9999)]),
    service("plain", "test"),
    service("empty", "test"),
    {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "ext", "namespace": "test"},
        "spec": {"type": "ExternalName", "externalName": "127.0.0.9"},
    },
)
ENDPOINTS = by_key(
    endpoints(
        "podinfo",
        "test",
        addresses=["10.0.0.1", "10.0.0.2"],
        ports=[("http", 9898), ("grpc", 9999)],
    ),
    endpoints("plain", "test", addresses=["10.0.1.1"]),
    endpoints("empty", "test", not_ready=["10.0.2.1"]),
)


@pytest.mark.parametrize(
    ("host", "name"),
    [
        ("podinfo.test", naming.ServiceName("podinfo", "test")),
        ("podinfo.test.svc", naming.ServiceName("podinfo", "test")),
        ("podinfo.test.svc.cluster.local", naming.ServiceName("podinfo", "test")),
        ("PodInfo.Test.", naming.ServiceName("podinfo", "test")),
        ("127.0.0.1", None),
        ("::1", None),
        ("localhost", None),
        ("podinfo", None),
        ("www.example.com", None),
        ("a.b.svc.other.local", None),
    ],
)
def test_cluster_names(host, name):
    assert naming.cluster_name(host) == name


def test_resolves_to_the_named_endpoints_port():
    name = naming.ServiceName("podinfo", "test")
    assert naming.resolve(name, 80, SERVICES, ENDPOINTS) == [("10.0.0.1", 9898), ("10.0.0.2", 9898)]
    assert naming.resolve(name, 9999, SERVICES, ENDPOINTS) == [
        ("10.0.0.1", 9999),
        ("10.0.0.2", 9999),
    ]


def test_unnamed_single_port():
    assert naming.resolve(naming.ServiceName("plain", "test"), 80, SERVICES, ENDPOINTS) == [
        ("10.0.1.1", 9898)
    ]


def test_external_name():
    assert naming.resolve(naming.ServiceName("ext", "test"), 8080, SERVICES, ENDPOINTS) == [
        ("127.0.0.9", 8080)
    ]


@pytest.mark.parametrize(
    ("name", "port", "status", "message"),
    [
        (naming.ServiceName("nope", "test"), 80, 502, "no service 'nope' in namespace 'test'"),
        (naming.ServiceName("podinfo", "prod"), 80, 502, "namespace 'prod'"),
        (naming.ServiceName("podinfo", "test"), 8080, 502, "has no port 8080"),
        (naming.ServiceName("empty", "test"), 80, 503, "no ready endpoints"),
    ],
)
def test_resolve_errors(name, port, status, message):
    with pytest.raises(naming.ResolveError, match=message) as info:
        naming.resolve(name, port, SERVICES, ENDPOINTS)
    assert info.value.status == status
