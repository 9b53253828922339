"""Semantic validation of built-in objects, worded like a real API server's 422s.

After decoding (``decoding``) and defaulting (``admission.defaults``) the server validates:
names (RFC 1123 subdomain for most kinds, RFC 1123 label for Namespaces, RFC 1035 label for
Services), label keys and values, ConfigMap keys, pod specs (containers, ports, probes,
volumes, policies), Deployment and ReplicaSet selectors against their template's labels,
Service ports and type, HPA replica bounds. ``check`` collects every ``FieldError`` and
raises one ``Invalid``::

    Deployment.apps "web" is invalid: spec.template.metadata.labels: Invalid value:
    map[string]string{"app":"x"}: `selector` does not match template `labels`
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from sandbox.kube import registry as registry_mod
from sandbox.kube import selectors
from sandbox.kube.schema import FieldError, invalid
from sandbox.kube.store import ResourceType

Obj = dict[str, Any]
Errors = list[FieldError]

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN = _LABEL + r"(\." + _LABEL + r")*"
_DNS1035 = r"[a-z]([-a-z0-9]*[a-z0-9])?"
_LABEL_VALUE = r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?"
_QUALIFIED_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_CONFIG_KEY = r"[-._a-zA-Z0-9]+"

SUBDOMAIN_MESSAGE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex "
    f"used for validation is '{_SUBDOMAIN}')"
)
LABEL_MESSAGE = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "
    f"used for validation is '{_LABEL}')"
)
DNS1035_MESSAGE = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
    "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
    f"'abc-123', regex used for validation is '{_DNS1035}')"
)
LABEL_VALUE_MESSAGE = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
    f"'my_value',  or '12345', regex used for validation is '{_LABEL_VALUE}')"
)
QUALIFIED_NAME_MESSAGE = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and "
    "end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex "
    f"used for validation is '{_QUALIFIED_NAME}')"
)
CONFIG_KEY_MESSAGE = (
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. "
    f"'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '{_CONFIG_KEY}')"
)
PORT_RANGE = "must be between 1 and 65535, inclusive"


class GoText(str):
    """Text already in Go's ``%#v`` form."""


def go_selector(selector: Obj) -> GoText:
    labels = go_value(selector.get("matchLabels") or {})
    exprs = selector.get("matchExpressions") or []
    shown = json.dumps(exprs) if exprs else "[]v1.LabelSelectorRequirement(nil)"
    return GoText(f"v1.LabelSelector{{MatchLabels:{labels}, MatchExpressions:{shown}}}")


def go_value(value: Any) -> str:
    """A value as Go's ``%#v`` / field.Invalid prints it."""
    if isinstance(value, GoText):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
        if not value:
            return "map[string]string(nil)"
        inner = ", ".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in sorted(value.items()))
        return "map[string]string{" + inner + "}"
    if value is None:
        return "null"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _invalid(path: str, value: Any, detail: str) -> FieldError:
    return FieldError(path, "FieldValueInvalid", f"Invalid value: {go_value(value)}: {detail}")


def _required(path: str, detail: str = "") -> FieldError:
    return FieldError(
        path, "FieldValueRequired", "Required value" + (f": {detail}" if detail else "")
    )


def _unsupported(path: str, value: Any, supported: tuple[str, ...]) -> FieldError:
    shown = ", ".join(json.dumps(s) for s in sorted(supported))
    return FieldError(
        path,
        "FieldValueNotSupported",
        f"Unsupported value: {go_value(value)}: supported values: {shown}",
    )


def _duplicate(path: str, value: Any) -> FieldError:
    return FieldError(path, "FieldValueDuplicate", f"Duplicate value: {go_value(value)}")


def _not_found(path: str, value: Any) -> FieldError:
    return FieldError(path, "FieldValueNotFound", f"Not found: {go_value(value)}")


def _full(pattern: str, value: str) -> bool:
    return re.fullmatch(pattern, value) is not None


