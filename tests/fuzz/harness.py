"""The fuzz harness: real nats-server, the four consuming services as processes, real messages.

``run(config)`` starts a nats-server (or uses ``config.nats_url``) and the services that consume
the chosen subjects (analyzer, notifier, traffic_shifter, webhook_runner; the watcher consumes
nothing), sends ``config.count`` examples per subject from ``tests.fuzz.strategies``
(JetStream publishes for ticks and events, requests with a reply inbox for commands, both with
bounded concurrency), waits until every durable consumer has nothing pending or unacknowledged
(deadline-based), and measures, per subject:

    sent            messages the consumer should see (published and matched by its filter,
                    or commands sent)
    valid           of those, how many its decoder accepts (predicted here, with the decoder
                    the service uses; any exception while predicting is a reject)
    rejected        ``sluice_messages_rejected_total{subject,reason}`` (and the prediction)
    handled         JetStream: handler runs that did not fail (``handling_seconds_count`` minus
                    failures); commands: replies that are not ``CommandFailed``
    failures        ``sluice_message_failures_total{subject,decision}``
    dead            messages in ``SLUICE_DEAD`` on ``sluice.dead.<durable>`` by
                    ``Sluice-Dead-Reason`` (and ``sluice_messages_dead_lettered_total``)
    replies/missing commands answered within their own timeout / not answered, plus late,
                    duplicate, no-responder and undecodable replies
    redeliveries    consumer deliveries minus distinct messages (``num_redelivered`` peak too)

and per service: whether the process is alive, /healthz and /readyz at the end, RSS before and
after (``VmRSS``), log bytes, the longest log line, lines containing ``FUZZSECRET``.

``check(report)`` turns that into the invariants of ``INVARIANTS``; ``render(report)`` prints
the table. Nothing here sleeps for a fixed time: every wait polls against a deadline (the idle
window at the end is a measurement: idle consumers must survive their empty pulls).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import dataclasses
import json
import math
import pathlib
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Iterable
from typing import Any

import msgspec
import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from prometheus_client.parser import text_string_to_metric_families

from libs import messages, streams
from tests.fixtures.nats import NatsServer
from tests.fixtures.services import ServiceFactory, ServiceProcess
from tests.fuzz import strategies
from tests.fuzz.strategies import (
    COMMAND_ROWS,
    EVENTS,
    HINTS,
    JETSTREAM_ROWS,
    ROWS,
    SECRET,
    TICKS,
    TRAFFIC,
    WEBHOOK,
    WORKLOAD,
    Example,
)

SERVICE_OF: dict[str, str] = {
    TICKS: "analyzer",
    HINTS: "analyzer",
    EVENTS: "notifier",
    TRAFFIC: "traffic_shifter",
    WORKLOAD: "traffic_shifter",
    WEBHOOK: "webhook_runner",
}
CONSUMER_OF: dict[str, streams.Consumer] = {
    TICKS: streams.ANALYZER_TICKS,
    HINTS: streams.ANALYZER_HINTS,
    EVENTS: streams.NOTIFIER_EVENTS,
}
SHORT: dict[str, str] = {row: alias for alias, row in strategies.ALIASES.items()}

DEAD_STREAM = "SLUICE_DEAD"
DEAD_PREFIX = "sluice.dead"
DEAD_REASON = "Sluice-Dead-Reason"
ADVISORY_TERMINATED = "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.>"
ADVISORY_MAX_DELIVERIES = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>"
# the reason of a MSG_TERMINATED advisory for a message the stream itself removed
SERVER_DELETED = "Unacknowledged message was deleted"

INVARIANTS: tuple[tuple[str, str], ...] = (
    ("processes-alive", "no service process exited"),
    ("health-at-end", "/healthz and /readyz answer 200 at the end"),
    ("commands-answered", "every command gets exactly one decodable reply within its timeout"),
    ("consumers-drained", "every durable consumer reaches 0 pending and 0 ack-pending"),
    ("redeliveries-bounded", "redeliveries stay within the per-message bound"),
    ("undecodable-counted-exactly", "every undecodable payload is counted as rejected, once"),
    ("input-errors-permanent", "no JetStream message fails temporarily or exhausts its retries"),
    ("dead-lettered", "every message a consumer gives up on is in SLUICE_DEAD, by reason"),
    ("log-lines-bounded", "no log line is longer than the limit"),
    ("log-volume-bounded", "log bytes stay within a budget per message"),
    ("no-secret-leak", f"{SECRET} appears in no log line and no reply"),
)


@dataclasses.dataclass
class FuzzConfig:
    workdir: pathlib.Path
    count: int = 120  # examples per subject
    rows: tuple[str, ...] = ROWS
    seed: int = 0
    nats_url: str | None = None  # None: start a nats-server of our own
    chunk: int = 250  # examples per subject generated (and held in memory) at once
    drain_timeout_s: float = 30.0
    reply_cap_s: float = 10.0  # the longest command timeout the harness waits for
    reply_grace_s: float = 5.0  # on top of the command's timeout (scheduling, transport)
    command_concurrency: int = 16  # commands in flight per subject (services take 32)
    publish_concurrency: int = 32
    idle_s: float = 2.0  # the consumers idle at the end, pulling empty batches
    # SLUICE_FETCH_TIMEOUT_S: pulls this short end empty hundreds of times a run, and under load
    # their answer can arrive as the timeout expires: the idle-consumer path gets exercised
    fetch_timeout_s: float = 0.01
    retry_delay_s: float = 0.2  # SLUICE_RETRY_DELAY_S: redeliveries happen within the run
    log_line_limit: int = 20_000
    log_bytes_per_message: int = 4096
    log_bytes_base: int = 64 * 1024
    redeliveries_per_message: int = 10


# ----------------------------------------------------------------------------- report


@dataclasses.dataclass
class RowReport:
    row: str
    service: str
    kind: str  # "jetstream" | "command"
    durable: str = ""
    generated: int = 0
    labels: dict[str, int] = dataclasses.field(default_factory=dict)
    sent: int = 0
    publish_errors: dict[str, int] = dataclasses.field(default_factory=dict)
    valid: int = 0
    predicted_undecodable: int = 0
    undecodable_causes: dict[str, int] = dataclasses.field(default_factory=dict)
    undecodable_labels: dict[str, int] = dataclasses.field(default_factory=dict)
    received: float = 0.0
    rejected: dict[str, float] = dataclasses.field(default_factory=dict)
    failures: dict[str, float] = dataclasses.field(default_factory=dict)
    handled: float = 0.0
    dead_lettered_metric: dict[str, float] = dataclasses.field(default_factory=dict)
    reply_failures: dict[str, float] = dataclasses.field(default_factory=dict)
    # JetStream consumers
    dead_letters: dict[str, int] = dataclasses.field(default_factory=dict)
    terminated: int = 0  # MSG_TERMINATED advisories (the consumer's terms)
    replaced: int = 0  # MSG_TERMINATED advisories for messages the stream deleted
    terminated_not_dead: list[str] = dataclasses.field(default_factory=list)  # seq and which
    exhausted: int = 0  # MAX_DELIVERIES advisories
    deliveries: int = 0
    unique: int = 0
    redeliveries: int = 0
    num_redelivered_peak: int = 0
    num_pending: int | None = None
    num_ack_pending: int | None = None
    drained: bool = False
    # commands
    replies: int = 0
    missing: int = 0
    late: int = 0
    duplicates: int = 0
    no_responders: int = 0
    undecodable_replies: int = 0
    undecodable_not_permanent: int = 0
    reply_kinds: dict[str, int] = dataclasses.field(default_factory=dict)
    secret_in_replies: int = 0
    samples: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class ServiceReport:
    module: str
    log_path: str
    pid: int = 0
    alive_at_end: bool = False
    exited_with: int | None = None  # exit code when it exited during the run
    healthz: int | str = ""
    readyz: int | str = ""
    rss_before_mb: float | None = None
    rss_after_mb: float | None = None
    stop_exit_code: int | None = None
    messages: int = 0
    log_bytes: int = 0
    max_line: int = 0
    max_line_head: str = ""
    secret_lines: int = 0
    secret_excerpts: list[str] = dataclasses.field(default_factory=list)
    patterns: dict[str, int] = dataclasses.field(default_factory=dict)
    notable: list[str] = dataclasses.field(default_factory=list)
    tail: list[str] = dataclasses.field(default_factory=list)
    correlated: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Check:
    name: str
    description: str
    ok: bool
    details: list[str]


@dataclasses.dataclass
class FuzzReport:
    config: dict[str, Any]
    rows: dict[str, RowReport]
    services: dict[str, ServiceReport]
    dead_stream_exists: bool = False
    harness_errors: list[str] = dataclasses.field(default_factory=list)
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    checks: list[Check] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def check_named(self, name: str) -> Check:
        return next(check for check in self.checks if check.name == name)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, default=str)


# ----------------------------------------------------------------------------- planning


def subject_matches(filter_subject: str, subject: str) -> bool:
    """NATS subject matching: ``*`` is one token, ``>`` one or more trailing tokens."""
    wanted, tokens = filter_subject.split("."), subject.split(".")
    for index, token in enumerate(wanted):
        if token == ">":
            return len(tokens) > index
        if index >= len(tokens) or (token != "*" and token != tokens[index]):
            return False
    return len(tokens) == len(wanted)


@dataclasses.dataclass
class Planned:
    example: Example
    index: int
    # consumer row -> None when its decoder accepts the payload, else the exception type
    outcomes: dict[str, str | None]
    wait_s: float = 0.0  # commands: how long the harness waits for the reply


def _predict(decoder: msgspec.json.Decoder[Any], payload: bytes) -> tuple[Any, str | None]:
    try:
        return decoder.decode(payload), None
    except Exception as exc:  # any exception while decoding: the service must reject it
        return None, type(exc).__name__


def plan_chunk(
    rows: tuple[str, ...],
    consumers: tuple[str, ...],
    n: int,
    config: FuzzConfig,
    chunk: int,
    first_index: int,
    tick_subjects: set[str],
) -> list[Planned]:
    """Generate one chunk and predict what each consumer must do with it.

    Runs in a worker thread: a fresh thread's shallow stack makes the decoder's recursion
    limit the same as in a service's handler."""
    planned: list[Planned] = []
    for row in rows:
        for offset, example in enumerate(strategies.examples(row, n, config.seed, chunk)):
            outcomes: dict[str, str | None] = {}
            wait_s = 0.0
            if row in COMMAND_ROWS:
                value, cause = _predict(strategies.DECODERS[row], example.payload)
                outcomes[row] = cause
                timeout = getattr(value, "timeout_s", 0.0) if cause is None else 0.0
                if not isinstance(timeout, float) or not math.isfinite(timeout) or timeout < 0:
                    timeout = 0.0 if cause is not None else config.reply_cap_s
                wait_s = min(timeout, config.reply_cap_s) + config.reply_grace_s
            else:
                for consumer in consumers:
                    if subject_matches(CONSUMER_OF[consumer].filter_subject, example.subject):
                        value, cause = _predict(strategies.DECODERS[consumer], example.payload)
                        outcomes[consumer] = cause
                        if consumer == HINTS and isinstance(value, messages.RevisionDetected):
                            # the analyzer schedules a tick there: keep our ticks elsewhere
                            with contextlib.suppress(Exception):  # not a subject: no tick
                                tick_subjects.add(
                                    messages.tick_subject(value.canary.namespace, value.canary.name)
                                )
                        del value  # huge strings: do not keep them longer than needed
            planned.append(Planned(example, first_index + offset, outcomes, wait_s))
    # a tick subject holds one message (max_msgs_per_subject=1): give each of ours its own
    for item in planned:
        if item.example.row != TICKS:
            continue
        subject, suffix = item.example.subject, 0
        while subject in tick_subjects:
            suffix += 1
            subject = f"{item.example.subject}-u{suffix}"
        tick_subjects.add(subject)
        if subject != item.example.subject:
            item.example = dataclasses.replace(item.example, subject=subject)
    return planned


