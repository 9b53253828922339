"""JetStream streams, consumers and KV buckets, declared as data and created idempotently.

Every service calls ``declare(js, ...)`` for what it uses at start-up; creating something that
already exists with the same configuration is a no-op, and a changed configuration is applied
with an update, so replicas of different versions can start in any order.
"""

from __future__ import annotations

import dataclasses
import logging

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext, api

from libs import errors, messages

log = logging.getLogger(__name__)

DAY_S = 24 * 3600.0


@dataclasses.dataclass(frozen=True)
class Stream:
    name: str
    subjects: tuple[str, ...]
    retention: api.RetentionPolicy = api.RetentionPolicy.LIMITS
    max_age_s: float = 7 * DAY_S
    duplicate_window_s: float = 120.0
    max_msgs_per_subject: int = -1
    max_bytes: int = -1  # -1: unlimited; else the oldest messages are discarded

    def config(self, replicas: int = 1) -> api.StreamConfig:
        return api.StreamConfig(
            name=self.name,
            subjects=list(self.subjects),
            retention=self.retention,
            storage=api.StorageType.FILE,
            num_replicas=replicas,
            max_age=self.max_age_s,
            duplicate_window=self.duplicate_window_s,
            max_msgs_per_subject=self.max_msgs_per_subject,
            max_bytes=self.max_bytes,
            discard=api.DiscardPolicy.OLD,
        )


@dataclasses.dataclass(frozen=True)
class Consumer:
    stream: str
    durable: str
    filter_subject: str
    ack_wait_s: float = 30.0
    max_deliver: int = 10
    max_ack_pending: int = 1000
    # Handlers re-schedule these messages (``consuming.Later``), so the delivery count says
    # nothing about failures and max_deliver is -1: failures are counted in a header of a
    # retried copy instead, up to the ``SLUICE_MAX_FAILURES`` setting.
    reschedules: bool = False

    def config(self) -> api.ConsumerConfig:
        return api.ConsumerConfig(
            durable_name=self.durable,
            filter_subject=self.filter_subject,
            ack_policy=api.AckPolicy.EXPLICIT,
            deliver_policy=api.DeliverPolicy.ALL,
            ack_wait=self.ack_wait_s,
            max_deliver=self.max_deliver,
            max_ack_pending=self.max_ack_pending,
        )


@dataclasses.dataclass(frozen=True)
class Bucket:
    name: str
    history: int = 1
    description: str = ""
    ttl_s: float = 0  # 0: values never expire

    def config(self, replicas: int = 1) -> api.KeyValueConfig:
        return api.KeyValueConfig(
            bucket=self.name,
            history=self.history,
            description=self.description,
            storage=api.StorageType.FILE,
            replicas=replicas,
            ttl=self.ttl_s or None,
        )


# ----------------------------------------------------------------------------- declarations

EVENTS = Stream(name="SLUICE_EVENTS", subjects=(messages.EVENTS_ALL,))
TICKS = Stream(
    name="SLUICE_TICKS",
    subjects=(messages.TICKS_ALL,),
    retention=api.RetentionPolicy.WORK_QUEUE,
    max_age_s=0,
    max_msgs_per_subject=1,  # one pending tick per canary
)

# Messages a consumer gave up on, with the reason in headers; kept for a week to be read and
# replayed by people (see docs/operations.md). Oldest first out past 1 GiB.
DEAD = Stream(
    name="SLUICE_DEAD",
    subjects=(messages.DEAD_ALL,),
    max_age_s=7 * DAY_S,
    max_bytes=1 << 30,
)