def name_errors(value: str, path: str, *, style: str = "subdomain") -> Errors:
    """``style``: ``subdomain`` (253 chars), ``label`` (RFC 1123, 63), ``dns1035`` (63)."""
    limit, pattern, message = {
        "subdomain": (253, _SUBDOMAIN, SUBDOMAIN_MESSAGE),
        "label": (63, _LABEL, LABEL_MESSAGE),
        "dns1035": (63, _DNS1035, DNS1035_MESSAGE),
    }[style]
    errors: Errors = []
    if len(value) > limit:
        errors.append(_invalid(path, value, f"must be no more than {limit} characters"))
    if not _full(pattern, value):
        errors.append(_invalid(path, value, message))
    return errors


def _label_key_errors(key: str, path: str) -> Errors:
    prefix, _, name = key.rpartition("/")
    errors: Errors = []
    if prefix:
        errors += [
            _invalid(path, key, "prefix part " + e.detail.split(": ", 2)[-1])
            for e in name_errors(prefix, path)
        ]
    if not name or len(name) > 63 or not _full(_QUALIFIED_NAME, name):
        errors.append(_invalid(path, key, QUALIFIED_NAME_MESSAGE))
    return errors


def labels_errors(labels: dict[str, str], path: str) -> Errors:
    errors: Errors = []
    for key, value in labels.items():
        errors += _label_key_errors(key, path)
        if len(value) > 63:
            errors.append(_invalid(path, value, "must be no more than 63 characters"))
        if not _full(_LABEL_VALUE, value):
            errors.append(_invalid(path, value, LABEL_VALUE_MESSAGE))
    return errors


def _path_segment_errors(value: str, path: str) -> Errors:
    """RBAC objects' names need only be valid path segments (ValidateRBACName)."""
    if value in (".", ".."):
        return [_invalid(path, value, f"may not be '{value}'")]
    for bad in ("/", "%"):
        if bad in value:
            return [_invalid(path, value, f"may not contain '{bad}'")]
    return []


def metadata_errors(rtype: ResourceType, meta: Obj, path: str = "metadata") -> Errors:
    errors: Errors = []
    style = "subdomain"
    if rtype.key == registry_mod.NAMESPACES.key:
        style = "label"
    elif rtype.key == registry_mod.SERVICES.key:
        style = "dns1035"
    name, prefix = meta.get("name"), meta.get("generateName")
    if rtype.group == "rbac.authorization.k8s.io":  # path segment names: system:controller:x
        for value, field in ((name, "name"), (prefix, "generateName")):
            if value:
                errors += _path_segment_errors(value, f"{path}.{field}")
    elif name:
        errors += name_errors(name, f"{path}.name", style=style)
    elif prefix:  # checked as a prefix: a trailing '-' is fine
        masked = prefix[:-1] + "a" if prefix.endswith("-") else prefix
        errors += [
            FieldError(
                f"{path}.generateName",
                e.reason,
                e.detail.replace(go_value(masked), go_value(prefix), 1),
            )
            for e in name_errors(masked, f"{path}.generateName", style=style)
        ]
    errors += labels_errors(meta.get("labels") or {}, f"{path}.labels")
    for key in meta.get("annotations") or {}:
        errors += _label_key_errors(key, f"{path}.annotations")
    return errors


# ---------------------------------------------------------------------------- pod spec


