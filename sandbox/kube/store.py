"""In-memory object store of the Kubernetes API simulator: the etcd + registry layer.

Everything that reads or writes Kubernetes objects inside the simulator goes through one
``Store``: the HTTP API server (``sandbox.kube.server``) and the in-process controllers
(deployment controller, kubelet, endpoints, garbage collector). Objects are plain JSON-shaped
dicts exactly as they appear on the wire; every read returns a deep copy, so callers may
mutate what they get.

Semantics copied from a real API server:

* one cluster-wide ``resourceVersion`` counter, bumped on every write and stamped on the object;
* ``metadata.generation`` (on kinds that have one: ``ResourceType.has_generation``) starts at
  1 and is bumped only when something other than ``metadata`` and ``status`` changes;
* ``generateName`` gets 5 characters of Kubernetes' alphabet (``SAFE_ALPHABET``);
* an update carrying a ``resourceVersion`` that is not the stored one is a ``Conflict``;
* for resources with a ``status`` subresource, a main-resource write keeps the stored status
  and a status write keeps everything but the status;
* delete with finalizers only sets ``deletionTimestamp``; the object goes once its finalizers
  are emptied by an update, and an update adding one is ``Forbidden``; dependents named by
  ``ownerReferences`` are garbage-collected (background propagation; ``Orphan`` strips the
  references instead; a dependent another existing owner holds only loses the reference);
  ``Foreground`` marks the owner (``deletionTimestamp`` and the ``foregroundDeletion``
  finalizer), deletes its dependents and removes it once no dependent with
  ``blockOwnerDeletion`` is left (the dependents' own finalizers hold it meanwhile);
* deleting a namespace marks it ``Terminating``, deletes everything in it and removes it once
  it is empty;
* watches get ADDED / MODIFIED / DELETED events in resourceVersion order, may resume from a
  recent resourceVersion, and get ``Gone`` (HTTP 410) when it is older than the kept history.

Split by concern: the errors are in ``errors``, watch fan-out and history in ``fanout``,
garbage collection and namespace deletion in ``collecting``; their public names are
importable from here.

A *view* (``add_view``) serves one resource type as a conversion of another: the simulator
stores core/v1 events once and serves them as ``events.k8s.io/v1`` events too.
Hooks (``add_hook``) are called synchronously after every write of a type; the CRD installer
uses one so that a custom resource type is served as soon as its CRD is stored.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import datetime
import random
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from sandbox.kube import collecting, fanout
from sandbox.kube.errors import (
    AlreadyExists,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    NotFound,
    StoreError,
)
from sandbox.kube.fanout import HISTORY_LIMIT, QUEUE_LIMIT, Subscription, WatchEvent

__all__ = [
    "HISTORY_LIMIT",
    "QUEUE_LIMIT",
    "SAFE_ALPHABET",
    "AlreadyExists",
    "Conflict",
    "Forbidden",
    "Gone",
    "Invalid",
    "NotFound",
    "ResourceType",
    "Store",
    "StoreError",
    "Subscription",
    "WatchEvent",
    "now_rfc3339",
]

Obj = dict[str, Any]
Key = tuple[str, str]
FOREGROUND_FINALIZER = collecting.FOREGROUND_FINALIZER

SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # k8s.io/apimachinery rand.SafeEncodeString
GENERATED_SUFFIX = 5  # characters generateName adds


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
    # True for kinds defined by a CustomResourceDefinition (merge patch only, schema checks)
    custom: bool = False
    # whether objects carry metadata.generation (workloads, HPAs, CRDs, custom resources do;
    # in Kubernetes 1.32 ConfigMaps, Secrets, Services, Pods, Events ... do not)
    has_generation: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> Key:
        """Storage key: objects of a group/resource are shared by all versions."""
        return (self.group, self.plural)

    @property
    def qualified(self) -> str:
        """``deployments.apps``, ``configmaps``: how error messages name the resource."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


