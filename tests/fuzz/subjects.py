"""The consumed subjects: one row of the table each, its decoder, its consumer and its service.

``ROWS`` are the subjects (and filters) the four consuming services take messages from, in
table order: three JetStream consumers (``JETSTREAM_ROWS``) and three request-reply commands
(``COMMAND_ROWS``). ``ALIASES`` are their short names on the command line and in correlation
ids (``SHORT``). An ``Example`` is one message made for a row.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import msgspec

from libs import messages, streams

TICKS = streams.ANALYZER_TICKS.filter_subject  # sluice.tick.>
HINTS = streams.ANALYZER_HINTS.filter_subject  # sluice.events.*.*.revision_detected
EVENTS = streams.NOTIFIER_EVENTS.filter_subject  # sluice.events.>
TRAFFIC = messages.CMD_TRAFFIC
WORKLOAD = messages.CMD_WORKLOAD
WEBHOOK = messages.CMD_WEBHOOK

ROWS: tuple[str, ...] = (TICKS, HINTS, EVENTS, TRAFFIC, WORKLOAD, WEBHOOK)
JETSTREAM_ROWS: tuple[str, ...] = (TICKS, HINTS, EVENTS)
COMMAND_ROWS: tuple[str, ...] = (TRAFFIC, WORKLOAD, WEBHOOK)
ALIASES: dict[str, str] = {
    "ticks": TICKS,
    "hints": HINTS,
    "events": EVENTS,
    "traffic": TRAFFIC,
    "workload": WORKLOAD,
    "webhook": WEBHOOK,
}

# The decoder each consumer uses: what predicts whether a payload is rejected as undecodable.
DECODERS: dict[str, msgspec.json.Decoder[Any]] = {
    TICKS: messages.TICK_DECODER,
    HINTS: messages.EVENT_DECODER,
    EVENTS: messages.EVENT_DECODER,
    TRAFFIC: messages.TRAFFIC_DECODER,
    WORKLOAD: messages.WORKLOAD_DECODER,
    WEBHOOK: messages.WEBHOOK_DECODER,
}

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
SHORT: dict[str, str] = {row: alias for alias, row in ALIASES.items()}


@dataclasses.dataclass(frozen=True)
class Example:
    row: str  # the consumed subject (subscription) it was made for
    subject: str  # the subject it is published on
    payload: bytes
    label: str  # the generator that made it
