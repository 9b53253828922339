"""The REST verbs on one resource: list, get, create, update, patch, delete, deletecollection,
and the ``status`` and ``scale`` subresources.

Lists honour ``limit`` and ``continue`` as the apiserver does (kubectl sends ``limit=500``, and
``--chunk-size``): at most ``limit`` items, ``metadata.continue`` while more remain (with
``remainingItemCount`` when no selector is given), every page at the first page's
resourceVersion; a token this server did not write is a 400, one whose resourceVersion left
the kept history a 410 ``Expired``.

Each handler gets the parsed ``Target`` (resource type, namespace, name, subresource) and the
shared ``Api`` (store, registry, settings); errors are raised as ``StoreError`` subclasses and
turned into ``Status`` answers by the server's middleware. Watches live in ``watching``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import dataclasses
import json
from typing import Any

import yaml
from aiohttp import web

from sandbox.kube import admission, managing, patch, protobuf, selectors, status, tables
from sandbox.kube import registry as registry_mod
from sandbox.kube.config import ClusterSettings
from sandbox.kube.store import Conflict, Gone, NotFound, ResourceType, Store, now_rfc3339

Obj = dict[str, Any]

JSON = "application/json"
ACCEPTED_BODIES = "application/json, application/yaml"


@dataclasses.dataclass
class Api:
    """What every request handler shares."""

    store: Store
    registry: registry_mod.Registry
    settings: ClusterSettings
    stop: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)


@dataclasses.dataclass(frozen=True)
class Target:
    rtype: ResourceType
    namespace: str | None
    name: str | None
    subresource: str | None


# ---------------------------------------------------------------------------- helpers


def respond(body: Any, code: int = 200, warnings: list[str] | None = None) -> web.Response:
    response = web.Response(
        text=json.dumps(body, separators=(",", ":")), status=code, content_type=JSON
    )
    for warning in warnings or []:
        escaped = warning.replace("\\", "\\\\").replace('"', '\\"')
        response.headers.add("Warning", f'299 - "{escaped}"')
    return response


async def read_body(request: web.Request, *, required: bool = True) -> Any:
    raw = await request.read()
    if request.content_type == "application/vnd.kubernetes.protobuf":
        try:
            return protobuf.decode(raw)
        except protobuf.Unsupported as exc:
            raise status.UnsupportedMediaType(
                f"{exc} - accepted media types include: {ACCEPTED_BODIES}"
            ) from exc
    if not raw.strip():
        if required:
            raise status.BadRequest("the request body is empty; an object was expected")
        return None
    try:
        if "yaml" in request.content_type:
            return yaml.safe_load(raw)
        return json.loads(raw)
    except (ValueError, yaml.YAMLError) as exc:
        kind = "YAML" if "yaml" in request.content_type else "JSON"
        raise status.BadRequest(f"the request body is not valid {kind}: {exc}") from exc


def _object_body(body: Any, target: Target) -> Obj:
    if not isinstance(body, dict):
        raise status.BadRequest(
            f"the request body must be a {target.rtype.kind} object, got {type(body).__name__}"
        )
    meta = body.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise status.BadRequest("metadata must be an object")
    rtype = target.rtype
    kind = body.get("kind")
    if kind and kind != rtype.kind and target.subresource != "scale":
        raise status.BadRequest(
            f"the kind of the object ({kind}) does not match the resource ({rtype.kind})"
        )
    api_version = body.get("apiVersion")
    if api_version and target.subresource != "scale":
        group = api_version.rpartition("/")[0]
        if group != rtype.group:
            raise status.BadRequest(
                f"the API version in the data ({api_version}) does not match the expected "
                f"API version ({rtype.api_version})"
            )
    if rtype.namespaced:
        if meta.get("namespace") and target.namespace and meta["namespace"] != target.namespace:
            raise status.BadRequest(
                "the namespace of the provided object does not match the namespace sent on "
                "the request"
            )
        if target.namespace:
            meta["namespace"] = target.namespace
    if target.name is not None:
        if meta.get("name") and meta["name"] != target.name:
            raise status.BadRequest(
                f"the name of the object ({meta['name']}) does not match the name on the URL "
                f"({target.name})"
            )
        meta["name"] = target.name
    return body


def in_version(obj: Obj, rtype: ResourceType) -> Obj:
    """An object as served through ``rtype``'s version (versions share storage)."""
    obj["apiVersion"] = rtype.api_version
    return obj


