"""Every canary keeps one tick pending between its steps: the ticks consumer must deliver as
many as there are canaries (it once stopped at max_ack_pending = 1000)."""

from __future__ import annotations

import dataclasses

import msgspec
import pytest
from nats.aio.client import Client

from libs import messages, streams

pytestmark = pytest.mark.integration

CANARIES = 1200  # more than the limit that used to hold


async def test_ticks_of_more_than_a_thousand_canaries_are_all_delivered(nc: Client) -> None:
    js = nc.jetstream(timeout=10)
    await streams.declare(js, streams=(streams.TICKS,))
    # a consumer declared by an older release keeps working: declaring lifts its limit
    await js.add_consumer(
        streams.TICKS.name,
        dataclasses.replace(streams.ANALYZER_TICKS, max_ack_pending=1000).config(),
    )
    await streams.declare(js, consumers=(streams.ANALYZER_TICKS,))
    info = await js.consumer_info(streams.TICKS.name, streams.ANALYZER_TICKS.durable)
    assert info.config.max_ack_pending == streams.ANALYZER_TICKS.max_ack_pending

    for index in range(CANARIES):
        ref = messages.CanaryRef(namespace="load", name=f"app-{index}")
        tick = msgspec.json.encode(messages.Tick(canary=ref, interval_s=10))
        await js.publish(messages.tick_subject(ref.namespace, ref.name), tick, timeout=5)

    psub = await js.pull_subscribe_bind(
        durable=streams.ANALYZER_TICKS.durable, stream=streams.TICKS.name
    )
    seen: set[str] = set()
    while len(seen) < CANARIES:
        try:
            msgs = await psub.fetch(200, timeout=2)
        except TimeoutError:
            break
        for msg in msgs:
            seen.add(msg.subject)
            await msg.nak(delay=60)  # re-scheduled as the analyzer does: stays pending
    await psub.unsubscribe()
    assert len(seen) == CANARIES
