"""Planning: generate a chunk of examples and predict what each consumer must do with each.

A consumer must accept a payload exactly when its decoder (``subjects.DECODERS``) does;
``plan_chunk`` records, per consumer whose filter matches the subject, ``None`` or the name of
the exception decoding raised, and how long to wait for a command's reply. ``count_sent`` adds
a sent example to its row's counts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Any

import msgspec

from libs import messages
from tests.fuzz import model, strategies, subjects


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
    example: subjects.Example
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
    config: model.FuzzConfig,
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
            if row in subjects.COMMAND_ROWS:
                value, cause = _predict(subjects.DECODERS[row], example.payload)
                outcomes[row] = cause
                timeout = getattr(value, "timeout_s", 0.0) if cause is None else 0.0
                if not isinstance(timeout, float) or not math.isfinite(timeout) or timeout < 0:
                    timeout = 0.0 if cause is not None else config.reply_cap_s
                wait_s = min(timeout, config.reply_cap_s) + config.reply_grace_s
            else:
                for consumer in consumers:
                    if subject_matches(
                        subjects.CONSUMER_OF[consumer].filter_subject, example.subject
                    ):
                        value, cause = _predict(subjects.DECODERS[consumer], example.payload)
                        outcomes[consumer] = cause
                        if consumer == subjects.HINTS and isinstance(
                            value, messages.RevisionDetected
                        ):
                            # the analyzer schedules a tick there: keep our ticks elsewhere
                            with contextlib.suppress(Exception):  # not a subject: no tick
                                tick_subjects.add(
                                    messages.tick_subject(value.canary.namespace, value.canary.name)
                                )
                        del value  # huge strings: do not keep them longer than needed
            planned.append(Planned(example, first_index + offset, outcomes, wait_s))
    # a tick subject holds one message (max_msgs_per_subject=1): give each of ours its own
    for item in planned:
        if item.example.row != subjects.TICKS:
            continue
        subject, suffix = item.example.subject, 0
        while subject in tick_subjects:
            suffix += 1
            subject = f"{item.example.subject}-u{suffix}"
        tick_subjects.add(subject)
        if subject != item.example.subject:
            item.example = dataclasses.replace(item.example, subject=subject)
    return planned


def count_sent(report: model.RowReport, item: Planned, consumer: str) -> None:
    report.sent += 1
    cause = item.outcomes[consumer]
    if cause is None:
        report.valid += 1
    else:
        report.predicted_undecodable += 1
        report.undecodable_causes[cause] = report.undecodable_causes.get(cause, 0) + 1
        label = item.example.label
        report.undecodable_labels[label] = report.undecodable_labels.get(label, 0) + 1
