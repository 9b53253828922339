"""Informers: an in-memory cache of one kind of object, kept current by list + watch.

::

    informer = Informer(kube, kubernetes.DEPLOYMENTS, on_change=handle, namespaces=("test",))
    runner = asyncio.create_task(informer.run())   # until informer.stop() or cancellation
    await informer.synced.wait()
    informer.get("test", "podinfo")                  # raw dict from the cache, or None

Per namespace scope (or one scope for all namespaces) it lists, replaces the cache (emitting a
change for every difference, so nothing lost while disconnected stays lost), then watches
from the list's ``resourceVersion`` with bookmarks. A stream the server ends after
``watch_timeout_s`` is resumed from the last seen ``resourceVersion``; 410 Gone or any error
(a connection problem included: the server may have been restored from a backup) means list
again, after a capped, jittered exponential backoff, while ``problem()`` reports the error for
``/readyz``.

Watch streams are blocking reads in a thread. They cannot be cancelled, so stopping (``stop()``
or cancelling ``run``) sets a flag the thread checks between events and shuts the response's
socket down, which unblocks the read at once; the short server-side timeout bounds it anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from libs import errors
from libs.adapters import kubernetes

log = logging.getLogger(__name__)

Obj = dict[str, Any]
ChangeType = Literal["ADDED", "MODIFIED", "DELETED"]
JOIN_TIMEOUT_S = 2.0  # how long a stopping informer waits for its stream thread to end


@dataclasses.dataclass(frozen=True)
class Change:
    type: ChangeType
    key: str  # "<namespace>/<name>"
    obj: Obj  # the new object, or the last known one when DELETED


Handler = Callable[[Change], Awaitable[None]]


def object_key(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace") or ""
    return f"{namespace}/{meta.get('name', '')}" if namespace else str(meta.get("name", ""))


def _resource_version(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


@dataclasses.dataclass
class _Scope:
    namespace: str | None
    resource_version: str = ""
    synced: bool = False
    error: str | None = None


@dataclasses.dataclass(frozen=True)
class _End:
    error: BaseException | None


class _Pump:
    """The watch stream of one thread, closable from the event loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stream: kubernetes.WatchStream | None = None
        self.closed = False

    def attach(self, stream: kubernetes.WatchStream) -> bool:
        with self._lock:
            if self.closed:
                return False
            self._stream = stream
            return True

    def close(self) -> None:
        with self._lock:
            self.closed = True
            stream = self._stream
        if stream is not None:
            stream.close()


