"""Decoding the Kubernetes protobuf bodies kubectl sends for a few kinds.

kubectl's typed clients (``kubectl create namespace|configmap|secret|serviceaccount|deployment``,
``kubectl create service``, the RBAC kinds, ``kubectl auth can-i``'s SelfSubjectAccessReview) send
``application/vnd.kubernetes.protobuf`` bodies and do not fall back to JSON. The body is the
``k8s\\x00`` magic and a ``runtime.Unknown`` envelope (typeMeta, raw) whose ``raw`` is the
object in the field numbering of the Kubernetes ``generated.proto`` files. This module knows
that numbering for ``ObjectMeta`` and the kinds above, and turns such a body into the JSON
shape; other kinds raise ``Unsupported`` (answered 415).
"""

from __future__ import annotations

import base64
import datetime
from typing import Any

MAGIC = b"k8s\x00"


class Unsupported(ValueError):
    """A protobuf body of a kind (or shape) this decoder does not know."""


# a schema maps field number -> (json name, type, sub-schema or value type)
Schema = dict[int, tuple[str, str, Any]]

_TIME: Schema = {1: ("seconds", "int", None), 2: ("nanos", "int", None)}
_OWNER_REF: Schema = {
    5: ("apiVersion", "string", None),
    1: ("kind", "string", None),
    3: ("name", "string", None),
    4: ("uid", "string", None),
    6: ("controller", "bool", None),
    7: ("blockOwnerDeletion", "bool", None),
}
OBJECT_META: Schema = {
    1: ("name", "string", None),
    2: ("generateName", "string", None),
    3: ("namespace", "string", None),
    5: ("uid", "string", None),
    6: ("resourceVersion", "string", None),
    7: ("generation", "int?", None),
    8: ("creationTimestamp", "time", None),
    9: ("deletionTimestamp", "time", None),
    10: ("deletionGracePeriodSeconds", "int", None),
    11: ("labels", "map", "string"),
    12: ("annotations", "map", "string"),
    13: ("ownerReferences", "messages", _OWNER_REF),
    14: ("finalizers", "strings", None),
}
_REF: Schema = {
    1: ("kind", "string", None),
    2: ("namespace", "string", None),
    3: ("name", "string", None),
    4: ("uid", "string", None),
    5: ("apiVersion", "string", None),
}
_LOCAL_REF: Schema = {1: ("name", "string", None)}

_RESOURCE_ATTRIBUTES: Schema = {
    1: ("namespace", "string", None),
    2: ("verb", "string", None),
    3: ("group", "string", None),
    4: ("version", "string", None),
    5: ("resource", "string", None),
    6: ("subresource", "string", None),
    7: ("name", "string", None),
}
_NON_RESOURCE_ATTRIBUTES: Schema = {1: ("path", "string", None), 2: ("verb", "string", None)}

_POLICY_RULE: Schema = {
    1: ("verbs", "strings", None),
    2: ("apiGroups", "strings", None),
    3: ("resources", "strings", None),
    4: ("resourceNames", "strings", None),
    5: ("nonResourceURLs", "strings", None),
}
_ROLE: Schema = {1: ("metadata", "message", OBJECT_META), 2: ("rules", "messages", _POLICY_RULE)}
_BINDING: Schema = {
    1: ("metadata", "message", OBJECT_META),
    2: (
        "subjects",
        "messages",
        {
            1: ("kind", "string", None),
            2: ("apiGroup", "string", None),
            3: ("name", "string", None),
            4: ("namespace", "string", None),
        },
    ),
    3: (
        "roleRef",
        "message",
        {1: ("apiGroup", "string", None), 2: ("kind", "string", None), 3: ("name", "string", None)},
    ),
}

