"""Custom resources checked against their CRD's ``openAPIV3Schema``, as the API server does.

``admit(obj, schema, ...)`` runs the server's steps on a custom resource about to be stored:

1. unknown fields — with ``fieldValidation=Strict`` they reject the request (400, "strict
   decoding error"), with ``Warn`` they come back as warnings, with ``Ignore`` nothing; in
   every case they are pruned unless ``x-kubernetes-preserve-unknown-fields`` keeps them;
2. ``default:`` values fill missing fields;
3. validation — type, required, enum, pattern, minimum/maximum (and exclusive), min/maxLength,
   min/maxItems, nullable, ``x-kubernetes-int-or-string``, allOf/anyOf/oneOf/not — collected
   into one ``Invalid`` (422) worded like the real server::

       Canary.flagger.app "podinfo" is invalid: spec.analysis.interval: Invalid value: "10":
       spec.analysis.interval in body should match '^[0-9]+(m|s)'
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from typing import Any

from sandbox.kube import status
from sandbox.kube.store import Invalid

Schema = dict[str, Any]

_ROOT_FIELDS = ("apiVersion", "kind", "metadata")


@dataclasses.dataclass(frozen=True)
class FieldError:
    field: str
    reason: str  # FieldValueInvalid, FieldValueRequired, ...
    detail: str  # "Invalid value: ...", "Required value"

    def __str__(self) -> str:
        return f"{self.field}: {self.detail}"


def _quote(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return '"null"'
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _type_ok(value: Any, wanted: str) -> bool:
    actual = _type_name(value)
    return actual == wanted or (wanted == "number" and actual == "integer")


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


# ---------------------------------------------------------------------------- pruning


def _preserves(schema: Schema) -> bool:
    return bool(schema.get("x-kubernetes-preserve-unknown-fields"))


def prune(value: Any, schema: Schema, path: str = "", *, root: bool = False) -> list[str]:
    """Drop fields the schema does not declare (in place); returns their paths."""
    unknown: list[str] = []
    if isinstance(value, dict):
        props = schema.get("properties")
        additional = schema.get("additionalProperties")
        embedded = schema.get("x-kubernetes-embedded-resource")
        for key in list(value):
            if (root or embedded) and key in _ROOT_FIELDS:
                continue
            child = _join(path, key)
            if props is not None and key in props:
                unknown += prune(value[key], props[key], child)
            elif isinstance(additional, dict):
                unknown += prune(value[key], additional, child)
            elif additional is True or _preserves(schema):
                continue
            else:
                unknown.append(child)
                del value[key]
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            unknown += prune(item, schema["items"], f"{path}[{index}]")
    return unknown


# ---------------------------------------------------------------------------- defaults


def apply_defaults(value: Any, schema: Schema) -> None:
    """Fill ``default:`` values of missing properties, at every level that exists."""
    if isinstance(value, dict):
        for key, prop in (schema.get("properties") or {}).items():
            if key not in value and "default" in prop:
                value[key] = copy.deepcopy(prop["default"])
            if key in value:
                apply_defaults(value[key], prop)
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict):
            for key, item in value.items():
                if key not in (schema.get("properties") or {}):
                    apply_defaults(item, additional)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            apply_defaults(item, schema["items"])


# ---------------------------------------------------------------------------- validation


def validate(value: Any, schema: Schema, path: str = "", *, root: bool = False) -> list[FieldError]:
    """Every way ``value`` breaks ``schema``, with real-server wording."""
    errors: list[FieldError] = []
    if value is None:
        if schema.get("nullable"):
            return errors
        wanted = schema.get("type")
        if wanted:
            errors.append(
                FieldError(
                    path,
                    "FieldValueTypeInvalid",
                    f'Invalid value: "null": {path} in body must be of type {wanted}: "null"',
                )
            )
        return errors
    if schema.get("x-kubernetes-int-or-string"):
        if _type_name(value) not in ("integer", "string"):
            errors.append(
                FieldError(
                    path,
                    "FieldValueTypeInvalid",
                    f'Invalid value: "{_type_name(value)}": {path} in body must be of type '
                    f'integer-or-string: "{_type_name(value)}"',
                )
            )
            return errors
    elif "type" in schema and not _type_ok(value, schema["type"]):
        actual = _type_name(value)
        errors.append(
            FieldError(
                path,
                "FieldValueTypeInvalid",
                f'Invalid value: "{actual}": {path} in body must be of type '
                f'{schema["type"]}: "{actual}"',
            )
        )
        return errors
    errors += _check_scalar(value, schema, path)
    if isinstance(value, dict):
        errors += _check_object(value, schema, path, root=root)
    elif isinstance(value, list):
        errors += _check_array(value, schema, path)
    errors += _check_combinators(value, schema, path)
    return errors


def _check_scalar(value: Any, schema: Schema, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    if "enum" in schema and value not in schema["enum"]:
        supported = ", ".join(_quote(v) for v in schema["enum"])
        errors.append(
            FieldError(
                path,
                "FieldValueNotSupported",
                f"Unsupported value: {_quote(value)}: supported values: {supported}",
            )
        )
    if isinstance(value, str):
        pattern = schema.get("pattern")
        if pattern is not None and re.search(pattern, value) is None:
            errors.append(
                FieldError(
                    path,
                    "FieldValueInvalid",
                    f"Invalid value: {_quote(value)}: {path} in body should match '{pattern}'",
                )
            )
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append(
                FieldError(
                    path,
                    "FieldValueInvalid",
                    f"Invalid value: {_quote(value)}: {path} in body should be at least "
                    f"{schema['minLength']} chars long",
                )
            )
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(
                FieldError(
                    path,
                    "FieldValueTooLong",
                    f"Too long: may not be more than {schema['maxLength']} bytes",
                )
            )
    if isinstance(value, int | float) and not isinstance(value, bool):
        low, high = schema.get("minimum"), schema.get("maximum")
        if low is not None:
            if schema.get("exclusiveMinimum") and value <= low:
                errors.append(
                    FieldError(
                        path,
                        "FieldValueInvalid",
                        f"Invalid value: {_quote(value)}: {path} in body should be greater than {low}",
                    )
                )
            elif value < low:
                errors.append(
                    FieldError(
                        path,
                        "FieldValueInvalid",
                        f"Invalid value: {_quote(value)}: {path} in body should be greater than or equal to {low}",
                    )
                )
        if high is not None:
            if schema.get("exclusiveMaximum") and value >= high:
                errors.append(
                    FieldError(
                        path,
                        "FieldValueInvalid",
                        f"Invalid value: {_quote(value)}: {path} in body should be less than {high}",
                    )
                )
            elif value > high:
                errors.append(
                    FieldError(
                        path,
                        "FieldValueInvalid",
                        f"Invalid value: {_quote(value)}: {path} in body should be less than or equal to {high}",
                    )
                )
    return errors


def _check_object(
    value: dict[str, Any], schema: Schema, path: str, *, root: bool
) -> list[FieldError]:
    errors: list[FieldError] = []
    for name in schema.get("required") or []:
        if name not in value:
            errors.append(FieldError(_join(path, name), "FieldValueRequired", "Required value"))
    props = schema.get("properties") or {}
    additional = schema.get("additionalProperties")
    for key, item in value.items():
        if root and key in _ROOT_FIELDS:
            continue
        if key in props:
            errors += validate(item, props[key], _join(path, key))
        elif isinstance(additional, dict):
            errors += validate(item, additional, _join(path, key))
    if "minProperties" in schema and len(value) < schema["minProperties"]:
        errors.append(
            FieldError(
                path,
                "FieldValueInvalid",
                f"Invalid value: {len(value)}: {path} in body should have at least "
                f"{schema['minProperties']} properties",
            )
        )
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        errors.append(
            FieldError(
                path,
                "FieldValueTooMany",
                f"Too many: {len(value)}: must have at most {schema['maxProperties']} items",
            )
        )
    return errors


def _check_array(value: list[Any], schema: Schema, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    if "minItems" in schema and len(value) < schema["minItems"]:
        errors.append(
            FieldError(
                path,
                "FieldValueInvalid",
                f"Invalid value: {len(value)}: {path} in body should have at least "
                f"{schema['minItems']} items",
            )
        )
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(
            FieldError(
                path,
                "FieldValueTooMany",
                f"Too many: {len(value)}: must have at most {schema['maxItems']} items",
            )
        )
    if schema.get("uniqueItems"):
        seen: list[Any] = []
        for index, item in enumerate(value):
            if item in seen:
                errors.append(
                    FieldError(
                        f"{path}[{index}]",
                        "FieldValueDuplicate",
                        f"Duplicate value: {_quote(item)}",
                    )
                )
            seen.append(item)
    items = schema.get("items")
    if isinstance(items, dict):
        for index, item in enumerate(value):
            errors += validate(item, items, f"{path}[{index}]")
    return errors


def _check_combinators(value: Any, schema: Schema, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    for sub in schema.get("allOf") or []:
        errors += validate(value, sub, path)
    if "anyOf" in schema and not any(not validate(value, s, path) for s in schema["anyOf"]):
        errors += validate(value, schema["anyOf"][0], path) or [
            FieldError(
                path,
                "FieldValueInvalid",
                f'Invalid value: "{_type_name(value)}": {path} in body must validate at least one schema (anyOf)',
            )
        ]
    if "oneOf" in schema:
        passing = sum(1 for s in schema["oneOf"] if not validate(value, s, path))
        if passing != 1:
            errors.append(
                FieldError(
                    path,
                    "FieldValueInvalid",
                    f'Invalid value: "{_type_name(value)}": {path} in body must validate one '
                    "and only one schema (oneOf). "
                    + (
                        "Found none valid"
                        if passing == 0
                        else f"Found {passing} valid alternatives"
                    ),
                )
            )
    if "not" in schema and not validate(value, schema["not"], path):
        errors.append(
            FieldError(
                path,
                "FieldValueInvalid",
                f'Invalid value: "{_type_name(value)}": {path} in body should not '
                "validate the schema",
            )
        )
    return errors


# ---------------------------------------------------------------------------- admission


def invalid(kind: str, group: str, name: str, errors: list[FieldError]) -> Invalid:
    """The 422 the server answers, worded and detailed like a real one."""
    qualified = f"{kind}.{group}" if group else kind
    body = str(errors[0]) if len(errors) == 1 else "[" + ", ".join(str(e) for e in errors) + "]"
    return Invalid(
        f'{qualified} "{name}" is invalid: {body}',
        name=name,
        group=group,
        kind=kind,
        causes=[{"reason": e.reason, "message": e.detail, "field": e.field} for e in errors],
    )


def admit(
    obj: dict[str, Any],
    schema: Schema | None,
    *,
    kind: str,
    group: str,
    version: str,
    field_validation: str = "Strict",
) -> list[str]:
    """Prune, default and validate ``obj`` in place; returns warnings (``Warn`` mode).

    Raises ``status.BadRequest`` for unknown fields under ``Strict``, ``Invalid`` otherwise.
    """
    if schema is None:
        return []
    unknown = prune(obj, schema, root=True)
    warnings: list[str] = []
    if unknown and field_validation == "Strict":
        fields = ", ".join(f'unknown field "{u}"' for u in unknown)
        raise status.BadRequest(
            f'{kind} in version "{version}" cannot be handled as a {kind}: '
            f"strict decoding error: {fields}"
        )
    if unknown and field_validation == "Warn":
        warnings = [f'unknown field "{u}"' for u in unknown]
    apply_defaults(obj, schema)
    errors = validate(obj, schema, root=True)
    if errors:
        raise invalid(kind, group, obj.get("metadata", {}).get("name", ""), errors)
    return warnings
