"""The three patch formats of the Kubernetes API, as pure functions on JSON-shaped dicts.

* ``merge_patch`` — JSON merge patch (RFC 7386): maps merge, ``null`` deletes, lists replace.
* ``json_patch`` — JSON patch (RFC 6902): add / remove / replace / move / copy / test.
* ``strategic_merge_patch`` — Kubernetes' strategic merge patch for the built-in kinds: lists
  declared with a ``patchMergeKey`` merge element-wise (containers by ``name``, ports by
  ``containerPort`` ...), directives ``$patch: replace|delete|merge``,
  ``$setElementOrder/<field>``, ``$retainKeys`` and ``$deleteFromPrimitiveList/<field>``.

Every function returns a new object and raises ``PatchError`` (a 422 / 400 for the server)
naming what was wrong. The patch metadata of the built-in kinds is data (``KIND_SCHEMAS``):
each node maps a field name to a ``Field`` saying how lists under it merge and what the
elements look like.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

Obj = dict[str, Any]


class PatchError(ValueError):
    """A patch that cannot be applied; the message names the operation or path."""


# ---------------------------------------------------------------------------- merge patch


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: returns ``target`` with ``patch`` merged in."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# ---------------------------------------------------------------------------- JSON patch


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f'invalid JSON pointer "{path}": must start with "/"')
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _index(container: list[Any], token: str, *, for_add: bool) -> int:
    if token == "-" and for_add:
        return len(container)
    if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
        raise PatchError(f'invalid array index "{token}"')
    index = int(token)
    limit = len(container) if for_add else len(container) - 1
    if index > limit:
        raise PatchError(f"array index {index} out of bounds")
    return index


def _parent(doc: Any, tokens: list[str], path: str) -> Any:
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict):
            if token not in node:
                raise PatchError(f'path "{path}" does not exist: missing "{token}"')
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, for_add=False)]
        else:
            raise PatchError(f'path "{path}" does not exist')
    return node


def _get(doc: Any, path: str) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return doc
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f'path "{path}" does not exist')
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, for_add=False)]
    raise PatchError(f'path "{path}" does not exist')


def _add(doc: Any, path: str, value: Any) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return value
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, for_add=True), value)
    else:
        raise PatchError(f'cannot add to "{path}": parent is not an object or array')
    return doc


def _remove(doc: Any, path: str) -> tuple[Any, Any]:
    tokens = _pointer(path)
    if not tokens:
        raise PatchError("cannot remove the whole document")
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f'unable to remove nonexistent key "{last}" at "{path}"')
        return doc, parent.pop(last)
    if isinstance(parent, list):
        return doc, parent.pop(_index(parent, last, for_add=False))
    raise PatchError(f'path "{path}" does not exist')


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902: applies the operations in order; any failure rejects the whole patch."""
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a list of operations")
    doc = copy.deepcopy(target)
    for number, op in enumerate(operations):
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError(f"operation {number}: needs 'op' and 'path'")
        kind, path = op["op"], op["path"]
        if kind in ("add", "replace", "test") and "value" not in op:
            raise PatchError(f"operation {number} ({kind} {path}): missing 'value'")
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif kind == "remove":
            doc, _ = _remove(doc, path)
        elif kind == "replace":
            _get(doc, path)  # must exist
            doc, _ = _remove(doc, path) if _pointer(path) else (doc, None)
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif kind in ("move", "copy"):
            if "from" not in op:
                raise PatchError(f"operation {number} ({kind} {path}): missing 'from'")
            if kind == "move" and (path + "/").startswith(op["from"] + "/") and path != op["from"]:
                raise PatchError(f'cannot move "{op["from"]}" into its own child "{path}"')
            if kind == "move":
                doc, value = _remove(doc, op["from"])
            else:
                value = copy.deepcopy(_get(doc, op["from"]))
            doc = _add(doc, path, value)
        elif kind == "test":
            if _get(doc, path) != op["value"]:
                raise PatchError(f"testing value {path} failed")
        else:
            raise PatchError(f'operation {number}: unknown op "{kind}"')
    return doc


