"""A container's environment as the kubelet computes it: ``envFrom``, then ``env`` with
``valueFrom`` (fieldRef, configMapKeyRef, secretKeyRef) and ``$(VAR)`` references resolved.

A missing ConfigMap/Secret/key is logged and the variable left out (a real kubelet refuses to
start the container with CreateContainerConfigError unless the reference is optional).
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from collections.abc import Mapping
from typing import Any

from sandbox.kube import registry
from sandbox.kube import store as kstore

log = logging.getLogger(__name__)

_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)")
_LABEL_PATH = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


def _source(store: kstore.Store, namespace: str, kind: str, name: str) -> dict[str, str] | None:
    rtype = registry.CONFIGMAPS if kind == "configmap" else registry.SECRETS
    try:
        obj = store.get(rtype, namespace, name)
    except kstore.NotFound:
        return None
    data = dict(obj.get("data") or {})
    if kind == "secret":
        decoded = {}
        for key, value in data.items():
            try:
                decoded[key] = base64.b64decode(value).decode()
            except (binascii.Error, UnicodeDecodeError, ValueError):
                decoded[key] = ""
        decoded.update(obj.get("stringData") or {})
        return decoded
    return data


def field_value(pod: Mapping[str, Any], path: str) -> str | None:
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.podIP": status.get("podIP"),
        "status.hostIP": status.get("hostIP"),
    }
    if path in simple:
        value = simple[path]
        return None if value is None else str(value)
    match = _LABEL_PATH.match(path)
    if match:
        value = (meta.get(match.group(1)) or {}).get(match.group(2))
        return None if value is None else str(value)
    return None


def resolve(
    store: kstore.Store, pod: Mapping[str, Any], container: Mapping[str, Any]
) -> list[dict[str, str]]:
    namespace = (pod.get("metadata") or {}).get("namespace") or "default"
    pod_name = (pod.get("metadata") or {}).get("name")
    env: dict[str, str] = {}
    for src in container.get("envFrom") or ():
        prefix = src.get("prefix") or ""
        for kind, field in (("configmap", "configMapRef"), ("secret", "secretRef")):
            ref = src.get(field)
            if not ref:
                continue
            data = _source(store, namespace, kind, ref.get("name", ""))
            if data is None:
                if not ref.get("optional"):
                    log.warning("pod %s: envFrom %s %r not found", pod_name, kind, ref.get("name"))
                continue
            for key, text in data.items():
                env[prefix + key] = str(text)
    for item in container.get("env") or ():
        name = item.get("name")
        if not name:
            continue
        if "valueFrom" not in item:
            raw = "" if item.get("value") is None else str(item["value"])
            env[name] = _REF.sub(lambda m: env.get(m.group(1), m.group(0)), raw)
            continue
        value_from = item["valueFrom"] or {}
        value: str | None = None
        if "fieldRef" in value_from:
            value = field_value(pod, (value_from["fieldRef"] or {}).get("fieldPath", ""))
        for kind, field in (("configmap", "configMapKeyRef"), ("secret", "secretKeyRef")):
            ref = value_from.get(field)
            if not ref:
                continue
            data = _source(store, namespace, kind, ref.get("name", ""))
            value = None if data is None else data.get(ref.get("key", ""))
            if value is None and not ref.get("optional"):
                log.warning(
                    "pod %s: env %s: %s %s key %s not found",
                    pod_name,
                    name,
                    kind,
                    ref.get("name"),
                    ref.get("key"),
                )
        if value is not None:
            env[name] = value
    return [{"name": k, "value": v} for k, v in env.items()]
