"""Field sets of server-side apply: which fields of an object a manager owns.

A field set is a Python ``set`` of *paths*; a path is a tuple of path elements written as in
``metadata.managedFields[].fieldsV1``:

* ``f:<name>`` — a field of an object or a key of a map (``f:spec``, ``f:replicas``);
* ``k:<json>`` — the element of an associative list (``x-kubernetes-list-type: map``) with
  these key fields (``k:{"name":"app"}``; the keys sorted, compact JSON);
* ``v:<json>`` — the element of a set list (``x-kubernetes-list-type: set``) with this value;
* ``i:<n>`` — an element by position (only in field sets written by clients).

``leaves(obj, schema)`` maps every path an object *has* to the value that decides whether the
path changed: scalars, atomic lists and maps (``x-kubernetes-list-type: atomic``, untyped lists,
``x-kubernetes-map-type: atomic``) and empty objects are members with their value; objects are
granular (their fields are members, not the object); an element of an associative or set list
is a member itself (with a marker value) and, for associative lists, so are its fields. The
fields the server owns (apiVersion, kind, name, namespace, uid, resourceVersion, generation,
creationTimestamp, deletionTimestamp, managedFields) are never members.

``to_fields_v1`` and ``from_fields_v1`` convert between path sets and the nested ``fieldsV1``
form (a node that is a member and also has members below it carries ``".": {}``).

Schemas are OpenAPI v3 nodes; ``Schemas`` resolves ``$ref`` (and a lone ``allOf`` reference)
against the built-in definitions. Everything here is pure: plain dicts in, plain values out,
each walk linear in the size of the object.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

Obj = dict[str, Any]
Schema = Mapping[str, Any]
Path = tuple[str, ...]
FieldSet = set[Path]

REF_PREFIX = "#/components/schemas/"
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"

ITEM = ("<element>",)  # the value recorded for an element of an associative or set list

SERVER_FIELDS = frozenset({"apiVersion", "kind"})
SERVER_METADATA = frozenset(
    {
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "managedFields",
        "selfLink",
    }
)
# list-map keys the server defaults when a client leaves them out (ports' protocol)
KEY_DEFAULTS: dict[str, Any] = {"protocol": "TCP"}


class FieldSetError(ValueError):
    """A fieldsV1 document or list element that cannot be read; the message names it."""


class Schemas:
    """Resolves schema nodes: ``$ref`` into ``definitions``, ``None`` for unknown parts."""

    def __init__(self, definitions: Mapping[str, Schema] | None = None) -> None:
        self.definitions = definitions or {}

    def resolve(self, node: Schema | None) -> Schema | None:
        seen = 0
        while node is not None and seen < 16:
            ref = node.get("$ref")
            if ref is None:
                all_of = node.get("allOf")
                if isinstance(all_of, list) and len(all_of) == 1 and "$ref" in all_of[0]:
                    ref = all_of[0]["$ref"]
            if not isinstance(ref, str):
                return node
            node = self.definitions.get(ref.removeprefix(REF_PREFIX))
            seen += 1
        return node

    def field(self, node: Schema | None, name: str) -> Schema | None:
        """The schema of field ``name`` of an object (or of any key of a map)."""
        if node is None:
            return None
        props = node.get("properties")
        if isinstance(props, Mapping) and name in props:
            return self.resolve(props[name])
        extra = node.get("additionalProperties")
        return self.resolve(extra) if isinstance(extra, Mapping) else None

    def items(self, node: Schema | None) -> Schema | None:
        if node is None:
            return None
        items = node.get("items")
        return self.resolve(items) if isinstance(items, Mapping) else None


def list_type(node: Schema | None) -> tuple[str, tuple[str, ...]]:
    """``("map", keys)``, ``("set", ())`` or ``("atomic", ())`` (lists are atomic by default)."""
    if node is None:
        return "atomic", ()
    kind = node.get("x-kubernetes-list-type")
    if kind == "map":
        keys = tuple(node.get("x-kubernetes-list-map-keys") or ())
        return ("map", keys) if keys else ("atomic", ())
    if kind == "set":
        return "set", ()
    return "atomic", ()


def is_atomic_map(node: Schema | None) -> bool:
    return node is not None and node.get("x-kubernetes-map-type") == "atomic"


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def item_key(item: Any, keys: tuple[str, ...]) -> str | None:
    """The ``k:`` element of an associative-list item; None when it lacks a key field."""
    if not isinstance(item, dict):
        return None
    found = {}
    for key in keys:
        if key in item:
            found[key] = item[key]
        elif key in KEY_DEFAULTS:
            found[key] = KEY_DEFAULTS[key]
        else:
            return None
    return "k:" + _json(found)


def set_key(item: Any) -> str:
    return "v:" + _json(item)


def list_keys(items: list[Any], node: Schema | None) -> list[str] | None:
    """The path element of each element of a granular list; None when the list is atomic
    (by schema, or because an element lacks its key or two elements share one)."""
    kind, keys = list_type(node)
    if kind == "atomic":
        return None
    out = [item_key(i, keys) if kind == "map" else set_key(i) for i in items]
    if any(k is None for k in out) or len(set(out)) != len(out):
        return None
    return [k for k in out if k is not None]


# ---------------------------------------------------------------------------- leaves


def leaves(obj: Obj, schemas: Schemas, root: Schema | None, scope: str = "all") -> dict[Path, Any]:
    """Every member path of ``obj`` with its value (see the module docstring).

    ``scope``: ``"all"``, ``"main"`` (no ``status``: it is written through its subresource)
    or ``"status"`` (only ``status``).
    """
    out: dict[Path, Any] = {}
    root = schemas.resolve(root)
    for name, value in obj.items():
        if name in SERVER_FIELDS or value is None:
            continue
        if (scope == "main" and name == "status") or (scope == "status" and name != "status"):
            continue
        node = schemas.field(root, name)
        path = ("f:" + name,)
        if name == "metadata" and isinstance(value, dict):
            # a CRD's schema says only "type: object" of metadata: it is always ObjectMeta
            node = schemas.resolve({"$ref": REF_PREFIX + OBJECT_META}) or node
            for meta_name, meta_value in value.items():
                if meta_name not in SERVER_METADATA and meta_value is not None:
                    _walk(
                        meta_value,
                        schemas,
                        schemas.field(node, meta_name),
                        (*path, "f:" + meta_name),
                        out,
                    )
            continue
        _walk(value, schemas, node, path, out)
    return out


def _walk(
    value: Any, schemas: Schemas, node: Schema | None, path: Path, out: dict[Path, Any]
) -> None:
    if isinstance(value, dict):
        if not value or is_atomic_map(node):
            out[path] = value
            return
        for name, child in value.items():
            if child is not None:
                _walk(child, schemas, schemas.field(node, name), (*path, "f:" + name), out)
        return
    if isinstance(value, list):
        keys = list_keys(value, node) if value else None
        if keys is None:
            out[path] = value
            return
        item_node = schemas.items(node)
        for key, item in zip(keys, value, strict=True):
            item_path = (*path, key)
            out[item_path] = ITEM
            if key.startswith("k:") and isinstance(item, dict):
                for name, child in item.items():
                    if child is not None:
                        _walk(
                            child,
                            schemas,
                            schemas.field(item_node, name),
                            (*item_path, "f:" + name),
                            out,
                        )
        return
    out[path] = value


def changes(old: dict[Path, Any], new: dict[Path, Any]) -> tuple[FieldSet, FieldSet, FieldSet]:
    """(added, modified, removed) paths between two ``leaves`` results."""
    added = new.keys() - old.keys()
    removed = old.keys() - new.keys()
    modified = {p for p, v in new.items() if p in old and not same(old[p], v)}
    return set(added), modified, set(removed)


def same(a: Any, b: Any) -> bool:
    # 1 == 1.0 == True in Python; on the wire they differ only when the type differs
    return type(a) is type(b) and a == b


# ---------------------------------------------------------------------------- fieldsV1


def to_fields_v1(paths: Iterable[Path]) -> Obj:
    """The nested ``fieldsV1`` form of a path set (keys sorted, ``"."`` first)."""
    tree: Obj = {}
    members: list[Obj] = []
    for path in paths:
        node = tree
        for element in path:
            node = node.setdefault(element, {})
        members.append(node)
    for node in members:
        node["."] = {}
    return _finish(tree)


def _finish(node: Obj) -> Obj:
    children = {k: _finish(v) for k, v in sorted(node.items()) if k != "."}
    if not children:
        return {}
    if "." in node:
        return {".": {}, **children}
    return children


def from_fields_v1(tree: Any, where: str = "fieldsV1") -> FieldSet:
    """The path set of a ``fieldsV1`` document; ``FieldSetError`` naming a malformed part."""
    out: FieldSet = set()
    if not isinstance(tree, dict):
        raise FieldSetError(f"{where}: expected an object, got {type(tree).__name__}")

    def walk(node: Obj, path: Path) -> None:
        for key, child in node.items():
            if key == ".":
                if path:
                    out.add(path)
                continue
            if not isinstance(key, str) or key[:2] not in ("f:", "k:", "v:", "i:"):
                raise FieldSetError(
                    f"{where}: unknown path element {key!r} (expected f:, k:, v: or i:)"
                )
            if not isinstance(child, dict):
                raise FieldSetError(f"{where}: {key} must be an object")
            if child:
                walk(child, (*path, key))
            else:
                out.add((*path, key))

    walk(tree, ())
    return out


# ---------------------------------------------------------------------------- path strings


def path_string(path: Path) -> str:
    """A path as the API server prints it in conflicts: ``.spec.containers[name="app"].image``."""
    parts = []
    for element in path:
        kind, rest = element[:2], element[2:]
        if kind == "f:":
            parts.append("." + rest)
        elif kind == "k:":
            try:
                fields = json.loads(rest)
                parts.append("[" + ",".join(f"{k}={_json(v)}" for k, v in fields.items()) + "]")
            except ValueError:
                parts.append(f"[{rest}]")
        elif kind == "v:":
            parts.append(f"[={rest}]")
        else:
            parts.append(f"[{rest}]")
    return "".join(parts)
