"""Hypothesis strategies: what can arrive on each subject a Sluice service consumes.

One strategy per consumed subject (``subjects.ROWS``) draws ``subjects.Example`` values: the
subject a message is published on, its payload bytes and a ``label`` naming the generator that
made it. A share are VALID messages built from the real Structs of ``libs.messages``
(``values``); every other example is a valid message spoiled by one mutation (``mutations``),
and the webhook row adds hostile-webhook: timeouts of 1e9 s and retries of 10**9 against a
refused port. Subjects of ticks and events are generated here too (valid tokens and
odd-but-legal NATS tokens), always under the prefix the consumer's filter matches.

``examples(row, n, seed, chunk)`` is what the harness sends: the hand-written ``sentinels``
first, then every generator's share, the same for the same seed. ``draw_values(strategy, n,
seed)`` turns a strategy into ``n`` concrete values, deterministically for a seed, without
``strategy.example()`` (which warns; pytest runs with ``-W error``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

import hypothesis
import msgspec
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

from libs import messages
from tests.fuzz import mutations, sentinels, subjects, values

T = TypeVar("T")

# nats-server's max control line is 4096 bytes ("HPUB <subject> <reply> <sizes>")
MAX_SUBJECT_BYTES = 3_000
_ODD_TOKEN_CHARS = st.characters(
    exclude_categories=("Cc", "Cs", "Zs", "Zl", "Zp", "Co", "Cn"),
    exclude_characters=".*>",
)


# ----------------------------------------------------------------------------- subjects


@st.composite
def subject_tokens(draw: st.DrawFn) -> str:
    """A legal NATS subject token: a DNS label, something odd, or a few KB long."""
    kind = draw(st.integers(0, 9))
    if kind < 3:
        return draw(st.sampled_from(values.COMMON_NAMESPACES + values.COMMON_NAMES))
    if kind < 6:
        return draw(values.dns_labels())
    if kind < 9:
        return draw(st.text(alphabet=_ODD_TOKEN_CHARS, min_size=1, max_size=24))
    return draw(st.sampled_from("az09_-")) * draw(st.integers(255, 2500))


def _canary_tokens(draw: st.DrawFn, value: msgspec.Struct | None) -> tuple[str, str]:
    canary = getattr(value, "canary", None)
    if (
        isinstance(canary, messages.CanaryRef)
        and all(
            messages.TOKEN.match(token) and len(token) <= 253
            for token in (canary.namespace, canary.name)
        )
        and draw(st.integers(0, 9)) < 6
    ):
        return canary.namespace, canary.name
    return draw(subject_tokens()), draw(subject_tokens())


def _fit(subject: str, fallback: str) -> str:
    return subject if len(subject.encode()) <= MAX_SUBJECT_BYTES else fallback


def tick_subject(draw: st.DrawFn, value: msgspec.Struct | None) -> str:
    namespace, name = _canary_tokens(draw, value)
    extra = f".{draw(subject_tokens())}" if draw(st.integers(0, 9)) == 0 else ""
    return _fit(f"{messages.TICKS_PREFIX}.{namespace}.{name}{extra}", "sluice.tick.test.long")


def hint_subject(draw: st.DrawFn, value: msgspec.Struct | None) -> str:
    namespace, name = _canary_tokens(draw, value)
    return _fit(
        f"{messages.EVENTS_PREFIX}.{namespace}.{name}.revision_detected",
        "sluice.events.test.long.revision_detected",
    )


def event_subject(draw: st.DrawFn, value: msgspec.Struct | None) -> str:
    namespace, name = _canary_tokens(draw, value)
    choice = draw(st.integers(0, 9))
    if isinstance(value, messages.EventBase) and choice < 7:
        kind = messages.event_kind(value)
    elif choice < 9:
        kind = draw(st.sampled_from(values.EVENT_KINDS))
    else:
        kind = draw(subject_tokens())
    extra = f".{draw(subject_tokens())}" if draw(st.integers(0, 19)) == 0 else ""
    return _fit(
        f"{messages.EVENTS_PREFIX}.{namespace}.{name}.{kind}{extra}", "sluice.events.test.long.x"
    )


# ----------------------------------------------------------------------------- per subject

_COMMON_LABELS: tuple[tuple[str, int], ...] = (
    ("valid", 25),
    ("random-bytes", 5),
    ("truncated", 6),
    ("deep-ignored", 7),
    ("deep-field", 5),
    ("wrong-kind", 6),
    ("wrong-type", 8),
    ("huge-string", 6),
    ("number", 8),
    ("k8s-name", 12),
    ("missing-field", 5),
    ("json-edge", 7),
)
_WEBHOOK_LABELS = (*_COMMON_LABELS, ("secret-url", 10), ("hostile-webhook", 4))


@dataclasses.dataclass(frozen=True)
class _RowSpec:
    valid: st.SearchStrategy[Any]
    subject: Callable[[st.DrawFn, msgspec.Struct | None], str] | None
    labels: tuple[tuple[str, int], ...] = _COMMON_LABELS


_SPECS: dict[str, _RowSpec] = {
    subjects.TICKS: _RowSpec(values.ticks, tick_subject),
    subjects.HINTS: _RowSpec(values.hint_values, hint_subject),
    subjects.EVENTS: _RowSpec(values.events, event_subject),
    subjects.TRAFFIC: _RowSpec(values.set_weights, None),
    subjects.WORKLOAD: _RowSpec(values.workload_commands, None),
    subjects.WEBHOOK: _RowSpec(values.run_webhooks, None, _WEBHOOK_LABELS),
}


def labels(row: str) -> tuple[tuple[str, int], ...]:
    """The generators of ``row`` with their weights (shares of the examples)."""
    return _SPECS[row].labels


@st.composite
def examples_for(draw: st.DrawFn, row: str, label: str) -> subjects.Example:
    """One example made by ``label`` for the consumer of ``row`` (a subject from ``subjects.ROWS``)."""
    spec = _SPECS[row]
    if label == "hostile-webhook":
        value = draw(values.hostile_webhooks)
        payload = messages.ENCODER.encode(value)
    else:
        value = draw(spec.valid)
        payload = mutations.mutate(draw, label, value)
    assume(len(payload) <= mutations.MAX_PAYLOAD_BYTES)
    subject = spec.subject(draw, value) if spec.subject else row
    return subjects.Example(row=row, subject=subject, payload=payload, label=label)


# ----------------------------------------------------------------------------- drawing


def _draw_once(strategy: st.SearchStrategy[T], n: int, seed: int) -> list[T]:
    drawn: list[T] = []

    @settings(
        max_examples=n,
        derandomize=False,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        deadline=None,
    )
    @given(strategy)
    def collect(value: T) -> None:
        drawn.append(value)

    hypothesis.seed(seed)(collect)()
    return drawn


def draw_values(strategy: st.SearchStrategy[T], n: int, seed: int) -> list[T]:
    """``n`` values of ``strategy``, the same ones for the same seed (no example database)."""
    drawn: list[T] = []
    for attempt in range(50):  # Hypothesis may stop early (filtered or exhausted examples)
        if len(drawn) >= n:
            break
        drawn.extend(_draw_once(strategy, n - len(drawn), seed * 1009 + attempt))
    return drawn[:n]


def _shares(weights: tuple[tuple[str, int], ...], n: int) -> list[tuple[str, int]]:
    """``n`` split by weight (largest remainder), so every generator gets its share."""
    total = sum(weight for _, weight in weights)
    exact = [(label, n * weight / total) for label, weight in weights]
    counts = {label: int(share) for label, share in exact}
    by_remainder = sorted(exact, key=lambda item: item[1] - int(item[1]), reverse=True)
    for label, _ in by_remainder[: n - sum(counts.values())]:
        counts[label] += 1
    return [(label, counts[label]) for label, _ in weights]


def examples(row: str, n: int, seed: int, chunk: int = 0) -> list[subjects.Example]:
    """The ``chunk``-th batch of ``n`` examples for ``row``, every generator with its share,
    interleaved; the first batch opens with the sentinels. The same for the same seed."""
    opening = sentinels.sentinels(row)[:n] if chunk == 0 else []
    batches: list[list[subjects.Example]] = []
    for index, (label, count) in enumerate(_shares(labels(row), n - len(opening))):
        label_seed = ((seed * 7919 + subjects.ROWS.index(row)) * 104_729 + chunk) * 101 + index
        batches.append(draw_values(examples_for(row, label), count, label_seed) if count else [])
    mixed = [
        batch[i]
        for i in range(max(map(len, batches), default=0))
        for batch in batches
        if i < len(batch)
    ]
    return opening + mixed