# ---------------------------------------------------------------------------- strategic merge


@dataclasses.dataclass(frozen=True)
class Field:
    """Patch metadata of one field: how a list merges and what its elements / values hold."""

    merge_key: str | None = None  # list of maps merged by this key
    merge_primitives: bool = False  # list of scalars merged as a set (finalizers)
    retain_keys: bool = False  # a map whose $retainKeys clears unlisted fields
    fields: dict[str, Field] | None = None  # nested map (or the list elements' map)


_NO_FIELDS: dict[str, Field] = {}

_META = {"ownerReferences": Field(merge_key="uid"), "finalizers": Field(merge_primitives=True)}
_CONDITIONS = {"conditions": Field(merge_key="type")}
_CONTAINER = {
    "env": Field(merge_key="name"),
    "ports": Field(merge_key="containerPort"),
    "volumeMounts": Field(merge_key="mountPath"),
    "volumeDevices": Field(merge_key="devicePath"),
    "resizePolicy": Field(),
}
_POD_SPEC = {
    "containers": Field(merge_key="name", fields=_CONTAINER),
    "initContainers": Field(merge_key="name", fields=_CONTAINER),
    "ephemeralContainers": Field(merge_key="name", fields=_CONTAINER),
    "volumes": Field(merge_key="name", fields={}),
    "imagePullSecrets": Field(merge_key="name"),
    "hostAliases": Field(merge_key="ip"),
    "topologySpreadConstraints": Field(merge_key="topologyKey"),
    "resourceClaims": Field(merge_key="name"),
    "schedulingGates": Field(merge_key="name"),
}
_POD_TEMPLATE = {"metadata": Field(fields=_META), "spec": Field(fields=_POD_SPEC)}
_POD_STATUS = {
    "conditions": Field(merge_key="type"),
    "podIPs": Field(merge_key="ip"),
    "hostIPs": Field(merge_key="ip"),
}
_WORKLOAD = {
    "metadata": Field(fields=_META),
    "spec": Field(
        fields={"template": Field(fields=_POD_TEMPLATE), "strategy": Field(retain_keys=True)}
    ),
    "status": Field(fields=_CONDITIONS),
}

KIND_SCHEMAS: dict[str, dict[str, Field]] = {
    "Pod": {
        "metadata": Field(fields=_META),
        "spec": Field(fields=_POD_SPEC),
        "status": Field(fields=_POD_STATUS),
    },
    "Deployment": _WORKLOAD,
    "ReplicaSet": _WORKLOAD,
    "StatefulSet": _WORKLOAD,
    "DaemonSet": _WORKLOAD,
    "Service": {
        "metadata": Field(fields=_META),
        "spec": Field(fields={"ports": Field(merge_key="port")}),
        "status": Field(fields=_CONDITIONS),
    },
    "Namespace": {"metadata": Field(fields=_META), "status": Field(fields=_CONDITIONS)},
    "HorizontalPodAutoscaler": {
        "metadata": Field(fields=_META),
        "status": Field(fields=_CONDITIONS),
    },
}


def schema_for(kind: str) -> dict[str, Field]:
    """The patch metadata of a kind; kinds without lists to merge get only metadata's."""
    return KIND_SCHEMAS.get(kind, {"metadata": Field(fields=_META)})


_ORDER = "$setElementOrder/"
_DELETE_PRIMITIVES = "$deleteFromPrimitiveList/"


def strategic_merge_patch(original: Obj, patch: Obj, kind: str) -> Obj:
    """Apply a strategic merge patch to an object of a built-in kind."""
    if not isinstance(patch, dict):
        raise PatchError("a strategic merge patch must be a JSON object")
    result = _merge_map(copy.deepcopy(original), patch, schema_for(kind))
    if result is None:
        raise PatchError("a strategic merge patch cannot delete the whole object")
    return result


