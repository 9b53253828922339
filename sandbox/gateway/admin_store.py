"""The Admin API's storage: routes and upstreams as APISIX keeps them in etcd, without etcd.

Every resource is stored under ``/apisix/<kind>/<id>`` with etcd's two revisions: one global
revision counter is bumped by every write, ``createdIndex`` is the revision that created the
key and ``modifiedIndex`` the one that last wrote it. The operations answer what APISIX's
Admin API answers with ``admin_api_version: v3`` (``apisix/admin/resource.lua`` and the v3
adapter), as ``(status, body)``:

* ``get`` — ``{"key", "value", "createdIndex", "modifiedIndex"}``; ``list`` —
  ``{"list": [those, by key], "total": N}``;
* ``put`` — 201 when created, 200 when replaced, ``{"key", "value"}`` (as APISIX, a write's
  answer carries no indexes); the id comes from the path or the body's ``id``;
* ``post`` — 201, the id generated from the revision as APISIX does (20 digits);
* ``patch`` — the body merged into the stored value (objects merged, arrays replaced whole,
  ``null`` deletes a field); ``patch`` with a sub-path — the body replaces the value at that
  path (``plugins/traffic-split``, ``upstream/nodes``), missing objects on the way created;
* ``delete`` — ``{"deleted": "1", "key"}``; an upstream a route uses (``upstream_id`` or a
  traffic-split ``upstream_id``) is refused with 400 unless ``force``.

``value`` gets ``id``, ``create_time`` (kept across writes) and ``update_time`` (Unix seconds;
a write that sets it keeps it, except a sub-path PATCH). Bodies are checked by
``admin_schema`` before anything is stored; a refused write changes nothing.

Missing keys answer 404 ``{"message": "Key not found"}`` as APISIX does, with the same text
in ``error_msg`` for clients that read only that field.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable
from typing import Any

from sandbox.gateway import admin_schema

Obj = dict[str, Any]
Answer = tuple[int, Obj]

ROUTES = "routes"
UPSTREAMS = "upstreams"
KINDS = {ROUTES: "route", UPSTREAMS: "upstream"}
NOT_FOUND: Obj = {"message": "Key not found", "error_msg": "Key not found"}
_FORBIDDEN_TIMES = ("create_time", "update_time")


class AdminError(Exception):
    """An Admin API refusal: HTTP status and APISIX's JSON body."""

    def __init__(self, status: int, body: Obj) -> None:
        super().__init__(body.get("error_msg") or body.get("message") or str(body))
        self.status = status
        self.body = body


def _bad(message: str) -> AdminError:
    return AdminError(400, {"error_msg": message})


@dataclasses.dataclass
class Item:
    value: Obj
    created: int
    modified: int


def merge(origin: Obj, patch: Obj) -> Obj:
    """APISIX's PATCH merge: objects merged key by key, arrays and scalars replaced, ``null``
    deletes. ``origin`` is changed in place and returned."""
    for key, value in patch.items():
        if value is None:
            origin.pop(key, None)
        elif isinstance(value, dict) and isinstance(origin.get(key), dict):
            merge(origin[key], value)
        else:
            origin[key] = copy.deepcopy(value)
    return origin


def patch_path(value: Obj, sub_path: str, body: Any) -> Obj:
    """``body`` replaces what is at ``sub_path`` (``a/b/c``); missing objects are created."""
    parts = sub_path.split("/")
    node: Any = value
    for i, part in enumerate(parts[:-1]):
        if node.get(part) is None:
            node[part] = {}
        node = node[part]
        if not isinstance(node, dict):
            raise _bad("invalid sub-path: /" + "/".join(parts[: i + 1]))
    last = parts[-1]
    if not last:
        if not isinstance(body, dict):
            raise _bad("invalid configuration")
        return copy.deepcopy(body)
    node[last] = copy.deepcopy(body)
    return value


