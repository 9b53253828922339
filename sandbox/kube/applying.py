"""Server-side apply and field ownership, as pure functions on plain dicts.

``metadata.managedFields`` lists, per *manager* (a name, an operation ``Apply`` or ``Update``
and an optional subresource), the fields it owns (``fieldsets``). Two writes change them:

* ``record_update`` — a create, PUT or non-apply PATCH: the writer takes the fields it added or
  changed (other managers lose them), fields it removed leave every manager;
* ``apply`` — a server-side apply: the applied configuration is merged into the live object
  (maps and associative / set lists field by field, atomic values whole); a field it changes
  that another manager owns is a conflict (``ApplyConflict``) unless forced, which moves the
  field to the applier; the applier then owns exactly the fields of its configuration, and
  fields it owned before but no longer applies are removed from the object unless another
  manager owns them. Applying a value that is already there shares the field.

A write whose object sets ``managedFields`` to something other than the stored ones replaces
them (``[]`` clears them: the write records nothing). Entries left without fields are dropped;
an entry's time changes only when its fields do, so a no-op write stays a no-op.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any

from sandbox.kube import fieldsets
from sandbox.kube.fieldsets import FieldSet, Path, Schema, Schemas

Obj = dict[str, Any]
APPLY = "Apply"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
UPDATE = "Update"


@dataclasses.dataclass(frozen=True)
class Operation:
    """Who writes, how, through which version and subresource, and when."""

    manager: str
    operation: str  # APPLY or UPDATE
    api_version: str
    time: str
    subresource: str | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.manager, self.operation, self.subresource or "")


@dataclasses.dataclass
class Managed:
    """One ``managedFields`` entry with its field set decoded."""

    manager: str
    operation: str
    api_version: str
    time: str | None
    subresource: str | None
    fields: FieldSet

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.manager, self.operation, self.subresource or "")

    def describe(self) -> str:
        """How conflicts name the manager: ``"kubectl" using apps/v1`` for an Update."""
        text = json.dumps(self.manager)
        if self.subresource:
            text += f" with subresource {json.dumps(self.subresource)}"
        if self.operation == UPDATE:
            text += f" using {self.api_version}"
        return text


class ManagedFieldsError(ValueError):
    """``metadata.managedFields`` that cannot be read; the message names the entry and field."""


class ApplyConflict(Exception):
    """Fields an apply would change that other managers own."""

    def __init__(self, conflicts: list[tuple[Managed, Path]]) -> None:
        self.conflicts = conflicts
        super().__init__(self.message)

    @property
    def causes(self) -> list[dict[str, str]]:
        return [
            {
                "type": "FieldManagerConflict",
                "message": f"conflict with {owner.describe()}",
                "field": fieldsets.path_string(path),
            }
            for owner, path in self.conflicts
        ]

    @property
    def message(self) -> str:
        if len(self.conflicts) == 1:
            owner, path = self.conflicts[0]
            return (
                f"Apply failed with 1 conflict: conflict with {owner.describe()}: "
                f"{fieldsets.path_string(path)}"
            )
        by_owner: dict[str, list[str]] = {}
        for owner, path in self.conflicts:
            by_owner.setdefault(owner.describe(), []).append(fieldsets.path_string(path))
        lines = []
        for owner_text in sorted(by_owner):
            lines.append(f"conflicts with {owner_text}:")
            lines.extend(f"- {p}" for p in by_owner[owner_text])
        return f"Apply failed with {len(self.conflicts)} conflicts: " + "\n".join(lines)


# ---------------------------------------------------------------------------- entries


def decode(entries: Any) -> list[Managed]:
    """``metadata.managedFields`` → entries; ``ManagedFieldsError`` naming what is wrong."""
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise ManagedFieldsError(
            f"metadata.managedFields: expected a list, got {type(entries).__name__}"
        )
    out = []
    for i, entry in enumerate(entries):
        where = f"metadata.managedFields[{i}]"
        if not isinstance(entry, dict):
            raise ManagedFieldsError(f"{where}: expected an object, got {type(entry).__name__}")
        operation = entry.get("operation")
        if operation not in (APPLY, UPDATE):
            raise ManagedFieldsError(
                f"{where}.operation: Unsupported value: {json.dumps(operation)}: supported "
                'values: "Apply", "Update"'
            )
        fields_type = entry.get("fieldsType", "FieldsV1")
        if fields_type != "FieldsV1":
            raise ManagedFieldsError(
                f"{where}.fieldsType: Unsupported value: {json.dumps(fields_type)}: supported "
                'values: "FieldsV1"'
            )
        try:
            fields = fieldsets.from_fields_v1(entry.get("fieldsV1") or {}, f"{where}.fieldsV1")
        except fieldsets.FieldSetError as exc:
            raise ManagedFieldsError(str(exc)) from exc
        out.append(
            Managed(
                manager=str(entry.get("manager", "")),
                operation=operation,
                api_version=str(entry.get("apiVersion", "")),
                time=entry.get("time"),
                subresource=entry.get("subresource") or None,
                fields=fields,
            )
        )
    return out


def encode(entries: list[Managed]) -> list[Obj]:
    """Entries → ``metadata.managedFields`` (entries without fields left out)."""
    out = []
    for entry in entries:
        if not entry.fields:
            continue
        item: Obj = {"manager": entry.manager, "operation": entry.operation}
        item["apiVersion"] = entry.api_version
        if entry.time:
            item["time"] = entry.time
        item["fieldsType"] = "FieldsV1"
        item["fieldsV1"] = fieldsets.to_fields_v1(entry.fields)
        if entry.subresource:
            item["subresource"] = entry.subresource
        out.append(item)
    return out


def _base_entries(old: Obj | None, new: Obj) -> list[Managed] | None:
    """The entries a write starts from: the stored ones, or those the write sets explicitly;
    None when the write clears them."""
    stored = ((old or {}).get("metadata") or {}).get("managedFields")
    meta = new.get("metadata") or {}
    if "managedFields" in meta and meta["managedFields"] != stored:
        sent = meta["managedFields"]
        if sent is None:
            return decode(stored)
        if sent == []:
            return None
        return decode(sent)
    return decode(stored)


def _take(entries: list[Managed], op: Operation, fields: FieldSet, changed: bool) -> None:
    """Give ``op``'s manager the entry with ``fields`` (time bumped when they changed)."""
    for entry in entries:
        if entry.key == op.key:
            if entry.fields != fields or entry.api_version != op.api_version or changed:
                entry.time = op.time
            entry.fields = fields
            entry.api_version = op.api_version
            return
    entries.append(
        Managed(op.manager, op.operation, op.api_version, op.time, op.subresource, fields)
    )