def _port_errors(value: Any, path: str, *, zero_ok: bool = False) -> Errors:
    if isinstance(value, int):
        if (value == 0 and zero_ok) or 1 <= value <= 65535:
            return []
        return [_invalid(path, value, PORT_RANGE)]
    if isinstance(value, str):  # a named port: an IANA service name
        if not value or len(value) > 15 or not _full(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", value):
            return [
                _invalid(
                    path,
                    value,
                    "must contain only alphanumeric characters (a-z, 0-9), and hyphens (-)",
                )
            ]
        if not re.search("[a-z]", value):
            return [_invalid(path, value, "must contain at least one letter (a-z)")]
    return []


def _probe_errors(probe: Obj, path: str) -> Errors:
    handlers = [h for h in ("exec", "httpGet", "tcpSocket", "grpc") if h in probe]
    errors: Errors = []
    if not handlers:
        errors.append(_required(path, "must specify a handler type"))
    elif len(handlers) > 1:
        errors.append(
            FieldError(
                f"{path}.{handlers[1]}",
                "FieldValueForbidden",
                "Forbidden: may not specify more than 1 handler type",
            )
        )
    for handler in ("httpGet", "tcpSocket"):
        if handler in probe:
            port = probe[handler].get("port")
            if port is None:
                errors.append(_required(f"{path}.{handler}.port"))
            else:
                errors += _port_errors(port, f"{path}.{handler}.port")
    for field in (
        "initialDelaySeconds",
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
    ):
        value = probe.get(field)
        if isinstance(value, int) and value < 0:
            errors.append(_invalid(f"{path}.{field}", value, "must be greater than or equal to 0"))
    return errors


def _container_errors(container: Obj, path: str, volumes: set[str]) -> Errors:
    errors: Errors = []
    name = container.get("name")
    if not name:
        errors.append(_required(f"{path}.name"))
    else:
        errors += name_errors(name, f"{path}.name", style="label")
    if not container.get("image"):
        errors.append(_required(f"{path}.image"))
    policy = container.get("imagePullPolicy")
    if policy is not None and policy not in ("Always", "IfNotPresent", "Never"):
        errors.append(
            _unsupported(f"{path}.imagePullPolicy", policy, ("Always", "IfNotPresent", "Never"))
        )
    seen_ports: set[str] = set()
    for index, port in enumerate(container.get("ports") or []):
        ppath = f"{path}.ports[{index}]"
        if not port.get("containerPort"):
            errors.append(_required(f"{ppath}.containerPort"))
        else:
            errors += _port_errors(port["containerPort"], f"{ppath}.containerPort")
        if "hostPort" in port:
            errors += _port_errors(port["hostPort"], f"{ppath}.hostPort", zero_ok=True)
        if port.get("name"):
            if port["name"] in seen_ports:
                errors.append(_duplicate(f"{ppath}.name", port["name"]))
            seen_ports.add(port["name"])
            errors += _port_errors(port["name"], f"{ppath}.name")
        protocol = port.get("protocol")
        if protocol is not None and protocol not in ("TCP", "UDP", "SCTP"):
            errors.append(_unsupported(f"{ppath}.protocol", protocol, ("SCTP", "TCP", "UDP")))
    for index, env in enumerate(container.get("env") or []):
        if not env.get("name"):
            errors.append(_required(f"{path}.env[{index}].name"))
    for index, mount in enumerate(container.get("volumeMounts") or []):
        mpath = f"{path}.volumeMounts[{index}]"
        if not mount.get("name"):
            errors.append(_required(f"{mpath}.name"))
        elif mount["name"] not in volumes:
            errors.append(_not_found(f"{mpath}.name", mount["name"]))
        if not mount.get("mountPath"):
            errors.append(_required(f"{mpath}.mountPath"))
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        if probe in container:
            errors += _probe_errors(container[probe], f"{path}.{probe}")
    return errors


def pod_spec_errors(
    spec: Obj, path: str, *, restart_policies: tuple[str, ...] = ("Always", "Never", "OnFailure")
) -> Errors:
    errors: Errors = []
    volumes: set[str] = set()
    for index, volume in enumerate(spec.get("volumes") or []):
        vpath = f"{path}.volumes[{index}]"
        name = volume.get("name")
        if not name:
            errors.append(_required(f"{vpath}.name"))
            continue
        if name in volumes:
            errors.append(_duplicate(f"{vpath}.name", name))
        volumes.add(name)
        errors += name_errors(name, f"{vpath}.name", style="label")
    containers = spec.get("containers") or []
    if not containers:
        errors.append(_required(f"{path}.containers"))
    names: set[str] = set()
    for group in ("initContainers", "containers"):
        for index, container in enumerate(spec.get(group) or []):
            cpath = f"{path}.{group}[{index}]"
            errors += _container_errors(container, cpath, volumes)
            name = container.get("name")
            if name:
                if name in names:
                    errors.append(_duplicate(f"{cpath}.name", name))
                names.add(name)
    restart = spec.get("restartPolicy")
    if restart is not None and restart not in restart_policies:
        errors.append(_unsupported(f"{path}.restartPolicy", restart, restart_policies))
    dns = spec.get("dnsPolicy")
    dns_policies = ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None")
    if dns is not None and dns not in dns_policies:
        errors.append(_unsupported(f"{path}.dnsPolicy", dns, dns_policies))
    grace = spec.get("terminationGracePeriodSeconds")
    if isinstance(grace, int) and grace < 0:
        errors.append(
            _invalid(
                f"{path}.terminationGracePeriodSeconds", grace, "must be greater than or equal to 0"
            )
        )
    return errors


# ---------------------------------------------------------------------------- kinds


def _nonnegative(spec: Obj, field: str, path: str) -> Errors:
    value = spec.get(field)
    if isinstance(value, int) and value < 0:
        return [_invalid(f"{path}.{field}", value, "must be greater than or equal to 0")]
    return []


def _workload_errors(obj: Obj) -> Errors:
    """Deployment and ReplicaSet: replicas, selector, template labels, template spec."""
    spec = obj.get("spec") or {}
    errors = _nonnegative(spec, "replicas", "spec") + _nonnegative(spec, "minReadySeconds", "spec")
    selector = spec.get("selector")
    if selector is None:
        errors.append(_required("spec.selector"))
    elif not selector.get("matchLabels") and not selector.get("matchExpressions"):
        errors.append(
            _invalid(
                "spec.selector", go_selector(selector), "empty selector is invalid for deployment"
            )
        )
    else:
        errors += labels_errors(selector.get("matchLabels") or {}, "spec.selector.matchLabels")
    template = spec.get("template")
    if template is None:
        errors.append(_required("spec.template"))
        return errors
    labels = (template.get("metadata") or {}).get("labels") or {}
    if not selectors.label_selector_matches(selector, labels):
        errors.append(
            _invalid(
                "spec.template.metadata.labels",
                labels,
                "`selector` does not match template `labels`",
            )
        )
    errors += labels_errors(labels, "spec.template.metadata.labels")
    errors += pod_spec_errors(
        template.get("spec") or {}, "spec.template.spec", restart_policies=("Always",)
    )
    return errors


def _deployment_errors(obj: Obj) -> Errors:
    errors = _workload_errors(obj)
    spec = obj.get("spec") or {}
    errors += _nonnegative(spec, "revisionHistoryLimit", "spec")
    strategy = spec.get("strategy") or {}
    kind = strategy.get("type")
    if kind is not None and kind not in ("Recreate", "RollingUpdate"):
        errors.append(_unsupported("spec.strategy.type", kind, ("Recreate", "RollingUpdate")))
    if kind == "Recreate" and strategy.get("rollingUpdate") is not None:
        errors.append(
            FieldError(
                "spec.strategy.rollingUpdate",
                "FieldValueForbidden",
                "Forbidden: may not be specified when strategy `type` is 'Recreate'",
            )
        )
    deadline, ready = spec.get("progressDeadlineSeconds"), spec.get("minReadySeconds", 0)
    if isinstance(deadline, int) and deadline <= ready:
        errors.append(
            _invalid(
                "spec.progressDeadlineSeconds", deadline, "must be greater than minReadySeconds"
            )
        )
    return errors


_SERVICE_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")


def _service_errors(obj: Obj) -> Errors:
    spec = obj.get("spec") or {}
    errors: Errors = []
    kind = spec.get("type", "ClusterIP")
    if kind not in _SERVICE_TYPES:
        errors.append(_unsupported("spec.type", kind, _SERVICE_TYPES))
    ports = spec.get("ports") or []
    if kind == "ExternalName":
        if not spec.get("externalName"):
            errors.append(_required("spec.externalName"))
    elif not ports and spec.get("clusterIP") != "None":
        errors.append(_required("spec.ports"))
    affinity = spec.get("sessionAffinity")
    if affinity is not None and affinity not in ("ClientIP", "None"):
        errors.append(_unsupported("spec.sessionAffinity", affinity, ("ClientIP", "None")))
    names: set[str] = set()
    seen: set[tuple[int, str]] = set()
    for index, port in enumerate(ports):
        path = f"spec.ports[{index}]"
        name = port.get("name")
        if len(ports) > 1 and not name:
            errors.append(_required(f"{path}.name"))
        elif name:
            if name in names:
                errors.append(_duplicate(f"{path}.name", name))
            names.add(name)
            errors += name_errors(name, f"{path}.name", style="label")
        number = port.get("port")
        if number is None:
            errors.append(_required(f"{path}.port"))
        else:
            errors += _port_errors(number, f"{path}.port")
        protocol = port.get("protocol", "TCP")
        if protocol not in ("TCP", "UDP", "SCTP"):
            errors.append(_unsupported(f"{path}.protocol", protocol, ("SCTP", "TCP", "UDP")))
        elif (number, protocol) in seen:
            errors.append(_duplicate(path, {"port": number, "protocol": protocol}))
        seen.add((number, protocol))
        if "targetPort" in port:
            errors += _port_errors(port["targetPort"], f"{path}.targetPort")
    errors += labels_errors(spec.get("selector") or {}, "spec.selector")
    return errors


def _hpa_errors(obj: Obj) -> Errors:
    spec = obj.get("spec") or {}
    errors: Errors = []
    ref = spec.get("scaleTargetRef") or {}
    for field in ("kind", "name"):
        if not ref.get(field):
            errors.append(_required(f"spec.scaleTargetRef.{field}"))
    low, high = spec.get("minReplicas", 1), spec.get("maxReplicas")
    if isinstance(low, int) and low < 1:
        errors.append(_invalid("spec.minReplicas", low, "must be greater than or equal to 1"))
    if high is None:
        errors.append(_required("spec.maxReplicas"))
    elif high < 1:
        errors.append(_invalid("spec.maxReplicas", high, "must be greater than 0"))
    elif isinstance(low, int) and high < low:
        errors.append(
            _invalid("spec.maxReplicas", high, "must be greater than or equal to `minReplicas`")
        )
    return errors


def _configmap_errors(obj: Obj) -> Errors:
    errors: Errors = []
    for field in ("data", "binaryData"):
        for key in obj.get(field) or {}:
            if len(key) > 253 or not _full(_CONFIG_KEY, key):
                errors.append(_invalid(f"{field}[{key}]", key, CONFIG_KEY_MESSAGE))
    both = set(obj.get("data") or {}) & set(obj.get("binaryData") or {})
    for key in sorted(both):
        errors.append(_invalid(f"data[{key}]", key, "duplicate of key present in binaryData"))
    return errors


_KIND_CHECKS: dict[tuple[str, str], Callable[[Obj], Errors]] = {
    registry_mod.DEPLOYMENTS.key: _deployment_errors,
    registry_mod.REPLICASETS.key: _workload_errors,
    registry_mod.PODS.key: lambda o: pod_spec_errors(o.get("spec") or {}, "spec"),
    registry_mod.SERVICES.key: _service_errors,
    registry_mod.HPAS.key: _hpa_errors,
    registry_mod.CONFIGMAPS.key: _configmap_errors,
    registry_mod.SECRETS.key: lambda o: [
        _invalid(f"data[{k}]", k, CONFIG_KEY_MESSAGE)
        for k in (o.get("data") or {})
        if not _full(_CONFIG_KEY, k)
    ],
}


def check(rtype: ResourceType, obj: Obj, old: Obj | None = None) -> None:
    """Raise ``Invalid`` (422) with every field error of ``obj``, as a real server would.

    ``old`` (the stored object, on updates) adds the checks of what may not change.
    """
    errors = metadata_errors(rtype, obj.get("metadata") or {})
    kind_check = _KIND_CHECKS.get(rtype.key)
    if kind_check is not None:
        errors += kind_check(obj)
    if old is not None:
        errors += _update_errors(rtype, obj, old)
    if errors:
        name = (obj.get("metadata") or {}).get("name") or ""
        raise invalid(rtype.kind, rtype.group, name, errors)


def _update_errors(rtype: ResourceType, obj: Obj, old: Obj) -> Errors:
    """What may not change: a Deployment's or ReplicaSet's selector (apps/v1)."""
    if rtype.key not in (registry_mod.DEPLOYMENTS.key, registry_mod.REPLICASETS.key):
        return []
    selector = (obj.get("spec") or {}).get("selector")
    if selector != (old.get("spec") or {}).get("selector"):
        return [_invalid("spec.selector", go_selector(selector or {}), "field is immutable")]
    return []
