"""Pure parts of the controllers: IP allocation, ports and probes, endpoints, HPA, pods."""

from __future__ import annotations

import ipaddress

import pytest

from sandbox.kube.controllers import endpoints, hpa, ipam, objects, probes, replicaset

# ---------------------------------------------------------------- ipam


def test_ip_allocation_is_stable_unique_and_skips_the_node_address() -> None:
    alloc = ipam.IPAllocator(ipaddress.IPv4Network("127.200.0.0/29"))  # .2 .. .6 for pods
    a = alloc.allocate("a")
    assert a == "127.200.0.2"
    assert alloc.allocate("a") == a
    taken = {a, *(alloc.allocate(k) for k in "bcde")}
    assert taken == {f"127.200.0.{i}" for i in range(2, 7)}
    with pytest.raises(ipam.Exhausted):
        alloc.allocate("f")
    alloc.release("c")
    assert alloc.allocate("f") == "127.200.0.4"


def test_released_addresses_are_reused_last() -> None:
    alloc = ipam.IPAllocator(ipaddress.IPv4Network("127.201.0.0/24"))
    first = alloc.allocate("a")
    alloc.release("a")
    assert alloc.allocate("b") != first


def test_reserve_existing_addresses() -> None:
    alloc = ipam.IPAllocator(ipaddress.IPv4Network("127.202.0.0/24"))
    assert alloc.reserve("a", "127.202.0.9")
    assert alloc.get("a") == "127.202.0.9"
    assert not alloc.reserve("b", "127.202.0.9")  # held by a
    assert not alloc.reserve("b", "10.0.0.1")  # outside
    assert not alloc.reserve("b", "not-an-ip")
    assert "127.202.0.9" not in {alloc.allocate(str(i)) for i in range(20)}


# ---------------------------------------------------------------- ports and probes

PODINFO_CONTAINER = {
    "name": "podinfod",
    "ports": [{"name": "http", "containerPort": 9898}, {"name": "grpc", "containerPort": 9999}],
    "readinessProbe": {"exec": {"command": ["podcli", "check", "http", "localhost:9898/readyz"]}},
}


def test_listen_ports_rule() -> None:
    udp = {"ports": [{"containerPort": 53, "protocol": "UDP"}]}
    assert probes.listen_ports([PODINFO_CONTAINER]) == [[9898, 9999]]
    assert probes.listen_ports([{"args": ["--port=8080"]}]) == [[8080]]
    assert probes.listen_ports([{"command": ["./podinfo", "--port", "7070"]}]) == [[7070]]
    assert probes.listen_ports([{}]) == [[9898]]
    # the default port goes to the first container only; a UDP-only container gets the default
    assert probes.listen_ports([PODINFO_CONTAINER, {}]) == [[9898, 9999], []]
    assert probes.listen_ports([udp]) == [[9898]]


@pytest.mark.parametrize(
    ("probe", "expected"),
    [
        (
            {"exec": {"command": ["podcli", "check", "http", "localhost:9898/readyz"]}},
            probes.Target("http", 9898, "/readyz"),
        ),
        (
            {"exec": {"command": ["wget", "-q", "http://localhost:8080/ok"]}},
            probes.Target("http", 8080, "/ok"),
        ),
        ({"exec": {"command": ["cat", "/tmp/ready"]}}, probes.Target("http", 9898, "/readyz")),
        ({"httpGet": {"path": "/readyz", "port": "http"}}, probes.Target("http", 9898, "/readyz")),
        ({"httpGet": {"port": 9999}}, probes.Target("http", 9999, "/")),
        ({"tcpSocket": {"port": "grpc"}}, probes.Target("tcp", 9999)),
        ({}, probes.Target("http", 9898, "/readyz")),
    ],
)
def test_readiness_target(probe: dict, expected: probes.Target) -> None:
    container = {**PODINFO_CONTAINER, "readinessProbe": probe}
    assert probes.readiness_target(container, [9898, 9999]) == expected


def test_readiness_target_without_listener() -> None:
    assert probes.readiness_target({}, []) is None


# ---------------------------------------------------------------- endpoints


def pod(
    name: str, ip: str | None, ready: bool, labels: dict | None = None, **extra: object
) -> dict:
    status: dict = {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }
    if ip:
        status["podIP"] = ip
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"uid-{name}",
            "labels": labels or {"app": "a"},
            **extra,
        },
        "spec": {
            "nodeName": "n",
            "containers": [{"ports": [{"name": "http", "containerPort": 9898}]}],
        },
        "status": status,
    }


def service(**spec: object) -> dict:
    return {
        "metadata": {"name": "svc", "namespace": "ns"},
        "spec": {
            "selector": {"app": "a"},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
            **spec,
        },
    }


