"""Server-side apply and Update ownership on plain dicts."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from sandbox.kube import applying, fieldsets
from sandbox.kube.applying import Operation

from .test_fieldsets import ROOT, SCHEMAS

Obj = dict[str, Any]


def op(
    manager: str = "me", kind: str = "Apply", time: str = "t1", sub: str | None = None
) -> Operation:
    return Operation(manager, kind, "v1", time, sub)


def apply(live: Obj | None, config: Obj, operation: Operation | None = None, **kw: Any) -> Obj:
    return applying.apply(live, config, operation or op(), SCHEMAS, ROOT, "main", **kw)


def update(old: Obj | None, new: Obj, operation: Operation, scope: str = "main") -> Obj:
    new = copy.deepcopy(new)
    new.setdefault("metadata", {})["managedFields"] = applying.record_update(
        old, new, operation, SCHEMAS, ROOT, scope
    )
    return new


def owners(obj: Obj) -> dict[tuple[str, str], set[str]]:
    """(manager, operation) → the owned paths as the API server prints them."""
    return {
        (e["manager"], e["operation"]): {
            fieldsets.path_string(p) for p in fieldsets.from_fields_v1(e["fieldsV1"])
        }
        for e in obj["metadata"].get("managedFields", [])
    }


def thing(**spec: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "Thing", "metadata": {"name": "a"}, "spec": spec}


# ---------------------------------------------------------------------------- apply


def test_apply_creates_with_the_applied_fields_only() -> None:
    created = apply(None, thing(replicas=1, gone=None))
    assert created["spec"] == {"replicas": 1}
    assert created["metadata"]["managedFields"] == [
        {
            "manager": "me",
            "operation": "Apply",
            "apiVersion": "v1",
            "time": "t1",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:spec": {"f:replicas": {}}},
        }
    ]


def test_apply_merges_maps_keyed_lists_sets_and_replaces_atomics() -> None:
    live = apply(
        None,
        {
            **thing(
                args=["a"],
                selector={"x": "1", "y": "2"},
                containers=[{"name": "app", "image": "1"}],
                ports=[{"port": 80}],
            ),
            "metadata": {"name": "a", "labels": {"l": "1"}, "finalizers": ["f1"]},
        },
        op("other"),
    )
    merged = apply(
        live,
        {
            **thing(
                args=["b"],
                selector={"x": "1"},
                containers=[{"name": "side", "image": "2"}],
                ports=[{"port": 80, "protocol": "TCP", "name": "http"}],
            ),
            "metadata": {"name": "a", "labels": {"m": "2"}, "finalizers": ["f2"]},
        },
        force=True,
    )
    assert merged["metadata"]["labels"] == {"l": "1", "m": "2"}
    assert merged["metadata"]["finalizers"] == ["f1", "f2"]
    assert merged["spec"]["args"] == ["b"]
    assert merged["spec"]["selector"] == {"x": "1"}
    assert merged["spec"]["containers"] == [
        {"name": "app", "image": "1"},
        {"name": "side", "image": "2"},
    ]
    # a port without its protocol matches the one that has the default
    assert merged["spec"]["ports"] == [{"port": 80, "name": "http", "protocol": "TCP"}]


def test_a_changed_value_another_manager_owns_conflicts() -> None:
    live = apply(None, thing(replicas=1, args=["a"]), op("alice"))
    live = update(live, {**live, "spec": {**live["spec"], "replicas": 3}}, op("kubectl", "Update"))
    with pytest.raises(applying.ApplyConflict) as conflict:
        apply(live, thing(replicas=1, args=["a"]), op("alice"))
    assert conflict.value.message == (
        'Apply failed with 1 conflict: conflict with "kubectl" using v1: .spec.replicas'
    )
    assert conflict.value.causes == [
        {
            "type": "FieldManagerConflict",
            "message": 'conflict with "kubectl" using v1',
            "field": ".spec.replicas",
        }
    ]


def test_several_conflicts_are_listed_by_manager() -> None:
    live = apply(None, thing(replicas=1, args=["a"]), op("bob"))
    live = apply(live, thing(paused=False), op("carol", sub="status"))
    with pytest.raises(applying.ApplyConflict) as conflict:
        apply(live, thing(replicas=2, args=["b"], paused=True), op("alice"))
    assert conflict.value.message == (
        "Apply failed with 3 conflicts: "
        'conflicts with "bob":\n- .spec.args\n- .spec.replicas\n'
        'conflicts with "carol" with subresource "status":\n- .spec.paused'
    )


def test_the_same_value_is_shared_and_stays_while_one_owner_holds_it() -> None:
    live = apply(None, thing(replicas=1, args=["a"]), op("alice"))
    shared = apply(live, thing(replicas=1), op("bob"))
    assert owners(shared) == {
        ("alice", "Apply"): {".spec.replicas", ".spec.args"},
        ("bob", "Apply"): {".spec.replicas"},
    }
    alice_left = apply(shared, thing(args=["a"]), op("alice"))
    assert alice_left["spec"] == {"replicas": 1, "args": ["a"]}  # bob still owns replicas
    bob_left = apply(
        alice_left, {**thing(), "metadata": {"name": "a", "labels": {"b": "1"}}}, op("bob")
    )
    assert bob_left["spec"] == {"args": ["a"]}  # nobody owns replicas now


def test_force_takes_the_fields_over() -> None:
    live = apply(None, thing(replicas=1, args=["a"]), op("alice"))
    taken = apply(live, thing(replicas=5), op("bob"), force=True)
    assert taken["spec"]["replicas"] == 5
    assert owners(taken) == {
        ("alice", "Apply"): {".spec.args"},
        ("bob", "Apply"): {".spec.replicas"},
    }


def test_fields_no_longer_applied_are_removed_with_emptied_parents() -> None:
    live = apply(
        None,
        {
            **thing(containers=[{"name": "app", "image": "1"}, {"name": "side", "image": "2"}]),
            "metadata": {"name": "a", "labels": {"l": "1"}},
        },
    )
    after = apply(live, thing(containers=[{"name": "app", "image": "1"}]))
    assert after["spec"]["containers"] == [{"name": "app", "image": "1"}]
    assert "labels" not in after["metadata"]
    assert owners(after) == {
        ("me", "Apply"): {
            '.spec.containers[name="app"]',
            '.spec.containers[name="app"].name',
            '.spec.containers[name="app"].image',
        }
    }


def test_an_element_another_manager_owns_part_of_stays() -> None:
    live = apply(None, thing(containers=[{"name": "app", "image": "1"}]), op("alice"))
    live = update(
        live,
        {**live, "spec": {"containers": [{"name": "app", "image": "1", "args": ["x"]}]}},
        op("editor", "Update"),
    )
    after = apply(live, thing(replicas=1), op("alice"))
    assert after["spec"]["containers"] == [{"name": "app", "args": ["x"]}]


def test_a_no_op_apply_keeps_the_time() -> None:
    live = apply(None, thing(replicas=1))
    again = apply(live, thing(replicas=1), op(time="t2"))
    assert again == live
    changed = apply(live, thing(replicas=2), op(time="t3"))
    assert changed["metadata"]["managedFields"][0]["time"] == "t3"


def test_kubectl_may_take_over_what_its_client_side_apply_set() -> None:
    last = thing(replicas=1)
    live = update(
        None,
        {
            **thing(replicas=1, args=["a"]),
            "metadata": {
                "name": "a",
                "annotations": {applying.LAST_APPLIED: json.dumps(last)},
            },
        },
        op("kubectl-client-side-apply", "Update"),
    )
    taken = apply(live, thing(replicas=2), op("kubectl"))
    assert taken["spec"]["replicas"] == 2
    with pytest.raises(applying.ApplyConflict, match=r"\.spec\.args"):
        apply(live, thing(args=["b"]), op("kubectl"))
    with pytest.raises(applying.ApplyConflict, match=r"\.spec\.replicas"):
        apply(live, thing(replicas=2), op("someone-else"))


def test_status_scope_owns_only_the_status() -> None:
    live = apply(None, thing(replicas=1), op("user"))
    live["status"] = {"phase": "Old"}
    written = applying.apply(
        live,
        {**thing(replicas=9), "status": {"phase": "New"}},
        op("ctl", sub="status"),
        SCHEMAS,
        ROOT,
        "status",
    )
    assert written["status"] == {"phase": "New"}
    entries = {
        (e["manager"], e.get("subresource")): e for e in written["metadata"]["managedFields"]
    }
    assert entries[("ctl", "status")]["fieldsV1"] == {"f:status": {"f:phase": {}}}


# ---------------------------------------------------------------------------- updates


def test_an_update_takes_what_it_changed_and_removed_fields_leave_everyone() -> None:
    created = update(None, thing(replicas=1, args=["a"]), op("creator", "Update"))
    assert owners(created) == {("creator", "Update"): {".spec.replicas", ".spec.args"}}
    edited = update(created, thing(replicas=2), op("editor", "Update", "t2"))
    assert owners(edited) == {("editor", "Update"): {".spec.replicas"}}


def test_a_no_op_update_keeps_the_entries_as_they_are() -> None:
    created = update(None, thing(replicas=1), op("creator", "Update"))
    same = update(created, created, op("creator", "Update", "t9"))
    assert same["metadata"]["managedFields"] == created["metadata"]["managedFields"]
    other = update(created, created, op("someone", "Update", "t9"))
    assert other["metadata"]["managedFields"] == created["metadata"]["managedFields"]


def test_an_update_to_the_status_is_its_own_entry() -> None:
    created = update(None, thing(replicas=1), op("creator", "Update"))
    status = update(
        created,
        {**created, "status": {"phase": "Ready"}},
        op("ctl", "Update", sub="status"),
        "status",
    )
    entries = status["metadata"]["managedFields"]
    assert entries[-1]["subresource"] == "status"
    assert entries[-1]["fieldsV1"] == {"f:status": {"f:phase": {}}}


def test_managed_fields_sent_explicitly_are_honoured_and_empty_clears() -> None:
    created = update(None, thing(replicas=1), op("creator", "Update"))
    moved = copy.deepcopy(created)
    moved["metadata"]["managedFields"][0]["manager"] = "kubectl"
    moved["metadata"]["managedFields"][0]["operation"] = "Apply"
    rewritten = update(created, moved, op("patcher", "Update"))
    assert owners(rewritten) == {("kubectl", "Apply"): {".spec.replicas"}}
    cleared = copy.deepcopy(created)
    cleared["metadata"]["managedFields"] = []
    assert update(created, cleared, op("patcher", "Update"))["metadata"]["managedFields"] == []


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ({}, "metadata.managedFields: expected a list, got dict"),
        (["x"], r"metadata.managedFields\[0\]: expected an object"),
        ([{"operation": "Delete"}], r"\[0\].operation: Unsupported value: \"Delete\""),
        ([{"operation": "Apply", "fieldsType": "V2"}], r"\[0\].fieldsType: Unsupported value"),
        ([{"operation": "Apply", "fieldsV1": {"bad": {}}}], r"\[0\].fieldsV1: unknown path"),
    ],
)
def test_bad_managed_fields_are_named(entries: Any, message: str) -> None:
    new = thing(replicas=1)
    new["metadata"]["managedFields"] = entries
    with pytest.raises(applying.ManagedFieldsError, match=message):
        applying.record_update(None, new, op("x", "Update"), SCHEMAS, ROOT, "main")
