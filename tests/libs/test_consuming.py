"""libs.consuming against a real nats-server: idle pulls, poison, bounded retries, dead letters."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec
import pytest
from nats.js import api

from libs import consuming, errors, lifecycle, messages, settings, streams

pytestmark = pytest.mark.integration

CANARY = messages.CanaryRef(namespace="test", name="podinfo")
TICK_SUBJECT = messages.tick_subject("test", "podinfo")
DEADLINE_S = 10.0


@pytest.fixture
async def rt(runtime: lifecycle.Runtime) -> lifecycle.Runtime:
    runtime.settings = settings.ServiceSettings(
        nats_request_timeout_s=2.0,
        nats_reconnect_wait_s=0.05,
        fetch_timeout_s=0.05,
        retry_delay_s=0.05,
        max_failures=3,
    )
    await streams.declare(runtime.js, streams=(streams.TICKS, streams.DEAD))
    return runtime


@contextlib.asynccontextmanager
async def consuming_with(
    rt: lifecycle.Runtime,
    consumer: streams.Consumer,
    decoder: msgspec.json.Decoder[Any],
    handler: Callable[[Any], Awaitable[consuming.Later | None]],
    **kwargs: Any,
) -> AsyncIterator[asyncio.Task[None]]:
    await streams.declare(rt.js, consumers=(consumer,))
    task = asyncio.create_task(consuming.consume(rt, consumer, decoder, handler, **kwargs))
    try:
        yield task
    finally:
        rt.stopping.set()
        await asyncio.wait_for(task, timeout=DEADLINE_S)


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + DEADLINE_S
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def dead_letters(rt: lifecycle.Runtime) -> list[Any]:
    """Every message in SLUICE_DEAD, oldest first."""
    info = await rt.js.stream_info(streams.DEAD.name)
    return [
        await rt.js.get_msg(streams.DEAD.name, seq)
        for seq in range(info.state.first_seq, info.state.last_seq + 1)
        if info.state.messages
    ]


def metric(rt: lifecycle.Runtime, name: str, **labels: str) -> float:
    value = rt.metrics.registry.get_sample_value(name, labels)
    return value or 0.0


async def test_an_idle_consumer_survives_every_kind_of_pull_failure(rt: lifecycle.Runtime) -> None:
    """nats-py 2.16 raises a bare asyncio.TimeoutError from an idle pull; nothing a pull raises
    may end the consumer."""
    consumer = streams.Consumer(
        stream=streams.TICKS.name, durable="idle", filter_subject="sluice.tick.>"
    )
    # a bare TimeoutError (= asyncio.TimeoutError), not nats-py's subclass of it
    failures = [TimeoutError(), RuntimeError("pull broke"), OSError("socket")]
    calls = 0
    real_bind = rt.js.pull_subscribe_bind

    async def bind(**kwargs: Any) -> Any:
        psub = await real_bind(**kwargs)
        real_fetch = psub.fetch

        async def fetch(*args: Any, **kw: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls <= 3 * len(failures):
                raise failures[calls % len(failures)]
            return await real_fetch(*args, **kw)

        psub.fetch = fetch
        return psub

    rt.js.pull_subscribe_bind = bind  # type: ignore[method-assign]
    handled: list[messages.Tick] = []

    async def on_tick(tick: messages.Tick) -> None:
        handled.append(tick)

    async with consuming_with(rt, consumer, messages.TICK_DECODER, on_tick) as task:

        async def pulled_enough() -> bool:
            return calls > 3 * len(failures) + 5  # the failures, then real idle pulls

        await until(pulled_enough, "idle pulls")
        assert not task.done()
        await rt.js.publish(TICK_SUBJECT, messages.ENCODER.encode(messages.Tick(canary=CANARY)))

        async def got_it() -> bool:
            return len(handled) == 1

        await until(got_it, "the tick")


async def test_a_deeply_nested_payload_is_dead_lettered_not_a_crash(rt: lifecycle.Runtime) -> None:
    tick = json.loads(messages.ENCODER.encode(messages.Tick(canary=CANARY)))
    nested = "[" * 5000 + "]" * 5000  # msgspec raises RecursionError for this, even when ignored
    payload = json.dumps(tick)[:-1].encode() + b', "ignored": ' + nested.encode() + b"}"
    handled: list[messages.Tick] = []

    async def on_tick(tick: messages.Tick) -> None:
        handled.append(tick)

    async with consuming_with(rt, streams.ANALYZER_TICKS, messages.TICK_DECODER, on_tick):
        await rt.js.publish(TICK_SUBJECT, payload)

        async def buried() -> bool:
            return len(await dead_letters(rt)) == 1

        await until(buried, "the dead letter")
        (letter,) = await dead_letters(rt)
        assert letter.subject == "sluice.dead.analyzer"
        assert letter.data == payload  # byte for byte
        assert letter.headers[messages.HEADER_DEAD_REASON] == "undecodable"
        assert letter.headers[messages.HEADER_DEAD_SUBJECT] == TICK_SUBJECT
        assert letter.headers[messages.HEADER_DEAD_CONSUMER] == "SLUICE_TICKS/analyzer"
        assert "RecursionError" in letter.headers[messages.HEADER_DEAD_ERROR]
        assert (
            metric(
                rt, "sluice_messages_rejected_total", subject="sluice.tick.>", reason="undecodable"
            )
            == 1
        )
        # the tick is gone from the work queue: nothing comes back
        info = await rt.js.consumer_info(streams.TICKS.name, "analyzer")
        assert (info.num_pending, info.num_ack_pending) == (0, 0)
        await rt.js.publish(TICK_SUBJECT, messages.ENCODER.encode(messages.Tick(canary=CANARY)))

        async def still_works() -> bool:
            return len(handled) == 1

        await until(still_works, "a valid tick after the poison")


async def test_a_permanent_error_is_dead_lettered_at_once_and_reported(
    rt: lifecycle.Runtime,
) -> None:
    reported: list[consuming.DeadLetter[messages.Tick]] = []

    async def on_tick(tick: messages.Tick) -> None:
        raise errors.InvalidInput("namespace 'a b' cannot be a subject token")

    async def on_dead(letter: consuming.DeadLetter[messages.Tick]) -> None:
        reported.append(letter)

    async with consuming_with(
        rt, streams.ANALYZER_TICKS, messages.TICK_DECODER, on_tick, on_dead=on_dead
    ):
        await rt.js.publish(TICK_SUBJECT, messages.ENCODER.encode(messages.Tick(canary=CANARY)))

        async def buried() -> bool:
            return len(reported) == 1

        await until(buried, "the report")
    (letter,) = await dead_letters(rt)
    assert letter.headers[messages.HEADER_DEAD_REASON] == "permanent"
    assert letter.headers[messages.HEADER_DEAD_DELIVERIES] == "1"
    assert reported[0].value == messages.Tick(
        canary=CANARY, scheduled_at_ms=reported[0].value.scheduled_at_ms
    )  # type: ignore[union-attr]
    assert (reported[0].reason, reported[0].deliveries) == ("permanent", 1)
    assert (
        metric(rt, "sluice_message_failures_total", subject="sluice.tick.>", decision="permanent")
        == 1
    )
    assert (
        metric(
            rt, "sluice_messages_dead_lettered_total", subject="sluice.tick.>", reason="permanent"
        )
        == 1
    )


async def test_a_tick_that_keeps_failing_is_retried_a_bounded_number_of_times(
    rt: lifecycle.Runtime,
) -> None:
    """Ticks are re-scheduled by nak, so their delivery count cannot bound retries; failures
    travel in a header of a retried copy and the third (max_failures) is the last."""
    attempts: list[float] = []
    reported: list[consuming.DeadLetter[messages.Tick]] = []

    async def on_tick(tick: messages.Tick) -> None:
        attempts.append(asyncio.get_running_loop().time())
        raise RuntimeError("the analyzer has a bug")

    async def on_dead(letter: consuming.DeadLetter[messages.Tick]) -> None:
        reported.append(letter)

    async with consuming_with(
        rt, streams.ANALYZER_TICKS, messages.TICK_DECODER, on_tick, on_dead=on_dead
    ):
        await rt.js.publish(TICK_SUBJECT, messages.ENCODER.encode(messages.Tick(canary=CANARY)))

        async def buried() -> bool:
            return len(reported) == 1

        await until(buried, "the dead letter")
    assert len(attempts) == 3
    assert all(b - a >= 0.04 for a, b in itertools.pairwise(attempts))  # retry delay kept
    (letter,) = await dead_letters(rt)
    assert letter.headers[messages.HEADER_DEAD_REASON] == "exhausted"
    assert letter.headers[messages.HEADER_DEAD_DELIVERIES] == "3"
    assert letter.headers[messages.HEADER_DEAD_ERROR] == "RuntimeError: the analyzer has a bug"
    info = await rt.js.stream_info(streams.TICKS.name)
    assert info.state.messages == 0


async def test_only_consecutive_tick_failures_count(rt: lifecycle.Runtime) -> None:
    script = ["fail", "fail", "later", "fail", "fail", "ack"]  # never 3 failures in a row
    seen: list[dict[str, str]] = []

    async def on_tick(tick: messages.Tick) -> consuming.Later | None:
        step = script[len(seen)]
        seen.append(step)
        if step == "fail":
            raise errors.Unavailable("Prometheus is down")
        return consuming.Later(0.05) if step == "later" else None

    async with consuming_with(rt, streams.ANALYZER_TICKS, messages.TICK_DECODER, on_tick):
        await rt.js.publish(TICK_SUBJECT, messages.ENCODER.encode(messages.Tick(canary=CANARY)))

        async def finished() -> bool:
            return len(seen) == len(script)

        await until(finished, "the whole script")
    info = await rt.js.stream_info(streams.DEAD.name)
    assert info.state.messages == 0


async def test_an_event_consumer_dead_letters_its_last_delivery(rt: lifecycle.Runtime) -> None:
    consumer = dataclasses.replace(streams.NOTIFIER_EVENTS, durable="events-test", max_deliver=3)
    deliveries = 0

    async def on_event(event: messages.Event) -> None:
        nonlocal deliveries
        deliveries += 1
        raise errors.Unavailable("Slack is down")

    async with consuming_with(rt, consumer, messages.EVENT_DECODER, on_event):
        event = messages.Terminated(canary=CANARY, message="Terminated canary podinfo.test")
        await rt.js.publish(
            messages.event_subject("test", "podinfo", "terminated"), messages.ENCODER.encode(event)
        )

        async def buried() -> bool:
            return len(await dead_letters(rt)) == 1

        await until(buried, "the dead letter")
    assert deliveries == 3
    (letter,) = await dead_letters(rt)
    assert letter.subject == "sluice.dead.events-test"
    assert letter.headers[messages.HEADER_DEAD_REASON] == "exhausted"
    assert letter.headers[messages.HEADER_DEAD_DELIVERIES] == "3"


async def test_without_a_dead_letter_stream_nothing_is_terminated(rt: lifecycle.Runtime) -> None:
    """A dead letter that cannot be stored leaves the message to be redelivered: nothing lost."""
    await rt.js.delete_stream(streams.DEAD.name)
    seen: list[messages.Tick] = []

    async def on_tick(tick: messages.Tick) -> None:
        seen.append(tick)
        if len(seen) < 3:
            raise errors.InvalidInput("bad")

    async with consuming_with(rt, streams.ANALYZER_TICKS, messages.TICK_DECODER, on_tick):
        await rt.js.publish(TICK_SUBJECT, messages.ENCODER.encode(messages.Tick(canary=CANARY)))

        async def handled_after_all() -> bool:
            return len(seen) == 3

        await until(handled_after_all, "the redeliveries")


async def test_the_analyzer_reports_a_dead_tick_as_a_warning_event(rt: lifecycle.Runtime) -> None:
    from services.analyzer import handlers  # the service's own reaction to a dead letter

    sub = await rt.js.subscribe(
        "sluice.events.test.podinfo.dead_lettered",
        config=api.ConsumerConfig(deliver_policy=api.DeliverPolicy.ALL),
    )
    analyzer = handlers.Analyzer(rt)
    letter = consuming.DeadLetter(
        subject=TICK_SUBJECT,
        reason="exhausted",
        error="Unavailable: " + "x" * 5000,
        deliveries=10,
        value=messages.Tick(canary=CANARY),
    )
    await analyzer.on_dead_tick(letter)
    msg = await sub.next_msg(timeout=5)
    event = messages.EVENT_DECODER.decode(msg.data)
    assert isinstance(event, messages.DeadLettered)
    assert event.severity == messages.Severity.WARN
    assert event.message.startswith(
        "Analysis of podinfo.test stopped: the message failed 10 times (exhausted) and was "
        "moved to SLUICE_DEAD: Unavailable: xxx"
    )
    assert len(event.message) < 500
    await sub.unsubscribe()


@pytest.mark.parametrize(
    ("failures", "delay_s"), [(1, 5.0), (2, 10.0), (3, 20.0), (7, 300.0), (1000, 300.0)]
)
def test_retries_back_off_to_a_maximum(failures: int, delay_s: float) -> None:
    class Runtime:
        settings = settings.ServiceSettings(retry_delay_s=5.0, max_retry_delay_s=300.0)

    worker = consuming._Worker(
        Runtime(), streams.NOTIFIER_EVENTS, messages.EVENT_DECODER, None, None
    )  # type: ignore[arg-type]
    assert worker._backoff(failures) == delay_s


async def test_a_message_arriving_during_a_long_pull_is_handled_before_the_pull_ends(
    rt: lifecycle.Runtime,
) -> None:
    """A pull waiting for work hands a message over when it arrives: with pulls of 60 s, ticks
    published one at a time into an idle consumer are all handled well within the test's
    deadline (a pull that kept its first message until it expired would fail this)."""
    rt.settings = msgspec.structs.replace(rt.settings, fetch_timeout_s=60.0)
    handled: asyncio.Queue[messages.Tick] = asyncio.Queue()

    async def on_tick(tick: messages.Tick) -> None:
        await handled.put(tick)

    async with consuming_with(rt, streams.ANALYZER_TICKS, messages.TICK_DECODER, on_tick):
        for name in ("a", "b", "c"):
            await asyncio.sleep(0.2)  # the consumer is idle in a lingering pull again
            canary = messages.CanaryRef(namespace="test", name=name)
            await rt.js.publish(
                messages.tick_subject("test", name),
                messages.ENCODER.encode(messages.Tick(canary=canary)),
            )
            got = await asyncio.wait_for(handled.get(), DEADLINE_S)
            assert got.canary == canary
        rt.stopping.set()  # a pull of 60 s is abandoned at once when the service stops