# ----------------------------------------------------------------------------- services


def service_env(config: FuzzConfig) -> dict[str, str]:
    env = {
        "SLUICE_RETRY_DELAY_S": str(config.retry_delay_s),
        "SLUICE_NATS_RECONNECT_WAIT_S": "0.2",
        "SLUICE_FETCH_TIMEOUT_S": str(config.fetch_timeout_s),
        # a command's handler may not outlast what the harness waits for its reply
        "SLUICE_MAX_COMMAND_TIMEOUT_S": str(config.reply_cap_s),
        "SLUICE_SHUTDOWN_GRACE_S": "3",
        "SLUICE_HARD_EXIT_S": "6",
        "SLUICE_LOG_LEVEL": "INFO",
        "SLUICE_LOG_FORMAT": "text",
        "SLUICE_WEBHOOK_BACKOFF_BASE_S": "0.05",
        "SLUICE_WEBHOOK_BACKOFF_MAX_S": "0.2",
        # webhooks go to 127.0.0.1 only: never through a proxy from the environment
        "NO_PROXY": "*",
        "no_proxy": "*",
    }
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env[name] = env[name.lower()] = ""
    return env


def rss_mb(pid: int) -> float | None:
    try:
        status = pathlib.Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmRSS:\s+(\d+)\s+kB", status, re.MULTILINE)
    return round(int(match.group(1)) / 1024, 1) if match else None


