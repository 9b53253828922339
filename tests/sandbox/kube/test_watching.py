"""Watches: selectors compare old and new objects; slow watchers are closed."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from sandbox.kube import fanout, registry
from sandbox.kube.cluster import Cluster
from sandbox.kube.store import Store

pytestmark = pytest.mark.integration


def _cm(name: str, labels: dict[str, str] | None = None, **data: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "default"}
    if labels is not None:
        meta["labels"] = labels
    return {"metadata": meta, "data": data}


async def test_selector_watch_sees_objects_enter_and_leave(
    bare: Cluster, http: aiohttp.ClientSession
) -> None:
    store = bare.store
    params = {
        "watch": "1",
        "labelSelector": "app=web",
        "resourceVersion": str(store.resource_version),
    }
    async with http.get("/api/v1/namespaces/default/configmaps", params=params) as response:

        async def next_line() -> dict[str, Any]:
            return json.loads(await asyncio.wait_for(response.content.readline(), 5))

        created = store.create(registry.CONFIGMAPS, _cm("c", {"app": "api"}))
        created["metadata"]["labels"] = {"app": "web"}
        entered = store.update(registry.CONFIGMAPS, created)
        entered["data"] = {"k": "v"}
        changed = store.update(registry.CONFIGMAPS, entered)
        changed["metadata"]["labels"] = {"app": "api"}
        left = store.update(registry.CONFIGMAPS, changed)
        store.delete(registry.CONFIGMAPS, "default", "c")  # not matching: nothing
        store.create(registry.CONFIGMAPS, _cm("marker", {"app": "web"}))
        lines = [await next_line() for _ in range(4)]
    assert [(line["type"], line["object"]["metadata"]["name"]) for line in lines] == [
        ("ADDED", "c"),
        ("MODIFIED", "c"),
        ("DELETED", "c"),
        ("ADDED", "marker"),
    ]
    gone = lines[2]["object"]
    # the last state that matched, at the resourceVersion of the change that ended it
    assert gone["metadata"]["labels"] == {"app": "web"}
    assert gone["metadata"]["resourceVersion"] == left["metadata"]["resourceVersion"]


async def test_a_watcher_that_falls_behind_is_closed() -> None:
    store = Store(queue_limit=3)
    store.register(registry.CONFIGMAPS)
    slow = store.subscribe(registry.CONFIGMAPS)
    fast = store.subscribe(registry.CONFIGMAPS)
    taken = []
    for index in range(5):
        store.create(registry.CONFIGMAPS, _cm(f"c{index}"))
        taken.append(fast.queue.get_nowait().object["metadata"]["name"])
    assert taken == ["c0", "c1", "c2", "c3", "c4"]
    assert not fast.overflowed
    # the one nobody read: its backlog is dropped and it ends with CLOSED
    assert slow.overflowed
    assert slow.queue.get_nowait() is fanout.CLOSED
    assert slow.queue.empty()
    store.create(registry.CONFIGMAPS, _cm("later"))
    assert slow.queue.empty()  # no longer registered
    fast.close()


async def test_the_store_watch_ends_when_its_queue_overflows() -> None:
    store = Store(queue_limit=2)
    store.register(registry.CONFIGMAPS)
    seen: list[str] = []

    async def follow() -> None:
        async for event in store.watch(registry.CONFIGMAPS):
            seen.append(event.object["metadata"]["name"])

    task = asyncio.create_task(follow())
    await asyncio.sleep(0)
    for index in range(4):  # written without yielding: the watcher cannot keep up
        store.create(registry.CONFIGMAPS, _cm(f"c{index}"))
    await asyncio.wait_for(task, 1)  # ends by itself; the caller lists again
    assert seen == []
