"""What the notifier reads from Kubernetes to tell about an event: the Canary (its uid for the
Event, its alerts and webhooks), the AlertProviders it names and their Secrets.

Point reads, not informers (the watcher owns bulk reads), cached for a few seconds: a rollout's
burst of events costs one read of each object. Secrets are decoded, kept only as long as the
cache entry, and never logged.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import time
from typing import Any, Generic, TypeVar

from libs import errors
from libs.adapters import kubernetes
from libs.model import alerts

T = TypeVar("T")


@dataclasses.dataclass
class _Entry(Generic[T]):
    value: T
    expires: float


class _Cache(Generic[T]):
    def __init__(self, ttl_s: float, max_entries: int = 4096) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: dict[tuple[str, str], _Entry[T]] = {}

    def get(self, key: tuple[str, str]) -> _Entry[T] | None:
        """The live entry for ``key`` (its value may itself be None: "known not to exist")."""
        entry = self._entries.get(key)
        if entry is not None and entry.expires < time.monotonic():
            del self._entries[key]
            return None
        return entry

    def put(self, key: tuple[str, str], value: T) -> T:
        if len(self._entries) >= self.max_entries:
            self._entries.clear()  # crude but bounded; entries live seconds anyway
        self._entries[key] = _Entry(value, time.monotonic() + self.ttl_s)
        return value


def decode_secret(obj: dict[str, Any]) -> dict[str, str]:
    """A Secret's ``data`` (base64) and ``stringData`` as text."""
    out: dict[str, str] = {}
    for key, value in (obj.get("data") or {}).items():
        try:
            out[str(key)] = base64.b64decode(str(value), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            continue
    for key, value in (obj.get("stringData") or {}).items():
        out[str(key)] = str(value)
    return out


class Lookup:
    def __init__(self, kube: kubernetes.Kube, ttl_s: float = 5.0) -> None:
        self.kube = kube
        self._canaries: _Cache[dict[str, Any] | None] = _Cache(ttl_s)
        self._providers: _Cache[alerts.AlertProvider] = _Cache(ttl_s)
        self._secrets: _Cache[dict[str, str]] = _Cache(ttl_s)

    async def canary(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Canary object, or None when it does not exist (any more)."""
        key = (namespace, name)
        cached = self._canaries.get(key)
        if cached is not None:
            return cached.value
        try:
            obj: dict[str, Any] | None = await self.kube.get(kubernetes.CANARIES, namespace, name)
        except errors.NotFound:
            obj = None
        return self._canaries.put(key, obj)

    async def provider(self, namespace: str, name: str) -> alerts.AlertProvider:
        """An AlertProvider; ``NotFound`` or ``InvalidInput`` (naming its problems)."""
        key = (namespace, name)
        cached = self._providers.get(key)
        if cached is not None:
            return cached.value
        obj = await self.kube.get(kubernetes.ALERT_PROVIDERS, namespace, name)
        return self._providers.put(key, alerts.parse_alert_provider(obj))

    async def secret(self, namespace: str, name: str) -> dict[str, str]:
        key = (namespace, name)
        cached = self._secrets.get(key)
        if cached is not None:
            return cached.value
        obj = await self.kube.get(kubernetes.SECRETS, namespace, name)
        return self._secrets.put(key, decode_secret(obj))