def test_endpoint_subsets_split_ready_and_not_ready() -> None:
    pods = [
        pod("b", "127.1.0.3", True),
        pod("a", "127.1.0.2", True),
        pod("c", "127.1.0.4", False),
        pod("d", None, True),  # no IP yet
        pod("e", "127.1.0.5", True, labels={"app": "other"}),
        pod("f", "127.1.0.6", True, deletionTimestamp="2024-01-01T00:00:00Z"),
    ]
    [subset] = endpoints.endpoint_subsets(service(), pods)
    assert [a["ip"] for a in subset["addresses"]] == ["127.1.0.2", "127.1.0.3"]
    assert [a["ip"] for a in subset["notReadyAddresses"]] == ["127.1.0.4"]
    assert subset["addresses"][0]["targetRef"] == {
        "kind": "Pod",
        "namespace": "ns",
        "name": "a",
        "uid": "uid-a",
    }
    assert subset["ports"] == [{"port": 9898, "protocol": "TCP", "name": "http"}]


def test_endpoint_ports_numeric_default_and_publish_not_ready() -> None:
    svc = service(
        ports=[{"port": 80}, {"name": "x", "port": 81, "targetPort": 8081}],
        publishNotReadyAddresses=True,
    )
    [subset] = endpoints.endpoint_subsets(svc, [pod("a", "127.1.0.2", False)])
    assert subset["ports"] == [
        {"port": 80, "protocol": "TCP"},
        {"port": 8081, "protocol": "TCP", "name": "x"},
    ]
    assert [a["ip"] for a in subset["addresses"]] == ["127.1.0.2"]


def test_endpoint_pods_without_the_named_port_are_left_out() -> None:
    svc = service(ports=[{"port": 80, "targetPort": "metrics"}])
    assert endpoints.endpoint_subsets(svc, [pod("a", "127.1.0.2", True)]) == []


# ---------------------------------------------------------------- hpa, pods, selectors


@pytest.mark.parametrize(
    ("current", "minimum", "maximum", "desired"),
    [(1, 2, 4, 2), (3, 2, 4, 3), (9, 2, 4, 4), (0, 2, 4, 0), (0, 0, 4, 0)],
)
def test_hpa_desired_replicas(current: int, minimum: int, maximum: int, desired: int) -> None:
    assert hpa.desired_replicas(current, minimum, maximum) == desired


def test_pods_to_delete_first() -> None:
    ready_old = pod("ready-old", "1", True)
    ready_old["status"]["conditions"][0]["lastTransitionTime"] = "2024-01-01T00:00:00Z"
    ready_new = pod("ready-new", "2", True)
    ready_new["status"]["conditions"][0]["lastTransitionTime"] = "2024-01-01T00:05:00Z"
    pending = pod("pending", None, False)
    pending["status"]["phase"] = "Pending"
    unready = pod("unready", "3", False)
    order = [
        p["metadata"]["name"]
        for p in replicaset.deletion_order([ready_old, ready_new, unready, pending])
    ]
    assert order == ["pending", "unready", "ready-new", "ready-old"]


def test_replicaset_status_counts_available_after_min_ready_seconds() -> None:
    rs = {
        "metadata": {"generation": 3},
        "spec": {"minReadySeconds": 10, "template": {"metadata": {"labels": {"app": "a"}}}},
    }
    ready = pod("a", "1", True)
    ready["status"]["conditions"][0]["lastTransitionTime"] = "2024-01-01T00:00:00Z"
    t0 = objects.parse_time("2024-01-01T00:00:00Z").timestamp()
    status, wait = replicaset.replica_status(rs, [ready, pod("b", "2", False)], t0 + 4)
    assert status == {
        "replicas": 2,
        "fullyLabeledReplicas": 2,
        "readyReplicas": 1,
        "observedGeneration": 3,
    }
    assert wait == pytest.approx(6)
    status, wait = replicaset.replica_status(rs, [ready], t0 + 11)
    assert status["availableReplicas"] == 1
    assert wait is None


def test_qos_class() -> None:
    assert replicaset.qos_class({"containers": [{}]}) == "BestEffort"
    burst = {
        "resources": {
            "limits": {"cpu": "2", "memory": "1Gi"},
            "requests": {"cpu": "1", "memory": "1Gi"},
        }
    }
    assert replicaset.qos_class({"containers": [burst]}) == "Burstable"
    same = {"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}
    assert replicaset.qos_class({"containers": [same]}) == "Guaranteed"


def test_label_selectors() -> None:
    sel = {
        "matchLabels": {"app": "a"},
        "matchExpressions": [{"key": "tier", "operator": "In", "values": ["web"]}],
    }
    assert objects.selector_matches(sel, {"app": "a", "tier": "web"})
    assert not objects.selector_matches(sel, {"app": "a"})
    assert objects.selector_matches({}, {"x": "y"})
    assert not objects.selector_matches(None, {"x": "y"})
    assert objects.selector_matches(
        {"matchExpressions": [{"key": "k", "operator": "DoesNotExist"}]}, {}
    )
    assert not objects.map_selector_matches({}, {"app": "a"})
