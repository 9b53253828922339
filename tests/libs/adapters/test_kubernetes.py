"""The Kubernetes adapter and its informer against the simulated API server, over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import pathlib
import random
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from libs import errors
from libs.adapters import informers, kubernetes
from sandbox.kube.cluster import Cluster
from sandbox.kube.config import ClusterSettings

pytestmark = pytest.mark.integration


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    second = random.randint(100, 250)
    settings = ClusterSettings(
        pod_network=ipaddress.IPv4Network(f"127.{second}.0.0/17"),
        service_network=ipaddress.IPv4Network(f"127.{second}.128.0/17"),
        namespaces=("default", "test", "other"),
        watch_history=20,
    )
    async with Cluster(settings, controllers=False) as running:
        yield running


@pytest.fixture
async def kube(cluster: Cluster, tmp_path: pathlib.Path) -> AsyncIterator[kubernetes.Kube]:
    path = cluster.write_kubeconfig(tmp_path / "kubeconfig")
    client = await kubernetes.Kube.connect(
        kubernetes.Config(kubeconfig=str(path), request_timeout_s=5)
    )
    try:
        yield client
    finally:
        await client.close()


def cm(name: str, value: str = "1") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name},
        "data": {"k": value},
    }


async def test_not_found_is_typed_and_caused_by_the_api_exception(kube: kubernetes.Kube) -> None:
    with pytest.raises(errors.NotFound, match='configmaps "missing" not found') as caught:
        await kube.get(kubernetes.CONFIGMAPS, "test", "missing")
    assert isinstance(caught.value.__cause__, ApiException)
    assert caught.value.__cause__.status == 404
    assert not caught.value.temporary


async def test_already_exists_is_a_conflict(kube: kubernetes.Kube) -> None:
    created = await kube.create(kubernetes.CONFIGMAPS, "test", cm("a"))
    assert created["metadata"]["resourceVersion"]
    with pytest.raises(errors.Conflict) as caught:
        await kube.create(kubernetes.CONFIGMAPS, "test", cm("a"))
    assert isinstance(caught.value.__cause__, ApiException)
    assert caught.value.__cause__.status == 409
    assert caught.value.temporary


async def test_rejected_input_carries_the_server_message(kube: kubernetes.Kube) -> None:
    canary = {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": {"name": "bad"},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
            "service": {"port": 80},
            "analysis": {"interval": "10", "threshold": 1, "stepWeight": 10},
        },
    }
    with pytest.raises(errors.InvalidInput, match=r"spec\.analysis\.interval") as caught:
        await kube.create(kubernetes.CANARIES, "test", canary)
    assert isinstance(caught.value.__cause__, ApiException)
    assert caught.value.__cause__.status == 422
    with pytest.raises(errors.InvalidInput, match="unbalanced parentheses"):
        await kube.list(kubernetes.CONFIGMAPS, "test", label_selector="a in (")


async def test_an_unreachable_server_is_unavailable(tmp_path: pathlib.Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: x\n"
        f"clusters: [{{name: x, cluster: {{server: 'http://127.0.0.1:{port}'}}}}]\n"
        "users: [{name: x, user: {token: t}}]\n"
        "contexts: [{name: x, context: {cluster: x, user: x}}]\n"
    )
    client = await kubernetes.Kube.connect(kubernetes.Config(kubeconfig=str(kubeconfig)))
    try:
        with pytest.raises(errors.Unavailable, match="cannot connect") as caught:
            await client.list(kubernetes.DEPLOYMENTS)
        assert not isinstance(caught.value.__cause__, ApiException)
        assert caught.value.__cause__ is not None
    finally:
        await client.close()


async def test_a_bad_kubeconfig_is_invalid_input(tmp_path: pathlib.Path) -> None:
    with pytest.raises(errors.InvalidInput, match="SLUICE_KUBECONFIG"):
        await kubernetes.Kube.connect(kubernetes.Config(kubeconfig=str(tmp_path / "nope")))


async def test_list_items_carry_kind_and_api_version(kube: kubernetes.Kube) -> None:
    await kube.create(kubernetes.CONFIGMAPS, "test", cm("a"))
    await kube.create(kubernetes.CONFIGMAPS, "other", cm("b"))
    everywhere = await kube.list(kubernetes.CONFIGMAPS)
    names = {(i["metadata"]["namespace"], i["metadata"]["name"]) for i in everywhere.items}
    assert {("test", "a"), ("other", "b")} <= names
    assert {(i["kind"], i["apiVersion"]) for i in everywhere.items} == {("ConfigMap", "v1")}
    assert everywhere.resource_version
    only = await kube.list(kubernetes.CONFIGMAPS, "test")
    assert [i["metadata"]["name"] for i in only.items] == ["a"]


class Recorder:
    def __init__(self) -> None:
        self.changes: list[informers.Change] = []
        self.changed = asyncio.Event()

    async def __call__(self, change: informers.Change) -> None:
        self.changes.append(change)
        self.changed.set()

    async def wait_for(self, kind: str, key: str, timeout: float = 10.0) -> informers.Change:
        deadline = time.monotonic() + timeout
        while True:
            for change in self.changes:
                if (change.type, change.key) == (kind, key):
                    return change
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"no {kind} {key}: {[(c.type, c.key) for c in self.changes]}")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)


async def test_informer_lists_watches_and_stops_promptly(
    cluster: Cluster, kube: kubernetes.Kube
) -> None:
    await kube.create(kubernetes.CONFIGMAPS, "test", cm("before"))
    await kube.create(kubernetes.CONFIGMAPS, "other", cm("elsewhere"))
    recorder = Recorder()
    informer = informers.Informer(
        kube,
        kubernetes.CONFIGMAPS,
        on_change=recorder,
        namespaces=("test",),
        watch_timeout_s=1,
        backoff_initial_s=0.05,
        backoff_max_s=0.2,
    )
    assert informer.problem() == "configmaps in test: not synced yet"
    runner = asyncio.create_task(informer.run())
    try:
        await asyncio.wait_for(informer.synced.wait(), 10)
        assert informer.problem() is None
        assert informer.get("test", "before") is not None
        assert informer.get("other", "elsewhere") is None  # not a watched namespace
        await recorder.wait_for("ADDED", "test/before")

        await kube.create(kubernetes.CONFIGMAPS, "test", cm("after"))
        added = await recorder.wait_for("ADDED", "test/after")
        assert added.obj["kind"] == "ConfigMap"
        # streams are recycled every second; changes keep arriving across them
        await asyncio.sleep(1.5)
        await kube.create(kubernetes.CONFIGMAPS, "test", cm("later"))
        await recorder.wait_for("ADDED", "test/later")
        assert set(informer.cache) == {"test/before", "test/after", "test/later"}
    finally:
        started = time.monotonic()
        informer.stop()
        await asyncio.wait_for(runner, 5)
        assert time.monotonic() - started < 2.5


async def test_informer_relists_after_the_server_is_away(
    tmp_path: pathlib.Path, kube: kubernetes.Kube, cluster: Cluster
) -> None:
    recorder = Recorder()
    informer = informers.Informer(
        kube,
        kubernetes.CONFIGMAPS,
        on_change=recorder,
        watch_timeout_s=1,
        backoff_initial_s=0.05,
        backoff_max_s=0.2,
    )
    await kube.create(kubernetes.CONFIGMAPS, "test", cm("old"))
    runner = asyncio.create_task(informer.run())
    try:
        await asyncio.wait_for(informer.synced.wait(), 10)
        await recorder.wait_for("ADDED", "test/old")
        port = cluster.port
        await cluster.stop()
        for _ in range(200):  # within 10s
            if informer.problem() is not None:
                break
            await asyncio.sleep(0.05)
        assert informer.problem() is not None
        assert "cannot connect" in (informer.problem() or "")
        # a new, empty cluster on the same address: "old" is gone, "new" appears (level-based)
        fresh = Cluster(cluster.settings, port=port, controllers=False)
        await fresh.start()
        try:
            await kube.create(kubernetes.CONFIGMAPS, "test", cm("new"))
            await recorder.wait_for("ADDED", "test/new")
            await recorder.wait_for("DELETED", "test/old")
            assert informer.problem() is None
        finally:
            await fresh.stop()
    finally:
        informer.stop()
        await asyncio.wait_for(runner, 5)


async def test_cancelling_an_informer_ends_its_thread(kube: kubernetes.Kube) -> None:
    recorder = Recorder()
    informer = informers.Informer(kube, kubernetes.SECRETS, on_change=recorder, watch_timeout_s=30)
    runner = asyncio.create_task(informer.run())
    await asyncio.wait_for(informer.synced.wait(), 10)
    await asyncio.sleep(0.2)  # the 30s watch is open now
    started = time.monotonic()
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner
    assert time.monotonic() - started < 2.5


async def test_writes_are_recorded_under_the_agent_as_field_manager(
    cluster: Cluster, tmp_path: pathlib.Path
) -> None:
    """The API server names a write's field manager after the User-Agent: Sluice's writes read
    ``sluice-<service>`` in ``kubectl get -o yaml --show-managed-fields``, not the client's
    generic ``OpenAPI-Generator``."""
    path = cluster.write_kubeconfig(tmp_path / "kubeconfig")
    client = await kubernetes.Kube.connect(
        kubernetes.Config(kubeconfig=str(path), request_timeout_s=5, agent="sluice-analyzer")
    )
    try:
        created = await client.create(kubernetes.CONFIGMAPS, "test", cm("managed"))
    finally:
        await client.close()
    managers = [entry["manager"] for entry in created["metadata"]["managedFields"]]
    assert managers == ["sluice-analyzer"]
