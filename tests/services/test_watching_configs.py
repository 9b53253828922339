"""The watcher as a real process, for config tracking: which ConfigMaps and Secrets of the
target's pod template are tracked (checksums in the observation, a change is a revision) —
Flagger's rules, the same the traffic-shifter copies by."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import nats
import pytest
from nats.aio.client import Client

from libs import messages, streams
from sandbox.kube.cluster import Cluster
from tests.fixtures.nats import NatsServer
from tests.fixtures.services import ServiceFactory
from tests.services.test_watching import (
    CANARIES,
    CONFIGMAPS,
    DEADLINE_S,
    DEPLOYMENTS,
    SUBJECT,
    Api,
    cluster_settings,
    manifest,
    start_watcher,
)

pytestmark = pytest.mark.integration

SECRETS = "/api/v1/namespaces/test/secrets"
TRACKING = "flagger.app/config-tracking"


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    async with Cluster(cluster_settings()) as running:
        yield running


@pytest.fixture
async def api(cluster: Cluster, http: aiohttp.ClientSession) -> Api:
    return Api(http, cluster.url)


@pytest.fixture
async def bus(nats_server: NatsServer) -> AsyncIterator[Client]:
    nc = await nats.connect(nats_server.url)
    try:
        yield nc
    finally:
        await nc.close()


def configured_deployment() -> dict[str, Any]:
    body = manifest("podinfo-deployment.yaml")
    pod = body["spec"]["template"]["spec"]
    container = pod["containers"][0]
    container["envFrom"] = [{"configMapRef": {"name": "plain"}}]
    container["env"].append(
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "token", "key": "token"}}}
    )
    pod["initContainers"] = [
        {"name": "init", "image": "busybox", "envFrom": [{"configMapRef": {"name": "off"}}]}
    ]
    pod["volumes"] = [
        {"name": "registry", "secret": {"secretName": "registry"}},
        {"name": "nope", "configMap": {"name": "nope", "optional": True}},
    ]
    return body


async def test_only_the_configs_flagger_tracks_make_revisions(
    nats_server: NatsServer,
    cluster: Cluster,
    api: Api,
    bus: Client,
    service: ServiceFactory,
    tmp_path: pathlib.Path,
) -> None:
    proc = start_watcher(service, nats_server, cluster, tmp_path)
    await proc.ready()
    js = bus.jetstream()
    await js.key_value(streams.WORKLOADS.name)
    events = await js.subscribe(SUBJECT, ordered_consumer=True)

    async def next_event() -> messages.RevisionDetected:
        msg = await events.next_msg(timeout=DEADLINE_S)
        event = messages.EVENT_DECODER.decode(msg.data)
        assert isinstance(event, messages.RevisionDetected)
        return event

    await api.create(CONFIGMAPS, {"metadata": {"name": "plain"}, "data": {"A": "1"}})
    await api.create(
        CONFIGMAPS,
        # Flagger reads any value starting with "disable" as disabled
        {"metadata": {"name": "off", "annotations": {TRACKING: "disable"}}, "data": {"B": "1"}},
    )
    await api.create(
        SECRETS, {"metadata": {"name": "token"}, "type": "Opaque", "data": {"token": "djE="}}
    )
    await api.create(
        SECRETS,
        {
            "metadata": {"name": "registry"},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": "e30="},
        },
    )
    await api.create(DEPLOYMENTS, configured_deployment())
    await api.create(CANARIES, manifest("podinfo-canary.yaml"))
    first = await next_event()
    # not the opted-out ConfigMap, not registry credentials, not the missing optional one
    assert set(first.tracked_configs) == {"configmap/plain", "secret/token"}

    # changes to untracked configs are no revisions; a tracked one's is, with the same template
    await api.patch(f"{CONFIGMAPS}/off", {"data": {"B": "2"}})
    await api.patch(f"{SECRETS}/registry", {"data": {".dockerconfigjson": "e30K"}})
    await api.patch(f"{SECRETS}/token", {"data": {"token": "djI="}})
    second = await next_event()
    assert second.revision == first.revision
    assert second.tracked_configs["secret/token"] != first.tracked_configs["secret/token"]
    assert second.tracked_configs["configmap/plain"] == first.tracked_configs["configmap/plain"]

    # opting back in tracks the config: a new revision, as Flagger counts a changed set
    await api.patch(f"{CONFIGMAPS}/off", {"metadata": {"annotations": {TRACKING: None}}})
    third = await next_event()
    assert set(third.tracked_configs) == {"configmap/off", "configmap/plain", "secret/token"}

    # "Disabled" does not start with "disable": Flagger keeps tracking it, and so does Sluice
    await api.patch(f"{CONFIGMAPS}/off", {"metadata": {"annotations": {TRACKING: "Disabled"}}})
    await api.patch(f"{CONFIGMAPS}/off", {"data": {"B": "3"}})
    fourth = await next_event()
    assert fourth.tracked_configs["configmap/off"] != third.tracked_configs["configmap/off"]

    with pytest.raises(nats.errors.TimeoutError):
        await events.next_msg(timeout=0.5)
    await events.unsubscribe()
    assert proc.terminate() == 0
