"""The Deployment controller's arithmetic (pure)."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from sandbox.kube.controllers import objects, rollout

NOW = datetime.datetime(2024, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)


def deploy(replicas: int = 2, surge: Any = None, unavailable: Any = None, **spec: Any) -> dict:
    rolling = {
        k: v for k, v in (("maxSurge", surge), ("maxUnavailable", unavailable)) if v is not None
    }
    return {
        "metadata": {"name": "d", "namespace": "ns", "generation": 1},
        "spec": {
            "replicas": replicas,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": rolling},
            **spec,
        },
    }


def rs(
    name: str,
    replicas: int,
    available: int = 0,
    created: str = "2024-01-01T00:00:00Z",
    **status: int,
) -> dict:
    return {
        "metadata": {"name": name, "creationTimestamp": created},
        "spec": {"replicas": replicas},
        "status": {"replicas": replicas, "availableReplicas": available, **status},
    }


def test_template_hash_is_stable_and_ignores_the_hash_label() -> None:
    template = {
        "metadata": {"labels": {"app": "a"}},
        "spec": {"containers": [{"name": "c", "image": "i:1"}]},
    }
    labelled = {
        "metadata": {"labels": {"app": "a", "pod-template-hash": "x"}},
        "spec": template["spec"],
    }
    h = rollout.template_hash(template)
    assert h == rollout.template_hash(labelled)
    assert set(h) <= set(rollout.SAFE_ALPHABET)
    assert h != rollout.template_hash(
        {**template, "spec": {"containers": [{"name": "c", "image": "i:2"}]}}
    )
    assert h != rollout.template_hash(template, collision_count=1)
    assert rollout.same_template(template, labelled)


@pytest.mark.parametrize(
    ("replicas", "surge", "unavailable", "expected"),
    [
        (2, None, None, (1, 0)),  # 25% of 2: surge rounds up, unavailable down
        (2, None, 1, (1, 1)),  # Flagger's podinfo
        (10, "25%", "25%", (3, 2)),
        (4, 0, 0, (0, 1)),  # both zero → one may be unavailable
        (3, 2, "50%", (2, 1)),
    ],
)
def test_fenceposts(replicas: int, surge: Any, unavailable: Any, expected: tuple[int, int]) -> None:
    assert rollout.fenceposts(deploy(replicas, surge, unavailable)) == expected


def test_max_unavailable_is_bounded_by_replicas_and_zero_for_recreate() -> None:
    assert rollout.max_unavailable(deploy(1, 0, 5)) == 1
    assert rollout.max_unavailable(deploy(0)) == 0
    recreate = deploy(3)
    recreate["spec"]["strategy"] = {"type": "Recreate"}
    assert rollout.max_unavailable(recreate) == 0
    assert rollout.max_surge(recreate) == 0


def test_new_replicaset_grows_within_max_surge() -> None:
    d = deploy(2, None, 1)  # surge 1
    old = rs("old", 2, 2)
    assert rollout.new_rs_target(d, [old], None) == 1
    new = rs("new", 1)
    assert rollout.new_rs_target(d, [old, new], new) == 1  # 3 pods = max total
    assert rollout.new_rs_target(d, [rs("old", 1, 1), new], new) == 2
    assert rollout.new_rs_target(d, [rs("new", 5)], rs("new", 5)) == 2  # too many: down to replicas


def test_old_replicasets_shrink_keeping_min_available() -> None:
    d = deploy(2, None, 1)  # min available 1
    new = rs("new", 1, 0)
    assert rollout.old_rs_targets(d, [rs("old", 2, 2)], new) == {"old": 1}
    # new pod not yet available and old at 1: nothing more may go
    assert rollout.old_rs_targets(d, [rs("old", 1, 1)], rs("new", 2, 0)) == {}
    assert rollout.old_rs_targets(d, [rs("old", 1, 1)], rs("new", 2, 1)) == {"old": 0}


def test_unhealthy_old_replicas_are_cleaned_up_first() -> None:
    d = deploy(2, 0, 1)
    old = rs("old", 2, 0)  # none available
    assert rollout.old_rs_targets(d, [old], rs("new", 0, 0)) == {"old": 1}


def test_oldest_replicaset_scales_down_first() -> None:
    d = deploy(4, 0, 2)
    older = rs("a", 2, 2, created="2024-01-01T00:00:00Z")
    newer = rs("b", 2, 2, created="2024-01-01T00:00:05Z")
    assert rollout.old_rs_targets(d, [newer, older], rs("new", 0)) == {"a": 0}


def test_proportional_targets() -> None:
    d = deploy(5, 1, 1)
    assert rollout.proportional_targets(d, rs("new", 2), []) == {"new": 5}
    assert rollout.proportional_targets(d, rs("new", 0), [rs("old", 0)]) == {"new": 5}
    two = rollout.proportional_targets(
        d, rs("new", 1, created="2024-01-01T00:00:09Z"), [rs("old", 2)]
    )
    assert two == {"old": 2, "new": 4}  # allowed 6 pods; growth goes to the newest
    newer = rs("new", 1, created="2024-01-01T00:00:09Z")
    shrink = rollout.proportional_targets(deploy(2, 1, 1), newer, [rs("old", 3)])
    assert shrink == {"old": 2, "new": 1}  # allowed 3 pods; the oldest gives them up
    # the new one is saturated: old ones go
    assert rollout.proportional_targets(deploy(1, 1, 1), rs("new", 1), [rs("old", 3)]) == {"old": 0}


def test_history_cleanup_keeps_the_limit() -> None:
    olds = [
        rs(f"r{i}", 0) | {"metadata": {"name": f"r{i}", "annotations": {rollout.REVISION: str(i)}}}
        for i in range(5)
    ]
    for o in olds:
        o["status"]["replicas"] = 0
    assert rollout.history_to_delete(olds, 2) == ["r0", "r1", "r2"]
    assert rollout.history_to_delete(olds, None) == []


def test_status_counters_are_omitted_when_zero() -> None:
    d = deploy(2, None, 1)
    status = rollout.calculate_status(d, [rs("new", 2, 0, readyReplicas=0)], rs("new", 2, 0))
    assert status["replicas"] == 2
    assert status["updatedReplicas"] == 2
    assert "readyReplicas" not in status
    assert "availableReplicas" not in status
    assert status["unavailableReplicas"] == 2
    assert objects.get_condition(status, "Available")["status"] == "False"
    ok = rollout.calculate_status(d, [rs("new", 2, 1, readyReplicas=1)], rs("new", 2, 1))
    assert objects.get_condition(ok, "Available")["reason"] == rollout.MIN_AVAILABLE


def with_progressing(
    d: dict, reason: str, status: str = "True", at: str = "2024-01-01T11:59:00Z", **counters: int
) -> dict:
    d = dict(d)
    d["status"] = {
        **counters,
        "conditions": [
            {
                "type": "Progressing",
                "status": status,
                "reason": reason,
                "lastUpdateTime": at,
                "lastTransitionTime": at,
                "message": "",
            }
        ],
    }
    return d


def test_complete_rollout_sets_new_replicaset_available() -> None:
    d = with_progressing(deploy(2), rollout.RS_UPDATED, replicas=2, updatedReplicas=2)
    new = rs("new", 2, 2, readyReplicas=2)
    status, recheck = rollout.rollout_status(d, [new], new, deadline=600, now=NOW)
    cond = objects.get_condition(status, "Progressing")
    assert cond["reason"] == rollout.NEW_RS_AVAILABLE
    assert cond["status"] == "True"
    assert cond["lastTransitionTime"] == "2024-01-01T11:59:00Z"  # still True: transition kept
    assert recheck is None


def test_progress_refreshes_the_update_time() -> None:
    d = with_progressing(deploy(2), rollout.NEW_RS_CREATED, replicas=2, updatedReplicas=0)
    new = rs("new", 1, 0)
    status, recheck = rollout.rollout_status(d, [rs("old", 2, 2), new], new, deadline=60, now=NOW)
    cond = objects.get_condition(status, "Progressing")
    assert cond["reason"] == rollout.RS_UPDATED
    assert cond["lastUpdateTime"] == "2024-01-01T12:00:00Z"
    assert cond["lastTransitionTime"] == "2024-01-01T11:59:00Z"
    assert recheck == 60


def test_no_progress_past_the_deadline_times_out() -> None:
    counters = {"replicas": 2, "updatedReplicas": 2, "observedGeneration": 1}
    stuck = rs("new", 2, 0)
    early = with_progressing(
        deploy(2), rollout.NEW_RS_CREATED, at="2024-01-01T11:59:59Z", **counters
    )
    status, recheck = rollout.rollout_status(early, [stuck], stuck, deadline=2, now=NOW)
    assert objects.get_condition(status, "Progressing")["reason"] == rollout.NEW_RS_CREATED
    assert recheck == pytest.approx(1.0)
    late = with_progressing(
        deploy(2), rollout.NEW_RS_CREATED, at="2024-01-01T11:59:57Z", **counters
    )
    status, _ = rollout.rollout_status(late, [stuck], stuck, deadline=2, now=NOW)
    cond = objects.get_condition(status, "Progressing")
    assert (cond["status"], cond["reason"]) == ("False", rollout.TIMED_OUT)
    assert cond["message"] == 'ReplicaSet "new" has timed out progressing.'


def test_no_deadline_removes_progressing() -> None:
    d = with_progressing(deploy(1), rollout.RS_UPDATED)
    status, _ = rollout.rollout_status(d, [rs("n", 1, 1)], rs("n", 1, 1), deadline=None, now=NOW)
    assert objects.get_condition(status, "Progressing") is None
    assert rollout.progress_deadline(deploy(1, progressDeadlineSeconds=2**31 - 1), 600) is None
    assert rollout.progress_deadline(deploy(1), 600) == 600


def test_set_condition_keeps_times_like_kubernetes() -> None:
    status: dict = {}
    objects.set_condition(status, "Available", "True", "A", "m", at="t1")
    objects.set_condition(status, "Available", "True", "A", "m2", at="t2")  # same: untouched
    assert status["conditions"][0]["message"] == "m"
    objects.set_condition(status, "Available", "True", "B", "m", at="t3")
    assert status["conditions"][0]["lastTransitionTime"] == "t1"
    assert status["conditions"][0]["lastUpdateTime"] == "t3"
    objects.set_condition(status, "Available", "False", "C", "m", at="t4")
    assert status["conditions"][0]["lastTransitionTime"] == "t4"