async def _http_status(proc: ServiceProcess, path: str) -> int | str:
    try:
        return (await proc.get(path))[0]
    except Exception as exc:  # the process may be gone: report what happened
        return type(exc).__name__


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(proc: ServiceProcess) -> Samples | None:
    try:
        status, text = await proc.get("/metrics")
    except Exception:
        return None
    if status != 200:
        return None
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def metric(samples: Samples | None, name: str, **labels: str) -> dict[str, float]:
    """Values of ``name`` with ``labels``, summed by their remaining label (or ``""``)."""
    out: dict[str, float] = collections.defaultdict(float)
    for (sample_name, sample_labels), value in (samples or {}).items():
        found = dict(sample_labels)
        if sample_name == name and all(found.get(k) == v for k, v in labels.items()):
            rest = [v for k, v in sorted(found.items()) if k not in labels]
            out[",".join(rest)] += value
    return dict(out)


def _delta(now: Samples | None, before: Samples | None, name: str, row: str) -> dict[str, float]:
    """What ``name{subject=row}`` grew by during the run, by its other label."""
    after, start = metric(now, name, subject=row), metric(before, name, subject=row)
    return {k: v - start.get(k, 0.0) for k, v in after.items() if v - start.get(k, 0.0)}


# ----------------------------------------------------------------------------- commands


@dataclasses.dataclass
class _Reply:
    at: float
    summary: str  # kind, "command_failed(permanent|temporary)", "no-responders", "undecodable"
    secret: bool
    head: str


@dataclasses.dataclass
class _Command:
    row: str
    key: str
    label: str
    cause: str | None
    payload_head: str
    deadline: float = 0.0


