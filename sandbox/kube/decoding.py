"""Decoding a built-in object the way a real API server's Go decoder does.

``decode(obj, schema, ...)`` walks an object against its kind's schema (``builtins``) in
place and answers what the server's strict JSON decoder would:

* a value of the wrong type is a 400 ``BadRequest`` worded like Go's ``encoding/json``::

      Deployment in version "v1" cannot be handled as a Deployment: json: cannot unmarshal
      string into Go struct field DeploymentSpec.spec.replicas of type int32

* unknown fields: with ``fieldValidation=Strict`` a 400 ("strict decoding error: unknown
  field "spec.template.spec.containers[0].bogusField""), with ``Warn`` one warning each,
  with ``Ignore`` nothing; in every case they are dropped (the Go struct has no room for them);
* ``null`` leaves a field unset, as decoding into a Go struct does.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from sandbox.kube import status

Schema = dict[str, Any]

_QUANTITY_ERROR = (
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)


class _TypeMismatch(Exception):
    pass


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _bad_base64_at(text: str) -> int:
    """Where Go's base64 decoder gives up on ``text``."""
    body = text.rstrip("=")
    for index, char in enumerate(body):
        if not (char.isascii() and (char.isalnum() or char in "+/")):
            return index
    return len(body) - len(body) % 4 if len(body) % 4 == 1 else len(text)


def _struct_name(schema: Schema) -> str:
    return str(schema.get("x-go-type", "")).rpartition(".")[2]


class _Decoder:
    def __init__(self) -> None:
        self.unknown: list[str] = []

    def mismatch(self, value: Any, schema: Schema, struct: str, field: str) -> _TypeMismatch:
        kind = _json_kind(value)
        if kind == "number" and isinstance(value, float):
            kind = f"number {value:g}" if value != int(value) else f"number {value:.1f}"
        go_type = schema.get("x-go-type", "")
        if not field:
            return _TypeMismatch(f"json: cannot unmarshal {kind} into Go value of type {go_type}")
        return _TypeMismatch(
            f"json: cannot unmarshal {kind} into Go struct field {struct}.{field} of type {go_type}"
        )

    def walk(self, value: Any, schema: Schema, struct: str, field: str, path: str) -> None:
        go_type = schema.get("x-go-type")
        if schema.get("x-kubernetes-int-or-string"):
            if isinstance(value, str) or (
                isinstance(value, int | float) and not isinstance(value, bool)
            ):
                if go_type == "intstr.IntOrString" and isinstance(value, float):
                    raise self.mismatch(value, {"x-go-type": "int32"}, "", "")
                return
            if go_type == "resource.Quantity":
                raise _TypeMismatch(_QUANTITY_ERROR)
            raise self.mismatch(value, {"x-go-type": "int32"}, "", "")
        wanted = schema.get("type")
        if wanted == "string":
            if not isinstance(value, str):
                raise self.mismatch(value, schema, struct, field)
            if schema.get("format") == "byte":
                try:
                    base64.b64decode(value, validate=True)
                except binascii.Error as exc:
                    raise _TypeMismatch(
                        f"illegal base64 data at input byte {_bad_base64_at(value)}"
                    ) from exc
        elif wanted == "integer":
            if isinstance(value, bool) or not isinstance(value, int):
                raise self.mismatch(value, schema, struct, field)
        elif wanted == "boolean":
            if not isinstance(value, bool):
                raise self.mismatch(value, schema, struct, field)
        elif wanted == "array":
            if not isinstance(value, list):
                raise self.mismatch(value, schema, struct, field)
            for index, item in enumerate(value):
                if item is not None:
                    self.walk(item, schema["items"], struct, field, f"{path}[{index}]")
        elif wanted == "object":
            if not isinstance(value, dict):
                raise self.mismatch(value, schema, struct, field)
            self.walk_object(value, schema, struct, field, path)

    def walk_object(
        self, value: dict[str, Any], schema: Schema, struct: str, field: str, path: str
    ) -> None:
        if schema.get("x-kubernetes-preserve-unknown-fields"):
            return
        props = schema.get("properties")
        additional = schema.get("additionalProperties")
        own = _struct_name(schema)
        for key in list(value):
            item = value[key]
            child_path = f"{path}.{key}" if path else key
            if item is None:
                del value[key]
            elif props is not None and key in props:
                child_field = f"{field}.{key}" if field else key
                self.walk(item, props[key], own, child_field, child_path)
            elif isinstance(additional, dict):
                self.walk(item, additional, struct, field, child_path)
            else:
                self.unknown.append(child_path)
                del value[key]


def decode(
    obj: dict[str, Any], schema: Schema, *, kind: str, version: str, field_validation: str
) -> list[str]:
    """Check types and unknown fields of ``obj`` in place; returns the warnings to send."""
    decoder = _Decoder()
    try:
        decoder.walk_object(obj, schema, "", "", "")
    except _TypeMismatch as exc:
        raise status.BadRequest(
            f'{kind} in version "{version}" cannot be handled as a {kind}: {exc}'
        ) from exc
    if decoder.unknown and field_validation == "Strict":
        fields = ", ".join(f'unknown field "{u}"' for u in decoder.unknown)
        raise status.BadRequest(
            f'{kind} in version "{version}" cannot be handled as a {kind}: '
            f"strict decoding error: {fields}"
        )
    if field_validation == "Warn":
        return [f'unknown field "{u}"' for u in decoder.unknown]
    return []
