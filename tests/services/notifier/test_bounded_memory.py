"""What a stream of events about ever new canaries — or names no canary can have — leaves in
the notifier's and the traffic-shifter's memory: nothing that grows with the number of names.

* A name that is not a Kubernetes name is refused by ``libs.adapters.kubernetes`` before any
  request (a fuzzed name of a megabyte became a URL of three: percent-encoded, then re-encoded
  by urllib3 one small string per escape). It is a ``NotFound`` too, as the API server answers.
* The Kubernetes Event recorder's rate-limit buckets are pruned: a bucket that has refilled is
  no different from a new one, so only recently busy canaries keep theirs.
"""

from __future__ import annotations

import ipaddress
import pathlib
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from libs import errors, messages
from libs.adapters import kubernetes
from sandbox.kube.cluster import Cluster
from sandbox.kube.config import ClusterSettings
from services.notifier import kubeevents

pytestmark = pytest.mark.integration


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    second = random.randint(100, 250)
    settings = ClusterSettings(
        pod_network=ipaddress.IPv4Network(f"127.{second}.0.0/17"),
        service_network=ipaddress.IPv4Network(f"127.{second}.128.0/17"),
        namespaces=("default", "test"),
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


@pytest.fixture
async def unreachable(tmp_path: pathlib.Path) -> AsyncIterator[kubernetes.Kube]:
    """A client of a port nobody listens on: any request it makes fails as Unavailable."""
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
    client = await kubernetes.Kube.connect(
        kubernetes.Config(kubeconfig=str(kubeconfig), request_timeout_s=5)
    )
    try:
        yield client
    finally:
        await client.close()


# ----------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("namespace", "name", "field"),
    [
        ("test", "é" * 1_000_000, "name"),
        ("test", "a" * 254, "name"),
        ("test", "Podinfo", "name"),
        ("test", "pod info", "name"),
        ("test", "-podinfo", "name"),
        ("test", "", "name"),
        ("t" * 64, "podinfo", "namespace"),
        ("te.st", "podinfo", "namespace"),
        ("%2e%2e", "podinfo", "namespace"),
    ],
)
async def test_a_name_no_object_can_have_is_refused_before_any_request(
    unreachable: kubernetes.Kube, namespace: str, name: str, field: str
) -> None:
    calls: tuple[Callable[[], Awaitable[Any]], ...] = (
        lambda: unreachable.get(kubernetes.CANARIES, namespace, name),
        lambda: unreachable.get(kubernetes.CONFIGMAPS, namespace, name),
        lambda: unreachable.patch(kubernetes.DEPLOYMENTS, namespace, name, {}),
        lambda: unreachable.replace(kubernetes.APISIX_ROUTES, namespace, name, {}),
        lambda: unreachable.patch_status(kubernetes.CANARIES, namespace, name, {}),
        lambda: unreachable.create(kubernetes.EVENTS, namespace, {"metadata": {"name": name}}),
    )
    for call in calls:
        # a request would have failed as Unavailable: none was made
        with pytest.raises(kubernetes.InvalidName) as caught:
            await call()
        assert isinstance(caught.value, errors.NotFound)
        assert isinstance(caught.value, errors.InvalidInput)
        assert caught.value.path == f"metadata.{field}"
        assert f"metadata.{field}: expected a DNS-1123" in str(caught.value)
        assert len(str(caught.value)) < 1000  # the value is clipped, never repeated whole


async def test_valid_names_still_reach_the_server(
    unreachable: kubernetes.Kube, kube: kubernetes.Kube
) -> None:
    for name in ("podinfo", "a" * 253, "podinfo-primary.v1", "0"):
        with pytest.raises(errors.Unavailable):
            await unreachable.get(kubernetes.CONFIGMAPS, "test", name)
    with pytest.raises(errors.NotFound) as caught:
        await kube.get(kubernetes.CONFIGMAPS, "test", "a" * 253)
    assert not isinstance(caught.value, kubernetes.InvalidName)  # the server's own 404
    created = await kube.create(
        kubernetes.CONFIGMAPS, "test", {"metadata": {"generateName": "gen-"}, "data": {}}
    )
    assert created["metadata"]["name"].startswith("gen-")


# ----------------------------------------------------------------------------- rate limits


def canary(name: str) -> dict[str, object]:
    return {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": {"name": name, "namespace": "test", "uid": f"uid-{name}"},
    }


def event(name: str) -> messages.PhaseChanged:
    return messages.PhaseChanged(
        canary=messages.CanaryRef(namespace="test", name=name),
        previous=messages.Phase.INITIALIZED,
        phase=messages.Phase.PROGRESSING,
        message=f"Advance {name} canary weight 10",
    )


def test_a_bucket_is_full_again_once_refilled() -> None:
    bucket = kubeevents.TokenBucket(burst=2, rate=1.0)
    assert bucket.full(100.0)  # never used
    assert bucket.take(100.0) == 0.0
    assert not bucket.full(100.5)
    assert bucket.full(101.0)


async def test_the_event_recorder_keeps_buckets_of_busy_canaries_only(
    kube: kubernetes.Kube, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kubeevents, "PRUNE_AT_BUCKETS", 8)
    # refills at once: every canary is quiet again by the next event
    quick = kubeevents.Recorder(kube, burst=1, rate_per_s=1e9)
    for i in range(60):
        name = f"canary-{i}"
        await quick.record(canary(name), event(name), f"id-{i}")
        assert len(quick._buckets) <= 16
    # never refills: every canary stays busy and keeps its limit, however many came since
    slow = kubeevents.Recorder(kube, burst=1, rate_per_s=1e-9)
    await slow.record(canary("busy"), event("busy"), "busy-1")
    for i in range(20):
        await slow.record(canary(f"other-{i}"), event(f"other-{i}"), f"other-{i}")
    with pytest.raises(kubeevents.RateLimited):
        await slow.record(canary("busy"), event("busy"), "busy-2")
