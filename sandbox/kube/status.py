"""``Status`` objects: how the API server reports errors (and some successes).

The error hierarchy is the store's (``store.StoreError``) plus the HTTP-level errors below;
every one of them turns into one ``Status``::

    StoreError                    500 InternalError
    ├── NotFound                  404
    ├── AlreadyExists             409
    ├── Conflict                  409
    ├── Invalid                   422 (details.causes name the fields)
    ├── Gone                      410 Expired
    ├── Forbidden                 403
    ├── BadRequest                400
    ├── MethodNotAllowed          405
    ├── NotAcceptable             406
    └── UnsupportedMediaType      415
"""

from __future__ import annotations

from typing import Any

from sandbox.kube import store


class BadRequest(store.StoreError):
    reason = "BadRequest"
    code = 400


class MethodNotAllowed(store.StoreError):
    reason = "MethodNotAllowed"
    code = 405


class NotAcceptable(store.StoreError):
    reason = "NotAcceptable"
    code = 406


class UnsupportedMediaType(store.StoreError):
    reason = "UnsupportedMediaType"
    code = 415


class ServiceUnavailable(store.StoreError):
    reason = "ServiceUnavailable"
    code = 503


def failure(error: store.StoreError) -> dict[str, Any]:
    """The ``Status`` (status Failure) for an error."""
    details: dict[str, Any] = {}
    if error.name:
        details["name"] = error.name
    if error.group:
        details["group"] = error.group
    if error.kind:
        details["kind"] = error.kind
    if error.causes:
        details["causes"] = error.causes
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": error.message,
        "reason": error.reason,
        "code": error.code,
    }
    if details:
        body["details"] = details
    return body


def success(rtype: store.ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
    """What a DELETE answers once the object is gone (details.kind is the resource, as real)."""
    meta = obj.get("metadata", {})
    details = {"name": meta.get("name", ""), "kind": rtype.plural, "uid": meta.get("uid", "")}
    if rtype.group:
        details["group"] = rtype.group
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    }