# the workload kinds ``kubectl create deployment|service`` send; status is not decoded, and
# fields outside these schemas (volumes, probes, affinity ...) are dropped
_LABEL_SELECTOR: Schema = {
    1: ("matchLabels", "map", "string"),
    2: (
        "matchExpressions",
        "messages",
        {
            1: ("key", "string", None),
            2: ("operator", "string", None),
            3: ("values", "strings", None),
        },
    ),
}
_CONTAINER: Schema = {
    1: ("name", "string", None),
    2: ("image", "string", None),
    3: ("command", "strings", None),
    4: ("args", "strings", None),
    5: ("workingDir", "string", None),
    6: (
        "ports",
        "messages",
        {
            1: ("name", "string", None),
            2: ("hostPort", "int?", None),
            3: ("containerPort", "int", None),
            4: ("protocol", "string", None),
            5: ("hostIP", "string", None),
        },
    ),
    7: ("env", "messages", {1: ("name", "string", None), 2: ("value", "string", None)}),
    8: (
        "resources",
        "message",
        {1: ("limits", "map", "quantity"), 2: ("requests", "map", "quantity")},
    ),
    13: ("terminationMessagePath", "string", None),
    14: ("imagePullPolicy", "string", None),
    16: ("stdin", "bool?", None),
    17: ("stdinOnce", "bool?", None),
    18: ("tty", "bool?", None),
    20: ("terminationMessagePolicy", "string", None),
}
_POD_SPEC: Schema = {
    2: ("containers", "messages", _CONTAINER),
    3: ("restartPolicy", "string", None),
    4: ("terminationGracePeriodSeconds", "int", None),
    6: ("dnsPolicy", "string", None),
    7: ("nodeSelector", "map", "string"),
    8: ("serviceAccountName", "string", None),
    11: ("hostNetwork", "bool?", None),
    15: ("imagePullSecrets", "messages", _LOCAL_REF),
    19: ("schedulerName", "string", None),
    20: ("initContainers", "messages", _CONTAINER),
}
_DEPLOYMENT: Schema = {
    1: ("metadata", "message", OBJECT_META),
    2: (
        "spec",
        "message",
        {
            1: ("replicas", "int", None),
            2: ("selector", "message", _LABEL_SELECTOR),
            3: (
                "template",
                "message",
                {1: ("metadata", "message", OBJECT_META), 2: ("spec", "message", _POD_SPEC)},
            ),
            4: (
                "strategy",
                "message",
                {
                    1: ("type", "string", None),
                    2: (
                        "rollingUpdate",
                        "message",
                        {
                            1: ("maxUnavailable", "intorstr", None),
                            2: ("maxSurge", "intorstr", None),
                        },
                    ),
                },
            ),
            5: ("minReadySeconds", "int?", None),
            6: ("revisionHistoryLimit", "int", None),
            7: ("paused", "bool?", None),
            9: ("progressDeadlineSeconds", "int", None),
        },
    ),
}
_SERVICE: Schema = {
    1: ("metadata", "message", OBJECT_META),
    2: (
        "spec",
        "message",
        {
            1: (
                "ports",
                "messages",
                {
                    1: ("name", "string", None),
                    2: ("protocol", "string", None),
                    3: ("port", "int", None),
                    4: ("targetPort", "intorstr", None),
                    5: ("nodePort", "int?", None),
                    6: ("appProtocol", "string", None),
                },
            ),
            2: ("selector", "map", "string"),
            3: ("clusterIP", "string", None),
            4: ("type", "string", None),
            5: ("externalIPs", "strings", None),
            7: ("sessionAffinity", "string", None),
            10: ("externalName", "string", None),
            11: ("externalTrafficPolicy", "string", None),
            12: ("healthCheckNodePort", "int?", None),
            13: ("publishNotReadyAddresses", "bool?", None),
            17: ("ipFamilyPolicy", "string", None),
            18: ("clusterIPs", "strings", None),
            19: ("ipFamilies", "strings", None),
            22: ("internalTrafficPolicy", "string", None),
        },
    ),
}

