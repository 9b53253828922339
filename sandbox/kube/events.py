"""core/v1 ``Event`` <-> ``events.k8s.io/v1`` ``Event``: one set of events, two APIs.

Events are stored once, in the core/v1 shape (what ``kubectl describe`` and ``kubectl get
events`` read); ``events.k8s.io/v1`` is served as a view converting field by field, as the real
server's conversion does (``involvedObject`` <-> ``regarding``, ``message`` <-> ``note``,
``source`` <-> ``deprecatedSource`` / ``reportingController`` ...).
"""

from __future__ import annotations

import copy
from typing import Any

Obj = dict[str, Any]

# core field -> events.k8s.io field, for fields that only change name
_RENAMED = {
    "involvedObject": "regarding",
    "message": "note",
    "firstTimestamp": "deprecatedFirstTimestamp",
    "lastTimestamp": "deprecatedLastTimestamp",
    "count": "deprecatedCount",
    "source": "deprecatedSource",
    "reportingComponent": "reportingController",
}
_SAME = (
    "metadata",
    "reason",
    "type",
    "eventTime",
    "series",
    "action",
    "related",
    "reportingInstance",
)


def to_v1(core: Obj) -> Obj:
    """A stored core/v1 Event as an events.k8s.io/v1 Event."""
    out: Obj = {"apiVersion": "events.k8s.io/v1", "kind": "Event"}
    for name in _SAME:
        if name in core:
            out[name] = copy.deepcopy(core[name])
    for old, new in _RENAMED.items():
        if old in core and core[old] not in (None, ""):
            out[new] = copy.deepcopy(core[old])
    source = core.get("source") or {}
    if "reportingController" not in out and source.get("component"):
        out["reportingController"] = source["component"]
    if "reportingInstance" not in out and source.get("host"):
        out["reportingInstance"] = source["host"]
    if "series" in out and isinstance(out["series"], dict):
        out["series"] = {
            "count": out["series"].get("count", 1),
            "lastObservedTime": out["series"].get("lastObservedTime", ""),
        }
    return out


def from_v1(event: Obj) -> Obj:
    """An events.k8s.io/v1 Event as the core/v1 Event it is stored as."""
    out: Obj = {"apiVersion": "v1", "kind": "Event"}
    for name in _SAME:
        if name in event:
            out[name] = copy.deepcopy(event[name])
    for old, new in _RENAMED.items():
        if new in event and event[new] not in (None, ""):
            out[old] = copy.deepcopy(event[new])
    if "source" not in out and event.get("reportingController"):
        out["source"] = {"component": event["reportingController"]}
        if event.get("reportingInstance"):
            out["source"]["host"] = event["reportingInstance"]
    out.setdefault("involvedObject", {})
    return out
