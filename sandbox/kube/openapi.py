"""OpenAPI v3 documents: the index at ``/openapi/v3`` and one document per group-version.

kubectl reads them to decide whether the server validates fields itself: it looks for the
resource's PATCH operation carrying ``x-kubernetes-group-version-kind`` and a
``fieldValidation`` query parameter (see shared/reference/kubectl-wire.md). Built-in kinds carry
the real schemas of the Kubernetes version the server reports (``builtin_schemas``), which
``kubectl explain`` prints and ``kubectl apply`` reads patch strategies from; custom resources
carry their CRD's ``openAPIV3Schema``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sandbox.kube import builtin_schemas, discovery
from sandbox.kube import registry as registry_mod
from sandbox.kube.store import ResourceType

Doc = dict[str, Any]

_PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
)
_CUSTOM_PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/apply-patch+yaml",
)


def _query(name: str, description: str) -> Doc:
    return {
        "name": name,
        "in": "query",
        "description": description,
        "schema": {"type": "string", "uniqueItems": True},
    }


_WRITE_PARAMS = [
    _query("dryRun", "When present, indicates that modifications should not be persisted."),
    _query("fieldManager", "fieldManager is a name associated with the actor making changes."),
    _query(
        "fieldValidation",
        "fieldValidation instructs the server on how to handle objects in the request "
        "containing unknown or duplicate fields: Ignore, Warn or Strict.",
    ),
]


def _component_name(rtype: ResourceType) -> str:
    if not rtype.custom:
        minor = discovery.KUBE_VERSION["minor"]
        known = builtin_schemas.name_of(minor, rtype.group, rtype.version, rtype.kind)
        if known is not None:
            return known
    group = ".".join(reversed(rtype.group.split("."))) if rtype.group else "io.k8s.api.core"
    return f"{group}.{rtype.version}.{rtype.kind}"


def _gvk(rtype: ResourceType) -> Doc:
    return {"group": rtype.group, "version": rtype.version, "kind": rtype.kind}


def _paths(rtype: ResourceType) -> dict[str, Doc]:
    prefix = f"/apis/{rtype.group}/{rtype.version}" if rtype.group else "/api/v1"
    scope = f"{prefix}/namespaces/{{namespace}}" if rtype.namespaced else prefix
    ref = {"$ref": f"#/components/schemas/{_component_name(rtype)}"}
    gvk = _gvk(rtype)
    content_types = _CUSTOM_PATCH_TYPES if rtype.custom else _PATCH_TYPES
    patch = {
        "tags": [rtype.group or "core"],
        "description": f"partially update the specified {rtype.kind}",
        "operationId": f"patch{rtype.kind}",
        "parameters": _WRITE_PARAMS,
        "requestBody": {
            "content": {ct: {"schema": {"type": "object"}} for ct in content_types},
            "required": True,
        },
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": ref}}}
        },
        "x-kubernetes-action": "patch",
        "x-kubernetes-group-version-kind": gvk,
    }
    item = {
        "get": {
            "operationId": f"read{rtype.kind}",
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {"schema": ref}}}
            },
            "x-kubernetes-action": "get",
            "x-kubernetes-group-version-kind": gvk,
        },
        "patch": patch,
        "put": {
            "operationId": f"replace{rtype.kind}",
            "parameters": _WRITE_PARAMS,
            "requestBody": {"content": {"application/json": {"schema": ref}}, "required": True},
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {"schema": ref}}}
            },
            "x-kubernetes-action": "put",
            "x-kubernetes-group-version-kind": gvk,
        },
        "parameters": [
            {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
        ],
    }
    if rtype.namespaced:
        item["parameters"].append(
            {"name": "namespace", "in": "path", "required": True, "schema": {"type": "string"}}
        )
    collection = {
        "post": {
            "operationId": f"create{rtype.kind}",
            "parameters": _WRITE_PARAMS,
            "requestBody": {"content": {"application/json": {"schema": ref}}, "required": True},
            "responses": {
                "201": {"description": "Created", "content": {"application/json": {"schema": ref}}}
            },
            "x-kubernetes-action": "post",
            "x-kubernetes-group-version-kind": gvk,
        },
    }
    return {
        f"{scope}/{rtype.plural}": collection,
        f"{scope}/{rtype.plural}/{{name}}": item,
    }


def _group_versions(reg: registry_mod.Registry) -> dict[str, list[ResourceType]]:
    out: dict[str, list[ResourceType]] = {}
    for rtype in reg.all():
        path = f"apis/{rtype.group}/{rtype.version}" if rtype.group else "api/v1"
        out.setdefault(path, []).append(rtype)
    return out


# documents by what they are built from: the index hashes every document on each kubectl call
_documents: dict[str, tuple[str, Doc]] = {}


def _cache_key(gv_path: str, types: list[ResourceType]) -> str:
    parts = [
        (t.plural, t.kind, t.namespaced, t.custom, t.schema)
        for t in sorted(types, key=lambda t: t.plural)
    ]
    return json.dumps([gv_path, parts], sort_keys=True, default=str)


def _cached(reg: registry_mod.Registry, gv_path: str) -> tuple[str, Doc] | None:
    types = _group_versions(reg).get(gv_path)
    if not types:
        return None
    key = _cache_key(gv_path, types)
    found = _documents.get(key)
    if found is None:
        doc = _build(gv_path, types)
        found = _documents[key] = (_hash(doc), doc)
        if len(_documents) > 256:  # CRDs come and go in tests: forget the oldest
            del _documents[next(iter(_documents))]
    return found


def document(reg: registry_mod.Registry, gv_path: str) -> Doc | None:
    """The OpenAPI v3 document of one group-version (``api/v1``, ``apis/apps/v1``)."""
    found = _cached(reg, gv_path)
    return None if found is None else found[1]


def _build(gv_path: str, types: list[ResourceType]) -> Doc:
    paths: dict[str, Doc] = {}
    schemas: dict[str, Doc] = {}
    builtin: list[str] = []
    for rtype in sorted(types, key=lambda t: t.plural):
        paths.update(_paths(rtype))
        name = _component_name(rtype)
        if not rtype.custom and name.startswith("io.k8s."):
            builtin.append(name)
        elif rtype.schema is not None:
            schemas[_component_name(rtype)] = {
                **rtype.schema,
                "x-kubernetes-group-version-kind": [_gvk(rtype)],
            }
        else:
            # a placeholder without the GVK extension: kubectl then computes strategic merge
            # patches from its compiled-in types, which know every patchMergeKey
            schemas[_component_name(rtype)] = {"type": "object"}
    if builtin:
        minor = discovery.KUBE_VERSION["minor"]
        schemas.update(builtin_schemas.closure(minor, tuple(sorted(builtin))))
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": f"v1.{discovery.KUBE_VERSION['minor']}.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def _hash(doc: Doc) -> str:
    return hashlib.sha512(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:64].upper()


def index(reg: registry_mod.Registry) -> Doc:
    paths = {}
    for gv_path in sorted(_group_versions(reg)):
        found = _cached(reg, gv_path)
        assert found is not None
        paths[gv_path] = {"serverRelativeURL": f"/openapi/v3/{gv_path}?hash={found[0]}"}
    return {"paths": paths}
