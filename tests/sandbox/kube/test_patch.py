"""Patch formats, table-driven: merge patch (RFC 7386), JSON patch (RFC 6902), strategic."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.kube import patch

# ---------------------------------------------------------------------------- RFC 7386

MERGE_CASES = [
    # (target, patch, result) — the RFC 7386 appendix examples, and then some
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "doc", "expected"), MERGE_CASES)
def test_merge_patch(target: Any, doc: Any, expected: Any) -> None:
    assert patch.merge_patch(target, doc) == expected


def test_merge_patch_does_not_mutate_its_inputs() -> None:
    target = {"a": {"b": 1}}
    patch.merge_patch(target, {"a": {"b": 2}})
    assert target == {"a": {"b": 1}}


# ---------------------------------------------------------------------------- RFC 6902

JSON_CASES = [
    ({"foo": "bar"}, [{"op": "add", "path": "/baz", "value": "qux"}], {"foo": "bar", "baz": "qux"}),
    (
        {"foo": ["bar", "baz"]},
        [{"op": "add", "path": "/foo/1", "value": "qux"}],
        {"foo": ["bar", "qux", "baz"]},
    ),
    ({"foo": ["bar"]}, [{"op": "add", "path": "/foo/-", "value": "end"}], {"foo": ["bar", "end"]}),
    ({"baz": "qux", "foo": "bar"}, [{"op": "remove", "path": "/baz"}], {"foo": "bar"}),
    ({"foo": ["bar", "qux", "baz"]}, [{"op": "remove", "path": "/foo/1"}], {"foo": ["bar", "baz"]}),
    (
        {"baz": "qux", "foo": "bar"},
        [{"op": "replace", "path": "/baz", "value": "boo"}],
        {"baz": "boo", "foo": "bar"},
    ),
    (
        {"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
        [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
        {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}},
    ),
    (
        {"foo": ["all", "grass", "cows", "eat"]},
        [{"op": "move", "from": "/foo/1", "path": "/foo/3"}],
        {"foo": ["all", "cows", "eat", "grass"]},
    ),
    ({"a": {"b": 1}}, [{"op": "copy", "from": "/a", "path": "/c"}], {"a": {"b": 1}, "c": {"b": 1}}),
    (
        {"baz": "qux", "foo": ["a", 2, "c"]},
        [
            {"op": "test", "path": "/baz", "value": "qux"},
            {"op": "test", "path": "/foo/1", "value": 2},
        ],
        {"baz": "qux", "foo": ["a", 2, "c"]},
    ),
    (
        {"foo": "bar"},
        [{"op": "add", "path": "/child", "value": {"grandchild": {}}}],
        {"foo": "bar", "child": {"grandchild": {}}},
    ),
    (
        {"/": 1, "~": 2},
        [
            {"op": "replace", "path": "/~1", "value": 3},
            {"op": "replace", "path": "/~0", "value": 4},
        ],
        {"/": 3, "~": 4},
    ),
    ({"a": 1}, [{"op": "replace", "path": "", "value": {"b": 2}}], {"b": 2}),
    ({"l": [1, 2, 3]}, [{"op": "replace", "path": "/l/0", "value": 9}], {"l": [9, 2, 3]}),
]


@pytest.mark.parametrize(("target", "ops", "expected"), JSON_CASES)
def test_json_patch(target: Any, ops: list[Any], expected: Any) -> None:
    assert patch.json_patch(target, ops) == expected


JSON_ERRORS = [
    ({"baz": "qux"}, [{"op": "test", "path": "/baz", "value": "bar"}], "failed"),
    ({"foo": "bar"}, [{"op": "add", "path": "/baz/bat", "value": "qux"}], "does not exist"),
    ({"foo": "bar"}, [{"op": "remove", "path": "/nope"}], "nonexistent"),
    ({"foo": "bar"}, [{"op": "replace", "path": "/nope", "value": 1}], "does not exist"),
    ({"l": [1]}, [{"op": "add", "path": "/l/5", "value": 1}], "out of bounds"),
    ({"l": [1]}, [{"op": "add", "path": "/l/01", "value": 1}], "invalid array index"),
    ({}, [{"op": "jump", "path": "/a"}], "unknown op"),
    ({}, [{"path": "/a"}], "needs 'op'"),
    ({}, [{"op": "add", "path": "/a"}], "missing 'value'"),
    ({}, [{"op": "move", "path": "/a"}], "missing 'from'"),
    ({"a": {"b": 1}}, [{"op": "move", "from": "/a", "path": "/a/c"}], "own child"),
    ({}, {"op": "add"}, "must be a list"),
    ({}, [{"op": "add", "path": "a", "value": 1}], "must start with"),
]


@pytest.mark.parametrize(("target", "ops", "message"), JSON_ERRORS)
def test_json_patch_errors(target: Any, ops: Any, message: str) -> None:
    with pytest.raises(patch.PatchError, match=message):
        patch.json_patch(target, ops)


def test_a_failing_json_patch_changes_nothing() -> None:
    target = {"a": 1}
    with pytest.raises(patch.PatchError):
        patch.json_patch(
            target,
            [{"op": "add", "path": "/b", "value": 2}, {"op": "test", "path": "/a", "value": 5}],
        )
    assert target == {"a": 1}


# ---------------------------------------------------------------------------- strategic


def _deployment(*containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"replicas": 1, **spec, "template": {"spec": {"containers": list(containers)}}},
    }


def _template(*containers: dict[str, Any], **pod_spec: Any) -> dict[str, Any]:
    return {"spec": {"template": {"spec": {"containers": list(containers), **pod_spec}}}}


APP = {
    "name": "app",
    "image": "web:1",
    "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
    "ports": [{"containerPort": 80}],
    "volumeMounts": [{"name": "v", "mountPath": "/data"}],
}
SIDE = {"name": "side", "image": "side:1"}

STRATEGIC_CASES: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    (
        "set image merges the container by name",
        _deployment(APP, SIDE),
        _template({"name": "app", "image": "web:2"}),
        _deployment({**APP, "image": "web:2"}, SIDE),
    ),
    (
        "a new container is appended",
        _deployment(APP),
        _template({"name": "new", "image": "new:1"}),
        _deployment(APP, {"name": "new", "image": "new:1"}),
    ),
    (
        "env merges by name, new vars appended",
        _deployment(APP),
        _template(
            {"name": "app", "env": [{"name": "B", "value": "x"}, {"name": "C", "value": "3"}]}
        ),
        _deployment(
            {
                **APP,
                "env": [
                    {"name": "A", "value": "1"},
                    {"name": "B", "value": "x"},
                    {"name": "C", "value": "3"},
                ],
            }
        ),
    ),
    (
        "$patch: delete removes one env var",
        _deployment(APP),
        _template({"name": "app", "env": [{"name": "A", "$patch": "delete"}]}),
        _deployment({**APP, "env": [{"name": "B", "value": "2"}]}),
    ),
    (
        "$patch: delete removes a container",
        _deployment(APP, SIDE),
        _template({"name": "side", "$patch": "delete"}),
        _deployment(APP),
    ),
    (
        "ports merge by containerPort",
        _deployment(APP),
        _template(
            {"name": "app", "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 90}]}
        ),
        _deployment(
            {**APP, "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 90}]}
        ),
    ),
    (
        "volumeMounts merge by mountPath",
        _deployment(APP),
        _template({"name": "app", "volumeMounts": [{"mountPath": "/data", "readOnly": True}]}),
        _deployment(
            {**APP, "volumeMounts": [{"name": "v", "mountPath": "/data", "readOnly": True}]}
        ),
    ),
    (
        "null deletes a field",
        _deployment(APP),
        {"metadata": {"labels": {"app": None}}},
        {**_deployment(APP), "metadata": {"name": "web", "labels": {}}},
    ),
    (
        "a list without a merge key is replaced",
        _deployment({**APP, "args": ["a", "b"]}),
        _template({"name": "app", "args": ["c"]}),
        _deployment({**APP, "args": ["c"]}),
    ),
    (
        "$patch: replace on a list replaces it",
        _deployment(APP, SIDE),
        _template({"name": "only", "image": "o:1"}, {"$patch": "replace"}),
        _deployment({"name": "only", "image": "o:1"}),
    ),
    (
        "$patch: replace on a map replaces it",
        _deployment(APP),
        {"metadata": {"labels": {"new": "1", "$patch": "replace"}}},
        {**_deployment(APP), "metadata": {"name": "web", "labels": {"new": "1"}}},
    ),
    (
        "$setElementOrder orders the containers",
        _deployment(APP, SIDE),
        {
            "spec": {
                "template": {
                    "spec": {
                        "$setElementOrder/containers": [{"name": "side"}, {"name": "app"}],
                        "containers": [{"name": "side", "image": "side:2"}],
                    }
                }
            }
        },
        _deployment({**SIDE, "image": "side:2"}, APP),
    ),
    (
        "$retainKeys clears the fields not listed (strategy)",
        _deployment(APP, strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}),
        {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}},
        _deployment(APP, strategy={"type": "Recreate"}),
    ),
    (
        "finalizers merge as a set",
        {"kind": "Deployment", "metadata": {"finalizers": ["a"]}},
        {"metadata": {"finalizers": ["b", "a"]}},
        {"kind": "Deployment", "metadata": {"finalizers": ["a", "b"]}},
    ),
    (
        "$deleteFromPrimitiveList removes finalizers",
        {"kind": "Deployment", "metadata": {"finalizers": ["a", "b"]}},
        {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}},
        {"kind": "Deployment", "metadata": {"finalizers": ["b"]}},
    ),
    (
        "ownerReferences merge by uid",
        {"kind": "Deployment", "metadata": {"ownerReferences": [{"uid": "1", "name": "a"}]}},
        {"metadata": {"ownerReferences": [{"uid": "2", "name": "b"}]}},
        {
            "kind": "Deployment",
            "metadata": {"ownerReferences": [{"uid": "1", "name": "a"}, {"uid": "2", "name": "b"}]},
        },
    ),
    (
        "status conditions merge by type",
        {
            "kind": "Deployment",
            "status": {
                "conditions": [
                    {"type": "Available", "status": "False"},
                    {"type": "Progressing", "status": "True"},
                ]
            },
        },
        {"status": {"conditions": [{"type": "Available", "status": "True"}]}},
        {
            "kind": "Deployment",
            "status": {
                "conditions": [
                    {"type": "Available", "status": "True"},
                    {"type": "Progressing", "status": "True"},
                ]
            },
        },
    ),
    (
        "service ports merge by port",
        {"kind": "Service", "spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}},
        {"spec": {"ports": [{"port": 80, "targetPort": 9090}]}},
        {"kind": "Service", "spec": {"ports": [{"port": 80, "targetPort": 9090}, {"port": 443}]}},
    ),
    (
        "imagePullSecrets and volumes merge by name",
        _deployment(
            APP,
        )
        | {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [APP],
                        "volumes": [{"name": "v", "emptyDir": {}}],
                        "imagePullSecrets": [{"name": "a"}],
                    }
                }
            }
        },
        _template(
            {"name": "app"},
            volumes=[{"name": "w", "emptyDir": {}}],
            imagePullSecrets=[{"name": "b"}],
        ),
        _deployment(APP)
        | {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [APP],
                        "volumes": [{"name": "v", "emptyDir": {}}, {"name": "w", "emptyDir": {}}],
                        "imagePullSecrets": [{"name": "a"}, {"name": "b"}],
                    }
                }
            }
        },
    ),
    (
        "pods merge containers directly under spec",
        {"kind": "Pod", "spec": {"containers": [APP, SIDE]}},
        {"spec": {"containers": [{"name": "side", "image": "side:9"}]}},
        {"kind": "Pod", "spec": {"containers": [APP, {"name": "side", "image": "side:9"}]}},
    ),
    (
        "unknown kinds still merge maps",
        {"kind": "ConfigMap", "data": {"a": "1"}},
        {"data": {"b": "2"}},
        {"kind": "ConfigMap", "data": {"a": "1", "b": "2"}},
    ),
    (
        "tolerations have no merge key and are replaced",
        {"kind": "Pod", "spec": {"tolerations": [{"key": "a"}]}},
        {"spec": {"tolerations": [{"key": "b"}]}},
        {"kind": "Pod", "spec": {"tolerations": [{"key": "b"}]}},
    ),
]


@pytest.mark.parametrize(
    ("original", "doc", "expected"),
    [case[1:] for case in STRATEGIC_CASES],
    ids=[case[0] for case in STRATEGIC_CASES],
)
def test_strategic_merge_patch(
    original: dict[str, Any], doc: dict[str, Any], expected: dict[str, Any]
) -> None:
    kind = original.get("kind", "Deployment")
    assert patch.strategic_merge_patch(original, doc, kind) == expected


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([1], "must be a JSON object"),
        (_template({"image": "no-name"}), "does not contain declared merge key: name"),
        (_template("not-a-map"), "non-object element"),
        ({"metadata": {"$patch": "explode"}}, "unknown patch type"),
        ({"metadata": {"$retainKeys": "name"}}, r"\$retainKeys must be a list"),
        ({"$patch": "delete"}, "cannot delete the whole object"),
    ],
)
def test_strategic_merge_patch_errors(doc: Any, message: str) -> None:
    with pytest.raises(patch.PatchError, match=message):
        patch.strategic_merge_patch(_deployment(APP), doc, "Deployment")
