"""The watcher's observation recording against a real JetStream KV bucket."""

from __future__ import annotations

import asyncio

import nats
import pytest

from libs import lifecycle, messages, metrics, settings, streams
from services.watcher.observing import Watcher
from tests.fixtures.nats import NatsServer

pytestmark = pytest.mark.integration

CANARY = messages.CanaryRef(namespace="test", name="podinfo")


def observation(revision: str, replicas: int = 2) -> messages.WorkloadObservation:
    return messages.WorkloadObservation(
        namespace="test",
        name="podinfo",
        revision=revision,
        generation=3,
        observed_generation=3,
        replicas=replicas,
        ready_replicas=replicas,
    )


async def test_record_publishes_revision_detected_only_for_new_revisions(
    nats_server: NatsServer,
) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        await streams.declare(js, streams=(streams.EVENTS,), buckets=(streams.WORKLOADS,))
        kv = await js.key_value(streams.WORKLOADS.name)
        async with asyncio.TaskGroup() as tg:
            rt = lifecycle.Runtime(
                name="watcher",
                settings=settings.ServiceSettings(),
                nc=nc,
                js=js,
                metrics=metrics.create("watcher", "test"),
                stopping=asyncio.Event(),
                _tg=tg,
            )
            watcher = Watcher(rt, kv)
            assert await watcher.record(CANARY, observation("aaa"))
            assert not await watcher.record(CANARY, observation("aaa", replicas=5))
            assert await watcher.record(CANARY, observation("bbb"))
        stored = messages.OBSERVATION_DECODER.decode((await kv.get("test.podinfo")).value or b"")
        assert stored.revision == "bbb"
        sub = await js.subscribe(
            "sluice.events.test.podinfo.revision_detected", ordered_consumer=True
        )
        seen = [
            messages.EVENT_DECODER.decode((await sub.next_msg(timeout=5)).data) for _ in range(2)
        ]
        assert [e.revision for e in seen] == ["aaa", "bbb"]
        await sub.unsubscribe()
    finally:
        await nc.close()
