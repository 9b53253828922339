"""Field sets: paths of an object by its schema, fieldsV1 both ways, conflict path strings."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.kube import fieldsets
from sandbox.kube.fieldsets import ITEM, Schemas

DEFINITIONS: dict[str, Any] = {
    "Thing": {
        "type": "object",
        "properties": {
            "metadata": {"$ref": "#/components/schemas/Meta"},
            "spec": {"allOf": [{"$ref": "#/components/schemas/Spec"}], "description": "d"},
            "status": {"type": "object"},
        },
    },
    "Meta": {
        "type": "object",
        "properties": {
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "finalizers": {
                "type": "array",
                "items": {"type": "string"},
                "x-kubernetes-list-type": "set",
            },
        },
    },
    "Spec": {
        "type": "object",
        "properties": {
            "replicas": {"type": "integer"},
            "args": {"type": "array", "items": {"type": "string"}},
            "selector": {"type": "object", "x-kubernetes-map-type": "atomic"},
            "ports": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/Port"},
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["port", "protocol"],
            },
            "containers": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/Container"},
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
            },
        },
    },
    "Port": {"type": "object", "properties": {"port": {"type": "integer"}}},
    "Container": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "image": {"type": "string"}},
    },
}
SCHEMAS = Schemas(DEFINITIONS)
ROOT = {"$ref": "#/components/schemas/Thing"}


def test_leaves_follow_the_schema() -> None:
    obj = {
        "apiVersion": "v1",
        "kind": "Thing",
        "metadata": {
            "name": "a",
            "namespace": "n",
            "uid": "u",
            "resourceVersion": "3",
            "managedFields": [],
            "labels": {"app": "a"},
            "finalizers": ["x"],
        },
        "spec": {
            "replicas": 2,
            "args": ["-v"],
            "selector": {"app": "a"},
            "ports": [{"port": 80}],
            "containers": [{"name": "app", "image": "i"}],
            "empty": {},
            "gone": None,
        },
        "status": {"phase": "Ready"},
    }
    got = fieldsets.leaves(obj, SCHEMAS, ROOT)
    assert got == {
        ("f:metadata", "f:labels", "f:app"): "a",
        ("f:metadata", "f:finalizers", 'v:"x"'): ITEM,
        ("f:spec", "f:replicas"): 2,
        ("f:spec", "f:args"): ["-v"],
        ("f:spec", "f:selector"): {"app": "a"},
        ("f:spec", "f:ports", 'k:{"port":80,"protocol":"TCP"}'): ITEM,
        ("f:spec", "f:ports", 'k:{"port":80,"protocol":"TCP"}', "f:port"): 80,
        ("f:spec", "f:containers", 'k:{"name":"app"}'): ITEM,
        ("f:spec", "f:containers", 'k:{"name":"app"}', "f:name"): "app",
        ("f:spec", "f:containers", 'k:{"name":"app"}', "f:image"): "i",
        ("f:spec", "f:empty"): {},
        ("f:status", "f:phase"): "Ready",
    }
    main = fieldsets.leaves(obj, SCHEMAS, ROOT, "main")
    assert not any(p[0] == "f:status" for p in main)
    assert set(fieldsets.leaves(obj, SCHEMAS, ROOT, "status")) == {("f:status", "f:phase")}


@pytest.mark.parametrize(
    ("containers", "atomic"),
    [
        ([{"image": "no-name"}], True),  # an element without its key
        ([{"name": "a"}, {"name": "a"}], True),  # a duplicate key
        (["not-an-object"], True),
        ([], True),  # an empty list is one member
        ([{"name": "a"}], False),
    ],
)
def test_lists_that_cannot_be_keyed_are_atomic(containers: list[Any], atomic: bool) -> None:
    got = fieldsets.leaves({"spec": {"containers": containers}}, SCHEMAS, ROOT)
    assert ((("f:spec", "f:containers")) in got) is atomic


def test_without_a_schema_objects_are_granular_and_lists_atomic() -> None:
    got = fieldsets.leaves({"spec": {"a": {"b": 1}, "l": [{"name": "x"}]}}, SCHEMAS, None)
    assert got == {("f:spec", "f:a", "f:b"): 1, ("f:spec", "f:l"): [{"name": "x"}]}


def test_changes_tell_added_modified_removed_and_types_apart() -> None:
    old = {("a",): 1, ("b",): 2, ("c",): 3, ("t",): 1}
    new = {("a",): 1, ("b",): 5, ("d",): 4, ("t",): True}
    added, modified, removed = fieldsets.changes(old, new)
    assert (added, modified, removed) == ({("d",)}, {("b",), ("t",)}, {("c",)})


def test_fields_v1_round_trip_with_dot_for_members_with_members() -> None:
    paths = {
        ("f:spec", "f:replicas"),
        ("f:spec", "f:containers", 'k:{"name":"app"}'),
        ("f:spec", "f:containers", 'k:{"name":"app"}', "f:image"),
        ("f:metadata", "f:labels", "f:app"),
    }
    tree = fieldsets.to_fields_v1(paths)
    assert tree == {
        "f:metadata": {"f:labels": {"f:app": {}}},
        "f:spec": {
            "f:containers": {'k:{"name":"app"}': {".": {}, "f:image": {}}},
            "f:replicas": {},
        },
    }
    assert list(tree["f:spec"]["f:containers"]['k:{"name":"app"}']) == [".", "f:image"]
    assert fieldsets.from_fields_v1(tree) == paths
    assert fieldsets.to_fields_v1(set()) == {}


@pytest.mark.parametrize(
    ("tree", "message"),
    [
        ([], "expected an object, got list"),
        ({"x:bad": {}}, "unknown path element 'x:bad'"),
        ({"f:spec": 1}, "f:spec must be an object"),
    ],
)
def test_malformed_fields_v1_is_named(tree: Any, message: str) -> None:
    with pytest.raises(fieldsets.FieldSetError, match=message):
        fieldsets.from_fields_v1(tree, "entry.fieldsV1")


def test_path_strings_read_as_the_api_server_prints_them() -> None:
    path = ("f:spec", "f:containers", 'k:{"name":"app"}', "f:ports")
    assert fieldsets.path_string(path) == '.spec.containers[name="app"].ports'
    keyed = ("f:ports", 'k:{"port":80,"protocol":"TCP"}')
    assert fieldsets.path_string(keyed) == '.ports[port=80,protocol="TCP"]'
    assert fieldsets.path_string(("f:finalizers", 'v:"x"', "i:2")) == '.finalizers[="x"][2]'


def test_refs_resolve_and_loops_end() -> None:
    looping = Schemas(
        {"A": {"$ref": "#/components/schemas/B"}, "B": {"$ref": "#/components/schemas/A"}}
    )
    assert "$ref" in (looping.resolve({"$ref": "#/components/schemas/A"}) or {})  # it ends
    assert SCHEMAS.field(SCHEMAS.resolve(ROOT), "spec") == DEFINITIONS["Spec"]
    assert (
        SCHEMAS.field(DEFINITIONS["Meta"], "labels") == DEFINITIONS["Meta"]["properties"]["labels"]
    )
    assert SCHEMAS.field(DEFINITIONS["Meta"]["properties"]["labels"], "any") == {"type": "string"}
    assert fieldsets.list_type(DEFINITIONS["Spec"]["properties"]["args"]) == ("atomic", ())


def test_metadata_is_object_meta_even_where_a_crd_says_only_object() -> None:
    schemas = Schemas({fieldsets.OBJECT_META: DEFINITIONS["Meta"]})
    crd_root = {"type": "object", "properties": {"metadata": {"type": "object"}}}
    got = fieldsets.leaves({"metadata": {"finalizers": ["a"]}}, schemas, crd_root)
    assert got == {("f:metadata", "f:finalizers", 'v:"a"'): ITEM}