def _clean(value: Any) -> Any:
    """A patch value with its directives removed, for places where nothing merges."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if not k.startswith("$") and v is not None}
    if isinstance(value, list):
        return [_clean(v) for v in value if not (isinstance(v, dict) and "$patch" in v)]
    return value


def _merge_map(original: Obj | None, patch: Obj, fields: dict[str, Field]) -> Obj | None:
    directive = patch.get("$patch")
    if directive == "delete":
        return None
    if directive == "replace":
        return _clean(patch)
    if directive not in (None, "merge"):
        raise PatchError(f'unknown patch type: "{directive}" in map')
    result = dict(original) if isinstance(original, dict) else {}
    retain = patch.get("$retainKeys")
    if retain is not None:
        if not isinstance(retain, list):
            raise PatchError("$retainKeys must be a list of field names")
        result = {k: v for k, v in result.items() if k in retain}
    for key, value in patch.items():
        if key.startswith(_DELETE_PRIMITIVES):
            name = key[len(_DELETE_PRIMITIVES) :]
            drop = value if isinstance(value, list) else [value]
            if isinstance(result.get(name), list):
                result[name] = [v for v in result[name] if v not in drop]
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        field = fields.get(key, Field())
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            if isinstance(result.get(key), dict):
                merged = _merge_map(result[key], value, field.fields or _NO_FIELDS)
            else:
                merged = _merge_map(None, value, field.fields or _NO_FIELDS)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            result[key] = _merge_list(result.get(key), value, field)
        else:
            result[key] = value
    for key, value in patch.items():
        if key.startswith(_ORDER):
            name = key[len(_ORDER) :]
            if isinstance(result.get(name), list) and isinstance(value, list):
                result[name] = _order(result[name], value, fields.get(name, Field()))
    return result


def _merge_list(original: Any, patch: list[Any], field: Field) -> list[Any]:
    current = list(original) if isinstance(original, list) else []
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return [_clean(item) for item in patch if not (isinstance(item, dict) and "$patch" in item)]
    if field.merge_primitives:
        for item in patch:
            if item not in current:
                current.append(item)
        return current
    if field.merge_key is None:
        return _clean(patch)
    key = field.merge_key
    for item in patch:
        if not isinstance(item, dict):
            raise PatchError(f"list merged by {key!r} holds a non-object element: {item!r}")
        if key not in item:
            if item.get("$patch") == "delete" and len(item) == 1:
                return []  # {"$patch": "delete"} alone deletes the whole list
            raise PatchError(f"map: {item} does not contain declared merge key: {key}")
        at = next(
            (
                i
                for i, el in enumerate(current)
                if isinstance(el, dict) and el.get(key) == item[key]
            ),
            None,
        )
        if item.get("$patch") == "delete":
            current = [
                el for el in current if not (isinstance(el, dict) and el.get(key) == item[key])
            ]
            continue
        if at is None:
            merged = _merge_map(None, item, field.fields or _NO_FIELDS)
            if merged is not None:
                current.append(merged)
        else:
            merged = _merge_map(current[at], item, field.fields or _NO_FIELDS)
            if merged is None:
                current.pop(at)
            else:
                current[at] = merged
    return current


def _order(items: list[Any], order: list[Any], field: Field) -> list[Any]:
    """``$setElementOrder``: listed elements in the given order; the others keep their place
    after them, in their current order."""
    key = field.merge_key

    def identity(item: Any) -> Any:
        if key is not None and isinstance(item, dict):
            return item.get(key)
        return item

    wanted = [identity(o) for o in order]
    listed = {w: n for n, w in enumerate(wanted)}
    ordered = sorted((i for i in items if identity(i) in listed), key=lambda i: listed[identity(i)])
    rest = [i for i in items if identity(i) not in listed]
    return ordered + rest
