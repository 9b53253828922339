"""Discovery documents: ``/version``, ``/api``, ``/apis``, ``/api/v1``, ``/apis/<g>/<v>``.

Both forms clients ask for are served: the plain ``APIVersions`` / ``APIGroupList`` /
``APIResourceList`` documents, and aggregated discovery (``APIGroupDiscoveryList``,
apidiscovery.k8s.io v2 and v2beta1) that kubectl 1.32 prefers. Everything is computed from the
``Registry`` on each request, so CRDs appear and disappear at once.
"""

from __future__ import annotations

import collections
from typing import Any

from sandbox.kube import registry as registry_mod
from sandbox.kube.store import ResourceType

Doc = dict[str, Any]

KUBE_VERSION = {"major": "1", "minor": "32", "gitVersion": "v1.32.0-sluice-sandbox"}

AGGREGATED_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
AGGREGATED_V2BETA1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"

_SUBRESOURCE_VERBS = ["get", "patch", "update"]


def version() -> Doc:
    return {
        **KUBE_VERSION,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.23.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    }


def aggregated_type(accept: str) -> str | None:
    """The aggregated discovery media type an Accept header prefers, if any."""
    for part in accept.split(","):
        media = part.replace(" ", "")
        if "as=APIGroupDiscoveryList" in media and "g=apidiscovery.k8s.io" in media:
            if "v=v2beta1" in media:
                return AGGREGATED_V2BETA1
            if "v=v2" in media:
                return AGGREGATED_V2
        if media.split(";")[0] in ("application/json", "*/*"):
            return None  # plain JSON is preferred over anything that follows
    return None


def _groups(reg: registry_mod.Registry) -> dict[str, dict[str, list[ResourceType]]]:
    """group -> version -> types, groups and versions in serving order (preferred first)."""
    groups: dict[str, dict[str, list[ResourceType]]] = collections.OrderedDict()
    for rtype in reg.all():
        groups.setdefault(rtype.group, collections.OrderedDict()).setdefault(
            rtype.version, []
        ).append(rtype)
    for group, versions in groups.items():
        preferred = {reg.get(group, t.plural).version for ts in versions.values() for t in ts}  # type: ignore[union-attr]
        ordered = sorted(versions, key=lambda v: (v not in preferred, v))
        groups[group] = collections.OrderedDict((v, versions[v]) for v in ordered)
    return groups


def api_versions() -> Doc:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
    }


def _group_doc(name: str, versions: list[str]) -> Doc:
    entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": entries, "preferredVersion": entries[0]}


def api_group_list(reg: registry_mod.Registry) -> Doc:
    groups = [_group_doc(name, list(versions)) for name, versions in _groups(reg).items() if name]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(reg: registry_mod.Registry, group: str) -> Doc | None:
    versions = _groups(reg).get(group)
    if not group or not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_doc(group, list(versions))}


def _subresource_kind(rtype: ResourceType, sub: str) -> tuple[str, str, str]:
    if sub == "scale":
        return ("autoscaling", "v1", "Scale")
    return (rtype.group, rtype.version, rtype.kind)


def api_resource_list(reg: registry_mod.Registry, group: str, version: str) -> Doc | None:
    types = _groups(reg).get(group, {}).get(version)
    if not types:
        return None
    resources: list[Doc] = []
    for rtype in sorted(types, key=lambda t: t.plural):
        entry: Doc = {
            "name": rtype.plural,
            "singularName": rtype.singular,
            "namespaced": rtype.namespaced,
            "kind": rtype.kind,
            "verbs": list(rtype.verbs),
        }
        if rtype.short_names:
            entry["shortNames"] = list(rtype.short_names)
        if rtype.categories:
            entry["categories"] = list(rtype.categories)
        resources.append(entry)
        for sub in sorted(rtype.subresources):
            sub_group, sub_version, sub_kind = _subresource_kind(rtype, sub)
            sub_entry: Doc = {
                "name": f"{rtype.plural}/{sub}",
                "singularName": "",
                "namespaced": rtype.namespaced,
                "kind": sub_kind,
                "verbs": list(_SUBRESOURCE_VERBS),
            }
            if sub == "scale":
                sub_entry["group"] = sub_group
                sub_entry["version"] = sub_version
            resources.append(sub_entry)
    group_version = f"{group}/{version}" if group else version
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }


def _resource_discovery(rtype: ResourceType) -> Doc:
    entry: Doc = {
        "resource": rtype.plural,
        "responseKind": {"group": rtype.group, "version": rtype.version, "kind": rtype.kind},
        "scope": "Namespaced" if rtype.namespaced else "Cluster",
        "singularResource": rtype.singular,
        "verbs": list(rtype.verbs),
    }
    if rtype.short_names:
        entry["shortNames"] = list(rtype.short_names)
    if rtype.categories:
        entry["categories"] = list(rtype.categories)
    subs = []
    for sub in sorted(rtype.subresources):
        group, version, kind = _subresource_kind(rtype, sub)
        subs.append(
            {
                "subresource": sub,
                "responseKind": {"group": group, "version": version, "kind": kind},
                "verbs": list(_SUBRESOURCE_VERBS),
            }
        )
    if subs:
        entry["subresources"] = subs
    return entry


def aggregated(reg: registry_mod.Registry, media_type: str, *, legacy: bool) -> Doc:
    """``APIGroupDiscoveryList`` for ``/api`` (legacy=True) or ``/apis``."""
    items = []
    for group, versions in _groups(reg).items():
        if (group == "") != legacy:
            continue
        items.append(
            {
                "metadata": {"name": group, "creationTimestamp": None},
                "versions": [
                    {
                        "version": version,
                        "resources": [
                            _resource_discovery(t) for t in sorted(types, key=lambda t: t.plural)
                        ],
                        "freshness": "Current",
                    }
                    for version, types in versions.items()
                ],
            }
        )
    api_version = (
        "apidiscovery.k8s.io/v2beta1" if "v2beta1" in media_type else "apidiscovery.k8s.io/v2"
    )
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": api_version,
        "metadata": {},
        "items": items,
    }