class CommandSender:
    """Requests with our own reply inbox, so every reply (late or duplicate) is seen."""

    def __init__(self, nc: Client, config: FuzzConfig, rows: dict[str, RowReport]) -> None:
        self.nc = nc
        self.config = config
        self.rows = rows
        self.prefix = nc.new_inbox()
        self.replies: dict[str, list[_Reply]] = collections.defaultdict(list)
        self.waiters: dict[str, asyncio.Event] = {}
        self.commands: dict[str, _Command] = {}
        self.slots = {row: asyncio.Semaphore(config.command_concurrency) for row in COMMAND_ROWS}
        self.tasks: set[asyncio.Task[None]] = set()
        self.sub: Any = None
        self.sampled: set[str] = set()  # correlation ids of the commands in the samples

    async def start(self) -> None:
        self.sub = await self.nc.subscribe(
            f"{self.prefix}.>", cb=self._on_reply, pending_bytes_limit=512 * 1024 * 1024
        )

    async def _on_reply(self, msg: Msg) -> None:
        key = msg.subject[len(self.prefix) + 1 :]
        headers = msg.headers or {}
        secret = SECRET.encode() in msg.data
        head = msg.data[:300].decode(errors="replace")
        if headers.get("Status") == "503":
            summary = "no-responders"
        else:
            try:
                reply = messages.REPLY_DECODER.decode(msg.data)
            except Exception:
                summary = "undecodable"
            else:
                if isinstance(reply, messages.CommandFailed):
                    decision = "temporary" if reply.temporary else "permanent"
                    summary = f"command_failed({decision})"
                else:
                    summary = str(type(reply).__struct_config__.tag)
                if secret:
                    index = msg.data.find(SECRET.encode())
                    head = msg.data[max(0, index - 150) : index + 50].decode(errors="replace")
        self.replies[key].append(_Reply(time.monotonic(), str(summary), secret, head))
        waiter = self.waiters.get(key)
        if waiter is not None:
            waiter.set()

    async def submit(self, item: Planned) -> None:
        """Start one command once a slot is free (returns when it is on its way)."""
        row = item.example.row
        await self.slots[row].acquire()
        task = asyncio.create_task(self._one(item), name=f"fuzz-command-{item.index}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _one(self, item: Planned) -> None:
        row = item.example.row
        key = f"{SHORT[row]}.{item.index}"
        command = _Command(
            row=row,
            key=key,
            label=item.example.label,
            cause=item.outcomes[row],
            payload_head=repr(item.example.payload[:160]),
        )
        self.commands[key] = command
        waiter = self.waiters[key] = asyncio.Event()
        report = self.rows[row]
        try:
            await self.nc.publish(
                row,
                item.example.payload,
                reply=f"{self.prefix}.{key}",
                headers={messages.HEADER_CORRELATION_ID: f"fuzz-{key}"},
            )
        except Exception as exc:  # not sent: counted apart, never as a service failure
            name = type(exc).__name__
            report.publish_errors[name] = report.publish_errors.get(name, 0) + 1
            del self.commands[key]
            self.slots[row].release()
            return
        command.deadline = time.monotonic() + item.wait_s
        _count_sent(report, item, row)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter.wait(), item.wait_s)
        finally:
            self.waiters.pop(key, None)
            self.slots[row].release()

    async def finish(self) -> None:
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*list(self.tasks), return_exceptions=True)
        if self.sub is not None:
            with contextlib.suppress(Exception):
                await self.sub.unsubscribe()

    def account(self) -> None:
        for key, command in self.commands.items():
            report = self.rows[command.row]
            replies = self.replies.get(key, [])
            in_time = [r for r in replies if r.at <= command.deadline]
            problem = ""
            if len(replies) > 1:
                report.duplicates += 1
                problem = f"{len(replies)} replies"
            if not in_time:
                if replies:
                    report.late += 1
                    problem = problem or "late reply"
                else:
                    report.missing += 1
                    problem = problem or "no reply"
            else:
                report.replies += 1
            for reply in replies:
                report.reply_kinds[reply.summary] = report.reply_kinds.get(reply.summary, 0) + 1
                if reply.summary == "no-responders":
                    report.no_responders += 1
                    problem = problem or "no responders"
                elif reply.summary == "undecodable":
                    report.undecodable_replies += 1
                    problem = problem or "undecodable reply"
                elif not reply.summary.startswith("command_failed"):
                    report.handled += 1
                if reply.secret:
                    report.secret_in_replies += 1
                    problem = problem or f"{SECRET} in reply: …{reply.head}…"
            first = replies[0].summary if replies else ""
            if command.cause is not None and first and first != "command_failed(permanent)":
                report.undecodable_not_permanent += 1
            if problem and len(report.samples) < 6:
                self.sampled.add(f"fuzz-{key}")
                report.samples.append(
                    f"{problem}: fuzz-{key} [{command.label}] "
                    f"{'undecodable: ' + command.cause if command.cause else 'decodes'}; "
                    f"payload {command.payload_head}"
                )


def _count_sent(report: RowReport, item: Planned, consumer: str) -> None:
    report.sent += 1
    cause = item.outcomes[consumer]
    if cause is None:
        report.valid += 1
    else:
        report.predicted_undecodable += 1
        report.undecodable_causes[cause] = report.undecodable_causes.get(cause, 0) + 1
        label = item.example.label
        report.undecodable_labels[label] = report.undecodable_labels.get(label, 0) + 1


# ----------------------------------------------------------------------------- JetStream


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


async def _publish(
    js: JetStreamContext,
    item: Planned,
    run_id: str,
    rows: dict[str, RowReport],
    slots: asyncio.Semaphore,
    stored: dict[tuple[str, int], str],
) -> None:
    example = item.example
    key = f"{SHORT[example.row]}.{item.index}"
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
            _count_sent(rows[consumer], item, consumer)


async def _consumer_info(js: JetStreamContext, consumer: streams.Consumer) -> Any:
    try:
        return await js.consumer_info(consumer.stream, consumer.durable, timeout=5)
    except (nats.errors.Error, nats.js.errors.Error, TimeoutError):
        return None


async def _last_seq(js: JetStreamContext, stream: str) -> int:
    try:
        return int((await js.stream_info(stream)).state.last_seq)
    except (nats.errors.Error, nats.js.errors.Error, TimeoutError):
        return 0


async def wait_drained(
    js: JetStreamContext, rows: dict[str, RowReport], timeout_s: float
) -> dict[str, Any]:
    """Poll until every consumer has nothing pending or unacknowledged, twice in a row with no
    new deliveries between (a handled hint publishes a tick); returns the last infos."""
    deadline = time.monotonic() + timeout_s
    previous: tuple[Any, ...] | None = None
    infos: dict[str, Any] = {}
    while True:
        infos = {row: await _consumer_info(js, CONSUMER_OF[row]) for row in rows}
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


