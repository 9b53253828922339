"""In-memory object store of the Kubernetes API simulator: the etcd + registry layer.

Everything that reads or writes Kubernetes objects inside the simulator goes through one
``Store``: the HTTP API server (``sandbox.kube.server``) and the in-process controllers
(deployment controller, kubelet, endpoints, garbage collector). Objects are plain JSON-shaped
dicts exactly as they appear on the wire; every read returns a deep copy, so callers may
mutate what they get.

Semantics copied from a real API server:

* one cluster-wide ``resourceVersion`` counter, bumped on every write and stamped on the object;
* ``metadata.generation`` starts at 1 and is bumped only when something other than
  ``metadata`` and ``status`` changes;
* an update carrying a ``resourceVersion`` that is not the stored one is a ``Conflict``;
* for resources with a ``status`` subresource, a main-resource write keeps the stored status
  and a status write keeps everything but the status;
* delete with finalizers only sets ``deletionTimestamp``; the object goes once its finalizers
  are emptied by an update; dependents named by ``ownerReferences`` are garbage-collected
  (background propagation);
* watches get ADDED / MODIFIED / DELETED events in resourceVersion order, may resume from a
  recent resourceVersion, and get ``Gone`` (HTTP 410) when it is older than the kept history.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import dataclasses
import datetime
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

Obj = dict[str, Any]

HISTORY_LIMIT = 5000  # watch events kept for resuming; older resourceVersions get 410 Gone


class StoreError(Exception):
    """Base of the store's errors; each maps to one Kubernetes ``Status`` reason and code."""

    reason = "InternalError"
    code = 500


class NotFound(StoreError):
    reason = "NotFound"
    code = 404


class AlreadyExists(StoreError):
    reason = "AlreadyExists"
    code = 409


class Conflict(StoreError):
    reason = "Conflict"
    code = 409


class Invalid(StoreError):
    reason = "Invalid"
    code = 422


class Gone(StoreError):
    reason = "Expired"
    code = 410


@dataclasses.dataclass(frozen=True)
class ResourceType:
    """What the simulator knows of one resource: enough for discovery, storage and tables."""

    group: str  # "" for the core group
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: frozenset[str] = frozenset()  # {"status", "scale"}
    verbs: tuple[str, ...] = (
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    )
    # additionalPrinterColumns of a CRD (as in the CRD: name, type, jsonPath, priority, ...)
    printer_columns: tuple[dict[str, Any], ...] = ()
    # openAPIV3Schema of a CRD version; None for built-in kinds
    schema: dict[str, Any] | None = None

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> tuple[str, str]:
        """Storage key: objects of a group/resource are shared by all versions."""
        return (self.group, self.plural)


