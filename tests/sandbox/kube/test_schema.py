"""Custom resources against their CRD schema: pruning, defaults, validation wording."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from sandbox.kube import schema, status
from sandbox.kube.store import Invalid

from .conftest import SMALL_CRD

WIDGET_SCHEMA: dict[str, Any] = SMALL_CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]  # type: ignore[index]


def _widget(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "test.sluice.dev/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "namespace": "default"},
        "spec": spec,
    }


def _errors(value: Any, sch: dict[str, Any]) -> list[str]:
    return [str(e) for e in schema.validate(value, sch, "spec.x")]


VALIDATION_CASES = [
    # (schema, value, errors)
    ({"type": "string"}, "ok", []),
    (
        {"type": "string"},
        10,
        ['spec.x: Invalid value: "integer": spec.x in body must be of type string: "integer"'],
    ),
    (
        {"type": "integer"},
        "10",
        ['spec.x: Invalid value: "string": spec.x in body must be of type integer: "string"'],
    ),
    (
        {"type": "integer"},
        1.5,
        ['spec.x: Invalid value: "number": spec.x in body must be of type integer: "number"'],
    ),
    ({"type": "number"}, 1, []),
    (
        {"type": "boolean"},
        "true",
        ['spec.x: Invalid value: "string": spec.x in body must be of type boolean: "string"'],
    ),
    (
        {"type": "integer"},
        True,
        ['spec.x: Invalid value: "boolean": spec.x in body must be of type integer: "boolean"'],
    ),
    (
        {"type": "object"},
        None,
        ['spec.x: Invalid value: "null": spec.x in body must be of type object: "null"'],
    ),
    ({"type": "object", "nullable": True}, None, []),
    (
        {"type": "string", "pattern": "^[0-9]+(m|s)"},
        "10",
        ["spec.x: Invalid value: \"10\": spec.x in body should match '^[0-9]+(m|s)'"],
    ),
    ({"type": "string", "pattern": "^[0-9]+(m|s)"}, "10s", []),
    (
        {"type": "string", "enum": ["a", "b"]},
        "c",
        ['spec.x: Unsupported value: "c": supported values: "a", "b"'],
    ),
    (
        {"type": "integer", "minimum": 1},
        0,
        ["spec.x: Invalid value: 0: spec.x in body should be greater than or equal to 1"],
    ),
    (
        {"type": "integer", "maximum": 10},
        11,
        ["spec.x: Invalid value: 11: spec.x in body should be less than or equal to 10"],
    ),
    (
        {"type": "integer", "minimum": 1, "exclusiveMinimum": True},
        1,
        ["spec.x: Invalid value: 1: spec.x in body should be greater than 1"],
    ),
    (
        {"type": "integer", "maximum": 5, "exclusiveMaximum": True},
        5,
        ["spec.x: Invalid value: 5: spec.x in body should be less than 5"],
    ),
    (
        {"type": "string", "minLength": 3},
        "ab",
        ['spec.x: Invalid value: "ab": spec.x in body should be at least 3 chars long'],
    ),
    ({"type": "string", "maxLength": 1}, "ab", ["spec.x: Too long: may not be more than 1 bytes"]),
    (
        {"type": "array", "minItems": 1},
        [],
        ["spec.x: Invalid value: 0: spec.x in body should have at least 1 items"],
    ),
    ({"type": "array", "maxItems": 1}, [1, 2], ["spec.x: Too many: 2: must have at most 1 items"]),
    (
        {"type": "array", "items": {"type": "integer"}},
        [1, "a"],
        ['spec.x[1]: Invalid value: "string": spec.x[1] in body must be of type integer: "string"'],
    ),
    ({"type": "array", "uniqueItems": True}, [1, 1], ["spec.x[1]: Duplicate value: 1"]),
    ({"type": "object", "required": ["a", "b"]}, {"a": 1}, ["spec.x.b: Required value"]),
    (
        {"type": "object", "properties": {"a": {"type": "object", "required": ["b"]}}},
        {"a": {}},
        ["spec.x.a.b: Required value"],
    ),
    (
        {"type": "object", "additionalProperties": {"type": "string"}},
        {"k": 1},
        ['spec.x.k: Invalid value: "integer": spec.x.k in body must be of type string: "integer"'],
    ),
    ({"x-kubernetes-int-or-string": True}, 8080, []),
    ({"x-kubernetes-int-or-string": True}, "http", []),
    (
        {"x-kubernetes-int-or-string": True},
        1.5,
        [
            'spec.x: Invalid value: "number": spec.x in body must be of type integer-or-string: "number"'
        ],
    ),
    (
        {"type": "object", "minProperties": 1},
        {},
        ["spec.x: Invalid value: 0: spec.x in body should have at least 1 properties"],
    ),
    (
        {"allOf": [{"type": "integer"}, {"minimum": 3}]},
        2,
        ["spec.x: Invalid value: 2: spec.x in body should be greater than or equal to 3"],
    ),
    ({"anyOf": [{"type": "integer"}, {"type": "string"}]}, "s", []),
    ({"oneOf": [{"required": ["a"]}, {"required": ["b"]}]}, {"a": 1}, []),
    (
        {"oneOf": [{"required": ["a"]}, {"required": ["b"]}]},
        {"a": 1, "b": 2},
        [
            'spec.x: Invalid value: "object": spec.x in body must validate one and only one schema (oneOf). Found 2 valid alternatives'
        ],
    ),
    (
        {"not": {"type": "string"}},
        "s",
        ['spec.x: Invalid value: "string": spec.x in body should not validate the schema'],
    ),
]


@pytest.mark.parametrize(("sch", "value", "expected"), VALIDATION_CASES)
def test_validate(sch: dict[str, Any], value: Any, expected: list[str]) -> None:
    assert _errors(value, sch) == expected


def test_admit_defaults_and_prunes_with_ignore() -> None:
    obj = _widget(size=2, bogus=1, extra={"free": {"form": True}})
    obj["topLevel"] = "x"
    warnings = schema.admit(
        obj,
        WIDGET_SCHEMA,
        kind="Widget",
        group="test.sluice.dev",
        version="v1",
        field_validation="Ignore",
    )
    assert warnings == []
    assert obj["spec"] == {"size": 2, "color": "red", "extra": {"free": {"form": True}}}
    assert "topLevel" not in obj
    assert obj["metadata"] == {"name": "w", "namespace": "default"}


def test_admit_warns_about_unknown_fields() -> None:
    obj = _widget(size=2, bogus=1)
    warnings = schema.admit(
        obj,
        WIDGET_SCHEMA,
        kind="Widget",
        group="test.sluice.dev",
        version="v1",
        field_validation="Warn",
    )
    assert warnings == ['unknown field "spec.bogus"']
    assert "bogus" not in obj["spec"]


def test_admit_strict_rejects_unknown_fields() -> None:
    with pytest.raises(status.BadRequest) as raised:
        schema.admit(
            _widget(size=2, bogus=1, tags=[]),
            WIDGET_SCHEMA,
            kind="Widget",
            group="test.sluice.dev",
            version="v1",
            field_validation="Strict",
        )
    assert raised.value.code == 400
    assert raised.value.message == (
        'Widget in version "v1" cannot be handled as a Widget: strict decoding error: '
        'unknown field "spec.bogus"'
    )


def test_admit_reports_every_error_like_the_api_server() -> None:
    with pytest.raises(Invalid) as raised:
        schema.admit(
            _widget(size=0, color="green", interval="10"),
            WIDGET_SCHEMA,
            kind="Widget",
            group="test.sluice.dev",
            version="v1",
        )
    error = raised.value
    assert error.code == 422
    assert error.message == (
        'Widget.test.sluice.dev "w" is invalid: ['
        "spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1, "
        'spec.color: Unsupported value: "green": supported values: "red", "blue", '
        "spec.interval: Invalid value: \"10\": spec.interval in body should match '^[0-9]+(m|s)']"
    )
    assert [c["field"] for c in error.causes] == ["spec.size", "spec.color", "spec.interval"]
    assert [c["reason"] for c in error.causes] == [
        "FieldValueInvalid",
        "FieldValueNotSupported",
        "FieldValueInvalid",
    ]
    assert (error.name, error.group, error.kind) == ("w", "test.sluice.dev", "Widget")


def test_admit_requires_fields() -> None:
    with pytest.raises(Invalid, match=r'"w" is invalid: spec.size: Required value$'):
        schema.admit(_widget(), WIDGET_SCHEMA, kind="Widget", group="test.sluice.dev", version="v1")


def test_defaults_fill_nested_objects_and_array_items() -> None:
    sch = {
        "type": "object",
        "properties": {
            "a": {
                "type": "object",
                "default": {},
                "properties": {"b": {"type": "integer", "default": 3}},
            },
            "l": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"c": {"type": "string", "default": "z"}},
                },
            },
        },
    }
    value: dict[str, Any] = {"l": [{}, {"c": "y"}]}
    schema.apply_defaults(value, sch)
    assert value == {"a": {"b": 3}, "l": [{"c": "z"}, {"c": "y"}]}


def test_embedded_resources_keep_their_object_metadata() -> None:
    sch = {
        "type": "object",
        "properties": {
            "template": {
                "type": "object",
                "x-kubernetes-embedded-resource": True,
                "properties": {"spec": {"type": "object"}},
            }
        },
    }
    value = {
        "template": {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p"},
            "spec": {},
            "junk": 1,
        }
    }
    assert schema.prune(value, sch) == ["template.junk"]
    assert value == {
        "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}}
    }


def test_no_schema_admits_anything() -> None:
    obj = _widget(anything=True)
    before = copy.deepcopy(obj)
    assert schema.admit(obj, None, kind="Widget", group="g", version="v1") == []
    assert obj == before