# ----------------------------------------------------------------------------- logs


_PATTERNS: tuple[str, ...] = (
    "Traceback",
    "Task exception was never retrieved",
    "RecursionError",
    "handler crashed",
    "rejected message",
    "command failed",
    "did not finish within",
    "disconnected from NATS",
    "a root task ended unexpectedly",
)
_LEVEL = re.compile(rb"^\d\d:\d\d:\d\d (WARNING|ERROR|CRITICAL) ")
# error-level lines, tracebacks and their last line ("RecursionError: ...")
_NOTABLE = re.compile(
    rb"^\d\d:\d\d:\d\d (ERROR|CRITICAL) |Traceback|never retrieved|^[A-Za-z_][\w.]*(Error|Exception)\b"
)


def _trim(line: bytes | str, width: int = 300) -> str:
    text = line.decode(errors="replace") if isinstance(line, bytes) else line
    text = text.rstrip("\n")
    return text if len(text) <= width else f"{text[:width]}… ({len(text)} chars)"


def analyse_log(path: pathlib.Path, report: ServiceReport, needles: Iterable[str] = ()) -> None:
    """Size, longest line, secret leaks, notable lines and the tail of one service's log."""
    wanted = {needle.encode(): needle for needle in needles}
    tail: collections.deque[str] = collections.deque(maxlen=8)
    seen_notable: set[bytes] = set()
    counts: collections.Counter[str] = collections.Counter()
    if not path.exists():
        return
    report.log_bytes = path.stat().st_size
    with path.open("rb") as log:
        for number, line in enumerate(log, 1):
            body = line.rstrip(b"\n")
            if len(body) > report.max_line:
                report.max_line = len(body.decode(errors="replace"))
                report.max_line_head = f"line {number}: {_trim(body, 240)}"
            if SECRET.encode() in body:
                report.secret_lines += 1
                if len(report.secret_excerpts) < 3:
                    index = body.find(SECRET.encode())
                    excerpt = body[max(0, index - 200) : index + 60]
                    report.secret_excerpts.append(f"line {number}: …{_trim(excerpt)}…")
            for pattern in _PATTERNS:
                if pattern.encode() in body:
                    counts[pattern] += 1
            level = _LEVEL.match(body)
            if level:
                counts[level.group(1).decode()] += 1
            if _NOTABLE.search(body[:400]) and len(report.notable) < 12:
                signature = re.sub(rb"^\d\d:\d\d:\d\d ", b"", body)[:90]
                if signature not in seen_notable:
                    seen_notable.add(signature)
                    report.notable.append(f"line {number}: {_trim(body, 240)}")
            for needle, name in wanted.items():
                if name not in report.correlated and needle in body:
                    report.correlated[name] = f"line {number}: {_trim(body, 240)}"
            tail.append(_trim(body, 240))
    report.patterns = dict(counts)
    report.tail = list(tail)


# ----------------------------------------------------------------------------- the run