class Store:
    """Routes and upstreams; ``on_change`` is called after every write that landed."""

    def __init__(
        self,
        on_change: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.revision = 0
        self.items: dict[str, dict[str, Item]] = {ROUTES: {}, UPSTREAMS: {}}
        self._on_change = on_change or (lambda: None)
        self._clock = clock

    # -- reading -----------------------------------------------------------------------------

    def values(self, kind: str) -> list[Obj]:
        """The stored values of a kind, by key."""
        return [self.items[kind][key].value for key in sorted(self.items[kind])]

    def upstream(self, upstream_id: str) -> Obj | None:
        item = self.items[UPSTREAMS].get(upstream_id)
        return item.value if item is not None else None

    def has_upstream(self, upstream_id: str) -> bool:
        return upstream_id in self.items[UPSTREAMS]

    @staticmethod
    def key(kind: str, item_id: str) -> str:
        return f"/apisix/{kind}/{item_id}"

    def _envelope(self, kind: str, item_id: str, item: Item) -> Obj:
        return {
            "key": self.key(kind, item_id),
            "value": copy.deepcopy(item.value),
            "createdIndex": item.created,
            "modifiedIndex": item.modified,
        }

    def get(self, kind: str, item_id: str) -> Answer:
        item = self.items[kind].get(item_id)
        if item is None:
            raise AdminError(404, dict(NOT_FOUND))
        return 200, self._envelope(kind, item_id, item)

    def list(self, kind: str) -> Answer:
        entries = [
            self._envelope(kind, key, self.items[kind][key]) for key in sorted(self.items[kind])
        ]
        return 200, {"list": entries, "total": len(entries)}

    # -- writing -----------------------------------------------------------------------------

    def _check(self, kind: str, conf: Any) -> None:
        try:
            if kind == ROUTES:
                admin_schema.check_route(conf, self.has_upstream)
            else:
                admin_schema.check_upstream(conf)
        except admin_schema.Invalid as e:
            raise _bad(str(e)) from None

    def _id_checked(self, kind: str, path_id: str | None, conf: Any, need_id: bool) -> str:
        """APISIX's ``check_conf`` preamble: the id rules, then forbidden timestamps."""
        if conf is None:
            raise _bad("missing configurations")
        if not isinstance(conf, dict):
            raise _bad(
                "invalid configuration: wrong type: expected object, got "
                + admin_schema.type_name(conf)
            )
        body_id = conf.get("id")
        item_id = path_id or (str(body_id) if body_id is not None else None)
        kind_name = KINDS[kind]
        if need_id and not item_id:
            raise _bad(f"missing {kind_name} id")
        if not need_id and item_id:
            raise _bad(f"wrong {kind_name} id, do not need it")
        if need_id and body_id is not None and str(body_id) != item_id:
            raise _bad(f"wrong {kind_name} id")
        return item_id or ""

    def _write(self, kind: str, item_id: str, value: Obj) -> int:
        """Store ``value`` (already checked); 201 created or 200 replaced."""
        self.revision += 1
        found = self.items[kind].get(item_id)
        if found is None:
            self.items[kind][item_id] = Item(value, self.revision, self.revision)
            status = 201
        else:
            found.value, found.modified = value, self.revision
            status = 200
        self._on_change()
        return status

    def _now(self) -> int:
        return int(self._clock())

    def put(self, kind: str, path_id: str | None, conf: Any) -> Answer:
        item_id = self._id_checked(kind, path_id, conf, need_id=True)
        for field in _FORBIDDEN_TIMES:
            if field in conf:
                raise _bad(f"the property is forbidden:  {field}")
        value = copy.deepcopy(conf)
        value["id"] = path_id or conf["id"]
        self._check(kind, value)
        previous = self.items[kind].get(item_id)
        now = self._now()
        value["create_time"] = previous.value.get("create_time", now) if previous else now
        value["update_time"] = now
        status = self._write(kind, item_id, value)
        return status, {"key": self.key(kind, item_id), "value": copy.deepcopy(value)}

    def post(self, kind: str, conf: Any) -> Answer:
        self._id_checked(kind, None, conf, need_id=False)
        for field in _FORBIDDEN_TIMES:
            if field in conf:
                raise _bad(f"the property is forbidden:  {field}")
        self._check(kind, conf)
        self.revision += 1  # APISIX takes a new etcd revision as the id
        item_id = f"{self.revision:020d}"
        now = self._now()
        value = copy.deepcopy(conf) | {"id": item_id, "create_time": now, "update_time": now}
        status = self._write(kind, item_id, value)
        return status, {"key": self.key(kind, item_id), "value": copy.deepcopy(value)}

    def patch(self, kind: str, item_id: str | None, conf: Any, sub_path: str = "") -> Answer:
        if not item_id:
            raise _bad(f"missing {KINDS[kind]} id")
        if conf is None:
            raise _bad("missing new configuration")
        if not sub_path and not isinstance(conf, dict):
            raise _bad("invalid configuration")
        found = self.items[kind].get(item_id)
        if found is None:
            raise AdminError(404, dict(NOT_FOUND))
        value = copy.deepcopy(found.value)
        now = self._now()
        if sub_path:
            value = patch_path(value, sub_path, conf)
            value.setdefault("create_time", found.value.get("create_time", now))
            value["update_time"] = now
        else:
            value = merge(value, conf)
            value.setdefault("create_time", now)
            if "update_time" not in conf:
                value["update_time"] = now
        body_id = value.get("id")
        if body_id is not None and str(body_id) != item_id:
            raise _bad(f"wrong {KINDS[kind]} id")
        value["id"] = item_id
        self._check(kind, value)
        self._write(kind, item_id, value)
        return 200, {"key": self.key(kind, item_id), "value": copy.deepcopy(value)}

    def delete(self, kind: str, item_id: str | None, force: bool = False) -> Answer:
        if not item_id:
            raise _bad(f"missing {KINDS[kind]} id")
        if kind == UPSTREAMS and not force:
            self._check_unused(item_id)
        if item_id not in self.items[kind]:
            raise AdminError(404, dict(NOT_FOUND))
        del self.items[kind][item_id]
        self.revision += 1
        self._on_change()
        return 200, {"deleted": "1", "key": self.key(kind, item_id)}

    def _check_unused(self, upstream_id: str) -> None:
        for route in self.values(ROUTES):
            split = (route.get("plugins") or {}).get(admin_schema.SPLIT) or {}
            for rule in split.get("rules") or []:
                for entry in rule.get("weighted_upstreams") or []:
                    if str(entry.get("upstream_id")) == upstream_id:
                        raise _bad(
                            "can not delete this upstream, plugin in route "
                            f"[{route['id']}] is still using it now"
                        )
            if str(route.get("upstream_id")) == upstream_id:
                raise _bad(
                    f"can not delete this upstream, route [{route['id']}] is still using it now"
                )
