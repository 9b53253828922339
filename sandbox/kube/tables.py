"""``meta.k8s.io/v1 Table`` answers, what ``kubectl get`` prints.

A client asks for a Table with ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io``. The
server picks the columns: built-in kinds get columns like the real server's printers (wide
ones have ``priority: 1``; kubectl shows them only with ``-o wide``), custom resources get their
CRD's ``additionalPrinterColumns`` evaluated by JSONPath, anything else NAME and AGE. Rows carry
the object as ``PartialObjectMetadata`` (default) or in full (``includeObject=Object``).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

from sandbox.kube import events, jsonpath
from sandbox.kube.store import ResourceType

Obj = dict[str, Any]
Cell = Any

TABLE_MEDIA = "application/json;as=Table;v=v1;g=meta.k8s.io"


def wants_table(accept: str) -> bool:
    """True when the first acceptable media type of an Accept header is a v1 Table."""
    for part in accept.split(","):
        media = part.replace(" ", "")
        if "as=Table" in media and "g=meta.k8s.io" in media and "v=v1beta1" not in media:
            return True
        if media.split(";")[0] in ("application/json", "*/*", "application/yaml"):
            return False
    return False


# ---------------------------------------------------------------------------- cells


def human_duration(seconds: float) -> str:
    """Ages the way kubectl prints them: 45s, 3m20s, 2h5m, 4d6h, 2y30d."""
    secs = int(seconds)
    if secs < -1:
        return "<invalid>"
    if secs < 0:
        return "0s"
    if secs < 120:
        return f"{secs}s"
    minutes = secs // 60
    if minutes < 10:
        rest = secs % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d{rest}h" if rest else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        rest = (hours // 24) % 365
        return f"{hours // 24 // 365}y{rest}d" if rest else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def age(timestamp: str | None) -> str:
    if not timestamp:
        return "<unknown>"
    try:
        then = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "<invalid>"
    return human_duration((datetime.datetime.now(datetime.UTC) - then).total_seconds())


def _selector_string(selector: Obj | None) -> str:
    if not selector:
        return "<none>"
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        op, key, values = expr.get("operator"), expr.get("key"), expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts) or "<none>"


def _containers(obj: Obj) -> list[Obj]:
    return (((obj.get("spec") or {}).get("template") or {}).get("spec") or {}).get(
        "containers"
    ) or []


def _pod_row(obj: Obj) -> list[Cell]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    statuses = status.get("containerStatuses") or []
    total = len(spec.get("containers") or [])
    ready = sum(1 for s in statuses if s.get("ready"))
    restarts = sum(int(s.get("restartCount") or 0) for s in statuses)
    reason = status.get("reason") or status.get("phase") or "Pending"
    for s in statuses:
        waiting = (s.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason"):
            reason = waiting["reason"]
    if obj["metadata"].get("deletionTimestamp"):
        reason = "Terminating"
    gates = spec.get("readinessGates") or []
    return [
        obj["metadata"]["name"],
        f"{ready}/{total}",
        reason,
        str(restarts),
        age(obj["metadata"].get("creationTimestamp")),
        status.get("podIP") or "<none>",
        spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        f"0/{len(gates)}" if gates else "<none>",
    ]


def _workload_row(obj: Obj) -> list[Cell]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    containers = _containers(obj)
    return [
        obj["metadata"]["name"],
        f"{status.get('readyReplicas') or 0}/{spec.get('replicas', 1)}",
        status.get("updatedReplicas") or 0,
        status.get("availableReplicas") or 0,
        age(obj["metadata"].get("creationTimestamp")),
        ",".join(c.get("name", "") for c in containers),
        ",".join(c.get("image", "") for c in containers),
        _selector_string(spec.get("selector")),
    ]


def _replicaset_row(obj: Obj) -> list[Cell]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    containers = _containers(obj)
    return [
        obj["metadata"]["name"],
        spec.get("replicas", 1),
        status.get("replicas") or 0,
        status.get("readyReplicas") or 0,
        age(obj["metadata"].get("creationTimestamp")),
        ",".join(c.get("name", "") for c in containers),
        ",".join(c.get("image", "") for c in containers),
        _selector_string(spec.get("selector")),
    ]


def _service_row(obj: Obj) -> list[Cell]:
    spec = obj.get("spec") or {}
    ports = []
    for p in spec.get("ports") or []:
        text = f"{p.get('port')}"
        if p.get("nodePort"):
            text += f":{p['nodePort']}"
        ports.append(f"{text}/{p.get('protocol', 'TCP')}")
    ingress = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    external = ",".join(i.get("ip") or i.get("hostname", "") for i in ingress)
    external = external or ",".join(spec.get("externalIPs") or [])
    svc_type = spec.get("type", "ClusterIP")
    if not external:
        external = "<pending>" if svc_type == "LoadBalancer" else "<none>"
    return [
        obj["metadata"]["name"],
        svc_type,
        spec.get("clusterIP") or "<none>",
        external,
        ",".join(ports) or "<none>",
        age(obj["metadata"].get("creationTimestamp")),
        ",".join(f"{k}={v}" for k, v in sorted((spec.get("selector") or {}).items())) or "<none>",
    ]


def _endpoints_row(obj: Obj) -> list[Cell]:
    addresses = []
    for subset in obj.get("subsets") or []:
        for address in subset.get("addresses") or []:
            for port in subset.get("ports") or [{}]:
                addresses.append(
                    f"{address.get('ip')}:{port.get('port')}" if port else address.get("ip")
                )
    shown = ",".join(addresses[:3]) + (
        f" + {len(addresses) - 3} more..." if len(addresses) > 3 else ""
    )
    return [
        obj["metadata"]["name"],
        shown or "<none>",
        age(obj["metadata"].get("creationTimestamp")),
    ]


def _event_source(component: str, instance: str) -> str:
    if not component:
        return "<unknown>"
    return f"{component}, {instance}" if instance else component


def _event_row(obj: Obj) -> list[Cell]:
    involved = obj.get("involvedObject") or {}
    last = (
        obj.get("lastTimestamp") or obj.get("eventTime") or obj["metadata"].get("creationTimestamp")
    )
    first = (
        obj.get("firstTimestamp")
        or obj.get("eventTime")
        or obj["metadata"].get("creationTimestamp")
    )
    source = obj.get("source") or {}
    kind = (involved.get("kind") or "").lower()
    return [
        age(last),
        obj.get("type", ""),
        obj.get("reason", ""),
        f"{kind}/{involved.get('name', '')}",
        involved.get("fieldPath", ""),
        _event_source(
            source.get("component") or obj.get("reportingComponent") or "",
            source.get("host") or obj.get("reportingInstance") or "",
        ),
        (obj.get("message") or "").strip(),
        age(first),
        int(obj.get("count") or 1),
        obj["metadata"]["name"],
    ]


def _hpa_row(obj: Obj) -> list[Cell]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    ref = spec.get("scaleTargetRef") or {}
    return [
        obj["metadata"]["name"],
        f"{ref.get('kind', '')}/{ref.get('name', '')}",
        "<unknown>",
        spec.get("minReplicas", 1),
        spec.get("maxReplicas", 0),
        status.get("currentReplicas") or 0,
        age(obj["metadata"].get("creationTimestamp")),
    ]


def _namespace_row(obj: Obj) -> list[Cell]:
    phase = (obj.get("status") or {}).get("phase", "Active")
    return [obj["metadata"]["name"], phase, age(obj["metadata"].get("creationTimestamp"))]


def _crd_row(obj: Obj) -> list[Cell]:
    return [obj["metadata"]["name"], obj["metadata"].get("creationTimestamp", "")]


def _col(name: str, kind: str = "string", priority: int = 0, fmt: str = "") -> Obj:
    return {"name": name, "type": kind, "format": fmt, "description": name, "priority": priority}


_NAME = _col("Name", fmt="name")
_AGE = _col("Age")

BUILTIN: dict[str, tuple[list[Obj], Callable[[Obj], list[Cell]]]] = {
    "Pod": (
        [
            _NAME,
            _col("Ready"),
            _col("Status"),
            _col("Restarts"),
            _AGE,
            _col("IP", priority=1),
            _col("Node", priority=1),
            _col("Nominated Node", priority=1),
            _col("Readiness Gates", priority=1),
        ],
        _pod_row,
    ),
    "Deployment": (
        [
            _NAME,
            _col("Ready"),
            _col("Up-to-date", "integer"),
            _col("Available", "integer"),
            _AGE,
            _col("Containers", priority=1),
            _col("Images", priority=1),
            _col("Selector", priority=1),
        ],
        _workload_row,
    ),
    "ReplicaSet": (
        [
            _NAME,
            _col("Desired", "integer"),
            _col("Current", "integer"),
            _col("Ready", "integer"),
            _AGE,
            _col("Containers", priority=1),
            _col("Images", priority=1),
            _col("Selector", priority=1),
        ],
        _replicaset_row,
    ),
    "Service": (
        [
            _NAME,
            _col("Type"),
            _col("Cluster-IP"),
            _col("External-IP"),
            _col("Port(s)"),
            _AGE,
            _col("Selector", priority=1),
        ],
        _service_row,
    ),
    "Endpoints": ([_NAME, _col("Endpoints"), _AGE], _endpoints_row),
    "ConfigMap": (
        [_NAME, _col("Data", "integer"), _AGE],
        lambda o: [
            o["metadata"]["name"],
            len(o.get("data") or {}) + len(o.get("binaryData") or {}),
            age(o["metadata"].get("creationTimestamp")),
        ],
    ),
    "Secret": (
        [_NAME, _col("Type"), _col("Data", "integer"), _AGE],
        lambda o: [
            o["metadata"]["name"],
            o.get("type", "Opaque"),
            len(o.get("data") or {}),
            age(o["metadata"].get("creationTimestamp")),
        ],
    ),
    "ServiceAccount": (
        [_NAME, _col("Secrets", "integer"), _AGE],
        lambda o: [
            o["metadata"]["name"],
            len(o.get("secrets") or []),
            age(o["metadata"].get("creationTimestamp")),
        ],
    ),
    "Namespace": ([_NAME, _col("Status"), _AGE], _namespace_row),
    "Event": (
        [
            _col("Last Seen"),
            _col("Type"),
            _col("Reason"),
            _col("Object"),
            _col("Subobject", priority=1),
            _col("Source", priority=1),
            _col("Message"),
            _col("First Seen", priority=1),
            _col("Count", "integer", priority=1),
            _col("Name", priority=1),
        ],
        _event_row,
    ),
    "HorizontalPodAutoscaler": (
        [
            _NAME,
            _col("Reference"),
            _col("Targets"),
            _col("MinPods", "integer"),
            _col("MaxPods", "integer"),
            _col("Replicas", "integer"),
            _AGE,
        ],
        _hpa_row,
    ),
    "CustomResourceDefinition": ([_NAME, _col("Created At", "date")], _crd_row),
}


# ---------------------------------------------------------------------------- custom columns


def _json_cell(column_type: str, value: Any) -> Cell:
    if column_type == "date":
        return age(value) if isinstance(value, str) else "<invalid>"
    if column_type == "integer":
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    if column_type == "number":
        return value if isinstance(value, int | float) and not isinstance(value, bool) else None
    if column_type == "boolean":
        return value if isinstance(value, bool) else None
    return jsonpath.text(value)


def _custom_columns(rtype: ResourceType) -> tuple[list[Obj], Callable[[Obj], list[Cell]]]:
    if not rtype.printer_columns:
        return [_NAME, _AGE], lambda o: [
            o["metadata"]["name"],
            age(o["metadata"].get("creationTimestamp")),
        ]
    columns = [_NAME] + [
        {
            "name": c["name"],
            "type": c.get("type", "string"),
            "format": c.get("format", ""),
            "description": c.get("description", c["name"]),
            "priority": int(c.get("priority", 0)),
        }
        for c in rtype.printer_columns
    ]

    def row(obj: Obj) -> list[Cell]:
        cells: list[Cell] = [obj["metadata"]["name"]]
        for column in rtype.printer_columns:
            values = jsonpath.find(obj, column.get("jsonPath", ""))
            if not values or values[0] is None:
                cells.append(None)
            else:
                cells.append(_json_cell(column.get("type", "string"), values[0]))
        return cells

    return columns, row


def columns_for(rtype: ResourceType) -> tuple[list[Obj], Callable[[Obj], list[Cell]]]:
    if rtype.custom:
        return _custom_columns(rtype)
    if rtype.group == "events.k8s.io" and rtype.kind == "Event":
        # the real server prints both APIs' events with one printer, on the core shape
        # (regarding -> involvedObject, note -> message, reportingController -> source ...)
        columns, _ = BUILTIN["Event"]
        return columns, lambda o: _event_row(events.from_v1(o))
    if rtype.kind in BUILTIN:
        return BUILTIN[rtype.kind]
    return [_NAME, _AGE], lambda o: [
        o["metadata"]["name"],
        age(o["metadata"].get("creationTimestamp")),
    ]


def _row_object(obj: Obj, include: str) -> Obj | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj["metadata"],
    }


def table(
    rtype: ResourceType,
    objects: list[Obj],
    resource_version: str | None = None,
    include_object: str = "Metadata",
    *,
    headers: bool = True,
) -> Obj:
    """A Table of ``objects``; ``headers=False`` leaves out the column definitions."""
    columns, row = columns_for(rtype)
    rows = []
    for obj in objects:
        entry: Obj = {"cells": row(obj)}
        shown = _row_object(obj, include_object)
        if shown is not None:
            entry["object"] = shown
        rows.append(entry)
    meta: Obj = {}
    if resource_version is not None:
        meta["resourceVersion"] = resource_version
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": columns if headers else [],
        "rows": rows,
    }
