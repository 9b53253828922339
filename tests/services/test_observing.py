"""The watcher's observation recording against a real JetStream KV bucket."""

from __future__ import annotations

import pytest
from nats.js.kv import KeyValue

from libs import lifecycle, messages, streams
from services.watcher.observing import Watcher

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


async def stored(kv: KeyValue) -> messages.WorkloadObservation:
    return messages.OBSERVATION_DECODER.decode((await kv.get("test.podinfo")).value or b"")


class StaleFirstRead(Watcher):
    """Its first read answers with a stale value, as if another replica wrote in between."""

    stale = True

    async def _load(self, key: str) -> tuple[messages.WorkloadObservation | None, int]:
        if self.stale:
            self.stale = False
            return None, 0
        return await super()._load(key)


async def test_record_publishes_revision_detected_only_for_new_revisions(
    runtime: lifecycle.Runtime,
) -> None:
    kv = await runtime.js.key_value(streams.WORKLOADS.name)
    watcher = Watcher(runtime, kv)
    assert await watcher.record(CANARY, observation("aaa"))
    assert not await watcher.record(CANARY, observation("aaa", replicas=5))
    assert await watcher.record(CANARY, observation("bbb"))
    assert (await stored(kv)).revision == "bbb"
    sub = await runtime.js.subscribe(
        "sluice.events.test.podinfo.revision_detected", ordered_consumer=True
    )
    seen = [messages.EVENT_DECODER.decode((await sub.next_msg(timeout=5)).data) for _ in range(2)]
    assert [e.revision for e in seen] == ["aaa", "bbb"]
    await sub.unsubscribe()


async def test_a_lost_compare_and_set_is_retried_against_the_latest_value(
    runtime: lifecycle.Runtime,
) -> None:
    kv = await runtime.js.key_value(streams.WORKLOADS.name)
    assert await Watcher(runtime, kv).record(CANARY, observation("aaa"))
    racing = StaleFirstRead(runtime, kv)
    # create() fails (the key exists), the retry reads "aaa": same revision, no event
    assert not await racing.record(CANARY, observation("aaa", replicas=4))
    assert (await stored(kv)).replicas == 4
    # forget deletes; recording again is a new revision (a re-created canary)
    assert await racing.keys() == ["test.podinfo"]
    await racing.forget("test", "podinfo")
    assert await racing.keys() == []
    assert await racing.record(CANARY, observation("aaa"))