async def run(config: FuzzConfig) -> FuzzReport:
    """Start everything, send the examples, wait, measure, stop, and check the invariants."""
    started = time.monotonic()
    config.workdir.mkdir(parents=True, exist_ok=True)
    rows_wanted = tuple(row for row in ROWS if row in config.rows)
    modules = tuple(sorted({SERVICE_OF[row] for row in rows_wanted}))
    # every consumer of a started service is measured, chosen or not (hints publish ticks)
    reported = tuple(row for row in ROWS if row in rows_wanted or SERVICE_OF[row] in modules)
    consumers = tuple(row for row in reported if row in JETSTREAM_ROWS)
    rows = {
        row: RowReport(
            row=row,
            service=SERVICE_OF[row],
            kind="jetstream" if row in JETSTREAM_ROWS else "command",
            durable=CONSUMER_OF[row].durable if row in CONSUMER_OF else "",
        )
        for row in reported
    }
    logs_dir = config.workdir / "logs"
    logs_dir.mkdir(exist_ok=True)
    factory = ServiceFactory(logs_dir)
    report = FuzzReport(
        config={
            k: (str(v) if isinstance(v, pathlib.Path) else v)
            for k, v in dataclasses.asdict(config).items()
        },
        rows=rows,
        services={},
    )
    server: NatsServer | None = None
    procs: dict[str, ServiceProcess] = {}
    nc: Client | None = None
    sender: CommandSender | None = None
    advisories = Advisories()
    executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="fuzz-plan")
    loop = asyncio.get_running_loop()
    try:
        if config.nats_url is None:
            server = NatsServer(config.workdir / "nats-store")
            server.start()
            url = server.url
        else:
            url = config.nats_url
        for module in modules:
            procs[module] = factory(module, url, **service_env(config))
        await asyncio.gather(*(proc.ready() for proc in procs.values()))
        for module, proc in procs.items():
            assert proc.proc is not None
            report.services[module] = ServiceReport(
                module=module,
                log_path=str(proc.log_path),
                pid=proc.proc.pid,
                rss_before_mb=rss_mb(proc.proc.pid),
            )
        report.timings["start_s"] = round(time.monotonic() - started, 2)

        async def harness_error(exc: Exception) -> None:
            report.harness_errors.append(f"harness NATS client: {type(exc).__name__}: {exc}")

        nc = await nats.connect(url, name="sluice-fuzz", error_cb=harness_error)
        js = nc.jetstream(timeout=10)
        await advisories.start(nc)
        sender = CommandSender(nc, config, rows)
        await sender.start()
        baseline_metrics = {m: await scrape(p) for m, p in procs.items()}
        baseline_seq = {
            row: (
                i.delivered.consumer_seq if (i := await _consumer_info(js, CONSUMER_OF[row])) else 0
            )
            for row in consumers
        }
        baseline_last = {
            stream: await _last_seq(js, stream)
            for stream in {CONSUMER_OF[row].stream for row in consumers}
        }

        # ------------------------------------------------------------- send
        send_started = time.monotonic()
        run_id = uuid.uuid4().hex[:8]
        publish_slots = asyncio.Semaphore(config.publish_concurrency)
        tick_subjects: set[str] = set()
        stored: dict[tuple[str, int], str] = {}
        generate_s = 0.0
        chunks = max(1, math.ceil(config.count / config.chunk))
        for chunk in range(chunks):
            n = min(config.chunk, config.count - chunk * config.chunk)
            began = time.monotonic()
            planned = await loop.run_in_executor(
                executor,
                plan_chunk,
                rows_wanted,
                consumers,
                n,
                config,
                chunk,
                chunk * config.chunk,
                tick_subjects,
            )
            generate_s += time.monotonic() - began
            for item in planned:
                rows[item.example.row].generated += 1
                labels = rows[item.example.row].labels
                labels[item.example.label] = labels.get(item.example.label, 0) + 1

            async def submit_commands(batch: list[Planned]) -> None:
                assert sender is not None
                for item in batch:
                    await sender.submit(item)

            jetstream = [p for p in planned if p.example.row in JETSTREAM_ROWS]
            by_row = [[p for p in planned if p.example.row == row] for row in COMMAND_ROWS]
            await asyncio.gather(
                *(_publish(js, item, run_id, rows, publish_slots, stored) for item in jetstream),
                *(submit_commands(batch) for batch in by_row if batch),
            )
            del planned, jetstream, by_row
        await sender.finish()
        report.timings["generate_s"] = round(generate_s, 2)
        report.timings["send_s"] = round(time.monotonic() - send_started - generate_s, 2)

        # ------------------------------------------------------------- drain
        drain_started = time.monotonic()
        infos = await wait_drained(
            js, {row: rows[row] for row in consumers}, config.drain_timeout_s
        )
        # metrics are counted right after a message is settled: wait until they stand still
        snapshot: dict[str, Samples | None] = {}
        deadline = time.monotonic() + 5.0
        while True:
            current = {m: await scrape(p) for m, p in procs.items()}
            if current == snapshot or time.monotonic() > deadline:
                break
            snapshot = current
            await asyncio.sleep(0.2)  # polling period
        report.timings["drain_s"] = round(time.monotonic() - drain_started, 2)

        # ------------------------------------------------------------- idle window
        idle_until = time.monotonic() + config.idle_s
        while time.monotonic() < idle_until:
            if any(p.proc is not None and p.proc.poll() is not None for p in procs.values()):
                break
            await asyncio.sleep(0.1)  # polling period of a measurement window

        # ------------------------------------------------------------- measure
        collect_started = time.monotonic()
        final_metrics = {m: await scrape(p) for m, p in procs.items()}
        for row, r in rows.items():
            now, before = final_metrics[r.service], baseline_metrics[r.service]
            r.received = sum(_delta(now, before, "sluice_messages_received_total", row).values())
            r.rejected = _delta(now, before, "sluice_messages_rejected_total", row)
            r.failures = _delta(now, before, "sluice_message_failures_total", row)
            r.dead_lettered_metric = _delta(now, before, "sluice_messages_dead_lettered_total", row)
            r.reply_failures = _delta(now, before, "sluice_reply_failures_total", row)
            if r.kind == "jetstream":
                runs = _delta(now, before, "sluice_message_handling_seconds_count", row)
                r.handled = max(0.0, sum(runs.values()) - sum(r.failures.values()))
        for row in consumers:
            r, consumer = rows[row], CONSUMER_OF[row]
            info = await _consumer_info(js, consumer) or infos.get(row)
            if info is not None:
                r.num_pending, r.num_ack_pending = info.num_pending, info.num_ack_pending
                r.deliveries = info.delivered.consumer_seq - baseline_seq[row]
            if consumer.filter_subject in (messages.TICKS_ALL, messages.EVENTS_ALL):
                # the whole stream: the analyzer's own ticks count too
                r.unique = await _last_seq(js, consumer.stream) - baseline_last[consumer.stream]
            else:
                r.unique = r.sent
            r.redeliveries = max(0, r.deliveries - r.unique)
            r.terminated = advisories.terminated[consumer.durable]
            r.replaced = advisories.replaced[consumer.durable]
            r.exhausted = advisories.exhausted[consumer.durable]
        report.dead_stream_exists, dead, dead_seqs = await read_dead_letters(
            js, report.harness_errors
        )
        for row in consumers:
            durable = CONSUMER_OF[row].durable
            rows[row].dead_letters = dict(dead.get(durable, {}))
            if report.dead_stream_exists:
                terminated = advisories.terminated_seqs[durable]
                missing = set(terminated) - dead_seqs.get(durable, set())
                rows[row].terminated_not_dead = [
                    f"{seq} {stored.get((CONSUMER_OF[row].stream, seq), '(not ours)')}"
                    + (f" reason {terminated[seq]!r}" if terminated[seq] else "")
                    for seq in sorted(missing)[:3]
                ]
        sender.account()
        for module, proc in procs.items():
            service = report.services[module]
            assert proc.proc is not None
            code = proc.proc.poll()
            service.alive_at_end = code is None
            service.exited_with = code
            service.healthz = await _http_status(proc, "/healthz")
            service.readyz = await _http_status(proc, "/readyz")
            service.rss_after_mb = rss_mb(proc.proc.pid) if code is None else None
            service.messages = int(
                sum(max(r.sent, r.received) for r in rows.values() if r.service == module)
            )
        report.timings["collect_s"] = round(time.monotonic() - collect_started, 2)
    finally:
        if sender is not None:
            await sender.close()
        await advisories.close()
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()
        stop_codes = await asyncio.gather(*(_stop(proc) for proc in procs.values()))
        for (module, _), code in zip(procs.items(), stop_codes, strict=True):
            if module in report.services:
                report.services[module].stop_exit_code = code
        if server is not None:
            server.stop()
        executor.shutdown(wait=False, cancel_futures=True)
    sampled = sender.sampled if sender is not None else set()
    for service in report.services.values():
        analyse_log(pathlib.Path(service.log_path), service, sampled)
    report.timings["total_s"] = round(time.monotonic() - started, 2)
    report.checks = check(report, config)
    return report


