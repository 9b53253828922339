"""CustomResourceDefinitions generated from the model, so the CRDs and the model cannot drift.

``python -m libs.model.crds deploy/crds`` writes one file per CRD; a unit test fails when the
files differ from what the model generates. The schemas are structural (every field typed;
``x-kubernetes-preserve-unknown-fields`` only for free-form JSON such as plugin configs and
mesh-only Canary service fields, ``x-kubernetes-int-or-string`` for ``int | str``).
Printer columns, categories and names follow Flagger's own ``artifacts/flagger/crd.yaml``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import msgspec.inspect as mi
import yaml

from libs.model import (
    alerts,
    apisixpluginconfig,
    apisixroute,
    apisixupstream,
    canary,
    meta,
    templates,
)

Schema = dict[str, Any]
HEADER = "# Generated from libs/model by `python -m libs.model.crds deploy/crds`; do not edit.\n"

_ANALYSIS_ONE_OF = [
    {"required": ["interval", "threshold", "iterations"]},
    {"required": ["interval", "threshold", "stepWeight"]},
    {"required": ["interval", "threshold", "stepWeights"]},
]


def schema_of(t: mi.Type) -> Schema:
    """The OpenAPI v3 (structural) schema of a msgspec type."""
    if isinstance(t, mi.Metadata):
        return schema_of(t.type)
    if isinstance(t, mi.StructType):
        return _struct_schema(t)
    if isinstance(t, mi.UnionType):
        members = [m for m in t.types if not isinstance(m, mi.NoneType)]
        if len(members) == 1:
            return schema_of(members[0])
        bare = {type(_unwrap(m)) for m in members}
        if bare == {mi.IntType, mi.StrType}:
            return {"x-kubernetes-int-or-string": True}
        return {"x-kubernetes-preserve-unknown-fields": True}
    if isinstance(t, mi.ListType | mi.VarTupleType):
        return {"type": "array", "items": schema_of(t.item_type)}
    if isinstance(t, mi.DictType):
        if isinstance(t.value_type, mi.AnyType):
            return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        return {"type": "object", "additionalProperties": schema_of(t.value_type)}
    if isinstance(t, mi.AnyType):
        return {"x-kubernetes-preserve-unknown-fields": True}
    if isinstance(t, mi.BoolType):
        return {"type": "boolean"}
    if isinstance(t, mi.IntType):
        schema: Schema = {"type": "integer"}
        if t.ge is not None:
            schema["minimum"] = t.ge
        if t.le is not None:
            schema["maximum"] = t.le
        return schema
    if isinstance(t, mi.FloatType):
        return {"type": "number"}
    if isinstance(t, mi.StrType):
        schema = {"type": "string"}
        if t.pattern:
            schema["pattern"] = t.pattern
        if t.min_length:
            schema["minLength"] = t.min_length
        return schema
    if isinstance(t, mi.LiteralType):
        return {"type": "string", "enum": list(t.values)}
    if isinstance(t, mi.EnumType):
        return {"type": "string", "enum": [member.value for member in t.cls]}
    raise TypeError(f"no CRD schema for {t!r}")


def _unwrap(t: mi.Type) -> mi.Type:
    while isinstance(t, mi.Metadata):
        t = t.type
    return t


def _struct_schema(t: mi.StructType) -> Schema:
    if t.cls is meta.ObjectMeta:
        return {"type": "object"}
    schema: Schema = {"type": "object"}
    doc = (t.cls.__doc__ or "").strip().splitlines()
    if doc:
        schema["description"] = doc[0].replace("``", "")
    required = [f.encode_name for f in t.fields if f.required]
    if required:
        schema["required"] = required
    schema["properties"] = {f.encode_name: schema_of(f.type) for f in t.fields}
    if not t.forbid_unknown_fields:
        schema["x-kubernetes-preserve-unknown-fields"] = True
    return schema


def _object_schema(model: type) -> Schema:
    """The top-level schema of a kind: apiVersion, kind, metadata, spec and status."""
    schema = schema_of(mi.type_info(model))
    schema["required"] = ["spec"]
    return schema


def _crd(
    *,
    group: str,
    kind: str,
    plural: str,
    version: str,
    schema: Schema,
    columns: list[Schema],
    categories: list[str] | None = None,
    short_names: list[str] | None = None,
) -> Schema:
    names: Schema = {
        "kind": kind,
        "listKind": f"{kind}List",
        "plural": plural,
        "singular": kind.lower(),
    }
    if short_names:
        names["shortNames"] = short_names
    if categories:
        names["categories"] = categories
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "names": names,
            "scope": "Namespaced",
            "versions": [
                {
                    "name": version,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def _column(name: str, kind: str, path: str, priority: int = 0) -> Schema:
    column: Schema = {"name": name, "type": kind, "jsonPath": path}
    if priority:
        column["priority"] = priority
    return column


def canary_crd() -> Schema:
    """``canaries.flagger.app``."""
    schema = _object_schema(canary.Canary)
    spec = schema["properties"]["spec"]
    spec["anyOf"] = [{"required": ["analysis"]}, {"required": ["canaryAnalysis"]}]
    for key in ("analysis", "canaryAnalysis"):
        spec["properties"][key]["oneOf"] = _ANALYSIS_ONE_OF
    columns = [
        _column("Status", "string", ".status.phase"),
        _column("Weight", "string", ".status.canaryWeight"),
        _column("Suspended", "boolean", ".spec.suspend", 1),
        _column("FailedChecks", "string", ".status.failedChecks", 1),
        _column("Interval", "string", ".spec.analysis.interval", 1),
        _column("Mirror", "boolean", ".spec.analysis.mirror", 1),
        _column("StepWeight", "string", ".spec.analysis.stepWeight", 1),
        _column("StepWeights", "string", ".spec.analysis.stepWeights", 1),
        _column("MaxWeight", "string", ".spec.analysis.maxWeight", 1),
        _column("LastTransitionTime", "string", ".status.lastTransitionTime"),
    ]
    return _crd(
        group="flagger.app",
        kind="Canary",
        plural="canaries",
        version="v1beta1",
        schema=schema,
        columns=columns,
        categories=["all"],
    )


def metric_template_crd() -> Schema:
    """``metrictemplates.flagger.app``."""
    return _crd(
        group="flagger.app",
        kind="MetricTemplate",
        plural="metrictemplates",
        version="v1beta1",
        schema=_object_schema(templates.MetricTemplate),
        columns=[_column("Provider", "string", ".spec.provider.type")],
        categories=["all"],
    )


def alert_provider_crd() -> Schema:
    """``alertproviders.flagger.app``."""
    schema = _object_schema(alerts.AlertProvider)
    schema["properties"]["spec"]["anyOf"] = [
        {"required": ["address"]},
        {"required": ["secretRef"]},
    ]
    return _crd(
        group="flagger.app",
        kind="AlertProvider",
        plural="alertproviders",
        version="v1beta1",
        schema=schema,
        columns=[_column("Type", "string", ".spec.type")],
        categories=["all"],
    )


def apisix_route_crd() -> Schema:
    """``apisixroutes.apisix.apache.org`` (v2)."""
    schema = _object_schema(apisixroute.ApisixRoute)
    columns = [
        _column("Hosts", "string", ".spec.http[*].match.hosts"),
        _column("URIs", "string", ".spec.http[*].match.paths"),
        _column("Target Service (HTTP)", "string", ".spec.http[*].backends[*].serviceName", 1),
        _column("Ingress Server Port (TCP)", "integer", ".spec.stream[*].match.ingressPort", 1),
        _column("Target Service (TCP)", "string", ".spec.stream[*].backend.serviceName", 1),
        _column("Age", "date", ".metadata.creationTimestamp"),
    ]
    return _crd(
        group="apisix.apache.org",
        kind="ApisixRoute",
        plural="apisixroutes",
        version="v2",
        schema=schema,
        columns=columns,
        short_names=["ar"],
    )


def apisix_upstream_crd() -> Schema:
    """``apisixupstreams.apisix.apache.org`` (v2; the controller's CRD has no printer columns)."""
    return _crd(
        group="apisix.apache.org",
        kind="ApisixUpstream",
        plural="apisixupstreams",
        version="v2",
        schema=_object_schema(apisixupstream.ApisixUpstream),
        columns=[],
        short_names=["au"],
    )


def apisix_plugin_config_crd() -> Schema:
    """``apisixpluginconfigs.apisix.apache.org`` (v2)."""
    return _crd(
        group="apisix.apache.org",
        kind="ApisixPluginConfig",
        plural="apisixpluginconfigs",
        version="v2",
        schema=_object_schema(apisixpluginconfig.ApisixPluginConfig),
        columns=[_column("Age", "date", ".metadata.creationTimestamp")],
        short_names=["apc"],
    )


def all_crds() -> dict[str, Schema]:
    """File name → CRD, for every CRD Sluice ships."""
    crds = [
        canary_crd(),
        metric_template_crd(),
        alert_provider_crd(),
        apisix_route_crd(),
        apisix_upstream_crd(),
        apisix_plugin_config_crd(),
    ]
    return {f"{crd['metadata']['name']}.yaml": crd for crd in crds}


def render(crd: Schema) -> str:
    """The YAML text of one CRD file."""
    return HEADER + yaml.safe_dump(crd, sort_keys=False, default_flow_style=False, width=100)


def write(directory: Path) -> list[Path]:
    """Write every CRD file into ``directory``; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, crd in all_crds().items():
        path = directory / name
        path.write_text(render(crd), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for written_path in write(Path(sys.argv[1] if len(sys.argv) > 1 else "deploy/crds")):
        print(written_path)
