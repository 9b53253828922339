"""Store semantics the API server relies on: namespaces, views, hooks, no-op writes, Gone."""

from __future__ import annotations

import asyncio

import pytest

from sandbox.kube import events, registry
from sandbox.kube.store import Forbidden, Gone, NotFound, Store, WatchEvent


def _store(history: int = 100) -> Store:
    store = Store(history_limit=history)
    for rtype in registry.BUILTIN:
        store.register(rtype)
    store.add_view(registry.EVENTS_V1, registry.EVENTS, events.to_v1, events.from_v1)
    for name in ("default", "test"):
        store.create(registry.NAMESPACES, {"metadata": {"name": name}})
    return store


def _cm(name: str, namespace: str = "test", **meta: object) -> dict:
    return {"metadata": {"name": name, "namespace": namespace, **meta}, "data": {"a": "1"}}


def test_deleting_a_namespace_deletes_its_objects_then_itself() -> None:
    store = _store()
    store.create(registry.CONFIGMAPS, _cm("a"))
    store.create(registry.CONFIGMAPS, _cm("held", finalizers=["x/y"]))
    store.create(registry.CONFIGMAPS, _cm("other", namespace="default"))
    store.delete(registry.NAMESPACES, None, "test")
    assert store.namespace_phase("test") == "Terminating"
    assert store.get(registry.NAMESPACES, None, "test")["status"]["phase"] == "Terminating"
    assert [o["metadata"]["name"] for o in store.list(registry.CONFIGMAPS, "test")[0]] == ["held"]

    held = store.get(registry.CONFIGMAPS, "test", "held")
    held["metadata"]["finalizers"] = []
    store.update(registry.CONFIGMAPS, held)
    assert store.namespace_phase("test") is None
    assert store.list(registry.CONFIGMAPS, "default")[0][0]["metadata"]["name"] == "other"


def test_empty_namespace_goes_at_once() -> None:
    store = _store()
    store.delete(registry.NAMESPACES, None, "test")
    with pytest.raises(NotFound, match='namespaces "test" not found'):
        store.get(registry.NAMESPACES, None, "test")


def test_no_op_update_keeps_the_resource_version_and_label_changes_bump_it() -> None:
    store = _store()
    created = store.create(registry.CONFIGMAPS, _cm("a"))
    same = store.update(registry.CONFIGMAPS, created)
    assert same["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    created["metadata"]["labels"] = {"new": "label"}
    labelled = store.update(registry.CONFIGMAPS, created)
    assert labelled["metadata"]["resourceVersion"] != created["metadata"]["resourceVersion"]
    assert "generation" not in labelled["metadata"]  # ConfigMaps have none


def test_finalizers_cannot_be_added_to_an_object_being_deleted() -> None:
    store = _store()
    store.create(registry.CONFIGMAPS, _cm("a", finalizers=["one"]))
    marked = store.delete(registry.CONFIGMAPS, "test", "a")
    marked["metadata"]["finalizers"] = ["one", "two"]
    with pytest.raises(Forbidden, match=r'found new finalizers \[\]string\{"two"\}'):
        store.update(registry.CONFIGMAPS, marked)
    assert store.get(registry.CONFIGMAPS, "test", "a")["metadata"]["finalizers"] == ["one"]


def test_events_are_served_in_both_apis() -> None:
    store = _store()
    core = {
        "metadata": {"name": "e1", "namespace": "test"},
        "involvedObject": {"kind": "Canary", "name": "podinfo", "namespace": "test"},
        "reason": "Synced",
        "message": "hello",
        "type": "Normal",
        "source": {"component": "flagger"},
        "count": 2,
        "firstTimestamp": "2026-01-01T00:00:00Z",
        "lastTimestamp": "2026-01-01T00:01:00Z",
    }
    store.create(registry.EVENTS, core)
    as_v1 = store.get(registry.EVENTS_V1, "test", "e1")
    assert as_v1["apiVersion"] == "events.k8s.io/v1"
    assert as_v1["regarding"] == core["involvedObject"]
    assert as_v1["note"] == "hello"
    assert as_v1["deprecatedCount"] == 2
    assert as_v1["reportingController"] == "flagger"

    store.create(
        registry.EVENTS_V1,
        {
            "metadata": {"name": "e2", "namespace": "test"},
            "regarding": {"kind": "Deployment", "name": "web"},
            "note": "from v1",
            "reason": "Scaled",
            "type": "Normal",
            "reportingController": "sluice",
            "eventTime": "2026-01-01T00:00:00.000000Z",
        },
    )
    stored = store.get(registry.EVENTS, "test", "e2")
    assert stored["involvedObject"] == {"kind": "Deployment", "name": "web"}
    assert stored["message"] == "from v1"
    assert stored["source"] == {"component": "sluice"}
    names = [e["metadata"]["name"] for e in store.list(registry.EVENTS_V1, "test")[0]]
    assert names == ["e1", "e2"]
    store.delete(registry.EVENTS_V1, "test", "e1")
    assert [e["metadata"]["name"] for e in store.list(registry.EVENTS, "test")[0]] == ["e2"]


async def test_watching_a_view_converts_events() -> None:
    store = _store()
    sub = store.subscribe(registry.EVENTS_V1, "test")
    store.create(
        registry.EVENTS,
        {
            "metadata": {"name": "e", "namespace": "test"},
            "involvedObject": {"name": "x"},
            "message": "m",
        },
    )
    store.create(registry.CONFIGMAPS, _cm("noise"))
    event = sub.convert(await asyncio.wait_for(sub.queue.get(), 1))
    assert event.type == "ADDED"
    assert event.object["note"] == "m"
    assert sub.queue.empty()
    sub.close()


def test_hooks_see_writes_after_watchers() -> None:
    store = _store()
    seen: list[WatchEvent] = []
    store.add_hook(registry.CONFIGMAPS, seen.append)
    store.create(registry.CONFIGMAPS, _cm("a"))
    store.delete(registry.CONFIGMAPS, "test", "a")
    assert [e.type for e in seen] == ["ADDED", "DELETED"]


async def test_watch_resumes_and_expires() -> None:
    store = _store(history=5)
    start = store.resource_version
    for n in range(3):
        store.create(registry.CONFIGMAPS, _cm(f"c{n}"))
    sub = store.subscribe(registry.CONFIGMAPS, "test", since=start + 1)
    assert [e.object["metadata"]["name"] for e in sub.backlog] == ["c1", "c2"]
    sub.close()
    for n in range(3, 10):
        store.create(registry.CONFIGMAPS, _cm(f"c{n}"))
    with pytest.raises(Gone, match=f"too old resource version: {start}"):
        store.subscribe(registry.CONFIGMAPS, since=start)
    watch = store.watch(registry.CONFIGMAPS, since=start)
    with pytest.raises(Gone):
        await anext(watch)


def test_drop_resource_removes_objects_despite_finalizers() -> None:
    store = _store()
    store.create(registry.CONFIGMAPS, _cm("a", finalizers=["f"]))
    store.drop_resource(registry.CONFIGMAPS)
    assert store.list(registry.CONFIGMAPS)[0] == []
