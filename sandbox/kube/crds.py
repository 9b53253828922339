"""CustomResourceDefinition lifecycle: a stored CRD is a served resource type.

``CrdInstaller`` hooks the store: when a CRD is created or changed its served versions are
registered (printer columns, schema, subresources, shortNames, categories) and its status gets
``NamesAccepted`` and ``Established`` conditions and ``acceptedNames``; when it is deleted the
type goes and so do all its objects. ``install_dir`` creates every CRD found in YAML files
of a directory (``ClusterSettings.crd_dir``) at start-up.
"""

from __future__ import annotations

import logging
import pathlib
from typing import Any

import yaml

from sandbox.kube import registry as registry_mod
from sandbox.kube import store as store_mod
from sandbox.kube.store import Invalid, ResourceType, WatchEvent

log = logging.getLogger(__name__)

Obj = dict[str, Any]


def check(crd: Obj) -> None:
    """Reject a CRD the real server would reject for missing or inconsistent names."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    name = (crd.get("metadata") or {}).get("name", "")
    problems = []
    if not spec.get("group"):
        problems.append(("spec.group", "Required value"))
    if not names.get("plural"):
        problems.append(("spec.names.plural", "Required value"))
    if not names.get("kind"):
        problems.append(("spec.names.kind", "Required value"))
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        problems.append(
            ("spec.scope", 'Unsupported value: supported values: "Cluster", "Namespaced"')
        )
    versions = spec.get("versions") or []
    if sum(1 for v in versions if v.get("storage")) != 1:
        problems.append(
            (
                "spec.versions",
                "Invalid value: must have exactly one version marked as storage version",
            )
        )
    if names.get("plural") and spec.get("group") and name != f"{names['plural']}.{spec['group']}":
        problems.append(
            ("metadata.name", f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group')
        )
    if problems:
        body = "; ".join(f"{f}: {d}" for f, d in problems)
        raise Invalid(
            f'CustomResourceDefinition.apiextensions.k8s.io "{name}" is invalid: {body}',
            name=name,
            group="apiextensions.k8s.io",
            kind="CustomResourceDefinition",
            causes=[{"reason": "FieldValueInvalid", "message": d, "field": f} for f, d in problems],
        )


def types_from(crd: Obj) -> list[ResourceType]:
    """The served versions of a CRD as resource types, the storage version first."""
    spec = crd["spec"]
    names = spec["names"]
    versions = sorted(
        (v for v in spec.get("versions") or [] if v.get("served", True)),
        key=lambda v: not v.get("storage"),
    )
    types = []
    for version in versions:
        subresources = frozenset((version.get("subresources") or {}).keys()) & {"status", "scale"}
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        types.append(
            ResourceType(
                group=spec["group"],
                version=version["name"],
                kind=names["kind"],
                plural=names["plural"],
                singular=names.get("singular") or names["kind"].lower(),
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                subresources=subresources,
                printer_columns=tuple(version.get("additionalPrinterColumns") or ()),
                schema=schema,
                custom=True,
            )
        )
    return types


def _established_status(crd: Obj) -> Obj:
    now = store_mod.now_rfc3339()
    spec = crd["spec"]
    names = dict(spec["names"])
    names.setdefault("singular", names["kind"].lower())
    names.setdefault("listKind", f"{names['kind']}List")
    storage = next(v["name"] for v in spec["versions"] if v.get("storage"))
    return {
        "acceptedNames": names,
        "conditions": [
            {
                "type": "NamesAccepted",
                "status": "True",
                "lastTransitionTime": now,
                "reason": "NoConflicts",
                "message": "no conflicts found",
            },
            {
                "type": "Established",
                "status": "True",
                "lastTransitionTime": now,
                "reason": "InitialNamesAccepted",
                "message": "the initial names have been accepted",
            },
        ],
        "storedVersions": sorted(
            {*((crd.get("status") or {}).get("storedVersions") or []), storage}
        ),
    }


class CrdInstaller:
    """Keeps the registry in step with the stored CRDs (a synchronous store hook)."""

    def __init__(self, store: store_mod.Store, registry: registry_mod.Registry) -> None:
        self._store = store
        self._registry = registry
        store.add_hook(registry_mod.CRDS, self._on_event)

    def _on_event(self, event: WatchEvent) -> None:
        crd = event.object
        if event.type == "DELETED":
            self._uninstall(crd)
        elif not crd["metadata"].get("deletionTimestamp"):
            self._install(crd)

    def _install(self, crd: Obj) -> None:
        types = types_from(crd)
        if not types:
            return
        first = types[0]
        self._registry.remove(first.group, first.plural)
        for rtype in types:
            self._registry.add(rtype)
        self._store.register(first)
        wanted = _established_status(crd)
        current = crd.get("status") or {}
        if (
            current.get("acceptedNames") != wanted["acceptedNames"]
            or current.get("storedVersions") != wanted["storedVersions"]
            or not current.get("conditions")
        ):
            crd = {**crd, "status": wanted}
            self._store.update(registry_mod.CRDS, crd, subresource="status")
        log.debug("crd installed: %s", crd["metadata"]["name"])

    def _uninstall(self, crd: Obj) -> None:
        spec = crd.get("spec") or {}
        group, plural = spec.get("group", ""), (spec.get("names") or {}).get("plural", "")
        rtype = self._registry.get(group, plural)
        self._registry.remove(group, plural)
        if rtype is not None:
            self._store.drop_resource(rtype)
        log.debug("crd removed: %s", crd["metadata"]["name"])


def install_dir(store: store_mod.Store, crd_dir: pathlib.Path) -> list[str]:
    """Create every CRD in the YAML files of ``crd_dir``; returns their names."""
    names = []
    if not crd_dir.is_dir():
        return names
    for path in sorted(crd_dir.glob("*.y*ml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                continue
            check(doc)
            try:
                store.create(registry_mod.CRDS, doc)
            except store_mod.AlreadyExists:
                continue
            names.append(doc["metadata"]["name"])
    return names