@dataclasses.dataclass
class _View:
    base: ResourceType
    to_view: Callable[[Obj], Obj]
    from_view: Callable[[Obj], Obj]


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _spec_part(obj: Obj) -> Obj:
    """What counts for ``generation``: everything but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


class Store(collecting.Collecting):
    """All objects of the simulated cluster, with watch fan-out and history for resume."""

    def __init__(self, history_limit: int = HISTORY_LIMIT, queue_limit: int = QUEUE_LIMIT) -> None:
        self._rv = 1
        self._objects: dict[Key, dict[Key, Obj]] = collections.defaultdict(dict)
        self._types: dict[Key, ResourceType] = {}
        self._fanout = fanout.Fanout(history_limit, queue_limit)
        self._views: dict[Key, _View] = {}
        self._hooks: dict[Key, list[Callable[[WatchEvent], None]]] = collections.defaultdict(list)
        # owners being deleted in the foreground, by uid: (type, key)
        self._foreground: dict[str, tuple[ResourceType, Key]] = {}

    # ---------------------------------------------------------------- bookkeeping

    @property
    def resource_version(self) -> int:
        return self._rv

    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def _emit(
        self, rtype: ResourceType, event_type: str, obj: Obj, rv: int, previous: Obj | None = None
    ) -> None:
        """Publish a change; ``previous`` is the object before it (the object, for DELETED)."""
        if event_type == "DELETED":
            previous = obj
        before = None if previous is None else copy.deepcopy(previous)
        self._fanout.publish(rtype.key, WatchEvent(event_type, copy.deepcopy(obj), rv, before))
        # hooks run after the event is queued, so events they cause come after it
        for hook in list(self._hooks.get(rtype.key, ())):
            hook(WatchEvent(event_type, copy.deepcopy(obj), rv, copy.deepcopy(before)))

    def register(self, rtype: ResourceType) -> None:
        """Make a resource type known to the garbage collector (the server registers all)."""
        self._types[rtype.key] = rtype

    def add_view(
        self,
        view: ResourceType,
        base: ResourceType,
        to_view: Callable[[Obj], Obj],
        from_view: Callable[[Obj], Obj],
    ) -> None:
        """Serve ``view`` from the objects of ``base``, converting on the way in and out."""
        self._views[view.key] = _View(base, to_view, from_view)

    def add_hook(self, rtype: ResourceType, hook: Callable[[WatchEvent], None]) -> None:
        """Call ``hook`` synchronously after every ADDED / MODIFIED / DELETED of ``rtype``."""
        self._hooks[rtype.key].append(hook)

    def _not_found(self, rtype: ResourceType, name: str) -> NotFound:
        return NotFound(
            f'{rtype.qualified} "{name}" not found', name=name, group=rtype.group, kind=rtype.plural
        )

    def namespace_phase(self, name: str) -> str | None:
        """``Active``, ``Terminating``, or None when the namespace does not exist."""
        ns = self._objects[("", "namespaces")].get(("", name))
        if ns is None:
            return None
        return "Terminating" if ns["metadata"].get("deletionTimestamp") else "Active"

    # ---------------------------------------------------------------- reads

    def get(self, rtype: ResourceType, namespace: str | None, name: str) -> Obj:
        view = self._views.get(rtype.key)
        if view is not None:
            return view.to_view(self.get(view.base, namespace, name))
        obj = self._objects[rtype.key].get(((namespace or "") if rtype.namespaced else "", name))
        if obj is None:
            raise self._not_found(rtype, name)
        return copy.deepcopy(obj)

    def list(
        self,
        rtype: ResourceType,
        namespace: str | None = None,
        label_selector: Callable[[dict[str, str]], bool] | None = None,
        field_selector: Callable[[Obj], bool] | None = None,
    ) -> tuple[list[Obj], int]:
        """Objects in (namespace, name) order, and the resourceVersion the list is valid at."""
        view = self._views.get(rtype.key)
        items = []
        objects = self._objects[(view.base if view else rtype).key]
        # str(): a name of another type (written below the API) must not break the sort
        for (ns, _name), stored in sorted(objects.items(), key=lambda kv: tuple(map(str, kv[0]))):
            if namespace and ns != namespace:
                continue
            obj = view.to_view(copy.deepcopy(stored)) if view else stored
            if label_selector is not None and not label_selector(
                obj["metadata"].get("labels") or {}
            ):
                continue
            if field_selector is not None and not field_selector(obj):
                continue
            items.append(obj if view else copy.deepcopy(obj))
        return items, self._rv

    # ---------------------------------------------------------------- writes

    def create(self, rtype: ResourceType, obj: Obj) -> Obj:
        view = self._views.get(rtype.key)
        if view is not None:
            return view.to_view(self.create(view.base, view.from_view(obj)))
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name"):
            if meta.get("generateName"):
                meta["name"] = self._generate_name(rtype, meta)
            else:
                raise Invalid(
                    f"{rtype.kind} is invalid: metadata.name: Required value: name or "
                    "generateName is required",
                    group=rtype.group,
                    kind=rtype.kind,
                    causes=[
                        {
                            "reason": "FieldValueRequired",
                            "message": "Required value: name or generateName is required",
                            "field": "metadata.name",
                        }
                    ],
                )
        namespace = meta.get("namespace", "") if rtype.namespaced else ""
        if rtype.namespaced and not namespace:
            raise Invalid(
                f'{rtype.kind} "{meta["name"]}" is invalid: metadata.namespace: Required value',
                name=meta["name"],
                group=rtype.group,
                kind=rtype.kind,
            )
        if not rtype.namespaced:
            meta.pop("namespace", None)
        key = (namespace, meta["name"])
        if key in self._objects[rtype.key]:
            raise AlreadyExists(
                f'{rtype.qualified} "{meta["name"]}" already exists',
                name=meta["name"],
                group=rtype.group,
                kind=rtype.plural,
            )
        obj["apiVersion"] = rtype.api_version
        obj["kind"] = rtype.kind
        rv = self._next_rv()
        meta["uid"] = str(uuid.uuid4())
        meta["resourceVersion"] = str(rv)
        meta["creationTimestamp"] = now_rfc3339()
        if rtype.has_generation:
            meta["generation"] = 1
        else:
            meta.pop("generation", None)
        meta.pop("deletionTimestamp", None)
        self._objects[rtype.key][key] = obj
        self._emit(rtype, "ADDED", obj, rv)
        return copy.deepcopy(obj)

    def _generate_name(self, rtype: ResourceType, meta: Obj) -> str:
        """``generateName`` + 5 random characters, as the API server's name generator."""
        base = str(meta["generateName"])[: 63 - GENERATED_SUFFIX]
        namespace = meta.get("namespace", "") if rtype.namespaced else ""
        for _ in range(8):  # the real server retries a taken name a few times too
            name = base + "".join(random.choices(SAFE_ALPHABET, k=GENERATED_SUFFIX))
            if (namespace, name) not in self._objects[rtype.key]:
                break
        return name

    def update(
        self,
        rtype: ResourceType,
        obj: Obj,
        *,
        subresource: str | None = None,
        managed_fields: list[Obj] | None = None,
    ) -> Obj:
        """Replace an object (PUT semantics). ``subresource="status"`` writes only the status
        (and ``managed_fields``, when given: the API server records the status writer)."""
        view = self._views.get(rtype.key)
        if view is not None:
            stored = self.update(
                view.base,
                view.from_view(obj),
                subresource=subresource,
                managed_fields=managed_fields,
            )
            return view.to_view(stored)
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        namespace = meta.get("namespace", "") if rtype.namespaced else ""
        key = (namespace, meta.get("name", ""))
        current = self._objects[rtype.key].get(key)
        if current is None:
            raise self._not_found(rtype, key[1])
        sent_rv = meta.get("resourceVersion")
        if sent_rv and sent_rv != current["metadata"]["resourceVersion"]:
            raise Conflict(
                f'Operation cannot be fulfilled on {rtype.qualified} "{key[1]}": the object has '
                "been modified; please apply your changes to the latest version and try again",
                name=key[1],
                group=rtype.group,
                kind=rtype.plural,
            )
        if "status" in rtype.subresources:
            if subresource == "status":
                new = copy.deepcopy(current)
                if "status" in obj:
                    new["status"] = obj["status"]
                else:
                    new.pop("status", None)
                if managed_fields:
                    new["metadata"]["managedFields"] = copy.deepcopy(managed_fields)
                elif managed_fields is not None:
                    new["metadata"].pop("managedFields", None)
                obj = new
            elif "status" in current:
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
        if meta.get("deletionTimestamp"):
            # finalizers may only be removed from an object being deleted, never added
            old = current["metadata"].get("finalizers") or []
            added = [f for f in meta.get("finalizers") or [] if f not in old]
            if added:
                raise Forbidden(
                    f'{rtype.qualified} "{key[1]}" is forbidden: no new finalizers can be added '
                    "if the object is being deleted, found new finalizers []string{"
                    + ", ".join(f'"{f}"' for f in added)
                    + "}",
                    name=key[1],
                    group=rtype.group,
                    kind=rtype.plural,
                )
        obj["apiVersion"] = rtype.api_version
        obj["kind"] = rtype.kind
        if rtype.has_generation:
            generation = current["metadata"].get("generation", 1)
            if _spec_part(obj) != _spec_part(current):
                generation += 1
            meta["generation"] = generation
        else:
            meta.pop("generation", None)
        unchanged = {**meta, "resourceVersion": current["metadata"]["resourceVersion"]}
        if {**obj, "metadata": unchanged} == current:
            return copy.deepcopy(
                current
            )  # no-op writes do not bump resourceVersion (as etcd3 store)
        rv = self._next_rv()
        meta["resourceVersion"] = str(rv)
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._objects[rtype.key].pop(key)
            self._emit(rtype, "DELETED", obj, rv)
            self._after_delete(rtype, obj, "Background")
            self._release_owners(current)
            return copy.deepcopy(obj)
        self._objects[rtype.key][key] = obj
        self._emit(rtype, "MODIFIED", obj, rv, current)
        if meta.get("ownerReferences") != current["metadata"].get("ownerReferences"):
            self._release_owners(current)
        return copy.deepcopy(obj)

    def delete(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        *,
        propagation: str = "Background",
    ) -> Obj:
        """Delete an object, or mark it deleted while finalizers remain.

        ``propagation``: Background deletes dependents after the owner, Foreground before it
        (the owner stays, marked, while dependents with ``blockOwnerDeletion`` remain), Orphan
        strips dependents' ownerReferences to it.
        """
        view = self._views.get(rtype.key)
        if view is not None:
            deleted = self.delete(view.base, namespace, name, propagation=propagation)
            return view.to_view(deleted)
        key = ((namespace or "") if rtype.namespaced else "", name)
        current = self._objects[rtype.key].get(key)
        if current is None:
            raise self._not_found(rtype, name)
        if rtype.key == ("", "namespaces"):
            return self._delete_namespace(rtype, key)
        if propagation == "Foreground":
            return self._delete_foreground(rtype, key, current)
        if current["metadata"].get("finalizers"):
            if not current["metadata"].get("deletionTimestamp"):
                self._mark_deleted(rtype, current)
            return copy.deepcopy(current)
        return self._remove(rtype, key, propagation)

    def _mark_deleted(self, rtype: ResourceType, current: Obj) -> None:
        previous = copy.deepcopy(current)
        current["metadata"]["deletionTimestamp"] = now_rfc3339()
        current["metadata"]["deletionGracePeriodSeconds"] = 0
        rv = self._next_rv()
        current["metadata"]["resourceVersion"] = str(rv)
        self._emit(rtype, "MODIFIED", current, rv, previous)

    def _remove(self, rtype: ResourceType, key: Key, propagation: str) -> Obj:
        current = self._objects[rtype.key].pop(key)
        rv = self._next_rv()
        current["metadata"]["resourceVersion"] = str(rv)
        self._emit(rtype, "DELETED", current, rv)
        self._after_delete(rtype, current, propagation)
        self._release_owners(current)
        return copy.deepcopy(current)

    def _namespaces_type(self) -> ResourceType:
        registered = self._types.get(collecting.NAMESPACES_KEY)
        return registered or self._unregistered_type(collecting.NAMESPACES_KEY)

    def _unregistered_type(self, key: Key) -> ResourceType:
        """A stand-in for a type never ``register``-ed (a bare store in unit tests)."""
        namespaced = key != collecting.NAMESPACES_KEY
        return ResourceType(
            group=key[0], version="v1", kind="", plural=key[1], singular="", namespaced=namespaced
        )

    def drop_resource(self, rtype: ResourceType) -> None:
        """Remove every object of a type at once, finalizers or not (its CRD was deleted)."""
        for key in list(self._objects[rtype.key]):
            self._remove(rtype, key, "Background")
        self._types.pop(rtype.key, None)

    # ---------------------------------------------------------------- watch

    def check_resource_version(self, since: int | None) -> None:
        """Raise ``Gone`` when a watch from ``since`` cannot be served from the history."""
        if not since:
            return
        oldest = self._fanout.oldest() or self._rv + 1
        if since < oldest - 1 and since < self._rv:
            raise Gone(f"too old resource version: {since} ({oldest - 1})")

    def subscribe(
        self, rtype: ResourceType, namespace: str | None = None, since: int | None = None
    ) -> Subscription:
        """Register a watcher at once: events after ``since`` (None or 0: from now on).

        Raises ``Gone`` when ``since`` is older than the kept history. Call ``close()`` on it.
        """
        self.check_resource_version(since)
        view = self._views.get(rtype.key)
        key = view.base.key if view else rtype.key
        return self._fanout.subscribe(key, namespace, since, view.to_view if view else None)

    async def watch(
        self,
        rtype: ResourceType,
        namespace: str | None = None,
        since: int | None = None,
    ) -> AsyncIterator[WatchEvent]:
        """Events after resourceVersion ``since`` (None or 0: from now on).

        Raises ``Gone`` (on first iteration) when ``since`` is older than the kept history;
        ends when the watcher fell too far behind (list again, or resume).
        """
        sub = self.subscribe(rtype, namespace, since)
        try:
            for ev in sub.backlog:
                yield ev
            while True:
                event = await sub.queue.get()
                if event is fanout.CLOSED:
                    return
                yield sub.convert(event)
        finally:
            sub.close()
