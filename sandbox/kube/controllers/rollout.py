"""Pure arithmetic of the Deployment controller (no store, no clock unless passed in).

Modelled on Kubernetes' ``pkg/controller/deployment`` (rolling.go, progress.go, sync.go and
util/deployment_util.go): pod-template hash, maxSurge/maxUnavailable fenceposts, how far the
new ReplicaSet may grow and old ones shrink in one step, the status (omitempty counters) and
the ``Available`` / ``Progressing`` conditions. ReplicaSets are wire-shaped dicts.
"""

from __future__ import annotations

import copy
import datetime
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sandbox.kube import store as kstore
from sandbox.kube.controllers import objects

Obj = dict[str, Any]

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
# deployment annotations never copied to its ReplicaSets
SKIPPED_ANNOTATIONS = frozenset(
    {
        REVISION,
        DESIRED_REPLICAS,
        MAX_REPLICAS,
        "kubectl.kubernetes.io/last-applied-configuration",
        "deployment.kubernetes.io/revision-history",
    }
)

# Progressing / Available reasons (Kubernetes' deploymentutil constants)
NEW_RS_CREATED = "NewReplicaSetCreated"
FOUND_NEW_RS = "FoundNewReplicaSet"
RS_UPDATED = "ReplicaSetUpdated"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
TIMED_OUT = "ProgressDeadlineExceeded"
PAUSED = "DeploymentPaused"
RESUMED = "DeploymentResumed"
MIN_AVAILABLE = "MinimumReplicasAvailable"
MIN_UNAVAILABLE = "MinimumReplicasUnavailable"

SAFE_ALPHABET = kstore.SAFE_ALPHABET


# ---------------------------------------------------------------- template hash


def template_without_hash(template: Mapping[str, Any]) -> Obj:
    out = copy.deepcopy(dict(template))
    labels = (out.get("metadata") or {}).get("labels")
    if labels is not None:
        labels.pop(HASH_LABEL, None)
    return out


def template_hash(template: Mapping[str, Any], collision_count: int | None = None) -> str:
    """FNV-32a of the canonical JSON of the template (hash label removed), plus the collision
    count, encoded like Kubernetes (decimal digits mapped onto a vowel-free alphabet). Kubernetes
    hashes a Go dump of the struct, so the values differ from a real cluster's; the shape is the same."""
    data = json.dumps(template_without_hash(template), sort_keys=True, separators=(",", ":"))
    h = 0x811C9DC5
    payload = data.encode()
    if collision_count is not None:
        payload += collision_count.to_bytes(4, "little")
    for byte in payload:
        h ^= byte
        h = (h * 0x01000193) & 0xFFFFFFFF
    return "".join(SAFE_ALPHABET[int(c) % len(SAFE_ALPHABET)] for c in str(h))