class Informer:
    def __init__(
        self,
        kube: kubernetes.Kube,
        resource: kubernetes.Resource,
        *,
        on_change: Handler,
        namespaces: tuple[str, ...] = (),
        watch_timeout_s: float = 10.0,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        transform: Callable[[Obj], Obj] | None = None,
    ) -> None:
        self.kube = kube
        self.resource = resource
        self.on_change = on_change
        self.watch_timeout_s = max(1, round(watch_timeout_s))
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.transform = transform
        self.cache: dict[str, Obj] = {}
        self.synced = asyncio.Event()
        self._scopes = [_Scope(ns) for ns in namespaces] or [_Scope(None)]
        self._halt = threading.Event()
        self._wake = asyncio.Event()
        self._pumps: set[_Pump] = set()

    # --- reading the cache ---

    def get(self, namespace: str, name: str) -> Obj | None:
        return self.cache.get(f"{namespace}/{name}")

    def items(self) -> list[Obj]:
        return list(self.cache.values())

    def problem(self) -> str | None:
        """Why this informer is not healthy (not synced, or the API is failing), else None."""
        for scope in self._scopes:
            where = scope.namespace or "all namespaces"
            if scope.error is not None:
                return f"{self.resource.plural} in {where}: {scope.error}"
            if not scope.synced:
                return f"{self.resource.plural} in {where}: not synced yet"
        return None

    # --- running ---

    def stop(self) -> None:
        """Ask ``run`` to return soon: ends the backoff sleeps and the open streams."""
        self._halt.set()
        self._wake.set()
        for pump in list(self._pumps):
            pump.close()

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                for scope in self._scopes:
                    tg.create_task(
                        self._run_scope(scope),
                        name=f"informer:{self.resource.plural}:{scope.namespace or '*'}",
                    )
        finally:
            self.stop()

    def _backoff(self, attempt: int) -> float:
        delay = min(self.backoff_max_s, self.backoff_initial_s * float(2 ** min(attempt - 1, 30)))
        return delay * random.uniform(0.5, 1.0)

    async def _run_scope(self, scope: _Scope) -> None:
        attempt = 0
        while not self._halt.is_set():
            try:
                if not scope.resource_version:
                    await self._relist(scope)
                await self._watch(scope)
                attempt = 0
            except errors.SluiceError as exc:
                if self._halt.is_set():
                    return
                attempt += 1
                scope.error = str(exc)
                # list again after any failure: 410 Gone, a bad resourceVersion, or an outage
                # (the server may have been restored or replaced; a list is the level truth)
                scope.resource_version = ""
                delay = self._backoff(attempt)
                # the first failure and every tenth one are warnings; the rest would be noise
                log.log(
                    logging.WARNING if attempt == 1 or attempt % 10 == 0 else logging.DEBUG,
                    "%s (attempt %d; retrying in %.1fs)",
                    exc,
                    attempt,
                    delay,
                    extra={"subject": f"kube:{self.resource.plural}"},
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)

    def _recovered(self, scope: _Scope) -> None:
        if scope.error is not None:
            scope.error = None
            where = scope.namespace or "all namespaces"
            log.info("%s in %s: the Kubernetes API answers again", self.resource.plural, where)

    async def _relist(self, scope: _Scope) -> None:
        page = await self.kube.list(self.resource, scope.namespace)
        fresh = {object_key(obj): self._prepare(obj) for obj in page.items}
        stale = [
            key
            for key, obj in self.cache.items()
            if key not in fresh and self._in_scope(obj, scope)
        ]
        scope.resource_version = page.resource_version
        self._recovered(scope)
        for key in stale:
            await self.on_change(Change("DELETED", key, self.cache.pop(key)))
        for key, obj in fresh.items():
            old = self.cache.get(key)
            self.cache[key] = obj
            if old is None:
                await self.on_change(Change("ADDED", key, obj))
            elif _resource_version(old) != _resource_version(obj):
                await self.on_change(Change("MODIFIED", key, obj))
        if not scope.synced:
            scope.synced = True
            log.debug("%s in %s synced", self.resource.plural, scope.namespace or "all namespaces")
            if all(s.synced for s in self._scopes):
                self.synced.set()

    @staticmethod
    def _in_scope(obj: Obj, scope: _Scope) -> bool:
        return (
            scope.namespace is None
            or (obj.get("metadata") or {}).get("namespace") == scope.namespace
        )

    def _prepare(self, obj: Obj) -> Obj:
        obj.setdefault("kind", self.resource.kind)
        obj.setdefault("apiVersion", self.resource.api_version)
        return self.transform(obj) if self.transform is not None else obj

    # --- watching ---

    def _stream(
        self, pump: _Pump, scope: _Scope, since: str, push: Callable[[object], None]
    ) -> None:
        """Stream thread: read one watch response, hand each event to the loop."""
        error: BaseException | None = None
        stream: kubernetes.WatchStream | None = None
        try:
            stream = self.kube.open_watch(
                self.resource, scope.namespace, since, self.watch_timeout_s
            )
            if not pump.attach(stream):
                return
            push("opened")
            for event in stream:
                if pump.closed:
                    break
                push(event)
        except BaseException as exc:
            if not pump.closed:
                error = exc
        finally:
            if stream is not None:
                stream.close()
            push(_End(error))

    async def _watch(self, scope: _Scope) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()

        def push(item: object) -> None:
            # RuntimeError: the loop is closed, nobody is listening any more
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(queue.put_nowait, item)

        pump = _Pump()
        self._pumps.add(pump)
        reader = asyncio.ensure_future(
            self.kube.offload_stream(self._stream, pump, scope, scope.resource_version, push)
        )
        try:
            if self._halt.is_set():
                return
            while True:
                item = await queue.get()
                if isinstance(item, _End):
                    if item.error is not None:
                        raise item.error
                    return
                if item == "opened":
                    self._recovered(scope)
                elif isinstance(item, dict) and not await self._apply(scope, item):
                    return
        finally:
            pump.close()
            self._pumps.discard(pump)
            if not reader.done():
                await asyncio.wait({reader}, timeout=JOIN_TIMEOUT_S)
            if reader.done() and not reader.cancelled():
                reader.exception()  # retrieved: errors travel through the queue

    async def _apply(self, scope: _Scope, event: Obj) -> bool:
        """Apply one watch event; False ends the stream (a re-list is due)."""
        kind = event.get("type")
        obj = event.get("object")
        if not isinstance(obj, dict):
            return True
        if kind == "ERROR":
            code = obj.get("code")
            message = obj.get("message", "")
            if code == 410:
                log.info("%s: %s; listing again", self.resource.plural, message or "410 Gone")
                scope.resource_version = ""
                return False
            raise errors.Unavailable(f"watching {self.resource.plural}: error {code}: {message}")
        version = _resource_version(obj)
        if kind == "BOOKMARK":
            scope.resource_version = version or scope.resource_version
            return True
        if kind not in ("ADDED", "MODIFIED", "DELETED"):
            return True
        obj = self._prepare(obj)
        key = object_key(obj)
        if version:
            scope.resource_version = version
        if kind == "DELETED":
            self.cache.pop(key, None)
            await self.on_change(Change("DELETED", key, obj))
        else:
            self.cache[key] = obj
            await self.on_change(Change(kind, key, obj))
        return True
