"""Field management on the write path: who writes (``fieldManager`` or the User-Agent), the
schema a resource type's field sets follow, and the ``managedFields`` each write records.

The field-set logic itself is pure and lives in ``fieldsets`` and ``applying``; this module
only connects it to requests and resource types.
"""

from __future__ import annotations

import functools
from typing import Any

from aiohttp import web

from sandbox.kube import applying, builtin_schemas, discovery, fieldsets, status
from sandbox.kube.store import Conflict, ResourceType, now_rfc3339

Obj = dict[str, Any]
MANAGER_LIMIT = 128  # bytes, as the API server validates fieldManager


@functools.cache
def _builtin_schemas() -> fieldsets.Schemas:
    return fieldsets.Schemas(builtin_schemas.definitions(discovery.KUBE_VERSION["minor"]))


def schema_of(rtype: ResourceType) -> tuple[fieldsets.Schemas, fieldsets.Schema | None]:
    """The resolver and root schema of a type: the built-in definition, or the CRD's
    ``openAPIV3Schema`` (its ``metadata`` read as ObjectMeta); None when unknown."""
    schemas = _builtin_schemas()
    if rtype.custom:
        return schemas, rtype.schema
    name = builtin_schemas.name_of(
        discovery.KUBE_VERSION["minor"], rtype.group, rtype.version, rtype.kind
    )
    if name is None:
        return schemas, None
    return schemas, {"$ref": fieldsets.REF_PREFIX + name}


def scope_of(rtype: ResourceType, subresource: str | None) -> str:
    """Which part of the object a write through ``subresource`` may own."""
    if "status" not in rtype.subresources:
        return "all"
    return "status" if subresource == "status" else "main"


def manager_of(request: web.Request, *, required: bool = False) -> str:
    """``fieldManager``, else the User-Agent up to its first ``/`` (as the API server)."""
    manager = request.query.get("fieldManager", "")
    if len(manager.encode()) > MANAGER_LIMIT:
        raise status.BadRequest(
            f"fieldManager: Too long: may not be more than {MANAGER_LIMIT} bytes"
        )
    if manager:
        return manager
    if required:
        raise status.BadRequest(
            'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required '
            "for apply patch"
        )
    agent = request.headers.get("User-Agent", "").split("/", 1)[0]
    return agent.encode()[:MANAGER_LIMIT].decode(errors="ignore")


def force_of(request: web.Request, *, apply: bool) -> bool:
    raw = request.query.get("force", "")
    if raw not in ("", "true", "false", "1", "0"):
        raise status.BadRequest(f'force: expected "true" or "false", got "{raw}"')
    force = raw in ("true", "1")
    if force and not apply:
        raise status.BadRequest("Force flag must only be set for apply patches")
    return force


def operation(
    request: web.Request, rtype: ResourceType, subresource: str | None, kind: str
) -> applying.Operation:
    return applying.Operation(
        manager=manager_of(request, required=kind == applying.APPLY),
        operation=kind,
        api_version=rtype.api_version,
        time=now_rfc3339(),
        subresource=subresource if subresource in ("status", "scale") else None,
    )


def record(
    request: web.Request,
    rtype: ResourceType,
    subresource: str | None,
    old: Obj | None,
    new: Obj,
    target: Obj | None = None,
) -> None:
    """Set ``managedFields`` for an Update writing ``new`` over ``old`` (None on create) on
    ``target`` (``new`` by default): dropped when no entry is left."""
    op = operation(request, rtype, subresource, applying.UPDATE)
    schemas, root = schema_of(rtype)
    scope = scope_of(rtype, subresource)
    try:
        entries = applying.record_update(old, new, op, schemas, root, scope)
    except applying.ManagedFieldsError as exc:
        raise status.BadRequest(str(exc)) from exc
    meta = (new if target is None else target).setdefault("metadata", {})
    if entries:
        meta["managedFields"] = entries
    else:
        meta.pop("managedFields", None)


def apply(
    request: web.Request,
    rtype: ResourceType,
    subresource: str | None,
    live: Obj | None,
    config: Obj,
) -> Obj:
    """The object after a server-side apply of ``config`` (``live`` None: created);
    409 Conflict naming each field another manager owns, unless ``force=true``."""
    op = operation(request, rtype, subresource, applying.APPLY)
    force = force_of(request, apply=True)
    schemas, root = schema_of(rtype)
    try:
        return applying.apply(
            live, config, op, schemas, root, scope_of(rtype, subresource), force=force
        )
    except applying.ManagedFieldsError as exc:
        raise status.BadRequest(str(exc)) from exc
    except applying.ApplyConflict as exc:
        raise Conflict(exc.message, causes=exc.causes) from exc
