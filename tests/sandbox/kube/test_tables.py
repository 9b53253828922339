"""Table answers: columns of the built-in kinds, CRD printer columns, ages."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from sandbox.kube import crds, registry, tables

from .conftest import SMALL_CRD


def _ago(seconds: int) -> str:
    moment = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (59, "59s"),
        (119, "119s"),
        (120, "2m"),
        (200, "3m20s"),
        (600, "10m"),
        (179 * 60, "179m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 300, "3h5m"),
        (8 * 3600, "8h"),
        (47 * 3600, "47h"),
        (2 * 86400, "2d"),
        (2 * 86400 + 3600, "2d1h"),
        (8 * 86400, "8d"),
        (800 * 86400, "2y70d"),
        (3000 * 86400, "8y"),
    ],
)
def test_human_duration(seconds: int, text: str) -> None:
    assert tables.human_duration(seconds) == text


@pytest.mark.parametrize(
    ("accept", "table"),
    [
        (
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json",
            True,
        ),
        ("application/json", False),
        ("application/json, application/json;as=Table;v=v1;g=meta.k8s.io", False),
        ("application/json;as=Table;v=v1beta1;g=meta.k8s.io", False),
        ("", False),
    ],
)
def test_wants_table(accept: str, table: bool) -> None:
    assert tables.wants_table(accept) is table


def _names(table: dict[str, Any], wide: bool = False) -> list[str]:
    return [c["name"] for c in table["columnDefinitions"] if wide or c["priority"] == 0]


def test_pod_columns() -> None:
    pod = {
        "metadata": {"name": "web-1", "creationTimestamp": _ago(30)},
        "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "sandbox"},
        "status": {
            "phase": "Running",
            "podIP": "127.42.0.2",
            "containerStatuses": [
                {"ready": True, "restartCount": 1},
                {"ready": False, "restartCount": 2},
            ],
        },
    }
    table = tables.table(registry.PODS, [pod], "7")
    assert _names(table) == ["Name", "Ready", "Status", "Restarts", "Age"]
    assert _names(table, wide=True)[5:7] == ["IP", "Node"]
    assert table["rows"][0]["cells"][:4] == ["web-1", "1/2", "Running", "3"]
    assert table["rows"][0]["cells"][4] in ("30s", "31s")
    assert table["rows"][0]["cells"][5:7] == ["127.42.0.2", "sandbox"]
    assert table["rows"][0]["object"] == {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": pod["metadata"],
    }
    assert table["metadata"] == {"resourceVersion": "7"}


def test_deployment_service_event_columns() -> None:
    deployment = {
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"spec": {"containers": [{"name": "app", "image": "web:1"}]}},
        },
        "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
    }
    table = tables.table(registry.DEPLOYMENTS, [deployment], include_object="Object")
    assert _names(table, wide=True) == [
        "Name",
        "Ready",
        "Up-to-date",
        "Available",
        "Age",
        "Containers",
        "Images",
        "Selector",
    ]
    assert table["rows"][0]["cells"][:4] == ["web", "2/3", 3, 2]
    assert table["rows"][0]["cells"][5:] == ["app", "web:1", "app=web"]
    assert table["rows"][0]["object"] is deployment

    service = {
        "metadata": {"name": "svc"},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": "127.43.0.2",
            "ports": [{"port": 80, "protocol": "TCP"}, {"port": 9000, "nodePort": 30000}],
        },
    }
    table = tables.table(registry.SERVICES, [service])
    assert _names(table) == ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age"]
    assert table["rows"][0]["cells"][:5] == [
        "svc",
        "ClusterIP",
        "127.43.0.2",
        "<none>",
        "80/TCP,9000:30000/TCP",
    ]

    event = {
        "metadata": {"name": "e"},
        "type": "Warning",
        "reason": "Failed",
        "message": "boom ",
        "involvedObject": {"kind": "Canary", "name": "podinfo"},
        "lastTimestamp": _ago(5),
        "count": 3,
    }
    table = tables.table(registry.EVENTS, [event])
    assert _names(table) == ["Last Seen", "Type", "Reason", "Object", "Message"]
    cells = table["rows"][0]["cells"]
    assert cells[1:4] == ["Warning", "Failed", "canary/podinfo"]
    assert cells[6] == "boom"


def test_custom_resource_printer_columns() -> None:
    crd = dict(SMALL_CRD)
    widget_type = crds.types_from(crd)[0]
    widget = {"metadata": {"name": "w"}, "spec": {"size": 3, "color": "red"}, "status": {}}
    table = tables.table(widget_type, [widget], None, "None")
    assert _names(table) == ["Name", "Size", "Phase"]
    assert _names(table, wide=True) == ["Name", "Size", "Phase", "Color"]
    assert table["rows"] == [{"cells": ["w", 3, None, "red"]}]

    plain = crds.types_from(
        {
            **crd,
            "spec": {
                **crd["spec"],
                "versions": [{**crd["spec"]["versions"][0], "additionalPrinterColumns": []}],
            },
        }
    )[0]
    table = tables.table(plain, [{"metadata": {"name": "w", "creationTimestamp": _ago(60)}}])
    assert _names(table) == ["Name", "Age"]


@pytest.mark.parametrize(
    ("column_type", "value", "cell"),
    [
        ("integer", 3, 3),
        ("integer", "3", None),
        ("number", 1.5, 1.5),
        ("boolean", True, True),
        ("boolean", "yes", None),
        ("string", 10, "10"),
        ("string", ["a"], '["a"]'),
        ("date", "bad", "<invalid>"),
    ],
)
def test_printer_column_types(column_type: str, value: Any, cell: Any) -> None:
    assert tables._json_cell(column_type, value) == cell