def field_validation(request: web.Request) -> str:
    value = request.query.get("fieldValidation", "Warn") or "Warn"
    if value not in ("Strict", "Warn", "Ignore"):
        raise status.BadRequest(
            f'fieldValidation parameter unsupported: "{value}" (Ignore, Warn, Strict)'
        )
    return value


def _dry_run(request: web.Request) -> bool:
    return "All" in request.query.getall("dryRun", [])


def _table_or_object(request: web.Request, rtype: ResourceType, obj: Obj) -> Any:
    if tables.wants_table(request.headers.get("Accept", "")):
        include = request.query.get("includeObject", "Metadata")
        return tables.table(rtype, [obj], None, include)
    return obj


def _scale_of(obj: Obj) -> Obj:
    meta = obj["metadata"]
    spec, st = obj.get("spec") or {}, obj.get("status") or {}
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: meta[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in meta
        },
        "spec": {"replicas": spec.get("replicas", 0)},
        "status": {
            "replicas": st.get("replicas", 0),
            "selector": ",".join(f"{k}={v}" for k, v in sorted(selector.items())),
        },
    }


# ---------------------------------------------------------------------------- reads


CONTINUE_VERSION = "meta.k8s.io/v1"  # what a continue token says it is
EXPIRED_CONTINUE = (
    "The provided continue parameter is too old to display a consistent list result. You can "
    "start a new list without the continue parameter."
)


def _encode_continue(rv: int, last: Obj) -> str:
    meta = last["metadata"]
    token = {"v": CONTINUE_VERSION, "rv": rv, "start": [meta.get("namespace", ""), meta["name"]]}
    return base64.urlsafe_b64encode(json.dumps(token).encode()).decode()


def _decode_continue(api: Api, value: str) -> tuple[int, tuple[str, str]]:
    """The resourceVersion a chunked list started at and the last key it returned; 400 for a
    token this server did not write, 410 Expired once that resourceVersion is out of the kept
    history (as the apiserver after etcd compaction)."""
    try:
        token = json.loads(base64.urlsafe_b64decode(value.encode() + b"=" * (-len(value) % 4)))
        rv, start = token["rv"], token["start"]
        if token.get("v") != CONTINUE_VERSION or not isinstance(rv, int) or rv < 1:
            raise ValueError("not a continue token of this server")
        if not (
            isinstance(start, list) and len(start) == 2 and all(isinstance(p, str) for p in start)
        ):
            raise ValueError("no start key")
    except (ValueError, TypeError, KeyError, binascii.Error) as exc:
        raise status.BadRequest(f"invalid continue token: {exc}") from exc
    try:
        api.store.check_resource_version(rv)
    except Gone as exc:
        raise Gone(EXPIRED_CONTINUE) from exc
    return rv, (start[0], start[1])


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit", "")
    try:
        return int(raw) if raw else 0
    except ValueError as exc:
        raise status.BadRequest(f"limit: expected an integer, got {raw!r}") from exc


