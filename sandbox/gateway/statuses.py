"""ApisixRoute status: the one condition apisix-ingress-controller writes after each sync.

After a translation, every ApisixRoute gets ``status.conditions`` holding one condition of type
``ResourcesAvailable``: ``status: "True"`` with reason ``ResourcesSynced`` when all its rules
reached the route table, else ``status: "False"`` with reason ``ResourceSyncAborted`` and the
translation errors as the message; ``observedGeneration`` is the generation that was
translated, ``lastTransitionTime`` moves only when ``status`` flips.

``StatusWriter`` sends it with a JSON merge patch to the ``status`` subresource, and only when
it differs from what the object already carries (type, status, reason, message and
observedGeneration compared): the write makes a ``MODIFIED`` watch event, the next translation
finds the status already in place, and nothing more is written. Writes run one at a time in
the writer's own task, each with a timeout; a failed write is tried again after a backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp

from sandbox import kubewatch
from sandbox.gateway import translation

logger = logging.getLogger(__name__)

Obj = dict[str, Any]

CONDITION_TYPE = "ResourcesAvailable"
REASON_SYNCED = "ResourcesSynced"
REASON_ABORTED = "ResourceSyncAborted"
MESSAGE_SYNCED = "synced to the data plane"
_COMPARED = ("type", "status", "reason", "message", "observedGeneration")


@dataclasses.dataclass(frozen=True)
class StatusSettings:
    # Seconds allowed for one status write (connect + response).
    request_timeout: float = 5.0
    # Seconds waited before trying again after a failed write.
    retry_after: float = 0.5


def condition(result: translation.RouteStatus, now: str, current: Obj | None = None) -> Obj:
    """The ``ResourcesAvailable`` condition for one translation result; ``lastTransitionTime``
    is kept from ``current`` when the status did not flip."""
    status = "True" if result.ok else "False"
    since = now
    if current and current.get("status") == status and current.get("lastTransitionTime"):
        since = current["lastTransitionTime"]
    message = MESSAGE_SYNCED if result.ok else "; ".join(result.errors)
    if result.rejected:
        message = "ApisixRoute rejected: " + message
    return {
        "type": CONDITION_TYPE,
        "status": status,
        "reason": REASON_SYNCED if result.ok else REASON_ABORTED,
        "message": message,
        "observedGeneration": result.generation,
        "lastTransitionTime": since,
    }


def current_condition(obj: Obj) -> Obj | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == CONDITION_TYPE:
            return cond
    return None


def needs_write(obj: Obj, wanted: Obj) -> bool:
    current = current_condition(obj)
    if current is None:
        return True
    return any(current.get(k) != wanted.get(k) for k in _COMPARED)


def status_path(namespace: str, name: str) -> str:
    resource = kubewatch.APISIX_ROUTES
    prefix = f"/apis/{resource.group}/{resource.version}"
    return f"{prefix}/namespaces/{namespace}/{resource.plural}/{name}/status"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class StatusWriter:
    """Writes the condition of every ApisixRoute whose status is out of date; ``changed()``
    after each translation (cheap, coalesced), ``start``/``stop`` around the sync."""

    def __init__(
        self,
        kube_url: str,
        table: Callable[[], translation.RouteTable],
        objects: Callable[[], Mapping[kubewatch.Key, Obj]],
        settings: StatusSettings | None = None,
    ) -> None:
        self.base_url = kube_url.rstrip("/")
        self._table = table
        self._objects = objects
        self.settings = settings or StatusSettings()
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self.writes = 0  # status writes done (tests check that nothing loops)

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        self._task = asyncio.create_task(self._run(), name="apisixroute status writer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    def changed(self) -> None:
        self._dirty.set()

    async def _run(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            if not await self._write_all():
                await asyncio.sleep(self.settings.retry_after)
                self._dirty.set()

    async def _write_all(self) -> bool:
        """Write every out-of-date status; False when a write failed (to be tried again)."""
        ok = True
        for result in self._table().statuses:
            obj = self._objects().get(result.key)
            meta = (obj or {}).get("metadata") or {}
            if obj is None or meta.get("uid", "") != result.uid:
                continue  # deleted or replaced since: a newer translation will follow
            if int(meta.get("generation") or 0) != result.generation:
                continue
            wanted = condition(result, _now(), current_condition(obj))
            if not needs_write(obj, wanted):
                continue
            try:
                await self._patch(result, wanted)
            except (TimeoutError, aiohttp.ClientError, _WriteFailed) as e:
                logger.warning("status of ApisixRoute %s/%s: %s", *result.key, e)
                ok = False
        return ok

    async def _patch(self, result: translation.RouteStatus, wanted: Obj) -> None:
        assert self._session is not None
        body = {"status": {"conditions": [wanted]}}
        timeout = aiohttp.ClientTimeout(total=self.settings.request_timeout)
        async with self._session.patch(
            self.base_url + status_path(*result.key),
            data=json.dumps(body),
            headers={"Content-Type": "application/merge-patch+json"},
            timeout=timeout,
        ) as resp:
            if resp.status == 404:
                return  # deleted meanwhile
            if resp.status != 200:
                raise _WriteFailed(f"HTTP {resp.status}: {(await resp.text())[:200]}")
        self.writes += 1


class _WriteFailed(Exception):
    pass
