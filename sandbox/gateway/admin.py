"""APISIX's Admin API (port 9180) for routes and upstreams, over ``admin_store.Store``.

Paths as APISIX serves them with ``admin_api_version: v3``::

    GET    /apisix/admin/{routes|upstreams}                list: {"list": [...], "total": N}
    POST   /apisix/admin/{routes|upstreams}                create with a generated id (201)
    PUT    /apisix/admin/{routes|upstreams}[/{id}]         create (201) or replace (200)
    GET    /apisix/admin/{routes|upstreams}/{id}           {"key", "value", "createdIndex", "modifiedIndex"}
    PATCH  /apisix/admin/{routes|upstreams}/{id}           JSON merge into the stored value
    PATCH  /apisix/admin/{routes|upstreams}/{id}/{path}    the body replaces that sub-tree
    DELETE /apisix/admin/{routes|upstreams}/{id}[?force=true]

Every request needs the admin key in ``X-API-KEY`` (or the ``api_key`` query argument, or an
``X-API-KEY`` cookie, as APISIX takes it): otherwise 401 ``{"error_msg": "failed to check
token", "description": "missing apikey" | "wrong apikey"}``. Answers are JSON with
``X-API-VERSION: v3`` and ``Server: APISIX/<version>``; a body that is not JSON is 400
``invalid request body: ...``; other resources (services, consumers, ssls ...) are 404
``Unsupported resource type: <name>``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

from sandbox.gateway import admin_store, proxying

logger = logging.getLogger(__name__)

PREFIX = "/apisix/admin"
MAX_BODY = 1572864  # APISIX's limit on an Admin API request body (1.5 MiB)


def _answer(status: int, body: Any) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(body, separators=(",", ":")),
        content_type="application/json",
        headers={"X-API-VERSION": "v3", "Server": proxying.SERVER},
    )


class AdminApi:
    def __init__(self, store: admin_store.Store, admin_key: str) -> None:
        if not admin_key:
            raise ValueError("admin_key: expected a non-empty key")
        self.store = store
        self.admin_key = admin_key

    def application(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_route("*", PREFIX, self.handle)
        app.router.add_route("*", PREFIX + "/{tail:.*}", self.handle)
        return app

    def _token_problem(self, request: web.Request) -> str:
        token = (
            request.query.get("api_key")
            or request.headers.get("X-API-KEY")
            or request.cookies.get("X-API-KEY")
        )
        if not token:
            return "missing apikey"
        if token != self.admin_key:
            return "wrong apikey"
        return ""

    async def handle(self, request: web.Request) -> web.Response:
        problem = self._token_problem(request)
        if problem:
            return _answer(401, {"error_msg": "failed to check token", "description": problem})
        segments = request.path.removeprefix(PREFIX).strip("/").split("/")
        resource = segments[0] if segments else ""
        item_id = segments[1] if len(segments) > 1 and segments[1] else None
        sub_path = "/".join(segments[2:])
        if resource not in admin_store.KINDS:
            return _answer(404, {"error_msg": f"Unsupported resource type: {resource}"})
        raw = await request.read()
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as e:
                return _answer(
                    400,
                    {
                        "error_msg": f"invalid request body: {e}",
                        "req_body": raw.decode(errors="replace"),
                    },
                )
        store = self.store
        try:
            match request.method:
                case "GET":
                    status, answer = (
                        store.get(resource, item_id) if item_id else store.list(resource)
                    )
                case "PUT":
                    status, answer = store.put(resource, item_id, body)
                case "POST":
                    if item_id:
                        raise admin_store.AdminError(
                            400,
                            {
                                "error_msg": f"wrong {admin_store.KINDS[resource]} id, do not need it"
                            },
                        )
                    status, answer = store.post(resource, body)
                case "PATCH":
                    status, answer = store.patch(resource, item_id, body, sub_path)
                case "DELETE":
                    force = request.query.get("force") == "true"
                    status, answer = store.delete(resource, item_id, force)
                case _:
                    return _answer(404, {"error_msg": "not found"})
        except admin_store.AdminError as e:
            logger.info("admin %s %s: %s %s", request.method, request.path, e.status, e)
            return _answer(e.status, e.body)
        return _answer(status, answer)