def list_objects(api: Api, request: web.Request, target: Target) -> web.Response:
    """A list; with ``limit`` at most that many items and a ``continue`` token in the list's
    metadata when more remain (the next page lists the keys after the last one returned)."""
    rtype = target.rtype
    labels = selectors.parse_labels(request.query.get("labelSelector"))
    fields = selectors.parse_fields(request.query.get("fieldSelector"))
    limit, cont = _limit(request), request.query.get("continue", "")
    if cont and request.query.get("resourceVersion"):
        raise status.BadRequest("specifying resource version is not allowed when using continue")
    items, rv = api.store.list(rtype, target.namespace, labels, fields)
    if cont:
        rv, start = _decode_continue(api, cont)
        items = [
            i for i in items if (i["metadata"].get("namespace", ""), i["metadata"]["name"]) > start
        ]
    list_meta: Obj = {"resourceVersion": str(rv)}
    if limit > 0 and len(items) > limit:
        remaining = len(items) - limit
        items = items[:limit]
        list_meta["continue"] = _encode_continue(rv, items[-1])
        if labels is None and fields is None:
            list_meta["remainingItemCount"] = remaining
    items = [in_version(item, rtype) for item in items]
    if tables.wants_table(request.headers.get("Accept", "")):
        include = request.query.get("includeObject", "Metadata")
        table = tables.table(rtype, items, str(rv), include)
        table["metadata"] = list_meta
        return respond(table)
    return respond(
        {
            "kind": f"{rtype.kind}List",
            "apiVersion": rtype.api_version,
            "metadata": list_meta,
            "items": items,
        }
    )


def get_object(api: Api, request: web.Request, target: Target) -> web.Response:
    assert target.name is not None
    obj = in_version(api.store.get(target.rtype, target.namespace, target.name), target.rtype)
    if target.subresource == "scale":
        return respond(_scale_of(obj))
    return respond(_table_or_object(request, target.rtype, obj))


# ---------------------------------------------------------------------------- writes


async def create(api: Api, request: web.Request, target: Target) -> web.Response:
    if target.name is not None:
        raise status.MethodNotAllowed(
            "the server does not allow this method on the requested resource"
        )
    rtype = target.rtype
    if rtype.namespaced and not target.namespace:
        raise status.MethodNotAllowed(
            f"POST to all namespaces is not allowed: name a namespace in the path for {rtype.plural}"
        )
    obj = _object_body(await read_body(request), target)
    managing.force_of(request, apply=False)
    return _create(api, request, target, obj)


def _create(
    api: Api, request: web.Request, target: Target, obj: Obj, *, applied: bool = False
) -> web.Response:
    """Store a new object (POST, and a server-side apply of an absent one, end here)."""
    rtype = target.rtype
    admission.check_namespace(api.store, rtype, target.namespace)
    warnings = admission.admit(api.store, api.settings, rtype, obj, None, field_validation(request))
    if not applied:
        managing.record(request, rtype, None, None, obj)
    if _dry_run(request):
        obj["metadata"].setdefault("creationTimestamp", now_rfc3339())
        return respond(in_version(obj, rtype), 201, warnings)
    created = api.store.create(rtype, obj)
    return respond(in_version(created, rtype), 201, warnings)


