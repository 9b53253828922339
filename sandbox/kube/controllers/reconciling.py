"""The loop every controller runs: list+watch → deduplicating work queue → one worker.

Like client-go's informer + workqueue, in miniature:

* ``watch(rtype, keys_of)`` lists the type once, then follows ``Store.watch`` from the list's
  resourceVersion (relisting on ``Gone``); every object seen maps to the keys to reconcile;
* a key waiting in the queue is queued once, however many events name it;
* ``reconcile(key)`` runs on one worker, so a controller never races itself; it may return a
  number of seconds after which the key is looked at again (a timer, never a poll);
* a ``Conflict`` or any other error requeues the key with doubling backoff (the error is logged,
  the loop goes on).

Cancelling ``run`` cancels the watches, the worker and every pending timer.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from sandbox.kube import store as kstore
from sandbox.kube.controllers import settings as csettings

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped objects
KeysOf = Callable[[str, kstore.Obj], Iterable[Key]]  # (event type, object) → keys
Reconcile = Callable[[Key], "float | Awaitable[float | None] | None"]


def key_of(obj: kstore.Obj) -> Key:
    meta = obj.get("metadata") or {}
    return (meta.get("namespace") or "", meta.get("name") or "")


def same_key(_event: str, obj: kstore.Obj) -> Iterable[Key]:
    return (key_of(obj),)


class WorkLoop:
    """One controller's queue, watches, timers and worker."""

    def __init__(
        self,
        name: str,
        store: kstore.Store,
        reconcile: Reconcile,
        settings: csettings.ControllerSettings,
    ) -> None:
        self.name = name
        self._store = store
        self._reconcile = reconcile
        self._settings = settings
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: set[Key] = set()
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._failures: dict[Key, int] = {}
        self._watches: list[tuple[kstore.ResourceType, KeysOf]] = []

    # ---------------------------------------------------------------- queueing

    def enqueue(self, key: Key) -> None:
        if key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    def enqueue_after(self, key: Key, delay: float) -> None:
        """Look at ``key`` again in ``delay`` seconds (an earlier pending timer wins)."""
        if delay <= 0:
            self.enqueue(key)
            return
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        timer = self._timers.get(key)
        if timer is not None and not timer.cancelled() and timer.when() <= when:
            return
        if timer is not None:
            timer.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def _fire(self, key: Key) -> None:
        self._timers.pop(key, None)
        self.enqueue(key)

    def watch(self, rtype: kstore.ResourceType, keys_of: KeysOf = same_key) -> None:
        """Register a type to list+watch before ``run``."""
        self._watches.append((rtype, keys_of))

    # ---------------------------------------------------------------- running

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                for rtype, keys_of in self._watches:
                    tg.create_task(
                        self._follow(rtype, keys_of), name=f"{self.name}-watch-{rtype.plural}"
                    )
                tg.create_task(self._work(), name=f"{self.name}-worker")
        finally:
            for timer in self._timers.values():
                timer.cancel()
            self._timers.clear()

    async def _follow(self, rtype: kstore.ResourceType, keys_of: KeysOf) -> None:
        while True:
            items, rv = self._store.list(rtype)
            for obj in items:
                self._map(keys_of, "ADDED", obj)
            try:
                async for event in self._store.watch(rtype, since=rv):
                    self._map(keys_of, event.type, event.object)
            except kstore.Gone:
                log.info("%s: watch of %s expired; relisting", self.name, rtype.plural)

    def _map(self, keys_of: KeysOf, event: str, obj: kstore.Obj) -> None:
        try:
            keys = list(keys_of(event, obj))
        except Exception:
            log.exception("%s: cannot map %s event of %s", self.name, event, key_of(obj))
            return
        for key in keys:
            self.enqueue(key)

    async def _work(self) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            try:
                result: Any = self._reconcile(key)
                if inspect.isawaitable(result):
                    result = await result
            except asyncio.CancelledError:
                raise
            except kstore.Conflict as exc:
                log.debug("%s: %s/%s conflict, retrying: %s", self.name, *key, exc)
                self._retry(key)
            except Exception:
                log.exception("%s: reconcile of %s/%s failed; retrying", self.name, *key)
                self._retry(key)
            else:
                self._failures.pop(key, None)
                if result is not None:
                    self.enqueue_after(key, float(result))

    def _retry(self, key: Key) -> None:
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        delay = min(
            self._settings.retry_backoff_s * (2**failures), self._settings.retry_backoff_max_s
        )
        self.enqueue_after(key, delay)
