"""The OpenAPI v3 component schemas of the built-in kinds, for the Kubernetes version served.

A real API server publishes, in every ``/openapi/v3/<group-version>`` document, the schema of
each kind it serves and of every type those reach (``io.k8s.api.apps.v1.Deployment`` reaches
``io.k8s.api.core.v1.PodSpec``, ``io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta`` ...).
kubectl reads them for ``kubectl explain`` and, on ``kubectl apply``, for the patch strategy of
each field (``x-kubernetes-patch-merge-key``, ``x-kubernetes-patch-strategy``).

The schemas come from the ``kubernetes-validate`` package, which ships the JSON Schema
(draft 2020-12) definitions of every Kubernetes release; they are turned into the OpenAPI 3.0
shape a real server answers with: ``#/components/schemas/`` references, a property with its own
description referring to a type through ``allOf``, one ``type`` instead of ``[type, "null"]``,
and no ``enum`` on ``apiVersion`` and ``kind``.
"""

from __future__ import annotations

import functools
import json
import pathlib
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]

Schema = dict[str, Any]

_JSON_SCHEMA_REF = "#/$defs/"
_OPENAPI_REF = "#/components/schemas/"


def _definitions_file(minor: str) -> pathlib.Path:
    root = pathlib.Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    path = root / f"v1.{minor}.0-local" / "_definitions.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"kubernetes-validate ships no schemas for Kubernetes 1.{minor} (looked for {path})"
        )
    return path


def _convert(node: Any, *, in_properties: bool = False) -> Any:
    if isinstance(node, list):
        return [_convert(item) for item in node]
    if not isinstance(node, dict):
        return node
    if in_properties:
        out: Schema = {}
        for name, prop in node.items():
            converted = _convert(prop)
            if name in ("apiVersion", "kind") and isinstance(converted, dict):
                converted.pop("enum", None)
            out[name] = converted
        return out
    out = {}
    for key, value in node.items():
        if key == "$ref" and isinstance(value, str):
            out[key] = _OPENAPI_REF + value.removeprefix(_JSON_SCHEMA_REF)
        elif key == "type" and isinstance(value, list):
            types = [t for t in value if t != "null"]
            out[key] = types[0] if len(types) == 1 else types
        elif key == "properties":
            out[key] = _convert(value, in_properties=True)
        else:
            out[key] = _convert(value)
    if "$ref" in out and len(out) > 1:
        # OpenAPI 3.0 ignores the siblings of a $ref: a real server wraps it in allOf
        out = {"allOf": [{"$ref": out.pop("$ref")}], **out}
    return out


@functools.cache
def definitions(minor: str) -> dict[str, Schema]:
    """Every component schema of Kubernetes ``1.<minor>``, by its OpenAPI name."""
    raw = json.loads(_definitions_file(minor).read_text())["$defs"]
    out: dict[str, Schema] = {}
    for name, schema in raw.items():
        converted = _convert(schema)
        if name == "io.k8s.apimachinery.pkg.util.intstr.IntOrString":
            converted = {
                "description": "IntOrString is a type that can hold an int32 or a string.",
                "type": "string",
                "format": "int-or-string",
            }
        elif name == "io.k8s.apimachinery.pkg.api.resource.Quantity":
            converted = {
                "description": "Quantity is a fixed-point representation of a number "
                "(such as 100m, 1Gi or 2).",
                "type": "string",
            }
        out[name] = converted
    return out


@functools.cache
def _by_gvk(minor: str) -> dict[tuple[str, str, str], str]:
    out: dict[tuple[str, str, str], str] = {}
    for name, schema in definitions(minor).items():
        for gvk in schema.get("x-kubernetes-group-version-kind", ()):
            # list kinds and shared option kinds (DeleteOptions ...) carry several GVKs; the
            # first schema naming a kind wins, as the object kinds are listed once
            out.setdefault((gvk.get("group", ""), gvk["version"], gvk["kind"]), name)
    return out


def name_of(minor: str, group: str, version: str, kind: str) -> str | None:
    """The component name of a built-in kind (``io.k8s.api.apps.v1.Deployment``), if known."""
    return _by_gvk(minor).get((group, version, kind))


def _refs(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith(_OPENAPI_REF):
                found.add(value.removeprefix(_OPENAPI_REF))
            else:
                _refs(value, found)
    elif isinstance(node, list):
        for item in node:
            _refs(item, found)


@functools.cache
def closure(minor: str, names: tuple[str, ...]) -> dict[str, Schema]:
    """The named schemas and every schema they reach, as a document's ``components.schemas``."""
    defs = definitions(minor)
    out: dict[str, Schema] = {}
    pending = list(names)
    while pending:
        name = pending.pop()
        if name in out or name not in defs:
            continue
        out[name] = defs[name]
        found: set[str] = set()
        _refs(defs[name], found)
        pending.extend(sorted(found - out.keys()))
    return dict(sorted(out.items()))
