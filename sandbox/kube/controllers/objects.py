"""Small helpers over wire-shaped objects: owner references, conditions, times, selectors."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from sandbox.kube import selectors
from sandbox.kube import store as kstore

Obj = kstore.Obj


# ---------------------------------------------------------------- time


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def rfc3339(t: datetime.datetime) -> str:
    return t.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | None) -> datetime.datetime | None:
    if not value:
        return None
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


# ---------------------------------------------------------------- owners


def owner_reference(owner: Obj, *, controller: bool = True) -> dict[str, Any]:
    meta = owner["metadata"]
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": controller,
        "blockOwnerDeletion": True,
    }


def controller_uid(obj: Obj) -> str | None:
    """uid of the owner reference marked ``controller: true``, if any."""
    for ref in obj.get("metadata", {}).get("ownerReferences") or ():
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


def controller_ref(obj: Obj) -> dict[str, Any] | None:
    for ref in obj.get("metadata", {}).get("ownerReferences") or ():
        if ref.get("controller"):
            return dict(ref)
    return None


def is_terminating(obj: Obj) -> bool:
    return bool(obj.get("metadata", {}).get("deletionTimestamp"))


# ---------------------------------------------------------------- conditions


def get_condition(status: Mapping[str, Any] | None, ctype: str) -> dict[str, Any] | None:
    for cond in (status or {}).get("conditions") or ():
        if cond.get("type") == ctype:
            return dict(cond)
    return None


def set_condition(
    status: dict[str, Any],
    ctype: str,
    cstatus: str,
    reason: str,
    message: str,
    *,
    at: str | None = None,
    update_time: bool = True,
) -> None:
    """Kubernetes' SetDeploymentCondition: same status and reason → left as it is; same status,
    new reason → lastTransitionTime kept; otherwise both times are now.

    ``update_time`` adds ``lastUpdateTime`` (Deployments have it; pods and HPAs do not)."""
    at = at or rfc3339(now())
    conditions: list[dict[str, Any]] = list(status.get("conditions") or [])
    current = next((c for c in conditions if c.get("type") == ctype), None)
    if current is not None and current.get("status") == cstatus and current.get("reason") == reason:
        return
    new: dict[str, Any] = {"type": ctype, "status": cstatus}
    if update_time:
        new["lastUpdateTime"] = at
    new["lastTransitionTime"] = (
        current.get("lastTransitionTime", at)
        if current is not None and current.get("status") == cstatus
        else at
    )
    new["reason"] = reason
    new["message"] = message
    status["conditions"] = [c for c in conditions if c.get("type") != ctype] + [new]


def remove_condition(status: dict[str, Any], ctype: str) -> None:
    conditions = [c for c in status.get("conditions") or () if c.get("type") != ctype]
    if conditions:
        status["conditions"] = conditions
    else:
        status.pop("conditions", None)


# ---------------------------------------------------------------- label selectors


selector_matches = selectors.label_selector_matches


def map_selector_matches(selector: Mapping[str, str] | None, labels: Mapping[str, str]) -> bool:
    """A Service-style selector (a plain map); empty or ``None`` matches nothing."""
    if not selector:
        return False
    return all(labels.get(k) == v for k, v in selector.items())


def pod_is_ready(pod: Obj) -> bool:
    cond = get_condition(pod.get("status"), "Ready")
    return cond is not None and cond.get("status") == "True"


def pod_is_active(pod: Obj) -> bool:
    """Counted by a ReplicaSet: not terminating and not finished."""
    phase = (pod.get("status") or {}).get("phase")
    return not is_terminating(pod) and phase not in ("Succeeded", "Failed")