WORKLOADS = Bucket(name="sluice_workloads", description="watcher: workload readiness and revision")
CANARIES = Bucket(
    name="sluice_canaries", description="watcher: Canary objects (spec, status), validated"
)
TEMPLATES = Bucket(name="sluice_templates", description="watcher: MetricTemplates, validated")
GATES = Bucket(
    name="sluice_gates",
    history=5,
    description="webhook-runner: loadtester gates and rollback switches, shared by every replica",
)
# One key per event and destination the notifier told, so a redelivered event (after a crash,
# or a failed Kubernetes write) never alerts twice, on any replica.
NOTIFIED = Bucket(
    name="sluice_notified",
    ttl_s=24 * 3600.0,
    description="notifier: which destinations were told about which event",
)
# A running load-test task holds its key (and refreshes it) so no other replica starts the same
# one; a replica that dies releases it when the TTL expires.
TASKS = Bucket(
    name="sluice_tasks",
    ttl_s=60.0,
    description="webhook-runner: load-test tasks running now",
)
# A step's events from just before its status write until they are published (one key per
# canary), so that a write whose answer was lost or a replica that died in between cannot lose
# them; whichever replica takes the next step tells them (services/analyzer/committing.py).
OUTBOX = Bucket(
    name="sluice_outbox",
    ttl_s=24 * 3600.0,
    description="analyzer: events of status writes not yet told",
)
# Standalone mode: each canary's APISIX route as it was before Sluice changed it, so deleting
# the canary gives it back exactly (key <namespace>.<canary>; written once, deleted on revert).
ROUTES = Bucket(
    name="sluice_routes",
    description="traffic-shifter: APISIX routes as they were before their canary",
)

# 30 deliveries with doubling delays (5 s ... 5 min) ride out about two hours of Kubernetes or
# chat-tool downtime before an event is dead-lettered (and can be replayed from SLUICE_DEAD).
NOTIFIER_EVENTS = Consumer(
    stream=EVENTS.name, durable="notifier", filter_subject=messages.EVENTS_ALL, max_deliver=30
)
ANALYZER_TICKS = Consumer(
    stream=TICKS.name,
    durable="analyzer",
    filter_subject=messages.TICKS_ALL,
    max_deliver=-1,
    # Every canary's tick stays pending between two steps (nak with a delay keeps it
    # unacknowledged), so a limit here would be a limit on the canaries analysed: with 1000,
    # canary 1001 never got a step. The replicas' SLUICE_MAX_IN_FLIGHT bounds the work at once.
    max_ack_pending=-1,
    reschedules=True,
)
ANALYZER_HINTS = Consumer(
    stream=EVENTS.name,
    durable="analyzer-hints",
    filter_subject=f"{messages.EVENTS_PREFIX}.*.*.revision_detected",
)


async def declare(
    js: JetStreamContext,
    streams: tuple[Stream, ...] = (),
    consumers: tuple[Consumer, ...] = (),
    buckets: tuple[Bucket, ...] = (),
    timeout_s: float = 5.0,
    replicas: int = 1,
) -> None:
    """Create (or update to match) the given streams, then buckets, then consumers, each
    stream and bucket with ``replicas`` copies in a JetStream cluster (``SLUICE_STREAM_REPLICAS``)."""
    try:
        for stream in streams:
            try:
                await js.add_stream(stream.config(replicas))
            except nats.js.errors.BadRequestError:
                # exists with another configuration: bring it to the declared one
                await js.update_stream(stream.config(replicas))
        for bucket in buckets:
            try:
                await js.create_key_value(bucket.config(replicas))
            except nats.js.errors.BadRequestError as exc:
                # exists with another configuration (e.g. other replicas): used as it is
                log.warning(
                    "KV bucket %s exists with another configuration (%s); kept", bucket.name, exc
                )
        for consumer in consumers:
            await js.add_consumer(consumer.stream, consumer.config())
    except nats.errors.TimeoutError as exc:
        raise errors.Timeout(f"JetStream did not answer within {timeout_s}s: {exc}") from exc
    except (nats.js.errors.Error, nats.errors.Error) as exc:
        raise errors.Unavailable(f"declaring JetStream assets failed: {exc}") from exc
    log.debug(
        "declared streams=%s consumers=%s buckets=%s",
        [s.name for s in streams],
        [c.durable for c in consumers],
        [b.name for b in buckets],
    )
