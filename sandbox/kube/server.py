"""The aiohttp application of the Kubernetes API simulator: routing, errors, logging.

One catch-all route parses the path the way the real server does:

* ``/version``, ``/api``, ``/apis``, ``/apis/<g>``, ``/api/v1``, ``/apis/<g>/<v>``: discovery
  (plain or aggregated, by Accept);
* ``/openapi/v3`` and ``/openapi/v3/<gv>``: OpenAPI v3 (``openapi``); ``/openapi/v2``: 404;
* ``/api/v1/[namespaces/<ns>/]<plural>[/<name>[/<sub>]]`` and the same under
  ``/apis/<g>/<v>``: the REST verbs (``handlers``) and watches (``watching``);
* ``/api/v1/namespaces/<ns>/pods/<name>/log``: the container's log lines (``podlogs``);
  ``.../portforward``, ``exec``, ``attach``: a ``Status`` saying they are not simulated;
* ``/healthz``, ``/livez``, ``/readyz``: ``ok``;
* ``POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews``: ``kubectl auth can-i``.

``/sandbox/faults`` is the fault switches' control endpoint (``sandbox.faults``), outside the
Kubernetes URL space; while a ``kube-503`` or ``kube-timeout`` switch is on, matching requests
get a 503 ``Status`` or are held before anything else runs.

Before any of it, ``access.check`` authenticates ServiceAccount tokens and applies RBAC.

Every error becomes a ``Status`` object; a bug in a handler is a 500 ``Status`` with the
exception's text, logged with its traceback, never a dropped connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from sandbox import faults
from sandbox.kube import (
    access,
    authentication,
    discovery,
    handlers,
    openapi,
    podlogs,
    registry,
    status,
    watching,
)
from sandbox.kube.selectors import SelectorError
from sandbox.kube.store import NotFound, StoreError

log = logging.getLogger(__name__)

API = web.AppKey("api", handlers.Api)

_NAMESPACE_SUBRESOURCES = ("status", "finalize")


def _not_found_path() -> NotFound:
    return NotFound("the server could not find the requested resource")


def _json(body: Any, content_type: str = "application/json") -> web.Response:
    return web.Response(
        body=json.dumps(body, separators=(",", ":")).encode(),
        headers={"Content-Type": content_type},
    )


def parse_target(api: handlers.Api, parts: list[str]) -> handlers.Target | None:
    """A resource path (after ``api/v1`` or ``apis/<g>/<v>``) as a Target; None if unknown."""
    if parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    else:
        group, version, rest = parts[1], parts[2], parts[3:]
    namespace = None
    reg = api.registry
    if (
        rest[0] == "namespaces"
        and len(rest) >= 3
        and not (group == "" and len(rest) == 3 and rest[2] in _NAMESPACE_SUBRESOURCES)
    ):
        namespace, rest = rest[1], rest[2:]
    if len(rest) > 3:
        return None
    rtype = reg.get(group, rest[0], version)
    if rtype is None:
        return None
    if namespace is not None and not rtype.namespaced:
        return None
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    if not rtype.namespaced and namespace is None and name is not None:
        pass  # cluster-scoped object
    elif rtype.namespaced and namespace is None and name is not None:
        return None  # a namespaced object needs its namespace in the path
    if (
        sub is not None
        and sub not in rtype.subresources
        and not (rtype.key == ("", "namespaces") and sub == "finalize")
    ):
        return None
    return handlers.Target(rtype, namespace, name, "status" if sub == "finalize" else sub)


async def _discovery(api: handlers.Api, request: web.Request, parts: list[str]) -> web.Response:
    accept = request.headers.get("Accept", "")
    reg = api.registry
    if parts in (["api"], ["apis"]):
        media = discovery.aggregated_type(accept)
        if media:
            return _json(discovery.aggregated(reg, media, legacy=parts == ["api"]), media)
        if parts == ["api"]:
            return _json(discovery.api_versions())
        return _json(discovery.api_group_list(reg))
    if parts[0] == "api" and len(parts) == 2:
        doc = discovery.api_resource_list(reg, "", parts[1])
    elif len(parts) == 2:
        doc = discovery.api_group(reg, parts[1])
    else:
        doc = discovery.api_resource_list(reg, parts[1], parts[2])
    if doc is None:
        raise _not_found_path()
    return _json(doc)


async def _resource(
    api: handlers.Api, request: web.Request, parts: list[str]
) -> web.StreamResponse:
    if len(parts) == 7 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "pods":
        namespace, name, sub = parts[3], parts[5], parts[6]
        if sub == "log" and request.method == "GET":
            return await podlogs.serve(api.store, api.stop, request, namespace, name)
        if sub in podlogs.STREAMING_SUBRESOURCES:
            api.store.get(registry.PODS, namespace, name)  # a missing pod is a 404 first
            raise podlogs.not_simulated(sub, name)
    target = parse_target(api, parts)
    if target is None:
        raise _not_found_path()
    method = request.method
    if method == "GET":
        if request.query.get("watch") in ("1", "true", "True"):
            return await watching.serve(api, request, target)
        if target.name is None:
            return handlers.list_objects(api, request, target)
        return handlers.get_object(api, request, target)
    if method == "POST":
        return await handlers.create(api, request, target)
    if method == "PUT":
        return await handlers.update(api, request, target)
    if method == "PATCH":
        return await handlers.patch_object(api, request, target)
    if method == "DELETE":
        return await handlers.delete(api, request, target)
    raise status.MethodNotAllowed(f"method {method} is not allowed on this resource")


_SSAR_PATH = ["apis", "authorization.k8s.io", "v1", "selfsubjectaccessreviews"]


async def dispatch(request: web.Request) -> web.StreamResponse:
    api = request.app[API]
    # a ServiceAccount identity (token or /sandbox-sa/<ns>/<name> prefix): 401, then RBAC's 403
    user, path = authentication.authenticate(request.headers, request.path)
    access.check(api.store, user, request, path)
    parts = [p for p in path.split("/") if p]
    if parts == _SSAR_PATH and request.method == "POST":
        body = await handlers.read_body(request)
        if not isinstance(body, dict):
            raise status.BadRequest("the request body must be a SelfSubjectAccessReview")
        return handlers.respond(access.self_subject_access_review(api.store, user, body), 201)
    if not parts:
        return _json({"paths": ["/api", "/api/v1", "/apis", "/openapi/v3", "/version"]})
    if parts[0] in ("healthz", "livez", "readyz"):
        return web.Response(text="ok")
    if parts == ["version"]:
        return _json(discovery.version())
    if parts[0] == "openapi":
        if parts[1:2] == ["v3"]:
            if len(parts) == 2:
                return _json(openapi.index(api.registry))
            doc = openapi.document(api.registry, "/".join(parts[2:]))
            if doc is not None:
                return _json(doc)
        raise _not_found_path()
    if request.method == "GET" and (
        parts in (["api"], ["apis"])
        or (parts[0] == "api" and len(parts) == 2)
        or (parts[0] == "apis" and len(parts) in (2, 3))
    ):
        return await _discovery(api, request, parts)
    if (parts[0] == "api" and len(parts) >= 3) or (parts[0] == "apis" and len(parts) >= 4):
        return await _resource(api, request, parts)
    raise _not_found_path()


@web.middleware
async def errors_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        response = await handler(request)
    except access.Forbidden as exc:
        response = handlers.respond(exc.body, 403)
    except StoreError as exc:
        response = handlers.respond(status.failure(exc), exc.code)
    except SelectorError as exc:
        response = handlers.respond(status.failure(status.BadRequest(str(exc))), 400)
    except web.HTTPException:
        raise
    except Exception as exc:
        log.exception("internal error serving %s %s", request.method, request.path_qs)
        error = StoreError(f"internal error: {type(exc).__name__}: {exc}")
        response = handlers.respond(status.failure(error), 500)
    log.debug("%s %s -> %s", request.method, request.path_qs, response.status)
    return response


@web.middleware
async def faults_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """The ``kube-503`` and ``kube-timeout`` switches (off unless a test turns them on)."""
    switches = request.app[faults.SWITCHES]
    if not faults.is_control(request.path) and request.headers.get(faults.UNFAULTED_HEADER) != "1":
        if switches.active("kube-503", request.method, request.path) > 0:
            error = status.ServiceUnavailable(
                "the server is currently unable to handle the request"
            )
            return handlers.respond(status.failure(error), 503)
        held = switches.active("kube-timeout", request.method, request.path)
        if held > 0:
            log.info("holding %s %s for %.1fs (sandbox fault)", request.method, request.path, held)
            await asyncio.sleep(held)
    return await handler(request)


def make_app(api: handlers.Api) -> web.Application:
    app = web.Application(
        middlewares=[faults_middleware, errors_middleware],
        client_max_size=16 * 1024 * 1024,
    )
    app[API] = api
    faults.add_routes(app, faults.Switches(), faults.KUBE_FAULTS)
    app.router.add_route("*", "/{tail:.*}", dispatch)

    async def on_shutdown(_app: web.Application) -> None:
        api.stop.set()  # ends every watch stream

    app.on_shutdown.append(on_shutdown)
    return app
