"""Prometheus metrics every service exports on ``/metrics``.

Each service process owns one ``CollectorRegistry`` (no global registry), created by the
lifecycle and passed to whoever records metrics. Service-specific metrics (Flagger's
``flagger_canary_*`` names in the analyzer, for dashboards people already have) register
into the same registry.
"""

from __future__ import annotations

import dataclasses

import prometheus_client as prom


@dataclasses.dataclass(frozen=True)
class BusMetrics:
    registry: prom.CollectorRegistry
    received: prom.Counter
    rejected: prom.Counter
    handled: prom.Histogram
    failed: prom.Counter
    dead_lettered: prom.Counter
    reply_failures: prom.Counter
    nats_connected: prom.Gauge
    nats_reconnects: prom.Counter


def create(service: str, version: str) -> BusMetrics:
    registry = prom.CollectorRegistry(auto_describe=True)
    info = prom.Info("sluice", "Sluice service build information", registry=registry)
    info.info({"service": service, "version": version})
    return BusMetrics(
        registry=registry,
        received=prom.Counter(
            "sluice_messages_received_total",
            "Messages received, by subscription subject",
            ["subject"],
            registry=registry,
        ),
        rejected=prom.Counter(
            "sluice_messages_rejected_total",
            "Messages that could not be decoded or were invalid, terminated without redelivery",
            ["subject", "reason"],
            registry=registry,
        ),
        handled=prom.Histogram(
            "sluice_message_handling_seconds",
            "Time spent handling one message",
            ["subject"],
            registry=registry,
        ),
        failed=prom.Counter(
            "sluice_message_failures_total",
            "Messages whose handler failed, by retry decision",
            ["subject", "decision"],
            registry=registry,
        ),
        dead_lettered=prom.Counter(
            "sluice_messages_dead_lettered_total",
            "Messages moved to the SLUICE_DEAD stream, by consumer subject and reason",
            ["subject", "reason"],
            registry=registry,
        ),
        reply_failures=prom.Counter(
            "sluice_reply_failures_total",
            "Command replies that could not be sent as they were (too large, unsendable)",
            ["subject", "reason"],
            registry=registry,
        ),
        nats_connected=prom.Gauge(
            "sluice_nats_connected", "1 while connected to NATS", registry=registry
        ),
        nats_reconnects=prom.Counter(
            "sluice_nats_reconnects_total", "Reconnections to NATS", registry=registry
        ),
    )


def exposition(registry: prom.CollectorRegistry) -> tuple[bytes, str]:
    return prom.generate_latest(registry), prom.CONTENT_TYPE_LATEST