async def _stop(proc: ServiceProcess) -> int | None:
    """SIGTERM, then wait; kill after 15 s. Returns the exit code (-9: had to be killed)."""
    process = proc.proc
    if process is None:
        return None
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return await asyncio.to_thread(process.wait, 15)
    except subprocess.TimeoutExpired:
        process.kill()
        await asyncio.to_thread(process.wait, 5)
        return -9


# ----------------------------------------------------------------------------- invariants


def check(report: FuzzReport, config: FuzzConfig) -> list[Check]:
    problems: dict[str, list[str]] = {name: [] for name, _ in INVARIANTS}
    services, rows = report.services, report.rows

    for module, s in services.items():
        if not s.alive_at_end:
            problems["processes-alive"].append(
                f"{module} exited with code {s.exited_with} during the run; log tail:\n    "
                + "\n    ".join(s.tail[-6:])
            )
        if s.healthz != 200 or s.readyz != 200:
            problems["health-at-end"].append(
                f"{module}: /healthz {s.healthz}, /readyz {s.readyz}"
                + ("" if s.alive_at_end else " (process exited)")
            )
        if s.max_line > config.log_line_limit:
            problems["log-lines-bounded"].append(
                f"{module}: longest log line {s.max_line:,} chars > {config.log_line_limit:,}; "
                f"{s.max_line_head}"
            )
        budget = config.log_bytes_base + config.log_bytes_per_message * s.messages
        if s.log_bytes > budget:
            problems["log-volume-bounded"].append(
                f"{module}: {s.log_bytes:,} log bytes > {budget:,} "
                f"({config.log_bytes_per_message} per message x {s.messages} messages "
                f"+ {config.log_bytes_base:,})"
            )
        if s.secret_lines:
            problems["no-secret-leak"].append(
                f"{module}: {s.secret_lines} log lines contain {SECRET}, e.g.\n    "
                + "\n    ".join(s.secret_excerpts)
            )

    for row, r in rows.items():
        predicted = r.predicted_undecodable
        observed = r.rejected.get("undecodable", 0.0)
        causes = ", ".join(f"{k} {v}" for k, v in sorted(r.undecodable_causes.items()))
        if r.kind == "command":
            busy = r.rejected.get("busy", 0.0)
            exact = observed == predicted if not busy else predicted - busy <= observed <= predicted
            if r.missing or r.late or r.duplicates or r.no_responders or r.undecodable_replies:
                problems["commands-answered"].append(
                    f"{row}: {r.sent} sent, {r.replies} answered in time, {r.missing} missing, "
                    f"{r.late} late, {r.duplicates} with several replies, "
                    f"{r.no_responders} no-responders, {r.undecodable_replies} undecodable replies"
                    + (f"; reply failures {r.reply_failures}" if r.reply_failures else "")
                    + "".join(f"\n    {sample}" for sample in r.samples)
                    + "".join(
                        f"\n    log ({r.service}) {cid}: {line}"
                        for cid, line in services[r.service].correlated.items()
                        if cid.startswith(f"fuzz-{SHORT[row]}.")
                    )
                )
            if r.secret_in_replies:
                problems["no-secret-leak"].append(
                    f"{row}: {r.secret_in_replies} replies contain {SECRET}"
                    + "".join(f"\n    {s}" for s in r.samples if SECRET in s)
                )
        else:
            exact = observed == predicted
            if not r.drained or r.num_pending or r.num_ack_pending:
                problems["consumers-drained"].append(
                    f"{row} (durable {r.durable}): num_pending {r.num_pending}, "
                    f"num_ack_pending {r.num_ack_pending} after {config.drain_timeout_s:.0f}s"
                )
            bound = config.redeliveries_per_message * max(r.unique, 1)
            if r.redeliveries > bound:
                problems["redeliveries-bounded"].append(
                    f"{row}: {r.redeliveries} redeliveries for {r.unique} messages (> {bound})"
                )
            temporary = r.failures.get("temporary", 0.0)
            if temporary or r.exhausted:
                problems["input-errors-permanent"].append(
                    f"{row}: {temporary:.0f} temporary failures, {r.exhausted} messages dropped "
                    f"after max deliveries, {r.redeliveries} redeliveries (NATS stayed up: "
                    "nothing here is worth retrying)"
                )
            given_up = r.terminated + r.exhausted
            dead_total = sum(r.dead_letters.values())
            dead_problems = []
            if given_up or predicted:
                if not report.dead_stream_exists:
                    dead_problems.append(f"stream {DEAD_STREAM} does not exist")
                if r.dead_letters.get("undecodable", 0) != predicted:
                    dead_problems.append(
                        f"{r.dead_letters.get('undecodable', 0)} dead-lettered as undecodable, "
                        f"{predicted} predicted"
                    )
                if dead_total < given_up:
                    dead_problems.append(
                        f"{dead_total} dead letters for {r.terminated} terminated + "
                        f"{r.exhausted} exhausted messages"
                        + (
                            f" (terminated, no dead letter: stream seqs {r.terminated_not_dead})"
                            if r.terminated_not_dead
                            else ""
                        )
                    )
            if sum(r.dead_lettered_metric.values()) != dead_total:
                dead_problems.append(
                    f"sluice_messages_dead_lettered_total {r.dead_lettered_metric} vs "
                    f"{dead_total} in {DEAD_STREAM}"
                )
            if dead_problems:
                problems["dead-lettered"].append(f"{row}: " + "; ".join(dead_problems))
        if not exact:
            problems["undecodable-counted-exactly"].append(
                f"{row}: rejected{{reason=undecodable}} = {observed:.0f}, predicted {predicted} "
                f"({causes or 'none'}); received {r.received:.0f}, sent {r.sent}"
            )
    for module, s in services.items():
        for pattern in ("Task exception was never retrieved", "RecursionError"):
            if s.patterns.get(pattern) and problems["undecodable-counted-exactly"]:
                problems["undecodable-counted-exactly"].append(
                    f"{module} log: {s.patterns[pattern]} lines with {pattern!r}"
                )
    return [
        Check(name, description, not problems[name], problems[name])
        for name, description in INVARIANTS
    ]


