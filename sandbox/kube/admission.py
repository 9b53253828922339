"""What the API server does to an object between decoding it and storing it.

* namespace lifecycle: creating in a missing namespace is 404, in a terminating one 403;
* defaulting of the built-in kinds the simulator serves, as a real server's defaulters and
  admission plugins do: Deployment replicas, strategy (RollingUpdate 25%/25%),
  revisionHistoryLimit and progressDeadlineSeconds; pod specs (restartPolicy, dnsPolicy,
  schedulerName, securityContext, terminationGracePeriodSeconds, container
  imagePullPolicy / terminationMessage*, probe timings, port protocol, volume modes); Pods'
  serviceAccountName and priority; Service type, sessionAffinity, port protocol and
  targetPort, a ClusterIP kept across updates (the endpoints controller allocates it);
  Secret type; StatefulSet replicas, podManagementPolicy, updateStrategy and pod
  template; HPA minReplicas and its default CPU metric; Namespace and Pod phase;
* built-in kinds: decoding against their schema (``builtins``, ``decoding``: wrong types and,
  with ``fieldValidation=Strict``, unknown fields are 400s), then defaulting, then semantic
  validation (``validation``: names, selectors, ports ... are 422s);
* custom resources: pruning, ``default:`` values and validation against the CRD schema
  (``schema.admit``) and the name rules; CRDs: name and version checks (``crds.check``).
"""

from __future__ import annotations

from typing import Any

from sandbox.kube import builtins, crds, decoding, schema, validation
from sandbox.kube import registry as registry_mod
from sandbox.kube.config import ClusterSettings
from sandbox.kube.store import Forbidden, NotFound, ResourceType, Store

Obj = dict[str, Any]


_STATUS_RESET_ON_CREATE = {
    registry_mod.DEPLOYMENTS.key,
    registry_mod.REPLICASETS.key,
    registry_mod.HPAS.key,
    registry_mod.STATEFULSETS.key,
    registry_mod.PDBS.key,
}


def check_namespace(store: Store, rtype: ResourceType, namespace: str | None) -> None:
    if not rtype.namespaced or not namespace:
        return
    phase = store.namespace_phase(namespace)
    if phase is None:
        raise NotFound(f'namespaces "{namespace}" not found', name=namespace, kind="namespaces")
    if phase == "Terminating":
        raise Forbidden(
            f"{rtype.qualified} is forbidden: unable to create new content in namespace "
            f"{namespace} because it is being terminated",
            name=namespace,
            kind="namespaces",
        )


_PROBE_DEFAULTS = {
    "timeoutSeconds": 1,
    "periodSeconds": 10,
    "successThreshold": 1,
    "failureThreshold": 3,
}
_VOLUME_MODE = 0o644  # defaultMode of configMap and secret volumes (420)


def _default_probe(probe: Obj) -> None:
    for field, value in _PROBE_DEFAULTS.items():
        probe.setdefault(field, value)
    http_get = probe.get("httpGet")
    if isinstance(http_get, dict):
        http_get.setdefault("path", "/")
        http_get.setdefault("scheme", "HTTP")


def _default_volumes(pod_spec: Obj) -> None:
    for volume in pod_spec.get("volumes") or []:
        for source in ("configMap", "secret"):
            if isinstance(volume.get(source), dict):
                volume[source].setdefault("defaultMode", _VOLUME_MODE)
        if len(volume) == 1 and "name" in volume:  # no source at all: an emptyDir
            volume["emptyDir"] = {}


def _default_containers(pod_spec: Obj) -> None:
    _default_volumes(pod_spec)
    for container in (pod_spec.get("containers") or []) + (pod_spec.get("initContainers") or []):
        if not isinstance(container, dict):
            continue
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            if isinstance(container.get(probe), dict):
                _default_probe(container[probe])
        for env in container.get("env") or []:
            field_ref = (env.get("valueFrom") or {}).get("fieldRef")
            if isinstance(field_ref, dict):
                field_ref.setdefault("apiVersion", "v1")
        image = str(container.get("image", ""))
        tag = image.rsplit("/", 1)[-1]
        if "imagePullPolicy" not in container:
            latest = ":" not in tag or tag.endswith(":latest")
            container["imagePullPolicy"] = "Always" if latest and "@" not in tag else "IfNotPresent"
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        for port in container.get("ports") or []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")
    pod_spec.setdefault("restartPolicy", "Always")
    pod_spec.setdefault("terminationGracePeriodSeconds", 30)
    pod_spec.setdefault("dnsPolicy", "ClusterFirst")
    pod_spec.setdefault("schedulerName", "default-scheduler")
    pod_spec.setdefault("securityContext", {})


