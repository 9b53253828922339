"""``Watcher.record`` under a lost compare-and-set, and ``forget``, against a real JetStream."""

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
        generation=1,
        observed_generation=1,
        replicas=replicas,
    )


class StaleFirstRead(Watcher):
    """Its first read answers with a stale value, as if another replica wrote in between."""

    stale = True

    async def _load(self, key: str) -> tuple[messages.WorkloadObservation | None, int]:
        if self.stale:
            self.stale = False
            return None, 0
        return await super()._load(key)


async def test_a_lost_compare_and_set_is_retried_against_the_latest_value(
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
            assert await Watcher(rt, kv).record(CANARY, observation("aaa"))
            racing = StaleFirstRead(rt, kv)
            # create() fails (the key exists), the retry reads "aaa": same revision, no event
            assert not await racing.record(CANARY, observation("aaa", replicas=4))
            stored = messages.OBSERVATION_DECODER.decode(
                (await kv.get("test.podinfo")).value or b""
            )
            assert stored.replicas == 4

            # forget deletes; recording again is a new revision (a re-created canary)
            assert await racing.keys() == ["test.podinfo"]
            await racing.forget("test", "podinfo")
            assert await racing.keys() == []
            assert await racing.record(CANARY, observation("aaa"))
    finally:
        await nc.close()
