"""JetStream: publishing the examples, watching the consumers, reading what they gave up on.

``publish`` stores one example (with a message id and a correlation id); ``Advisories`` counts
the messages each consumer terminated or dropped after its max deliveries; ``wait_drained``
polls the durable consumers until nothing is pending or unacknowledged; ``read_dead_letters``
counts what is in ``SLUICE_DEAD`` by consumer and reason.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import re
import time
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from libs import messages, streams
from tests.fuzz import model, planning, subjects

DEAD_STREAM = "SLUICE_DEAD"
DEAD_PREFIX = "sluice.dead"
DEAD_REASON = "Sluice-Dead-Reason"
ADVISORY_TERMINATED = "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.>"
ADVISORY_MAX_DELIVERIES = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>"
# the reason of a MSG_TERMINATED advisory for a message the stream itself removed
SERVER_DELETED = "Unacknowledged message was deleted"


class Advisories:
    """Counts JetStream's advisories per consumer: terminated and max-deliveries messages."""

    def __init__(self) -> None:
        self.terminated: collections.Counter[str] = collections.Counter()
        self.exhausted: collections.Counter[str] = collections.Counter()
        self.replaced: collections.Counter[str] = collections.Counter()
        # consumer -> stream seq -> the advisory's reason (nats-server 2.11+), for evidence
        self.terminated_seqs: dict[str, dict[int, str]] = collections.defaultdict(dict)
        self.subs: list[Any] = []

    async def start(self, nc: Client) -> None:
        self.subs.append(await nc.subscribe(ADVISORY_TERMINATED, cb=self._terminated))
        self.subs.append(await nc.subscribe(ADVISORY_MAX_DELIVERIES, cb=self._exhausted))

    async def _terminated(self, msg: Msg) -> None:
        consumer = _advisory_consumer(msg)
        try:
            advisory = json.loads(msg.data)
            reason = str(advisory.get("reason", ""))
            seq = int(advisory["stream_seq"])
        except (ValueError, TypeError, AttributeError, KeyError):
            reason, seq = "", 0
        if reason == SERVER_DELETED:
            # the stream dropped it (a newer tick for the canary replaced it): not a consumer
            # giving up on a message
            self.replaced[consumer] += 1
            return
        self.terminated[consumer] += 1
        self.terminated_seqs[consumer][seq] = reason

    async def _exhausted(self, msg: Msg) -> None:
        self.exhausted[_advisory_consumer(msg)] += 1

    async def close(self) -> None:
        for sub in self.subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()


def _advisory_consumer(msg: Msg) -> str:
    try:
        return str(json.loads(msg.data).get("consumer", ""))
    except ValueError:
        return ""


async def publish(
    js: JetStreamContext,
    item: planning.Planned,
    run_id: str,
    rows: dict[str, model.RowReport],
    slots: asyncio.Semaphore,
    stored: dict[tuple[str, int], str],
) -> None:
    example = item.example
    key = f"{subjects.SHORT[example.row]}.{item.index}"
    headers = {
        messages.HEADER_MSG_ID: f"fuzz-{run_id}-{key}",
        messages.HEADER_CORRELATION_ID: f"fuzz-{key}",
    }
    async with slots:
        try:
            ack = await js.publish(example.subject, example.payload, timeout=10, headers=headers)
        except Exception as exc:  # not stored: counted apart, never as a service failure
            report = rows[example.row]
            name = type(exc).__name__
            report.publish_errors[name] = report.publish_errors.get(name, 0) + 1
            return
    # which of ours a stream sequence is: evidence for messages that went astray
    stored[(ack.stream, ack.seq)] = f"fuzz-{key} [{example.label}] on {example.subject[:80]!r}"
    for consumer in item.outcomes:
        if consumer in rows:
            planning.count_sent(rows[consumer], item, consumer)


async def consumer_info(js: JetStreamContext, consumer: streams.Consumer) -> Any:
    try:
        return await js.consumer_info(consumer.stream, consumer.durable, timeout=5)
    except (nats.errors.Error, nats.js.errors.Error, TimeoutError):
        return None


async def last_seq(js: JetStreamContext, stream: str) -> int:
    try:
        return int((await js.stream_info(stream)).state.last_seq)
    except (nats.errors.Error, nats.js.errors.Error, TimeoutError):
        return 0


async def wait_drained(
    js: JetStreamContext, rows: dict[str, model.RowReport], timeout_s: float
) -> dict[str, Any]:
    """Poll until every consumer has nothing pending or unacknowledged, twice in a row with no
    new deliveries between (a handled hint publishes a tick); returns the last infos."""
    deadline = time.monotonic() + timeout_s
    previous: tuple[Any, ...] | None = None
    infos: dict[str, Any] = {}
    while True:
        infos = {row: await consumer_info(js, subjects.CONSUMER_OF[row]) for row in rows}
        for row, info in infos.items():
            if info is not None:
                rows[row].num_redelivered_peak = max(
                    rows[row].num_redelivered_peak, info.num_redelivered or 0
                )
        state = tuple(
            (i.num_pending, i.num_ack_pending, i.delivered.consumer_seq) if i else None
            for i in infos.values()
        )
        settled = all(
            i is not None and i.num_pending == 0 and i.num_ack_pending == 0 for i in infos.values()
        )
        if settled and state == previous:
            for row in infos:
                rows[row].drained = True
            return infos
        if time.monotonic() > deadline:
            return infos
        previous = state
        await asyncio.sleep(0.2)  # polling period


_DEAD_MSG_ID = re.compile(r"-(\d+)-[a-z]+$")  # <stream>-<stream seq>-<reason>, as evidence only


async def read_dead_letters(
    js: JetStreamContext, errors: list[str]
) -> tuple[bool, dict[str, collections.Counter[str]], dict[str, set[int]]]:
    """Messages in SLUICE_DEAD, counted by durable (subject) and Sluice-Dead-Reason, and the
    original stream sequences their message ids name."""
    found: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    seqs: dict[str, set[int]] = collections.defaultdict(set)
    try:
        info = await js.stream_info(DEAD_STREAM)
    except nats.js.errors.NotFoundError:
        return False, found, seqs
    total = int(info.state.messages)
    if not total:
        return True, found, seqs
    config = api.ConsumerConfig(
        headers_only=True,
        ack_policy=api.AckPolicy.NONE,
        deliver_policy=api.DeliverPolicy.ALL,
        inactive_threshold=30.0,
    )
    psub = await js.pull_subscribe(f"{DEAD_PREFIX}.>", stream=DEAD_STREAM, config=config)
    seen = 0
    try:
        while seen < total:
            try:
                batch = await psub.fetch(min(256, total - seen), timeout=5)
            except TimeoutError:  # nats-py raises its own and, at times, a bare one
                errors.append(f"reading {DEAD_STREAM}: {seen} of {total} messages read")
                break
            for msg in batch:
                durable = msg.subject[len(DEAD_PREFIX) + 1 :]
                found[durable][(msg.headers or {}).get(DEAD_REASON, "(no reason header)")] += 1
                match = _DEAD_MSG_ID.search((msg.headers or {}).get(messages.HEADER_MSG_ID, ""))
                if match:
                    seqs[durable].add(int(match.group(1)))
                seen += 1
    finally:
        with contextlib.suppress(Exception):
            await psub.unsubscribe()
    return True, found, seqs