KINDS: dict[str, Schema] = {
    # kubectl create deployment|service
    "Deployment": _DEPLOYMENT,
    "Service": _SERVICE,
    # kubectl create role|clusterrole|rolebinding|clusterrolebinding
    "Role": _ROLE,
    "ClusterRole": _ROLE,  # aggregationRule is not decoded
    "RoleBinding": _BINDING,
    "ClusterRoleBinding": _BINDING,
    "SelfSubjectAccessReview": {  # kubectl auth can-i
        1: ("metadata", "message", OBJECT_META),
        2: (
            "spec",
            "message",
            {
                1: ("resourceAttributes", "message", _RESOURCE_ATTRIBUTES),
                2: ("nonResourceAttributes", "message", _NON_RESOURCE_ATTRIBUTES),
            },
        ),
    },
    "Namespace": {
        1: ("metadata", "message", OBJECT_META),
        2: ("spec", "message", {1: ("finalizers", "strings", None)}),
        3: ("status", "message", {1: ("phase", "string", None)}),
    },
    "ConfigMap": {
        1: ("metadata", "message", OBJECT_META),
        2: ("data", "map", "string"),
        3: ("binaryData", "map", "bytes"),
        4: ("immutable", "bool", None),
    },
    "Secret": {
        1: ("metadata", "message", OBJECT_META),
        2: ("data", "map", "bytes"),
        3: ("type", "string", None),
        4: ("stringData", "map", "string"),
        5: ("immutable", "bool", None),
    },
    "ServiceAccount": {
        1: ("metadata", "message", OBJECT_META),
        2: ("secrets", "messages", _REF),
        3: ("imagePullSecrets", "messages", _LOCAL_REF),
        4: ("automountServiceAccountToken", "bool", None),
    },
}


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise Unsupported("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int, Any]]:
    """(field number, wire type, value) of every field of a message."""
    out = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            value = data[pos : pos + length]
            pos += length
        elif wire == 1:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire == 5:
            value, pos = data[pos : pos + 4], pos + 4
        else:
            raise Unsupported(f"unsupported protobuf wire type {wire}")
        out.append((number, wire, value))
    return out


def _time(data: bytes) -> str:
    seconds = dict((n, v) for n, _, v in _fields(data)).get(1, 0)
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _map_entry(data: bytes, value_type: str) -> tuple[str, Any]:
    entry = {n: v for n, _, v in _fields(data)}
    key = entry.get(1, b"").decode()
    raw = entry.get(2, b"")
    if value_type == "bytes":
        return key, base64.b64encode(raw).decode()
    if value_type == "quantity":  # resource.Quantity is a message holding its string form
        return key, {n: v for n, _, v in _fields(raw)}.get(1, b"").decode()
    return key, raw.decode()


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _int_or_string(data: bytes) -> int | str:
    """An ``intstr.IntOrString``: type (0 int, 1 string), intVal, strVal."""
    fields = {n: v for n, _, v in _fields(data)}
    if fields.get(1, 0) == 1:
        return bytes(fields.get(3, b"")).decode()
    return _signed(fields.get(2, 0))


def decode_message(data: bytes, schema: Schema) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for number, _wire, value in _fields(data):
        if number not in schema:
            continue  # fields this decoder does not know are dropped
        name, kind, sub = schema[number]
        if kind == "string":
            if value:  # gogo-protobuf writes empty strings too; JSON leaves them out
                out[name] = value.decode()
        elif kind == "int":
            out[name] = _signed(value)
        elif kind == "bool":
            out[name] = bool(value)
        elif kind in ("int?", "bool?"):  # non-pointer fields JSON leaves out when zero
            if value:
                out[name] = bool(value) if kind == "bool?" else _signed(value)
        elif kind == "intorstr":
            out[name] = _int_or_string(value)
        elif kind == "time":
            if value:
                out[name] = _time(value)
        elif kind == "message":
            out[name] = decode_message(value, sub)
        elif kind == "messages":
            out.setdefault(name, []).append(decode_message(value, sub))
        elif kind == "strings":
            out.setdefault(name, []).append(value.decode())
        elif kind == "map":
            key, item = _map_entry(value, sub)
            out.setdefault(name, {})[key] = item
    return out


def decode(body: bytes) -> dict[str, Any]:
    """A protobuf request body as the JSON-shaped object it encodes."""
    if not body.startswith(MAGIC):
        raise Unsupported("the protobuf body does not start with the k8s magic number")
    envelope = {n: v for n, _, v in _fields(body[len(MAGIC) :])}
    type_meta = {n: v for n, _, v in _fields(envelope.get(1, b""))}
    api_version = type_meta.get(1, b"").decode()
    kind = type_meta.get(2, b"").decode()
    schema = KINDS.get(kind)
    if schema is None:
        raise Unsupported(
            f"protobuf bodies are decoded only for {', '.join(sorted(KINDS))}, not {kind or '?'}; "
            "send JSON (kubectl apply -f / create -f)"
        )
    obj = decode_message(envelope.get(2, b""), schema)
    return {"apiVersion": api_version, "kind": kind, **obj}
