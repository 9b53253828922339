"""Recording core/v1 Events the way Kubernetes components do (``kubectl describe`` shows them)."""

from __future__ import annotations

import logging
import uuid

from sandbox.kube import registry
from sandbox.kube import store as kstore
from sandbox.kube.controllers import objects

log = logging.getLogger(__name__)

NORMAL = "Normal"
WARNING = "Warning"


def record(
    store: kstore.Store,
    involved: kstore.Obj,
    event_type: str,
    reason: str,
    message: str,
    *,
    component: str,
    host: str | None = None,
) -> None:
    """Create one Event about ``involved``; a failure is logged, never raised."""
    meta = involved.get("metadata") or {}
    namespace = meta.get("namespace") or "default"
    at = objects.rfc3339(objects.now())
    source = {"component": component}
    if host:
        source["host"] = host
    event = {
        "metadata": {
            "name": f"{meta.get('name', 'unknown')}.{uuid.uuid4().hex[:16]}",
            "namespace": namespace,
        },
        "involvedObject": {
            "apiVersion": involved.get("apiVersion", ""),
            "kind": involved.get("kind", ""),
            "name": meta.get("name", ""),
            "namespace": namespace,
            "uid": meta.get("uid", ""),
            "resourceVersion": meta.get("resourceVersion", ""),
        },
        "reason": reason,
        "message": message,
        "source": source,
        "firstTimestamp": at,
        "lastTimestamp": at,
        "count": 1,
        "type": event_type,
        "eventTime": None,
        "reportingComponent": component,
        "reportingInstance": host or "",
    }
    try:
        store.create(registry.EVENTS, event)
    except kstore.StoreError as exc:
        log.warning("cannot record event %s %s for %s: %s", reason, message, meta.get("name"), exc)
