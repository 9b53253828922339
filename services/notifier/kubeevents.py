"""Kubernetes Events on the Canary, the way Flagger's client-go recorder writes them.

What ``kubectl describe canary`` shows is what people and event exporters know from Flagger:
reason ``Synced``, type ``Normal`` for info and ``Warning`` for warn/error, Flagger's message,
source and reporting component ``flagger`` (a setting).

Repeats are aggregated as client-go's event correlator does: the same message for the same
canary again raises ``count`` and ``lastTimestamp`` of one Event instead of creating another,
so describe shows "(x3 over 2m59s)". client-go keeps the seen events in one process's memory;
here the Event's name is derived from what makes it the same (canary, type, reason, message),
so any notifier replica finds and counts it, and the id of the last bus event applied is kept
in an annotation so a redelivered bus event is not counted twice.

Writes per canary are rate-limited by a token bucket (a burst, then a steady rate): a burst of
events is delayed (the bus event is retried later), never dropped. Kubernetes being down is a
temporary error: the bus event comes back and the Event is written then.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import logging
import time
from typing import Any

from libs import errors, messages
from libs.adapters import kubernetes

log = logging.getLogger(__name__)

REASON = "Synced"
ANNOTATION_LAST_EVENT = "sluice.io/last-event-id"
MAX_MESSAGE_CHARS = 1024  # the API server refuses longer event messages
PRUNE_AT_BUCKETS = 1024  # rate-limit buckets kept before the refilled ones are forgotten

# Bus events that are not Flagger's Kubernetes Events: measurements and the watcher's hints
# (a phase change is recorded when it carries a message, e.g. "Canary failed! Scaling down").
NOT_RECORDED = frozenset({"metric_checked", "revision_detected"})


def event_type(severity: messages.Severity) -> str:
    return "Normal" if severity == messages.Severity.INFO else "Warning"


def records(event: messages.EventBase) -> bool:
    """Whether a bus event becomes a Kubernetes Event."""
    return bool(event.message) and messages.event_kind(event) not in NOT_RECORDED


def event_name(canary: str, kind: str, reason: str, message: str, component: str) -> str:
    """``<canary>.<hash>``: the same message about the same canary is the same Event."""
    digest = hashlib.sha256("\0".join((component, kind, reason, message)).encode()).hexdigest()
    return f"{canary}.{digest[:16]}"


def _timestamp(at_ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(at_ms / 1000, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclasses.dataclass
class TokenBucket:
    """``burst`` writes at once, then one every ``1 / rate`` seconds."""

    burst: float
    rate: float  # tokens per second
    tokens: float = -1.0
    updated: float = 0.0

    def take(self, now: float) -> float:
        """Take a token: 0 when one was there, else the seconds until one will be."""
        if self.tokens < 0:
            self.tokens, self.updated = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate

    def full(self, now: float) -> bool:
        """Refilled to its burst by ``now``: no different from a new bucket."""
        return self.tokens < 0 or self.tokens + (now - self.updated) * self.rate >= self.burst


class RateLimited(errors.TemporaryError):
    def __init__(self, canary: str, wait_s: float) -> None:
        super().__init__(f"events of {canary} are rate-limited for {wait_s:.1f}s")
        self.wait_s = wait_s


class Recorder:
    def __init__(
        self,
        kube: kubernetes.Kube,
        component: str = "flagger",
        burst: int = 25,
        rate_per_s: float = 1.0,
    ) -> None:
        self.kube = kube
        self.component = component
        self.burst = burst
        self.rate_per_s = rate_per_s
        self._buckets: dict[str, TokenBucket] = {}
        self._prune_at = PRUNE_AT_BUCKETS

    async def record(
        self, canary: dict[str, Any], event: messages.EventBase, event_id: str
    ) -> None:
        """Create or count the Event for ``event`` on ``canary`` (the Canary object)."""
        meta = canary.get("metadata") or {}
        namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
        key = f"{namespace}/{name}"
        now = time.monotonic()
        if len(self._buckets) >= self._prune_at:
            self._prune(now)
        bucket = self._buckets.setdefault(key, TokenBucket(self.burst, self.rate_per_s))
        wait_s = bucket.take(now)
        if wait_s > 0:
            raise RateLimited(key, wait_s)
        message = event.message[:MAX_MESSAGE_CHARS]
        kind = event_type(event.severity)
        event_name_ = event_name(name, kind, REASON, message, self.component)
        stamp = _timestamp(event.at_ms)
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": event_name_,
                "namespace": namespace,
                "annotations": {ANNOTATION_LAST_EVENT: event_id},
            },
            "involvedObject": {
                "apiVersion": str(canary.get("apiVersion", kubernetes.CANARIES.api_version)),
                "kind": "Canary",
                "name": name,
                "namespace": namespace,
                "uid": str(meta.get("uid", "")),
                "resourceVersion": str(meta.get("resourceVersion", "")),
            },
            "reason": REASON,
            "message": message,
            "type": kind,
            "count": 1,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "source": {"component": self.component},
            "reportingComponent": self.component,
            "reportingInstance": self.component,
        }
        try:
            await self.kube.create(kubernetes.EVENTS, namespace, body)
            return
        except errors.Conflict:
            pass  # it exists: count it
        for _ in range(5):  # another replica may be counting the same Event right now
            existing = await self.kube.get(kubernetes.EVENTS, namespace, event_name_)
            annotations = (existing.get("metadata") or {}).get("annotations") or {}
            if annotations.get(ANNOTATION_LAST_EVENT) == event_id:
                return  # this bus event was counted already (a redelivery)
            patch = {
                "metadata": {
                    "resourceVersion": existing["metadata"]["resourceVersion"],
                    "annotations": {ANNOTATION_LAST_EVENT: event_id},
                },
                "count": int(existing.get("count") or 1) + 1,
                "lastTimestamp": stamp,
            }
            try:
                await self.kube.patch(kubernetes.EVENTS, namespace, event_name_, patch)
                return
            except errors.Conflict:
                continue
        raise errors.Conflict(f"event {namespace}/{event_name_} kept changing; will retry")

    def _prune(self, now: float) -> None:
        """Forget the buckets that have refilled (canaries quiet for ``burst / rate`` seconds,
        or deleted): only the recently busy ones are kept, so the map does not grow with every
        canary ever seen. Amortized: the next prune waits until the map has doubled."""
        self._buckets = {k: b for k, b in self._buckets.items() if not b.full(now)}
        self._prune_at = max(PRUNE_AT_BUCKETS, 2 * len(self._buckets))