def same_template(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return template_without_hash(a) == template_without_hash(b)


# ---------------------------------------------------------------- small accessors


def replicas(obj: Mapping[str, Any]) -> int:
    value = (obj.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)


def status_int(obj: Mapping[str, Any], field: str) -> int:
    return int((obj.get("status") or {}).get(field) or 0)


def revision(rs: Mapping[str, Any]) -> int:
    try:
        return int((rs.get("metadata", {}).get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def by_age(rss: Iterable[Obj]) -> list[Obj]:
    """Oldest first (creationTimestamp, then name), as ReplicaSetsByCreationTimestamp."""
    return sorted(
        rss, key=lambda rs: (rs["metadata"].get("creationTimestamp", ""), rs["metadata"]["name"])
    )


def is_rolling(deploy: Mapping[str, Any]) -> bool:
    strategy = (deploy.get("spec") or {}).get("strategy") or {}
    return str(strategy.get("type", "RollingUpdate")) != "Recreate"


def progress_deadline(deploy: Mapping[str, Any], default: int) -> int | None:
    """Seconds, or None when the deadline is disabled (MaxInt32, as Kubernetes)."""
    value = (deploy.get("spec") or {}).get("progressDeadlineSeconds")
    value = default if value is None else int(value)
    return None if value >= 2**31 - 1 else value


# ---------------------------------------------------------------- fenceposts


def scaled_value(value: int | str | None, total: int, round_up: bool, default: str) -> int:
    """An IntOrString (``3`` or ``"25%"``) against ``total``."""
    if value is None:
        value = default
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if text.endswith("%"):
        try:
            pct = int(text[:-1])
        except ValueError as exc:
            raise ValueError(f"invalid value for IntOrString: {value!r}") from exc
        scaled = pct * total / 100
        return math.ceil(scaled) if round_up else math.floor(scaled)
    try:
        return int(text)
    except ValueError as exc:
        raise ValueError(f"invalid value for IntOrString: {value!r}") from exc


def fenceposts(deploy: Mapping[str, Any]) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) of a rolling Deployment; both 0 → unavailable 1."""
    rolling = ((deploy.get("spec") or {}).get("strategy") or {}).get("rollingUpdate") or {}
    total = replicas(deploy)
    surge = scaled_value(rolling.get("maxSurge"), total, True, "25%")
    unavailable = scaled_value(rolling.get("maxUnavailable"), total, False, "25%")
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def max_surge(deploy: Mapping[str, Any]) -> int:
    return fenceposts(deploy)[0] if is_rolling(deploy) else 0


def max_unavailable(deploy: Mapping[str, Any]) -> int:
    if not is_rolling(deploy) or replicas(deploy) == 0:
        return 0
    return min(fenceposts(deploy)[1], replicas(deploy))


# ---------------------------------------------------------------- rolling steps


def new_rs_target(deploy: Mapping[str, Any], all_rs: Sequence[Obj], new_rs: Obj | None) -> int:
    """Kubernetes' NewRSNewReplicas: how many replicas the new ReplicaSet may have now."""
    want = replicas(deploy)
    if not is_rolling(deploy):
        return want
    current_new = replicas(new_rs) if new_rs is not None else 0
    if current_new >= want:
        return want
    max_total = want + max_surge(deploy)
    current_total = sum(replicas(rs) for rs in all_rs)
    if current_total >= max_total:
        return current_new
    return current_new + min(max_total - current_total, want - current_new)


def old_rs_targets(deploy: Mapping[str, Any], old_rs: Sequence[Obj], new_rs: Obj) -> dict[str, int]:
    """Kubernetes' reconcileOldReplicaSets: {old rs name: new replicas} for this step.

    First unhealthy old replicas are cleaned up (they count as unavailable anyway), then
    available ones go while at least ``replicas - maxUnavailable`` pods stay available."""
    olds = by_age(rs for rs in old_rs)
    if sum(replicas(rs) for rs in olds) == 0:
        return {}
    all_count = sum(replicas(rs) for rs in olds) + replicas(new_rs)
    min_available = replicas(deploy) - max_unavailable(deploy)
    new_unavailable = replicas(new_rs) - status_int(new_rs, "availableReplicas")
    max_scaled_down = all_count - min_available - new_unavailable
    if max_scaled_down <= 0:
        return {}
    targets: dict[str, int] = {}
    size = {rs["metadata"]["name"]: replicas(rs) for rs in olds}
    cleaned = 0
    for rs in olds:
        name = rs["metadata"]["name"]
        if cleaned >= max_scaled_down:
            break
        unhealthy = size[name] - status_int(rs, "availableReplicas")
        if size[name] == 0 or unhealthy <= 0:
            continue
        down = min(max_scaled_down - cleaned, unhealthy)
        size[name] -= down
        targets[name] = size[name]
        cleaned += down
    available = sum(status_int(rs, "availableReplicas") for rs in [*olds, new_rs])
    if available > min_available:
        budget = available - min_available
        for rs in olds:
            name = rs["metadata"]["name"]
            if budget <= 0:
                break
            if size[name] == 0:
                continue
            down = min(size[name], budget)
            size[name] -= down
            targets[name] = size[name]
            budget -= down
    return targets


def proportional_targets(
    deploy: Mapping[str, Any], new_rs: Obj | None, old_rs: Sequence[Obj]
) -> dict[str, int]:
    """Kubernetes' scale() for a replica change (simplified proportional scaling).

    One active (or no active) ReplicaSet takes the whole count. With several active ones, a
    scale-up goes to the newest, a scale-down comes from the oldest first, keeping the total at
    ``replicas + maxSurge`` at most. (Kubernetes spreads both in proportion to the sizes.)"""
    want = replicas(deploy)
    everything = [rs for rs in [*old_rs, new_rs] if rs is not None]
    active = [rs for rs in everything if replicas(rs) > 0]
    if len(active) <= 1:
        target = (
            active[0] if active else (new_rs or (by_age(everything)[-1] if everything else None))
        )
        if target is None:
            return {}
        return {target["metadata"]["name"]: want}
    if new_rs is not None and replicas(new_rs) >= want:  # new one saturated: olds go
        return {rs["metadata"]["name"]: 0 for rs in old_rs if replicas(rs) > 0}
    allowed = want + max_surge(deploy)
    delta = allowed - sum(replicas(rs) for rs in active)
    targets = {rs["metadata"]["name"]: replicas(rs) for rs in active}
    ordered = by_age(active)
    if delta > 0:
        targets[ordered[-1]["metadata"]["name"]] += delta
    else:
        for rs in ordered:
            take = min(targets[rs["metadata"]["name"]], -delta)
            targets[rs["metadata"]["name"]] -= take
            delta += take
            if delta >= 0:
                break
    return targets


def history_to_delete(old_rs: Sequence[Obj], limit: int | None) -> list[str]:
    """Old ReplicaSets with no replicas beyond ``revisionHistoryLimit`` (default 10), oldest first."""
    limit = 10 if limit is None else limit
    idle = [
        rs
        for rs in old_rs
        if replicas(rs) == 0 and status_int(rs, "replicas") == 0 and not objects.is_terminating(rs)
    ]
    excess = len(idle) - limit
    if excess <= 0:
        return []
    idle.sort(key=lambda rs: (revision(rs), rs["metadata"].get("creationTimestamp", "")))
    return [rs["metadata"]["name"] for rs in idle[:excess]]


# ---------------------------------------------------------------- status


def calculate_status(deploy: Mapping[str, Any], all_rs: Sequence[Obj], new_rs: Obj | None) -> Obj:
    """Kubernetes' calculateStatus: counters (zero ones omitted, as omitempty) and Available."""
    available = sum(status_int(rs, "availableReplicas") for rs in all_rs)
    total_spec = sum(replicas(rs) for rs in all_rs)
    counters = {
        "observedGeneration": int(deploy["metadata"].get("generation", 1)),
        "replicas": sum(status_int(rs, "replicas") for rs in all_rs),
        "updatedReplicas": status_int(new_rs, "replicas") if new_rs is not None else 0,
        "readyReplicas": sum(status_int(rs, "readyReplicas") for rs in all_rs),
        "availableReplicas": available,
        "unavailableReplicas": max(0, total_spec - available),
    }
    old = dict(deploy.get("status") or {})
    status: Obj = {k: v for k, v in counters.items() if v}
    if old.get("collisionCount"):
        status["collisionCount"] = old["collisionCount"]
    if old.get("conditions"):
        status["conditions"] = copy.deepcopy(old["conditions"])
    if available >= replicas(deploy) - max_unavailable(deploy):
        objects.set_condition(
            status, "Available", "True", MIN_AVAILABLE, "Deployment has minimum availability."
        )
    else:
        objects.set_condition(
            status,
            "Available",
            "False",
            MIN_UNAVAILABLE,
            "Deployment does not have minimum availability.",
        )
    return status


def is_complete(deploy: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
    want = replicas(deploy)
    return (
        int(status.get("updatedReplicas") or 0) == want
        and int(status.get("replicas") or 0) == want
        and int(status.get("availableReplicas") or 0) == want
        and int(status.get("observedGeneration") or 0)
        >= int(deploy["metadata"].get("generation", 1))
    )


def made_progress(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    def get(s: Mapping[str, Any], f: str) -> int:
        return int(s.get(f) or 0)

    old_olds = get(old, "replicas") - get(old, "updatedReplicas")
    new_olds = get(new, "replicas") - get(new, "updatedReplicas")
    return (
        get(new, "updatedReplicas") > get(old, "updatedReplicas")
        or new_olds < old_olds
        or get(new, "readyReplicas") > get(old, "readyReplicas")
        or get(new, "availableReplicas") > get(old, "availableReplicas")
    )


def timed_out(
    status: Mapping[str, Any], deadline: int | None, now: datetime.datetime
) -> tuple[bool, float | None]:
    """(timed out?, seconds until it would time out) from the Progressing condition."""
    if deadline is None:
        return False, None
    cond = objects.get_condition(status, "Progressing")
    if cond is None:
        return False, None
    if cond.get("reason") == TIMED_OUT:
        return True, None
    if cond.get("reason") == NEW_RS_AVAILABLE:
        return False, None
    since = objects.parse_time(cond.get("lastUpdateTime"))
    if since is None:
        return False, None
    left = (since + datetime.timedelta(seconds=deadline) - now).total_seconds()
    return left < 0, max(left, 0.0)


def rollout_status(
    deploy: Mapping[str, Any],
    all_rs: Sequence[Obj],
    new_rs: Obj | None,
    *,
    deadline: int | None,
    now: datetime.datetime,
) -> tuple[Obj, float | None]:
    """Kubernetes' syncRolloutStatus: the new status, and when to look again for a timeout."""
    at = objects.rfc3339(now)
    old = dict(deploy.get("status") or {})
    status = calculate_status(deploy, all_rs, new_rs)
    if deadline is None:
        objects.remove_condition(status, "Progressing")
    current = objects.get_condition(old, "Progressing")
    complete_before = (
        int(status.get("replicas") or 0) == int(status.get("updatedReplicas") or 0)
        and current is not None
        and current.get("reason") == NEW_RS_AVAILABLE
    )
    recheck: float | None = None
    if deadline is not None and not complete_before:
        name = new_rs["metadata"]["name"] if new_rs is not None else None
        if is_complete(deploy, status):
            msg = (
                f'ReplicaSet "{name}" has successfully progressed.'
                if name
                else f'Deployment "{deploy["metadata"]["name"]}" has successfully progressed.'
            )
            objects.set_condition(status, "Progressing", "True", NEW_RS_AVAILABLE, msg, at=at)
        elif made_progress(old, status):
            msg = (
                f'ReplicaSet "{name}" is progressing.'
                if name
                else f'Deployment "{deploy["metadata"]["name"]}" is progressing.'
            )
            transition = at
            if current is not None and current.get("status") == "True":
                transition = current.get("lastTransitionTime", at)
            objects.remove_condition(status, "Progressing")
            objects.set_condition(status, "Progressing", "True", RS_UPDATED, msg, at=at)
            for cond in status["conditions"]:
                if cond["type"] == "Progressing":
                    cond["lastTransitionTime"] = transition
            recheck = float(deadline)
        else:
            expired, left = timed_out(status, deadline, now)
            if expired:
                msg = (
                    f'ReplicaSet "{name}" has timed out progressing.'
                    if name
                    else f'Deployment "{deploy["metadata"]["name"]}" has timed out progressing.'
                )
                objects.set_condition(status, "Progressing", "False", TIMED_OUT, msg, at=at)
            else:
                recheck = left
    return status, recheck


def rs_annotations(deploy: Mapping[str, Any], rev: int) -> dict[str, str]:
    """Annotations a Deployment puts on its new ReplicaSet."""
    out = {
        k: v
        for k, v in (deploy["metadata"].get("annotations") or {}).items()
        if k not in SKIPPED_ANNOTATIONS
    }
    out[REVISION] = str(rev)
    out[DESIRED_REPLICAS] = str(replicas(deploy))
    out[MAX_REPLICAS] = str(replicas(deploy) + max_surge(deploy))
    return out
