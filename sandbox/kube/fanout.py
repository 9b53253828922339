"""Watch fan-out: the store's events to every registered watcher, and the history to resume.

Each ``Subscription`` has a bounded queue (``QUEUE_LIMIT`` events). A watcher that falls
that far behind is closed, as the real API server's watch cache terminates slow watchers:
its queue is emptied and ends with ``CLOSED``; the client lists again or resumes from the
last resourceVersion it saw (``Store.watch`` simply ends; the HTTP watch ends its stream).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Key = tuple[str, str]

HISTORY_LIMIT = 5000  # watch events kept for resuming; older resourceVersions get 410 Gone
QUEUE_LIMIT = 10_000  # events one watcher may have waiting before it is closed


@dataclasses.dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED | MODIFIED | DELETED (or CLOSED: the end of an overflowed queue)
    object: Obj
    resource_version: int
    # the object before this change (MODIFIED) or the deleted object itself (DELETED), so
    # that a filtered watch can tell an object entering or leaving its selector
    previous: Obj | None = None


CLOSED = WatchEvent("CLOSED", {}, 0)


class Subscription:
    """A registered watcher: the backlog to replay, then live events on ``queue``.

    Its queue is safe to wait on with a timeout (``asyncio.wait_for(sub.queue.get(), t)``),
    which an async generator is not. An event of type ``CLOSED`` ends it (the watcher fell
    too far behind). ``close()`` unregisters it.
    """

    def __init__(
        self,
        fanout: Fanout,
        key: Key,
        namespace: str | None,
        to_view: Callable[[Obj], Obj] | None,
        queue_limit: int,
    ) -> None:
        self._fanout = fanout
        self._key = key
        self._to_view = to_view
        self.namespace = namespace
        self.backlog: list[WatchEvent] = []
        self.queue: asyncio.Queue[WatchEvent] = asyncio.Queue(maxsize=queue_limit + 1)
        self._limit = queue_limit
        self.overflowed = False

    def accepts(self, key: Key, namespace: str | None) -> bool:
        return key == self._key and (self.namespace is None or self.namespace == namespace)

    def convert(self, event: WatchEvent) -> WatchEvent:
        if self._to_view is None or event is CLOSED:
            return event
        previous = None if event.previous is None else self._to_view(event.previous)
        return WatchEvent(event.type, self._to_view(event.object), event.resource_version, previous)

    def offer(self, event: WatchEvent) -> None:
        if self.queue.qsize() < self._limit:
            self.queue.put_nowait(event)
            return
        log.warning("closing a watch that fell %d events behind", self._limit)
        self.overflowed = True
        self.close()
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(CLOSED)

    def close(self) -> None:
        self._fanout.remove(self)


class Fanout:
    """The registered subscriptions and the recent history, one cluster-wide sequence."""

    def __init__(self, history_limit: int = HISTORY_LIMIT, queue_limit: int = QUEUE_LIMIT) -> None:
        self.history: collections.deque[tuple[Key, WatchEvent]] = collections.deque(
            maxlen=history_limit
        )
        self.queue_limit = queue_limit
        self._subscriptions: list[Subscription] = []

    def publish(self, key: Key, event: WatchEvent) -> None:
        self.history.append((key, event))
        namespace = event.object.get("metadata", {}).get("namespace")
        for sub in list(self._subscriptions):
            if sub.accepts(key, namespace):
                sub.offer(event)

    def oldest(self) -> int | None:
        return self.history[0][1].resource_version if self.history else None

    def subscribe(
        self,
        key: Key,
        namespace: str | None,
        since: int | None,
        to_view: Callable[[Obj], Obj] | None,
    ) -> Subscription:
        sub = Subscription(self, key, namespace, to_view, self.queue_limit)
        if since:
            sub.backlog = [
                sub.convert(ev)
                for k, ev in self.history
                if ev.resource_version > since
                and sub.accepts(k, ev.object["metadata"].get("namespace"))
            ]
        self._subscriptions.append(sub)
        return sub

    def remove(self, sub: Subscription) -> None:
        if sub in self._subscriptions:
            self._subscriptions.remove(sub)
