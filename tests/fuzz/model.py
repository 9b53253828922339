"""What a fuzz run is given and what it finds: ``FuzzConfig`` in, ``FuzzReport`` out.

A ``FuzzReport`` holds one ``RowReport`` per consumed subject (what was sent, predicted,
counted by the service's metrics, dead-lettered, answered), one ``ServiceReport`` per service
process (alive, health, RSS, what its log shows) and one ``Check`` per invariant; it is
written out whole as JSON.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

from tests.fuzz import subjects


@dataclasses.dataclass
class FuzzConfig:
    workdir: pathlib.Path
    count: int = 120  # examples per subject
    rows: tuple[str, ...] = subjects.ROWS
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
    rollouts: int = 0  # canaries in flight on a sandbox stack (tests.fuzz.rollouts)


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
    rollouts: list[Any] = dataclasses.field(default_factory=list)  # rollouts.RolloutReport

    def check_named(self, name: str) -> Check:
        return next(check for check in self.checks if check.name == name)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, default=str)