def _write(
    api: Api,
    request: web.Request,
    target: Target,
    obj: Obj,
    current: Obj,
    *,
    applied: bool = False,
) -> web.Response:
    """Store a full new version of an object (PUT and PATCH end here); ``applied``: its
    managedFields were set by a server-side apply, else the write is recorded as an Update."""
    rtype = target.rtype
    if target.subresource == "scale":
        replicas = (obj.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise status.BadRequest(
                f"Scale.spec.replicas must be a non-negative integer, got {replicas!r}"
            )
        sent_rv = (obj.get("metadata") or {}).get("resourceVersion")
        new = copy.deepcopy(current)
        new["spec"]["replicas"] = replicas
        if sent_rv:
            new["metadata"]["resourceVersion"] = sent_rv
        managing.record(request, rtype, "scale", current, new)
        stored = api.store.update(rtype, new)
        return respond(_scale_of(stored))
    warnings: list[str] = []
    if target.subresource == "status":
        merged = copy.deepcopy(current)
        if "status" in obj:
            merged["status"] = obj["status"]
        else:
            merged.pop("status", None)
        warnings = admission.admit(
            api.store, api.settings, rtype, merged, current, field_validation(request)
        )
        if "status" in merged:
            obj["status"] = merged["status"]
        if not applied:
            managing.record(request, rtype, target.subresource, current, merged, obj)
    else:
        warnings = admission.admit(
            api.store, api.settings, rtype, obj, current, field_validation(request)
        )
        if not applied:
            managing.record(request, rtype, target.subresource, current, obj)
    if _dry_run(request):
        return respond(in_version(obj, rtype), 200, warnings)
    managed = None  # a status write records its writer: the store keeps the rest as stored
    if target.subresource == "status":
        managed = obj["metadata"].get("managedFields") or []
    stored = api.store.update(rtype, obj, subresource=target.subresource, managed_fields=managed)
    return respond(in_version(stored, rtype), 200, warnings)


async def update(api: Api, request: web.Request, target: Target) -> web.Response:
    if target.name is None:
        raise status.MethodNotAllowed("PUT needs an object name in the path")
    body = _object_body(await read_body(request), target)
    managing.force_of(request, apply=False)
    current = api.store.get(target.rtype, target.namespace, target.name)
    return _write(api, request, target, body, current)


async def _apply(api: Api, request: web.Request, target: Target) -> web.Response:
    """Server-side apply: create the object when absent, else merge the applied
    configuration into it; ownership and conflicts are ``managing``'s."""
    rtype = target.rtype
    managing.manager_of(request, required=True)
    if target.subresource == "scale":
        raise status.BadRequest(
            "server-side apply of the scale subresource is not supported; apply the "
            f"{rtype.kind} itself"
        )
    body = await read_body(request)
    if isinstance(body, dict):
        for field in ("apiVersion", "kind"):
            if not body.get(field):
                raise status.BadRequest(
                    f"the applied configuration has no {field}: expected "
                    f"{rtype.api_version if field == 'apiVersion' else rtype.kind}"
                )
    config = _object_body(body, target)
    try:
        live: Obj | None = api.store.get(rtype, target.namespace, target.name or "")
    except NotFound:
        if target.subresource:
            raise
        live = None
    obj = managing.apply(request, rtype, target.subresource, live, config)
    if live is None:
        return _create(api, request, target, obj, applied=True)
    return _write(api, request, target, obj, live, applied=True)


async def patch_object(api: Api, request: web.Request, target: Target) -> web.Response:
    if target.name is None:
        raise status.MethodNotAllowed("PATCH needs an object name in the path")
    rtype = target.rtype
    content_type = request.content_type
    accepted = "application/json-patch+json, application/merge-patch+json"
    if not rtype.custom:
        accepted += ", application/strategic-merge-patch+json"
    if content_type == "application/apply-patch+yaml":
        return await _apply(api, request, target)
    managing.force_of(request, apply=False)
    if content_type == "application/strategic-merge-patch+json" and rtype.custom:
        raise status.UnsupportedMediaType(
            "the body of the request was in an unknown format - accepted media types include: "
            f"{accepted}, application/apply-patch+yaml"
        )
    if content_type not in (
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
    ):
        raise status.UnsupportedMediaType(
            f"the body of the request was in an unknown format ({content_type}) - accepted media "
            f"types include: {accepted}"
        )
    body = await read_body(request)
    current = api.store.get(rtype, target.namespace, target.name)
    base = _scale_of(current) if target.subresource == "scale" else current
    try:
        if content_type == "application/json-patch+json":
            new = patch.json_patch(base, body)
        elif content_type == "application/merge-patch+json":
            new = patch.merge_patch(base, body)
        else:
            new = patch.strategic_merge_patch(base, body, base.get("kind", rtype.kind))
    except patch.PatchError as exc:
        raise status.BadRequest(f"the patch could not be applied: {exc}") from exc
    if not isinstance(new, dict):
        raise status.BadRequest("the patch did not produce an object")
    meta = new.setdefault("metadata", {})
    if meta.get("name") != target.name:
        raise status.BadRequest("the patch may not change metadata.name")
    if target.subresource != "scale":
        meta["namespace"] = current["metadata"].get("namespace")
        if not rtype.namespaced:
            meta.pop("namespace", None)
    return _write(api, request, target, new, current)


async def _delete_options(request: web.Request) -> Obj:
    body = await read_body(request, required=False)
    options = body if isinstance(body, dict) else {}
    if "propagationPolicy" in request.query:
        options["propagationPolicy"] = request.query["propagationPolicy"]
    if "dryRun" in request.query:
        options["dryRun"] = request.query.getall("dryRun")
    policy = options.get("propagationPolicy") or "Background"
    if policy not in ("Background", "Foreground", "Orphan"):
        raise status.BadRequest(
            f'propagationPolicy: Unsupported value: "{policy}": supported values: '
            '"Foreground", "Background", "Orphan"'
        )
    if options.get("orphanDependents") is True:
        policy = "Orphan"
    options["propagationPolicy"] = policy
    return options


def _check_preconditions(rtype: ResourceType, obj: Obj, options: Obj) -> None:
    pre = options.get("preconditions") or {}
    meta = obj["metadata"]
    if pre.get("uid") and pre["uid"] != meta.get("uid"):
        raise Conflict(
            f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: "
            f"{meta.get('uid')}",
            name=meta.get("name"),
            group=rtype.group,
            kind=rtype.plural,
        )
    if pre.get("resourceVersion") and pre["resourceVersion"] != meta.get("resourceVersion"):
        raise Conflict(
            f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, "
            f"ResourceVersion in object meta: {meta.get('resourceVersion')}",
            name=meta.get("name"),
            group=rtype.group,
            kind=rtype.plural,
        )


async def delete(api: Api, request: web.Request, target: Target) -> web.Response:
    rtype = target.rtype
    options = await _delete_options(request)
    if target.subresource:
        raise status.MethodNotAllowed(
            f"DELETE is not allowed on {rtype.plural}/{target.subresource}"
        )
    if target.name is None:
        return _delete_collection(api, request, target, options)
    current = api.store.get(rtype, target.namespace, target.name)
    _check_preconditions(rtype, current, options)
    if "All" in (options.get("dryRun") or []):
        return respond(in_version(current, rtype))
    result = api.store.delete(
        rtype, target.namespace, target.name, propagation=options["propagationPolicy"]
    )
    try:
        still = api.store.get(rtype, target.namespace, target.name)
    except NotFound:  # gone at once: the usual outcome
        return respond(status.success(rtype, result))
    # still there (finalizers, foreground deletion): the object with its deletionTimestamp, 200
    # as the apiserver answers, which keeps 202 for an explicit orphanDependents=false
    return respond(
        in_version(still, rtype), 202 if options.get("orphanDependents") is False else 200
    )


def _delete_collection(
    api: Api, request: web.Request, target: Target, options: Obj
) -> web.Response:
    rtype = target.rtype
    labels = selectors.parse_labels(request.query.get("labelSelector"))
    fields = selectors.parse_fields(request.query.get("fieldSelector"))
    items, _ = api.store.list(rtype, target.namespace, labels, fields)
    deleted = []
    if "All" not in (options.get("dryRun") or []):
        for item in items:
            meta = item["metadata"]
            try:
                deleted.append(
                    api.store.delete(
                        rtype,
                        meta.get("namespace"),
                        meta["name"],
                        propagation=options["propagationPolicy"],
                    )
                )
            except NotFound:  # collected as a dependent of an earlier item
                continue
    return respond(
        {
            "kind": f"{rtype.kind}List",
            "apiVersion": rtype.api_version,
            "metadata": {"resourceVersion": str(api.store.resource_version)},
            "items": [in_version(d, rtype) for d in deleted],
        }
    )
