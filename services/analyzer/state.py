"""Where the analyzer reads and writes canary state.

Reads come from the watcher's observations in JetStream KV (canaries, workloads, metric
templates): no Kubernetes read on the hot path. The one write is the Canary's status
subresource, as Flagger keeps it, with compare-and-set on ``resourceVersion`` so that two
analyzer replicas can never both commit a step of the same canary.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import TypeVar

import msgspec
from nats.js.kv import KeyValue

from libs import bus, errors, lifecycle, messages
from libs.adapters import kubernetes
from libs.model import canary as canary_model
from libs.model import meta, templates
from services.analyzer import machine

T = TypeVar("T")


class KvObservations:
    def __init__(
        self,
        rt: lifecycle.Runtime,
        canaries: KeyValue,
        workloads: KeyValue,
        templates_kv: KeyValue,
    ) -> None:
        self.rt = rt
        self.canaries = canaries
        self.workloads = workloads
        self.templates_kv = templates_kv

    async def _read(self, kv: KeyValue, key: str, decoder: msgspec.json.Decoder[T]) -> T | None:
        try:
            with bus.nats_errors(f"reading {key}", self.rt.settings.nats_request_timeout_s):
                entry = await kv.get(key)
        except errors.NotFound:
            return None
        if not entry.value:
            return None
        return bus.decode(decoder, entry.value)

    async def canary(self, namespace: str, name: str) -> messages.CanaryObservation | None:
        key = messages.canary_key(namespace, name)
        return await self._read(self.canaries, key, messages.CANARY_OBSERVATION_DECODER)

    async def workload(self, namespace: str, name: str) -> messages.WorkloadObservation | None:
        key = messages.workload_key(namespace, name)
        return await self._read(self.workloads, key, messages.OBSERVATION_DECODER)

    async def template(self, namespace: str, name: str) -> templates.MetricTemplate | None:
        key = messages.template_key(namespace, name)
        observed = await self._read(self.templates_kv, key, messages.TEMPLATE_OBSERVATION_DECODER)
        if observed is None:
            return None
        if observed.template is None:
            raise errors.InvalidInput(
                f"MetricTemplate {namespace}/{name} is invalid: {'; '.join(observed.problems)}"
            )
        return observed.template


def merge_patch(old: object, new: object) -> object:
    """The JSON merge patch (RFC 7386) that turns ``old`` into ``new``: what ``new`` no longer
    has becomes null (removed), so a cleared field does not survive the merge."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    patch = {key: merge_patch(old.get(key), value) for key, value in new.items()}
    patch.update({key: None for key in old if key not in new})
    return patch


class KubeStatusWriter:
    """Writes ``status`` through the status subresource, conditional on ``resourceVersion``."""

    def __init__(self, kube: kubernetes.Kube) -> None:
        self.kube = kube

    async def write(
        self,
        canary: canary_model.Canary,
        resource_version: str,
        status: canary_model.CanaryStatus,
    ) -> None:
        old = msgspec.to_builtins(canary.status) if canary.status is not None else {}
        body = {
            "metadata": {"resourceVersion": resource_version},
            "status": merge_patch(old, msgspec.to_builtins(status)),
        }
        await self.kube.patch_status(
            kubernetes.CANARIES, canary.metadata.namespace or "", canary.metadata.name or "", body
        )

    async def mark_invalid(
        self, ref: messages.CanaryRef, resource_version: str, message: str
    ) -> None:
        # a rare path (once per spec version): the conditions are read to keep the others
        obj = await self.kube.get(kubernetes.CANARIES, ref.namespace, ref.name)
        conditions = [
            c
            for c in ((obj.get("status") or {}).get("conditions") or [])
            if isinstance(c, dict) and c.get("type") != "Valid"
        ]
        old = next(
            (
                c
                for c in (obj.get("status") or {}).get("conditions") or []
                if c.get("type") == "Valid"
            ),
            None,
        )
        if old is not None and old.get("status") == "False" and old.get("message") == message:
            return
        now = machine.rfc3339(messages.now_ms())
        conditions.append(
            {
                "type": "Valid",
                "status": "False",
                "reason": "InvalidSpec",
                "message": message,
                "lastTransitionTime": now,
                "lastUpdateTime": now,
            }
        )
        body = {
            "metadata": {
                "resourceVersion": str((obj.get("metadata") or {}).get("resourceVersion", ""))
            },
            "status": {"conditions": conditions},
        }
        await self.kube.patch_status(kubernetes.CANARIES, ref.namespace, ref.name, body)


class KubeCanaries:
    """A Canary read now from Kubernetes (control requests decide on the live object)."""

    def __init__(self, kube: kubernetes.Kube) -> None:
        self.kube = kube

    async def __call__(self, ref: messages.CanaryRef) -> tuple[canary_model.Canary, str]:
        """The Canary and its resourceVersion; NotFound, or InvalidInput listing problems."""
        obj = await self.kube.get(kubernetes.CANARIES, ref.namespace, ref.name)
        version = str((obj.get("metadata") or {}).get("resourceVersion") or "")
        return canary_model.parse_canary(meta.slim(obj)), version


class KubeSecrets:
    """A MetricTemplate provider's Secret, read when a check needs it (never cached here)."""

    def __init__(self, kube: kubernetes.Kube) -> None:
        self.kube = kube

    async def __call__(self, namespace: str, name: str) -> Mapping[str, bytes | str]:
        obj = await self.kube.get(kubernetes.SECRETS, namespace, name)
        out: dict[str, bytes | str] = {}
        for key, value in (obj.get("data") or {}).items():
            try:
                out[str(key)] = base64.b64decode(str(value), validate=True)
            except binascii.Error:
                continue
        for key, value in (obj.get("stringData") or {}).items():
            out[str(key)] = str(value)
        return out