# ---------------------------------------------------------------------------- updates


def record_update(
    old: Obj | None, new: Obj, op: Operation, schemas: Schemas, root: Schema | None, scope: str
) -> list[Obj]:
    """The ``managedFields`` after an Update writing ``new`` over ``old`` (None on create)."""
    entries = _base_entries(old, new)
    if entries is None:
        return []
    old_leaves = fieldsets.leaves(old, schemas, root, scope) if old is not None else {}
    new_leaves = fieldsets.leaves(new, schemas, root, scope)
    added, modified, removed = fieldsets.changes(old_leaves, new_leaves)
    touched = added | modified
    if touched or removed:
        for entry in entries:
            if entry.key != op.key:
                entry.fields = {p for p in entry.fields if p not in touched and p not in removed}
    mine = next((e.fields for e in entries if e.key == op.key), set())
    fields = (mine | touched) - removed
    if fields:
        _take(entries, op, fields, bool(touched or removed))
    else:
        entries = [e for e in entries if e.key != op.key]
    return encode(entries)


# ---------------------------------------------------------------------------- apply


def without_nulls(value: Any) -> Any:
    """An applied configuration without ``null`` fields (a null is the field left out)."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def merge(live: Any, config: Any, schemas: Schemas, node: Schema | None) -> Any:
    """``config`` merged into a deep copy of ``live`` (see the module docstring)."""
    result = copy.deepcopy(live)
    return _merge_into(result, config, schemas, schemas.resolve(node))


def _merge_into(live: Any, config: Any, schemas: Schemas, node: Schema | None) -> Any:
    if isinstance(live, dict) and isinstance(config, dict) and not fieldsets.is_atomic_map(node):
        for name, value in config.items():
            if name in live:
                live[name] = _merge_into(live[name], value, schemas, schemas.field(node, name))
            else:
                live[name] = copy.deepcopy(value)
        return live
    if isinstance(live, list) and isinstance(config, list):
        live_keys = fieldsets.list_keys(live, node)
        config_keys = fieldsets.list_keys(config, node)
        if live_keys is not None and config_keys is not None:
            at = {key: i for i, key in enumerate(live_keys)}
            item_node = schemas.items(node)
            for key, item in zip(config_keys, config, strict=True):
                if key not in at:
                    live.append(copy.deepcopy(item))
                elif key.startswith("k:"):
                    live[at[key]] = _merge_into(live[at[key]], item, schemas, item_node)
            return live
    return copy.deepcopy(config)


def apply(
    live: Obj | None,
    config: Obj,
    op: Operation,
    schemas: Schemas,
    root: Schema | None,
    scope: str,
    *,
    force: bool = False,
) -> Obj:
    """The object after applying ``config`` as ``op`` (``live`` None: it is created), with
    its ``managedFields``; ``ApplyConflict`` when other managers own fields it would change."""
    config = without_nulls(config)
    config.setdefault("metadata", {}).pop("managedFields", None)
    applied = set(fieldsets.leaves(config, schemas, root, scope))
    if live is None:
        merged = copy.deepcopy(config)
        merged["metadata"]["managedFields"] = encode(
            [Managed(op.manager, op.operation, op.api_version, op.time, op.subresource, applied)]
        )
        return merged
    entries = decode((live.get("metadata") or {}).get("managedFields"))
    merged = merge(live, config, schemas, root)
    before = fieldsets.leaves(live, schemas, root, scope)
    after = fieldsets.leaves(merged, schemas, root, scope)
    added, modified, removed = fieldsets.changes(before, after)
    changed = added | modified | removed
    others = [e for e in entries if e.key != op.key]
    conflicts = [(e, p) for e in others for p in sorted(e.fields & changed)]
    if conflicts and not force:
        allowed = _client_side_applied(live, op, schemas, root, scope, before)
        conflicts = [(e, p) for e, p in conflicts if p not in allowed]
        if conflicts:
            raise ApplyConflict(conflicts)
    for entry in others:
        entry.fields -= changed
    previous = next((e.fields for e in entries if e.key == op.key), set())
    _prune(merged, previous - applied, applied, others)
    object_changed = bool(changed) or bool(previous - applied)
    _take(entries, op, applied, object_changed)
    merged["metadata"]["managedFields"] = encode(entries)
    return merged


def _client_side_applied(
    live: Obj,
    op: Operation,
    schemas: Schemas,
    root: Schema | None,
    scope: str,
    live_leaves: dict[Path, Any],
) -> FieldSet:
    """Fields kubectl's client-side apply set (its last-applied annotation) that still hold
    the value it set: kubectl's first server-side apply of such an object takes them over
    without conflicts, as the API server allows."""
    if op.manager != "kubectl":
        return set()
    annotations = (live.get("metadata") or {}).get("annotations") or {}
    try:
        last = json.loads(annotations.get(LAST_APPLIED) or "null")
    except ValueError:
        return set()
    if not isinstance(last, dict) or last.get("apiVersion") != op.api_version:
        return set()
    last_leaves = fieldsets.leaves(last, schemas, root, scope)
    return {
        p for p, v in last_leaves.items() if p in live_leaves and fieldsets.same(live_leaves[p], v)
    }


def _prune(obj: Obj, dropped: FieldSet, applied: FieldSet, others: list[Managed]) -> None:
    """Remove the fields an applier let go of that no other manager owns (or owns below)."""
    if not dropped:
        return
    kept: FieldSet = set()
    for entry in others:
        for path in entry.fields:
            kept.update(path[:i] for i in range(1, len(path) + 1))
    owned = kept | applied
    for path in sorted(dropped, key=len):
        if path not in kept and not _is_key_field(path) and _remove(obj, path):
            _drop_empty_parents(obj, path, owned)


def _is_key_field(path: Path) -> bool:
    """A key field of an associative-list element: it goes only with the element."""
    if len(path) < 2 or not path[-2].startswith("k:") or not path[-1].startswith("f:"):
        return False
    try:
        return path[-1][2:] in json.loads(path[-2][2:])
    except ValueError:
        return False


def _remove(obj: Obj, path: Path) -> bool:
    parent = _find(obj, path[:-1])
    if parent is None:
        return False
    index = _locate(parent, path[-1])
    if index is None:
        return False
    del parent[index]
    return True


def _drop_empty_parents(obj: Obj, path: Path, owned: FieldSet) -> None:
    for depth in range(len(path) - 1, 0, -1):
        node = _find(obj, path[:depth])
        if node or node is None or path[:depth] in owned:
            return
        _remove(obj, path[:depth])


def _find(obj: Any, path: Path) -> Any:
    node = obj
    for element in path:
        index = _locate(node, element)
        if index is None:
            return None
        node = node[index]
    return node


def _locate(node: Any, element: str) -> Any:
    """The dict key or list index ``element`` names in ``node``, or None."""
    kind, rest = element[:2], element[2:]
    if kind == "f:":
        return rest if isinstance(node, dict) and rest in node else None
    if not isinstance(node, list):
        return None
    if kind == "i:":
        return int(rest) if rest.isdigit() and int(rest) < len(node) else None
    try:
        wanted = json.loads(rest)
    except ValueError:
        return None
    for i, item in enumerate(node):
        if kind == "v:" and item == wanted:
            return i
        if (
            kind == "k:"
            and isinstance(item, dict)
            and isinstance(wanted, dict)
            and all(item.get(k, fieldsets.KEY_DEFAULTS.get(k)) == v for k, v in wanted.items())
        ):
            return i
    return None