def defaults(
    store: Store, settings: ClusterSettings, rtype: ResourceType, obj: Obj, old: Obj | None
) -> None:
    """Fill the fields a real server defaults, in place (``old`` is the stored object)."""
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else None
    if rtype.key == registry_mod.NAMESPACES.key:
        obj.setdefault("status", {}).setdefault("phase", "Active")
        labels = obj["metadata"].setdefault("labels", {})
        labels["kubernetes.io/metadata.name"] = obj["metadata"].get("name", "")
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    elif (
        rtype.key in (registry_mod.DEPLOYMENTS.key, registry_mod.REPLICASETS.key)
        and spec is not None
    ):
        spec.setdefault("replicas", 1)
        if rtype.key == registry_mod.DEPLOYMENTS.key:
            strategy = spec.setdefault("strategy", {})
            strategy.setdefault("type", "RollingUpdate")
            if strategy["type"] == "RollingUpdate":
                rolling = strategy.setdefault("rollingUpdate", {})
                rolling.setdefault("maxUnavailable", "25%")
                rolling.setdefault("maxSurge", "25%")
            spec.setdefault("revisionHistoryLimit", 10)
            spec.setdefault("progressDeadlineSeconds", 600)
        template_spec = (spec.get("template") or {}).get("spec")
        if isinstance(template_spec, dict):
            _default_containers(template_spec)
    elif rtype.key == registry_mod.STATEFULSETS.key and spec is not None:
        spec.setdefault("replicas", 1)
        spec.setdefault("podManagementPolicy", "OrderedReady")
        spec.setdefault("updateStrategy", {"type": "RollingUpdate"})
        if spec["updateStrategy"].get("type") == "RollingUpdate":
            spec["updateStrategy"].setdefault("rollingUpdate", {"partition": 0})
        spec.setdefault("revisionHistoryLimit", 10)
        template_spec = (spec.get("template") or {}).get("spec")
        if isinstance(template_spec, dict):
            _default_containers(template_spec)
    elif rtype.key == registry_mod.PODS.key and spec is not None:
        _default_containers(spec)
        if old is None:  # what the ServiceAccount and Priority admission plugins add
            spec.setdefault("serviceAccountName", "default")
            spec.setdefault("serviceAccount", spec["serviceAccountName"])
            spec.setdefault("enableServiceLinks", True)
            spec.setdefault("priority", 0)
            spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
            obj.setdefault("status", {}).setdefault("phase", "Pending")
    elif rtype.key == registry_mod.SECRETS.key:
        obj.setdefault("type", "Opaque")
    elif rtype.key == registry_mod.HPAS.key and spec is not None:
        spec.setdefault("minReplicas", 1)
        if not spec.get("metrics"):
            spec["metrics"] = [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 80},
                    },
                }
            ]
    elif rtype.key == registry_mod.SERVICES.key and spec is not None:
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        for port in spec.get("ports") or []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")
                port.setdefault("targetPort", port.get("port"))
        if spec["type"] != "ExternalName":
            old_ip = ((old or {}).get("spec") or {}).get("clusterIP")
            if old_ip and not spec.get("clusterIP"):
                spec["clusterIP"] = old_ip
            if spec.get("clusterIP"):  # else the endpoints controller allocates one
                spec["clusterIPs"] = [spec["clusterIP"]]
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
            spec.setdefault("internalTrafficPolicy", "Cluster")
        obj.setdefault("status", {}).setdefault("loadBalancer", {})


def admit(
    store: Store,
    settings: ClusterSettings,
    rtype: ResourceType,
    obj: Obj,
    old: Obj | None,
    field_validation: str,
) -> list[str]:
    """Default and validate an object about to be written; returns warnings.

    On create, the status of kinds with a status subresource is dropped (written through
    ``/status`` only), as the real server's create strategies do.
    """
    reset = rtype.custom or rtype.key in _STATUS_RESET_ON_CREATE
    if old is None and reset and "status" in rtype.subresources:
        obj.pop("status", None)
    if rtype.custom:
        warnings = schema.admit(
            obj,
            rtype.schema,
            kind=rtype.kind,
            group=rtype.group,
            version=rtype.version,
            field_validation=field_validation,
        )
        validation.check(rtype, obj)
        return warnings
    kind_schema = builtins.SCHEMAS.get((rtype.group, rtype.version, rtype.plural))
    warnings = []
    if kind_schema is not None:
        warnings = decoding.decode(
            obj,
            kind_schema,
            kind=rtype.kind,
            version=rtype.version,
            field_validation=field_validation,
        )
    if rtype.key == registry_mod.CRDS.key:
        crds.check(obj)
        return warnings
    defaults(store, settings, rtype, obj, old)
    validation.check(rtype, obj, old)
    return warnings
