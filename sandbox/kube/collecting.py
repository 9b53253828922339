"""Garbage collection and namespace deletion, the parts of ``Store`` that delete for you.

* deleting an owner deletes its dependents (ownerReferences naming its uid) after it
  (background propagation), or before it (foreground deletion: the owner carries the
  ``foregroundDeletion`` finalizer until no dependent blocks it) or, with ``Orphan``, strips
  the references instead; a dependent that another existing owner still holds is kept and
  only loses the reference to the deleted one;
* deleting a namespace marks it ``Terminating``, deletes everything in it, and removes it once
  it is empty and has no finalizers left.
"""

from __future__ import annotations

import contextlib
import copy
from typing import TYPE_CHECKING, Any

from sandbox.kube.errors import NotFound

if TYPE_CHECKING:
    from sandbox.kube.store import ResourceType

Obj = dict[str, Any]
Key = tuple[str, str]
NAMESPACES_KEY = ("", "namespaces")
FOREGROUND_FINALIZER = "foregroundDeletion"
Dependents = list[tuple["ResourceType", Obj]]


class Collecting:
    """Mixed into ``Store``: it provides the objects, the types and the primitive writes."""

    _objects: dict[Key, dict[Key, Obj]]
    _types: dict[Key, ResourceType]
    _foreground: dict[str, tuple[ResourceType, Key]]  # owners deleted in the foreground, by uid

    if TYPE_CHECKING:  # provided by Store

        def delete(
            self, rtype: ResourceType, namespace: str | None, name: str, *, propagation: str = ...
        ) -> Obj: ...

        def update(
            self, rtype: ResourceType, obj: Obj, *, subresource: str | None = None
        ) -> Obj: ...

        def namespace_phase(self, name: str) -> str | None: ...

        def _mark_deleted(self, rtype: ResourceType, current: Obj) -> None: ...

        def _remove(self, rtype: ResourceType, key: Key, propagation: str) -> Obj: ...

        def _namespaces_type(self) -> ResourceType: ...

        def _unregistered_type(self, key: Key) -> ResourceType: ...

        def _next_rv(self) -> int: ...

        def _emit(
            self,
            rtype: ResourceType,
            event_type: str,
            obj: Obj,
            rv: int,
            previous: Obj | None = None,
        ) -> None: ...

    def _delete_namespace(self, rtype: ResourceType, key: Key) -> Obj:
        current = self._objects[rtype.key][key]
        if not current["metadata"].get("deletionTimestamp"):
            current.setdefault("status", {})["phase"] = "Terminating"
            self._mark_deleted(rtype, current)
        last = copy.deepcopy(current)
        self._empty_namespace(key[1])
        still = self._objects[rtype.key].get(key)
        if still is None:  # removed when its last object went
            return last
        if still["metadata"].get("finalizers") or self._namespace_contents(key[1]):
            return copy.deepcopy(still)
        return self._remove(rtype, key, "Background")

    def _after_delete(self, rtype: ResourceType, obj: Obj, propagation: str) -> None:
        if propagation == "Orphan":
            self._orphan(obj["metadata"]["uid"])
        else:
            self._collect_garbage(obj["metadata"]["uid"])
        namespace = obj["metadata"].get("namespace")
        if (
            namespace
            and self.namespace_phase(namespace) == "Terminating"
            and not self._namespace_contents(namespace)
        ):
            ns_key = ("", namespace)
            ns = self._objects[NAMESPACES_KEY][ns_key]
            if not ns["metadata"].get("finalizers"):
                self._remove(self._namespaces_type(), ns_key, "Background")

    def _namespace_contents(self, namespace: str) -> list[tuple[Key, Key]]:
        return [
            (gr_key, obj_key)
            for gr_key, objects in self._objects.items()
            for obj_key in objects
            if obj_key[0] == namespace
        ]

    def _empty_namespace(self, namespace: str) -> None:
        for gr_key, obj_key in self._namespace_contents(namespace):
            rtype = self._types.get(gr_key)
            if obj_key not in self._objects[gr_key]:
                continue  # collected as a dependent of an earlier one
            if rtype is None:
                rtype = self._unregistered_type(gr_key)
            self.delete(rtype, obj_key[0], obj_key[1])

    def _collect_garbage(self, owner_uid: str) -> None:
        """Background propagation: delete every object whose ownerReferences name the owner,
        unless another of its owners still exists — then only the dead owner's reference goes
        (the garbage collector's "solid owner" rule)."""
        live = {
            obj["metadata"].get("uid")
            for objects in self._objects.values()
            for obj in objects.values()
        }
        for gr_key, objects in list(self._objects.items()):
            rtype = self._types.get(gr_key)
            if rtype is None:
                continue
            for (ns, name), obj in list(objects.items()):
                refs = obj["metadata"].get("ownerReferences") or []
                if not any(ref.get("uid") == owner_uid for ref in refs):
                    continue
                if any(ref.get("uid") in live for ref in refs):
                    self._strip_owner(rtype, obj, owner_uid)
                    continue
                with contextlib.suppress(NotFound):
                    self.delete(rtype, ns, name)

    def _orphan(self, owner_uid: str) -> None:
        for gr_key, objects in list(self._objects.items()):
            rtype = self._types.get(gr_key)
            if rtype is None:
                continue
            for obj in list(objects.values()):
                refs = obj["metadata"].get("ownerReferences") or []
                if any(ref.get("uid") == owner_uid for ref in refs):
                    self._strip_owner(rtype, obj, owner_uid)

    def _strip_owner(self, rtype: ResourceType, obj: Obj, owner_uid: str) -> None:
        new = copy.deepcopy(obj)
        refs = new["metadata"].get("ownerReferences") or []
        kept = [ref for ref in refs if ref.get("uid") != owner_uid]
        if kept:
            new["metadata"]["ownerReferences"] = kept
        else:
            new["metadata"].pop("ownerReferences")
        self.update(rtype, new)

    # ---------------------------------------------------------------- foreground deletion

    def _delete_foreground(self, rtype: ResourceType, key: Key, current: Obj) -> Obj:
        """Mark the owner, delete its dependents, remove it when none blocks it any more."""
        meta = current["metadata"]
        uid = meta["uid"]
        if FOREGROUND_FINALIZER not in (meta.get("finalizers") or []):
            previous = copy.deepcopy(current)
            meta["finalizers"] = [*(meta.get("finalizers") or []), FOREGROUND_FINALIZER]
            if not meta.get("deletionTimestamp"):
                meta["deletionTimestamp"] = _now()
                meta["deletionGracePeriodSeconds"] = 0
            rv = self._next_rv()
            meta["resourceVersion"] = str(rv)
            self._emit(rtype, "MODIFIED", current, rv, previous)
        self._foreground[uid] = (rtype, key)
        last = copy.deepcopy(current)
        live = {o["metadata"].get("uid") for objs in self._objects.values() for o in objs.values()}
        live.discard(uid)
        for dep_type, dependent in self._dependents(uid):
            dep_meta = dependent["metadata"]
            if any(ref.get("uid") in live for ref in dep_meta.get("ownerReferences") or []):
                self._strip_owner(dep_type, dependent, uid)  # another owner holds it
                continue
            if dep_meta.get("deletionTimestamp"):
                continue
            cascade = "Foreground" if self._dependents(dep_meta["uid"]) else "Background"
            with contextlib.suppress(NotFound):
                self.delete(
                    dep_type, dep_meta.get("namespace"), dep_meta["name"], propagation=cascade
                )
        self._finish_foreground(uid)
        still = self._objects[rtype.key].get(key)
        return copy.deepcopy(still) if still is not None else last

    def _dependents(self, owner_uid: str) -> Dependents:
        found: Dependents = []
        for gr_key, objects in self._objects.items():
            rtype = self._types.get(gr_key)
            if rtype is None:
                continue
            for obj in objects.values():
                refs = obj["metadata"].get("ownerReferences") or []
                if any(ref.get("uid") == owner_uid for ref in refs):
                    found.append((rtype, copy.deepcopy(obj)))
        return found

    def _release_owners(self, dependent: Obj) -> None:
        """A dependent went or dropped owner references: finish owners waiting for it."""
        if not self._foreground:
            return
        for ref in dependent["metadata"].get("ownerReferences") or []:
            if ref.get("uid") in self._foreground:
                self._finish_foreground(ref["uid"])

    def _finish_foreground(self, uid: str) -> None:
        entry = self._foreground.get(uid)
        if entry is None:  # finished already (its last dependent went)
            return
        rtype, key = entry
        owner = self._objects[rtype.key].get(key)
        if owner is None or owner["metadata"].get("uid") != uid:
            self._foreground.pop(uid, None)
            return
        for _, dependent in self._dependents(uid):
            for ref in dependent["metadata"].get("ownerReferences") or []:
                if ref.get("uid") == uid and ref.get("blockOwnerDeletion"):
                    return  # still blocked
        self._foreground.pop(uid, None)
        new = copy.deepcopy(owner)
        kept = [f for f in new["metadata"].get("finalizers") or [] if f != FOREGROUND_FINALIZER]
        new["metadata"]["finalizers"] = kept
        if not kept:
            new["metadata"].pop("finalizers")
        self.update(rtype, new)


def _now() -> str:
    from sandbox.kube.store import now_rfc3339  # store imports this module

    return now_rfc3339()
