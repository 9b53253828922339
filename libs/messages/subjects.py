"""Subjects, queue groups, headers and KV keys: the addresses of everything on the bus."""

from __future__ import annotations

import re
import time

from libs import errors, logs

EVENTS_PREFIX = "sluice.events"
EVENTS_ALL = f"{EVENTS_PREFIX}.>"
TICKS_PREFIX = "sluice.tick"
TICKS_ALL = f"{TICKS_PREFIX}.>"
CMD_TRAFFIC = "sluice.cmd.traffic.set"
CMD_WORKLOAD = "sluice.cmd.workload"
CMD_WEBHOOK = "sluice.cmd.webhook.run"
CONTROL_PREFIX = "sluice.control"
CONTROL_ALL = f"{CONTROL_PREFIX}.>"
ROLLOUT_PREFIX = "sluice.rollout"
ROLLOUT_ALL = f"{ROLLOUT_PREFIX}.>"
DELIVERIES_PREFIX = "sluice.deliveries"
DELIVERIES_ALL = f"{DELIVERIES_PREFIX}.>"

# Queue groups: every replica of a service joins its group, so one replica answers a command.
QUEUE_TRAFFIC_SHIFTER = "traffic-shifter"
QUEUE_WEBHOOK_RUNNER = "webhook-runner"
QUEUE_ANALYZER = "analyzer"
QUEUE_WATCHER = "watcher"

# Header names carried by every message Sluice publishes.
HEADER_CORRELATION_ID = "Sluice-Correlation-Id"
HEADER_MSG_ID = "Nats-Msg-Id"  # JetStream de-duplication uses this one

DEAD_PREFIX = "sluice.dead"
DEAD_ALL = f"{DEAD_PREFIX}.>"

# Headers of a dead-lettered message (its payload is the original, byte for byte).
HEADER_DEAD_REASON = "Sluice-Dead-Reason"  # undecodable | permanent | exhausted
HEADER_DEAD_SUBJECT = "Sluice-Dead-Subject"  # the subject it was consumed from
HEADER_DEAD_CONSUMER = "Sluice-Dead-Consumer"  # <stream>/<durable>
HEADER_DEAD_ERROR = "Sluice-Dead-Error"  # why, clipped
HEADER_DEAD_DELIVERIES = "Sluice-Dead-Deliveries"  # how often it was tried
# Failed handlings of a tick so far (a tick's delivery count also grows with every reschedule).
HEADER_FAILURES = "Sluice-Failures"
HEADER_NOT_BEFORE_MS = "Sluice-Not-Before-Ms"  # a retried copy waits until this time

# What a subject token built from a name may be (namespaces and canary names become tokens).
TOKEN = re.compile(r"^[A-Za-z0-9_-]+$")

# The longest subject token Sluice builds: Kubernetes namespaces are DNS labels (63), object
# names DNS subdomains (253). A longer name cannot come from a real object, and a subject built
# from an unbounded one could exceed the server's control line, which closes the connection.
MAX_NAMESPACE = 63
MAX_NAME = 253
MAX_KIND = 63


def _token(value: str, what: str, limit: int) -> str:
    """A subject token: Kubernetes names are DNS labels, so they never contain dots."""
    if len(value) > limit:
        raise errors.InvalidInput(
            f"{what} {logs.clip(repr(value), 80)} is {len(value)} characters long; "
            f"expected at most {limit}",
            path=what,
            expected=f"at most {limit} characters",
        )
    if not TOKEN.match(value):
        raise errors.InvalidInput(
            f"{what} {logs.clip(repr(value), 80)} cannot be a subject token "
            "(expected [A-Za-z0-9_-]+)",
            path=what,
            expected="[A-Za-z0-9_-]+",
        )
    return value


def _canary_tokens(namespace: str, canary: str) -> str:
    return f"{_token(namespace, 'namespace', MAX_NAMESPACE)}.{_token(canary, 'canary', MAX_NAME)}"


def event_subject(namespace: str, canary: str, kind: str) -> str:
    return f"{EVENTS_PREFIX}.{_canary_tokens(namespace, canary)}.{_token(kind, 'kind', MAX_KIND)}"


def tick_subject(namespace: str, canary: str) -> str:
    return f"{TICKS_PREFIX}.{_canary_tokens(namespace, canary)}"


def control_subject(namespace: str, canary: str, action: str) -> str:
    """Where a control request for one canary goes: ``sluice.control.<ns>.<canary>.<action>``."""
    return (
        f"{CONTROL_PREFIX}.{_canary_tokens(namespace, canary)}.{_token(action, 'action', MAX_KIND)}"
    )


def rollout_subject(namespace: str, canary: str) -> str:
    """Where a standalone canary's new revision is announced: ``sluice.rollout.<ns>.<canary>``."""
    return f"{ROLLOUT_PREFIX}.{_canary_tokens(namespace, canary)}"


def delivery_subject(namespace: str, canary: str) -> str:
    return f"{DELIVERIES_PREFIX}.{_canary_tokens(namespace, canary)}"


def dead_subject(durable: str) -> str:
    """Where a consumer's dead letters go (``SLUICE_DEAD``)."""
    return f"{DEAD_PREFIX}.{_token(durable, 'durable', MAX_KIND)}"


GATE_KINDS = ("gate", "rollback")  # flagger-loadtester's /gate/* and /rollback/* switches


def gate_key(kind: str, namespace: str, name: str) -> str:
    """Key of a canary's gate or rollback switch in the ``sluice_gates`` KV bucket."""
    if kind not in GATE_KINDS:
        raise errors.InvalidInput(f"gate kind: expected one of {GATE_KINDS}, got {kind!r}")
    return f"{kind}.{_canary_tokens(namespace, name)}"


def workload_key(namespace: str, name: str) -> str:
    """Key of a workload in the ``sluice_workloads`` KV bucket."""
    return f"{_token(namespace, 'namespace', MAX_NAMESPACE)}.{_token(name, 'name', MAX_NAME)}"


def canary_key(namespace: str, name: str) -> str:
    """Key of a Canary in the ``sluice_canaries`` KV bucket."""
    return f"{_token(namespace, 'namespace', MAX_NAMESPACE)}.{_token(name, 'canary', MAX_NAME)}"


def template_key(namespace: str, name: str) -> str:
    """Key of a MetricTemplate in the ``sluice_templates`` KV bucket."""
    return f"{_token(namespace, 'namespace', MAX_NAMESPACE)}.{_token(name, 'name', MAX_NAME)}"


def now_ms() -> int:
    return time.time_ns() // 1_000_000