@dataclasses.dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED | MODIFIED | DELETED
    object: Obj
    resource_version: int


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _spec_part(obj: Obj) -> Obj:
    """What counts for ``generation``: everything but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def _labels_match(labels: dict[str, str], selector: Callable[[dict[str, str]], bool] | None) -> bool:
    return selector is None or selector(labels)


class Store:
    """All objects of the simulated cluster, with watch fan-out and history for resume."""

    def __init__(self) -> None:
        self._rv = 1
        self._objects: dict[tuple[str, str], dict[tuple[str, str], Obj]] = collections.defaultdict(
            dict
        )
        self._types: dict[tuple[str, str], ResourceType] = {}
        self._history: collections.deque[tuple[tuple[str, str], WatchEvent]] = collections.deque(
            maxlen=HISTORY_LIMIT
        )
        self._watchers: list[tuple[tuple[str, str], str | None, asyncio.Queue[WatchEvent]]] = []

    # ---------------------------------------------------------------- bookkeeping

    @property
    def resource_version(self) -> int:
        return self._rv

    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def _emit(self, rtype: ResourceType, event_type: str, obj: Obj, rv: int) -> None:
        event = WatchEvent(event_type, copy.deepcopy(obj), rv)
        self._history.append((rtype.key, event))
        namespace = obj.get("metadata", {}).get("namespace")
        for key, ns, queue in list(self._watchers):
            if key == rtype.key and (ns is None or ns == namespace):
                queue.put_nowait(event)

    # ---------------------------------------------------------------- reads

    def get(self, rtype: ResourceType, namespace: str | None, name: str) -> Obj:
        obj = self._objects[rtype.key].get((namespace or "", name))
        if obj is None:
            raise NotFound(f'{rtype.plural}{"." + rtype.group if rtype.group else ""} "{name}" not found')
        return copy.deepcopy(obj)

    def list(
        self,
        rtype: ResourceType,
        namespace: str | None = None,
        label_selector: Callable[[dict[str, str]], bool] | None = None,
        field_selector: Callable[[Obj], bool] | None = None,
    ) -> tuple[list[Obj], int]:
        """Objects in (namespace, name) order, and the resourceVersion the list is valid at."""
        items = []
        for (ns, _name), obj in sorted(self._objects[rtype.key].items()):
            if namespace and ns != namespace:
                continue
            if not _labels_match(obj["metadata"].get("labels") or {}, label_selector):
                continue
            if field_selector is not None and not field_selector(obj):
                continue
            items.append(copy.deepcopy(obj))
        return items, self._rv

    # ---------------------------------------------------------------- writes

    def create(self, rtype: ResourceType, obj: Obj) -> Obj:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name"):
            if meta.get("generateName"):
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            else:
                raise Invalid("metadata.name: Required value: name or generateName is required")
        namespace = meta.get("namespace", "") if rtype.namespaced else ""
        if rtype.namespaced and not namespace:
            raise Invalid("metadata.namespace: Required value")
        if not rtype.namespaced:
            meta.pop("namespace", None)
        key = (namespace, meta["name"])
        if key in self._objects[rtype.key]:
            raise AlreadyExists(
                f'{rtype.plural}{"." + rtype.group if rtype.group else ""} "{meta["name"]}" already exists'
            )
        obj["apiVersion"] = rtype.api_version
        obj["kind"] = rtype.kind
        rv = self._next_rv()
        meta["uid"] = str(uuid.uuid4())
        meta["resourceVersion"] = str(rv)
        meta["creationTimestamp"] = now_rfc3339()
        meta["generation"] = 1
        meta.pop("deletionTimestamp", None)
        self._objects[rtype.key][key] = obj
        self._emit(rtype, "ADDED", obj, rv)
        return copy.deepcopy(obj)

    def update(self, rtype: ResourceType, obj: Obj, *, subresource: str | None = None) -> Obj:
        """Replace an object (PUT semantics). ``subresource="status"`` writes only the status."""
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        namespace = meta.get("namespace", "") if rtype.namespaced else ""
        key = (namespace, meta.get("name", ""))
        current = self._objects[rtype.key].get(key)
        if current is None:
            raise NotFound(f'{rtype.plural} "{meta.get("name")}" not found')
        sent_rv = meta.get("resourceVersion")
        if sent_rv and sent_rv != current["metadata"]["resourceVersion"]:
            raise Conflict(
                f'Operation cannot be fulfilled on {rtype.plural}{"." + rtype.group if rtype.group else ""} '
                f'"{key[1]}": the object has been modified; please apply your changes to the latest '
                "version and try again"
            )
        if "status" in rtype.subresources:
            if subresource == "status":
                new = copy.deepcopy(current)
                if "status" in obj:
                    new["status"] = obj["status"]
                else:
                    new.pop("status", None)
                obj = new
            else:
                if "status" in current:
                    obj["status"] = copy.deepcopy(current["status"])
                else:
                    obj.pop("status", None)
        meta = obj["metadata"]
        # immutable metadata is kept from the stored object
        for field in ("uid", "creationTimestamp", "deletionTimestamp", "namespace"):
            if field in current["metadata"]:
                meta[field] = current["metadata"][field]
            else:
                meta.pop(field, None)
        obj["apiVersion"] = rtype.api_version
        obj["kind"] = rtype.kind
        generation = current["metadata"].get("generation", 1)
        if _spec_part(obj) != _spec_part(current):
            generation += 1
        meta["generation"] = generation
        if obj == {**current, "metadata": {**meta, "resourceVersion": current["metadata"]["resourceVersion"]}}:
            return copy.deepcopy(current)  # no-op writes do not bump resourceVersion (as etcd3 store)
        rv = self._next_rv()
        meta["resourceVersion"] = str(rv)
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._objects[rtype.key].pop(key)
            self._emit(rtype, "DELETED", obj, rv)
            self._collect_garbage(meta["uid"])
            return copy.deepcopy(obj)
        self._objects[rtype.key][key] = obj
        self._emit(rtype, "MODIFIED", obj, rv)
        return copy.deepcopy(obj)

    def delete(self, rtype: ResourceType, namespace: str | None, name: str) -> Obj:
        key = ((namespace or "") if rtype.namespaced else "", name)
        current = self._objects[rtype.key].get(key)
        if current is None:
            raise NotFound(f'{rtype.plural}{"." + rtype.group if rtype.group else ""} "{name}" not found')
        if current["metadata"].get("finalizers"):
            if not current["metadata"].get("deletionTimestamp"):
                current["metadata"]["deletionTimestamp"] = now_rfc3339()
                rv = self._next_rv()
                current["metadata"]["resourceVersion"] = str(rv)
                self._emit(rtype, "MODIFIED", current, rv)
            return copy.deepcopy(current)
        self._objects[rtype.key].pop(key)
        rv = self._next_rv()
        current["metadata"]["resourceVersion"] = str(rv)
        self._emit(rtype, "DELETED", current, rv)
        self._collect_garbage(current["metadata"]["uid"])
        return copy.deepcopy(current)

    def _collect_garbage(self, owner_uid: str) -> None:
        """Background propagation: delete every object whose ownerReferences name the owner."""
        for gr_key, objects in list(self._objects.items()):
            rtype = self._types.get(gr_key)
            if rtype is None:
                continue
            for (ns, name), obj in list(objects.items()):
                refs = obj["metadata"].get("ownerReferences") or []
                if any(ref.get("uid") == owner_uid for ref in refs):
                    try:
                        self.delete(rtype, ns, name)
                    except NotFound:
                        pass

    def register(self, rtype: ResourceType) -> None:
        """Make a resource type known to the garbage collector (the server registers all)."""
        self._types[rtype.key] = rtype

    def drop_resource(self, rtype: ResourceType) -> None:
        """Delete every object of a type (a CRD was deleted)."""
        for (ns, name) in list(self._objects[rtype.key]):
            self.delete(rtype, ns, name)
        self._types.pop(rtype.key, None)

    # ---------------------------------------------------------------- watch

    async def watch(
        self,
        rtype: ResourceType,
        namespace: str | None = None,
        since: int | None = None,
    ) -> AsyncIterator[WatchEvent]:
        """Events after resourceVersion ``since`` (None or 0: from now on).

        Raises ``Gone`` at once when ``since`` is older than the kept history.
        """
        queue: asyncio.Queue[WatchEvent] = asyncio.Queue()
        backlog: Iterable[WatchEvent] = ()
        if since:
            oldest = self._history[0][1].resource_version if self._history else self._rv + 1
            if since < oldest - 1 and since < self._rv:
                raise Gone(f"too old resource version: {since} ({oldest - 1})")
            backlog = [
                ev
                for key, ev in self._history
                if key == rtype.key
                and ev.resource_version > since
                and (namespace is None or ev.object["metadata"].get("namespace") == namespace)
            ]
        entry = (rtype.key, namespace, queue)
        self._watchers.append(entry)
        try:
            for ev in backlog:
                yield ev
            while True:
                yield await queue.get()
        finally:
            self._watchers.remove(entry)