# ----------------------------------------------------------------------------- rendering


def render_table(report: FuzzReport) -> str:
    header = (
        f"{'subject':<38} {'sent':>6} {'valid':>6} {'rejected':>11} {'handled':>7} "
        f"{'failed t/p':>10} {'dead':>6} {'replies':>7} {'missing':>7} {'redeliv':>7} "
        f"{'RSS MB before→after':>20} {'log MB':>7} {'max line':>9}"
    )
    lines = [header, "-" * len(header)]
    for row, r in report.rows.items():
        s = report.services.get(r.service)
        rejected = f"{r.rejected.get('undecodable', 0):.0f}/{r.predicted_undecodable}"
        failed = f"{r.failures.get('temporary', 0):.0f}/{r.failures.get('permanent', 0):.0f}"
        if r.kind == "jetstream":
            dead = str(sum(r.dead_letters.values())) if report.dead_stream_exists else "-"
            replies, missing, redeliveries = "-", "-", str(r.redeliveries)
        else:
            dead, replies, missing, redeliveries = "-", str(r.replies), str(r.missing), "-"
        rss = "-"
        log_mb, max_line = "-", "-"
        if s is not None:
            after = "exited" if s.rss_after_mb is None else f"{s.rss_after_mb:.0f}"
            rss = f"{(s.rss_before_mb or 0):.0f} → {after}"
            log_mb, max_line = f"{s.log_bytes / 1e6:.2f}", f"{s.max_line:,}"
        lines.append(
            f"{row:<38} {r.sent:>6} {r.valid:>6} {rejected:>11} {r.handled:>7.0f} {failed:>10} "
            f"{dead:>6} {replies:>7} {missing:>7} {redeliveries:>7} {rss:>20} {log_mb:>7} "
            f"{max_line:>9}"
        )
    lines.append(
        "rejected = observed/predicted undecodable; failed = temporary/permanent; dead = "
        f"messages in {DEAD_STREAM} ('-': no such stream); RSS, log MB and max line are the "
        "consuming service's"
    )
    return "\n".join(lines)


def render_checks(report: FuzzReport) -> str:
    lines = []
    for c in report.checks:
        lines.append(f"{'PASS' if c.ok else 'FAIL'}  {c.name}: {c.description}")
        for detail in c.details:
            lines.append("      " + detail.replace("\n", "\n      "))
    if report.harness_errors:
        lines.append("harness: " + "; ".join(report.harness_errors[:5]))
    return "\n".join(lines)


def render_services(report: FuzzReport) -> str:
    lines = []
    for module, s in report.services.items():
        state = "alive" if s.alive_at_end else f"EXITED ({s.exited_with})"
        lines.append(
            f"{module}: {state}, healthz {s.healthz}, readyz {s.readyz}, SIGTERM → exit "
            f"{s.stop_exit_code}, log {s.log_path}"
        )
        if s.patterns:
            lines.append(
                "    log patterns: " + ", ".join(f"{k} x{v}" for k, v in s.patterns.items())
            )
        for line in s.notable[:6]:
            lines.append(f"    {line}")
    return "\n".join(lines)


def render(report: FuzzReport) -> str:
    timings = ", ".join(f"{k} {v}s" for k, v in report.timings.items())
    return "\n\n".join(
        [
            render_table(report),
            render_services(report),
            render_checks(report),
            f"timings: {timings}",
        ]
    )
