"""Hypothesis strategies: what can arrive on each subject a Sluice service consumes.

One strategy per consumed subject (``ROWS``) draws ``Example`` values: the subject a message is
published on, its payload bytes and a ``label`` naming the generator that made it. A share are
VALID messages built from the real Structs of ``libs.messages`` and encoded with
``messages.ENCODER``; every other example is a valid message spoiled by one mutation:

    random-bytes    bytes / text that is not a message at all
    truncated       a valid payload cut short
    deep-ignored    JSON nested 50..3000 levels deep in an extra (ignored) field
    deep-field      the same nesting in place of a real field
    wrong-kind      a bad ``kind`` tag (unknown, another type's, not a string, missing)
    wrong-type      a field of the wrong JSON type
    huge-string     a string field of up to ~900 KB (payload below the 1 MB max payload)
    number          out-of-range or odd numbers: 1e309, -1, 2**70, NaN spelled many ways, ...
    k8s-name        names at and past Kubernetes' limits (63/64, 253/254, a few KB, spaces,
                    dots, unicode) in the canary reference and other name fields
    missing-field   a field removed
    json-edge       BOM, trailing garbage, duplicate keys, invalid UTF-8, lone surrogates, ...
    secret-url      (webhook) an unparseable URL carrying ``token=FUZZSECRET``
    hostile-webhook (webhook) timeouts of 1e9 s and retries of 10**9 against a refused port

Webhook URLs only ever point at 127.0.0.1 on a refused port (1), or cannot be parsed at all, so
nothing outside this machine is ever called. Subjects of ticks and events are generated too
(valid tokens and odd-but-legal NATS tokens), always under the prefix the consumer's filter
matches.

``sentinels(row)`` are hand-written examples of the defect classes this suite exists for; they
open every run, so each class is exercised whatever Hypothesis draws. ``draw_values(strategy, n,
seed)`` turns a strategy into ``n`` concrete values, deterministically for a seed, without
``strategy.example()`` (which warns; pytest runs with ``-W error``).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import hypothesis
import msgspec
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

from libs import messages, streams

T = TypeVar("T")

# ----------------------------------------------------------------------------- rows

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

SECRET = "FUZZSECRET"
REFUSED_HOST = "127.0.0.1:1"  # nothing listens on port 1: connection refused at once
# nats-server's default max_payload is 1 MiB (headers included); stay below it with room.
MAX_PAYLOAD_BYTES = 1_000_000
HUGE_MAX_CHARS = 900_000
# nats-server's max control line is 4096 bytes ("HPUB <subject> <reply> <sizes>")
MAX_SUBJECT_BYTES = 3_000
# msgspec's decoder recurses once per level against Python's recursion limit (1000 in the
# services and here): depths near 1000 would make the prediction depend on the stack depth of
# the caller, so they are left out.
NESTING_DEPTHS = st.one_of(st.integers(50, 880), st.integers(1120, 3000))


@dataclasses.dataclass(frozen=True)
class Example:
    row: str  # the consumed subject (subscription) it was made for
    subject: str  # the subject it is published on
    payload: bytes
    label: str  # the generator that made it


# ----------------------------------------------------------------------------- valid values

_COMMON_NAMESPACES = ("test", "default", "prod", "apisix", "team-a")
_COMMON_NAMES = ("podinfo", "frontend", "backend-api", "app", "web-1")


def dns_labels(max_size: int = 63) -> st.SearchStrategy[str]:
    """RFC 1123 labels, as Kubernetes names namespaces (and a subject token: no dots)."""
    return st.from_regex(rf"[a-z0-9]([-a-z0-9]{{0,{max_size - 2}}}[a-z0-9])?", fullmatch=True)


namespaces = st.one_of(st.sampled_from(_COMMON_NAMESPACES), dns_labels())
names = st.one_of(st.sampled_from(_COMMON_NAMES), dns_labels())
canary_refs = st.builds(messages.CanaryRef, namespace=namespaces, name=names)
texts = st.text(max_size=60)
short_texts = st.text(max_size=20)
revisions = st.text(alphabet="0123456789abcdef", max_size=16)
timestamps_ms = st.integers(0, 2**53)
finite_floats = st.floats(allow_nan=False, allow_infinity=False)
percents = st.integers(0, 100)
severities = st.sampled_from(list(messages.Severity))
phases = st.sampled_from(list(messages.Phase))
webhook_types = st.sampled_from(list(messages.WebhookType))


def _tag(cls: type[msgspec.Struct]) -> str:
    tag = cls.__struct_config__.tag
    assert isinstance(tag, str)
    return tag


EVENT_CLASSES: tuple[type[messages.EventBase], ...] = typing.get_args(messages.Event)
EVENT_KINDS: tuple[str, ...] = tuple(_tag(cls) for cls in EVENT_CLASSES)
WORKLOAD_CLASSES: tuple[type[messages.CommandBase], ...] = typing.get_args(messages.WorkloadCommand)
COMMAND_KINDS: tuple[str, ...] = tuple(_tag(cls) for cls in typing.get_args(messages.Command))

_EVENT_FIELDS: dict[type[messages.EventBase], dict[str, st.SearchStrategy[Any]]] = {
    messages.RevisionDetected: {
        "tracked_configs": st.dictionaries(short_texts, revisions, max_size=3)
    },
    messages.PhaseChanged: {"previous": phases, "phase": phases},
    messages.NewRevision: {"restarted": st.booleans()},
    messages.WeightAdvanced: {"canary_weight": percents, "primary_weight": percents},
    messages.IterationAdvanced: {
        "iteration": st.integers(0, 100),
        "iterations": st.integers(0, 100),
    },
    messages.MetricChecked: {
        "metric": short_texts,
        "value": st.none() | finite_floats,
        "min": st.none() | finite_floats,
        "max": st.none() | finite_floats,
        "passed": st.booleans(),
    },
    messages.Halted: {
        "reason": texts,
        "failed_checks": st.integers(0, 20),
        "counted": st.booleans(),
    },
    messages.WaitingApproval: {"gate": webhook_types, "webhook": short_texts},
    messages.PromotionCompleted: {"skipped_analysis": st.booleans()},
    messages.RolledBack: {"reason": texts, "failed_checks": st.integers(0, 20)},
    messages.WebhookFailed: {"webhook": short_texts, "type": webhook_types, "error": texts},
}


def event_values(cls: type[messages.EventBase]) -> st.SearchStrategy[messages.EventBase]:
    # event types added later get their extra fields inferred by Hypothesis
    return st.builds(
        cls,
        canary=canary_refs,
        target=names,
        revision=revisions,
        severity=severities,
        message=texts,
        at_ms=timestamps_ms,
        **_EVENT_FIELDS.get(cls, {}),
    )


events = st.one_of([event_values(cls) for cls in EVENT_CLASSES])
revision_detected = event_values(messages.RevisionDetected)
hint_values = st.one_of(revision_detected, revision_detected, revision_detected, events)
ticks = st.builds(
    messages.Tick,
    canary=canary_refs,
    interval_s=st.floats(0, 3600),
    scheduled_at_ms=timestamps_ms,
)

command_timeouts = st.floats(0.2, 3.0)  # valid commands finish well inside a test run
state_revisions = st.integers(0, 2**31)
match_conditions = st.builds(
    messages.MatchCondition,
    scope=st.sampled_from(["header", "query", "cookie"]),
    name=short_texts,
    op=st.sampled_from(["exact", "prefix", "suffix", "regex"]),
    value=short_texts,
)
# weights that add up to 100 (what a correct analyzer sends) or anything in range
weight_pairs = st.one_of(
    percents.map(lambda p: (p, 100 - p)),
    st.tuples(percents, percents),
)
set_weights = st.builds(
    lambda canary, revision, timeout, route, service, weights, match: messages.SetWeights(
        canary=canary,
        state_revision=revision,
        timeout_s=timeout,
        route=route,
        service=service,
        primary_weight=weights[0],
        canary_weight=weights[1],
        match=match,
    ),
    canary_refs,
    state_revisions,
    command_timeouts,
    names,
    names,
    weight_pairs,
    st.lists(match_conditions, max_size=2),
)
_COMMAND_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "canary": canary_refs,
    "state_revision": state_revisions,
    "timeout_s": command_timeouts,
}
workload_commands = st.one_of(
    st.builds(
        messages.InitializeWorkload,
        target=names,
        service=names,
        port=st.integers(1, 65535),
        target_port=st.none() | st.integers(1, 65535) | st.sampled_from(["http", "metrics"]),
        autoscaler=st.sampled_from(["", "podinfo"]),
        **_COMMAND_FIELDS,
    ),
    st.builds(
        messages.ScaleWorkload, workload=names, replicas=st.integers(0, 10), **_COMMAND_FIELDS
    ),
    st.builds(messages.PromoteWorkload, target=names, revision=revisions, **_COMMAND_FIELDS),
)

# Webhook URLs: 127.0.0.1 on a refused port, or not parseable at all (never another host).
refused_urls = st.builds(
    "{}://{}/{}{}".format,
    st.sampled_from(["http", "https"]),
    st.just(REFUSED_HOST),
    st.sampled_from(["", "hook", "gate/check", "rollout/load-test"]),
    st.sampled_from(["", f"?token={SECRET}", "#frag", f"?a=1&token={SECRET}"]),
) | st.just(f"http://user:{SECRET}@{REFUSED_HOST}/hook")
UNPARSEABLE_URLS: tuple[str, ...] = (
    f"http://127.0.0.1:99999/hook?token={SECRET}",
    f"http://127.0.0.1:65536/?token={SECRET}",
    f"http://127.0.0.1:abc/hook?token={SECRET}",
    f"http://127.0.0.1:-1/hook?token={SECRET}",
    f"http://127.0.0.1:1:2/hook?token={SECRET}",
    f"http://[127.0.0.1/hook?token={SECRET}",
    f"http://127.0.0.1:1\\hook?token={SECRET}",
    f"http://user:{SECRET}@127.0.0.1:99999/hook",
    f"http:127.0.0.1:1/?token={SECRET}",
    f"127.0.0.1:1/hook?token={SECRET}",
    f"http:///hook?token={SECRET}",
    f"://127.0.0.1:1/hook?token={SECRET}",
    f"ftp://127.0.0.1:1/hook?token={SECRET}",
    f"file:///hook?token={SECRET}",
    f"token={SECRET}",
    SECRET,
    "",
)
webhook_specs = st.builds(
    messages.WebhookSpec,
    name=st.sampled_from(["load-test", "gate", "smoke"]) | short_texts,
    type=webhook_types,
    url=refused_urls,
    timeout_s=st.floats(0.05, 1.0),
    retries=st.integers(0, 3),
    mute_alert=st.booleans(),
    disable_tls=st.booleans(),
    metadata=st.dictionaries(short_texts, texts, max_size=3),
)
run_webhooks = st.builds(
    messages.RunWebhook,
    webhook=webhook_specs,
    phase=phases,
    checksum=revisions,
    **_COMMAND_FIELDS,
)
hostile_webhooks = st.builds(
    messages.RunWebhook,
    canary=canary_refs,
    timeout_s=st.sampled_from([1e9, 1e300, 365 * 86400.0]),
    webhook=st.builds(
        messages.WebhookSpec,
        name=st.just("load-test"),
        type=webhook_types,
        url=refused_urls,
        timeout_s=st.sampled_from([1e9, 1e300, 3600.0]),
        retries=st.sampled_from([10**9, 2**31, 2**63 - 1]),
    ),
    phase=phases,
)

# ----------------------------------------------------------------------------- odd values

_NAME_EDGES: tuple[str, ...] = (
    "a b",
    " ",
    "",
    "my.app",
    "a.b.c",
    ".",
    "-lead",
    "trail-",
    "UPPER",
    "ünïcödé",
    "名前",
    "😀",
    "a\tb",
    "a\nb",
    "a/b",
    "a*b",
    "a>b",
    "*",
    ">",
    "a\x00b",
    "a\u200bb",
    "$SYS",
    "_INBOX",
    "0",
    "-",
)
k8s_names = st.one_of(
    st.sampled_from(["a" * 63, "a" * 64, "n" * 253, "n" * 254]),
    # legal subject tokens a few KB long: a canary name the analyzer turns into a tick subject
    st.builds(str.__mul__, st.sampled_from("an0_-"), st.integers(255, 8000)),
    st.builds(str.__mul__, st.sampled_from("an0_-"), st.integers(1000, 8000)),
    st.sampled_from(_NAME_EDGES),
    st.text(min_size=1, max_size=70),
)
_NAME_KEYS = frozenset({"namespace", "name", "target", "workload", "service", "route", "webhook"})

_NUMBERS: tuple[bytes, ...] = (
    b"1e309",
    b"-1e309",
    b"1e999",
    b"-1",
    b"-1.5",
    b"2e9",
    str(2**70).encode(),
    str(-(2**70)).encode(),
    str(2**64).encode(),
    str(2**63).encode(),
    str(-(2**63) - 1).encode(),
    b"NaN",
    b"nan",
    b"-NaN",
    b"Infinity",
    b"-Infinity",
    b"inf",
    b'"NaN"',
    b'"Infinity"',
    b'"1e309"',
    b"0",
    b"-0",
    b"-0.0",
    b"1e-320",
    b"1.7976931348623157e308",
    b"9007199254740993",
    b"1E+2",
    b"101",
    b"0x10",
    b"01",
    b"+1",
    b".5",
    b"1.",
    b"1e",
    b"1" * 5000,
)
_WRONG_TYPES = st.one_of(
    st.text(max_size=10),
    st.integers(),
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
_BAD_KINDS: tuple[Any, ...] = (
    "",
    "no-such-kind",
    "Revision_Detected",
    "revision_detected ",
    "revision-detected",
    "set_weights\x00",
    "KIND",
    1,
    None,
    True,
    [],
    {},
    ["revision_detected"],
)
# characters for huge strings: token-legal ones, multi-byte ones and ones JSON escapes
_HUGE_CHARS: tuple[str, ...] = ("a", "-", "Z", "é", "😀", "\x00", '"', "\\", " ", ".")
_ODD_TOKEN_CHARS = st.characters(
    exclude_categories=("Cc", "Cs", "Zs", "Zl", "Zp", "Co", "Cn"),
    exclude_characters=".*>",
)


def nested_json(depth: int, shape: str) -> bytes:
    """JSON nested ``depth`` levels deep: arrays, objects, or both alternating."""
    if shape == "array":
        return b"[" * depth + b"]" * depth
    if shape == "object":
        return b'{"n":' * depth + b"0" + b"}" * depth
    half = max(1, depth // 2)
    return b'[{"n":' * half + b"0" + b"}]" * half


# ----------------------------------------------------------------------------- documents

Path = tuple[str | int, ...]


def _nodes(doc: Any, prefix: Path = ()) -> Iterator[tuple[Path, Any]]:
    """Every (path, value) below the root of a JSON document."""
    items: Any
    if isinstance(doc, dict):
        items = doc.items()
    elif isinstance(doc, list):
        items = enumerate(doc)
    else:
        return
    for key, value in items:
        path = (*prefix, key)
        yield path, value
        yield from _nodes(value, path)


def _replace(doc: Any, path: Path, value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    copy: Any = dict(doc) if isinstance(doc, dict) else list(doc)
    copy[head] = _replace(doc[head], rest, value) if rest else value  # may add a key
    return copy


def _delete(doc: Any, path: Path) -> Any:
    head, rest = path[0], path[1:]
    copy: Any = dict(doc) if isinstance(doc, dict) else list(doc)
    if rest:
        copy[head] = _delete(doc[head], rest)
    else:
        del copy[head]
    return copy


def _encode(doc: Any) -> bytes:
    """JSON of a document; ``msgspec.Raw`` pieces are copied verbatim (even when not JSON)."""
    return msgspec.json.encode(doc)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if _is_number(value):
        return "number"
    return type(value).__name__


# ----------------------------------------------------------------------------- mutations


def _huge(draw: st.DrawFn, doc: Any, path: Path) -> Any:
    char = draw(st.sampled_from(_HUGE_CHARS))
    per_char = len(msgspec.json.encode(char)) - 2
    budget = (MAX_PAYLOAD_BYTES - len(_encode(doc)) - 256) // per_char
    most = max(1, min(HUGE_MAX_CHARS, budget))
    count = draw(st.integers(min(1000, most), most))
    if path and path[-1] == "url":  # keep the host: only the path grows
        return _replace(doc, path, f"http://{REFUSED_HOST}/" + char * count)
    return _replace(doc, path, char * count)


def _mutate(draw: st.DrawFn, label: str, value: msgspec.Struct) -> bytes:
    """The payload of one example: ``value`` encoded, then spoiled as ``label`` says."""
    valid = messages.ENCODER.encode(value)
    doc = msgspec.to_builtins(value)
    nodes = list(_nodes(doc))
    paths = [path for path, _ in nodes]
    string_paths = [path for path, v in nodes if isinstance(v, str)]
    if label == "valid":
        return valid
    if label == "random-bytes":
        return draw(
            st.one_of(
                st.binary(max_size=512),
                st.text(max_size=200).map(str.encode),
                st.sampled_from(
                    [b"", b" ", b"\x00", b"null", b"{}", b"[]", b'"', b"{", b"\xff\xfe", b"}{"]
                ),
            )
        )
    if label == "truncated":
        return valid[: draw(st.integers(0, len(valid) - 1))]
    if label == "deep-ignored":
        objects: list[Path] = [()] + [
            p for p, v in nodes if isinstance(v, dict) and p[-1] in ("canary", "webhook")
        ]
        where = draw(st.sampled_from(objects))
        depth = draw(NESTING_DEPTHS)
        shape = draw(st.sampled_from(["array", "object", "mixed"]))
        target = _replace(doc, (*where, "x_fuzz_nested"), msgspec.Raw(nested_json(depth, shape)))
        return _encode(target)
    if label == "deep-field":
        where = draw(st.sampled_from(paths))
        depth = draw(NESTING_DEPTHS)
        shape = draw(st.sampled_from(["array", "object", "mixed"]))
        return _encode(_replace(doc, where, msgspec.Raw(nested_json(depth, shape))))
    if label == "wrong-kind":
        if isinstance(doc, dict) and "kind" in doc and draw(st.booleans()):
            return _encode(_delete(doc, ("kind",)))
        other = st.sampled_from(EVENT_KINDS + COMMAND_KINDS)
        kind = draw(st.one_of(st.sampled_from(_BAD_KINDS), other, st.text(max_size=20)))
        return _encode({**doc, "kind": kind})
    if label == "wrong-type":
        where = draw(st.sampled_from(paths))
        current = _json_type(dict(nodes)[where])
        replacement = draw(_WRONG_TYPES.filter(lambda v: _json_type(v) != current))
        return _encode(_replace(doc, where, replacement))
    if label == "huge-string":
        canary = [p for p in string_paths if len(p) >= 2 and p[-2] == "canary"]
        pool = canary if canary and draw(st.booleans()) else string_paths
        return _encode(_huge(draw, doc, draw(st.sampled_from(pool))))
    if label == "number":
        numeric = [p for p, v in nodes if _is_number(v)] or paths
        token = draw(st.sampled_from(_NUMBERS))
        return _encode(_replace(doc, draw(st.sampled_from(numeric)), msgspec.Raw(token)))
    if label == "k8s-name":
        canary = [p for p in string_paths if len(p) >= 2 and p[-2] == "canary"]
        named = [p for p in string_paths if p[-1] in _NAME_KEYS] or string_paths
        pool = canary if canary and draw(st.integers(0, 9)) < 7 else named
        chosen = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=2, unique=True))
        for where in chosen:
            doc = _replace(doc, where, draw(k8s_names))
        return _encode(doc)
    if label == "missing-field":
        keyed = [p for p in paths if isinstance(p[-1], str)]
        return _encode(_delete(doc, draw(st.sampled_from(keyed))))
    if label == "json-edge":
        return _json_edge(draw, doc, valid, string_paths)
    if label == "secret-url":
        url = draw(st.sampled_from(UNPARSEABLE_URLS))
        return _encode(_replace(doc, ("webhook", "url"), url))
    raise AssertionError(f"unknown label {label}")


def _json_edge(draw: st.DrawFn, doc: Any, valid: bytes, string_paths: list[Path]) -> bytes:
    choice = draw(st.integers(0, 11))
    if choice == 0:
        return draw(st.sampled_from([b"[]", b"null", b"1", b'"x"', b"true", b"[" + valid + b"]"]))
    if choice == 1:
        return b"\xef\xbb\xbf" + valid  # UTF-8 byte order mark
    if choice == 2:
        return valid + draw(st.sampled_from([b"x", b"\x00", b",", valid, b"]"]))
    if choice == 3:
        return b" \n\t" + valid + b"\r\n"  # surrounding whitespace is legal JSON
    if choice == 4:  # a duplicate key, the last one wrong
        return valid[:-1] + b',"canary":' + draw(st.sampled_from([b"5", b"{}", b"null"])) + b"}"
    if choice == 5:  # a duplicate key, the last one right
        return valid[:-1] + b',"canary":{"namespace":"test","name":"podinfo"}}'
    if choice == 6 and string_paths:  # invalid UTF-8 inside a string
        where = draw(st.sampled_from(string_paths))
        return _encode(_replace(doc, where, msgspec.Raw(b'"\xff\xfe\xc3"')))
    if choice == 7 and string_paths:  # lone surrogates
        where = draw(st.sampled_from(string_paths))
        return _encode(_replace(doc, where, msgspec.Raw(b'"\\ud800\\udfff\\ud800"')))
    if choice == 8 and string_paths:  # escapes and control characters
        where = draw(st.sampled_from(string_paths))
        soup = b'"\\u0000\\n\\r\\t\\"\\\\\\/\\u2028\\u001b[31m"'
        return _encode(_replace(doc, where, msgspec.Raw(soup)))
    if choice == 9 and string_paths:  # a raw control character inside a string: not JSON
        where = draw(st.sampled_from(string_paths))
        return _encode(_replace(doc, where, msgspec.Raw(b'"a\nb\x00"')))
    if choice == 10:  # the whole document nested
        depth = draw(NESTING_DEPTHS)
        return nested_json(depth, draw(st.sampled_from(["array", "object", "mixed"])))
    return valid.replace(b":", b" : ", 3)  # legal spacing


# ----------------------------------------------------------------------------- subjects


@st.composite
def subject_tokens(draw: st.DrawFn) -> str:
    """A legal NATS subject token: a DNS label, something odd, or a few KB long."""
    kind = draw(st.integers(0, 9))
    if kind < 3:
        return draw(st.sampled_from(_COMMON_NAMESPACES + _COMMON_NAMES))
    if kind < 6:
        return draw(dns_labels())
    if kind < 9:
        return draw(st.text(alphabet=_ODD_TOKEN_CHARS, min_size=1, max_size=24))
    return draw(st.sampled_from("az09_-")) * draw(st.integers(255, 2500))


def _canary_tokens(draw: st.DrawFn, value: msgspec.Struct | None) -> tuple[str, str]:
    canary = getattr(value, "canary", None)
    if (
        isinstance(canary, messages.CanaryRef)
        and all(
            messages._TOKEN.match(token) and len(token) <= 253
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
        kind = draw(st.sampled_from(EVENT_KINDS))
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
    TICKS: _RowSpec(ticks, tick_subject),
    HINTS: _RowSpec(hint_values, hint_subject),
    EVENTS: _RowSpec(events, event_subject),
    TRAFFIC: _RowSpec(set_weights, None),
    WORKLOAD: _RowSpec(workload_commands, None),
    WEBHOOK: _RowSpec(run_webhooks, None, _WEBHOOK_LABELS),
}


def labels(row: str) -> tuple[tuple[str, int], ...]:
    """The generators of ``row`` with their weights (shares of the examples)."""
    return _SPECS[row].labels


@st.composite
def examples_for(draw: st.DrawFn, row: str, label: str) -> Example:
    """One example made by ``label`` for the consumer of ``row`` (a subject from ``ROWS``)."""
    spec = _SPECS[row]
    if label == "hostile-webhook":
        value = draw(hostile_webhooks)
        payload = messages.ENCODER.encode(value)
    else:
        value = draw(spec.valid)
        payload = _mutate(draw, label, value)
    assume(len(payload) <= MAX_PAYLOAD_BYTES)
    subject = spec.subject(draw, value) if spec.subject else row
    return Example(row=row, subject=subject, payload=payload, label=label)


# ----------------------------------------------------------------------------- sentinels

_PODINFO = messages.CanaryRef(namespace="test", name="podinfo")
_AT_MS = 1_700_000_000_000  # fixed timestamps: the same seed gives the same bytes


def _with_ignored(value: msgspec.Struct, nested: bytes) -> bytes:
    return messages.ENCODER.encode(value)[:-1] + b',"x_fuzz_nested":' + nested + b"}"


def sentinels(row: str) -> list[Example]:
    """Hand-written examples of each defect class this suite must find, first in every run."""
    deep = nested_json(1000, "array")
    huge_pair = messages.CanaryRef(namespace="a" * 450_000, name="b" * 450_000)
    made: list[tuple[str, str, bytes]] = []
    if row == TICKS:
        tick = messages.Tick(canary=_PODINFO, scheduled_at_ms=_AT_MS)
        made = [
            ("sluice.tick.test.sentinel-valid", "valid", messages.ENCODER.encode(tick)),
            ("sluice.tick.test.sentinel-deep", "sentinel:deep-1000", _with_ignored(tick, deep)),
            (
                "sluice.tick.test.sentinel-deep-object",
                "sentinel:deep-3000-object",
                _with_ignored(tick, nested_json(3000, "object")),
            ),
            (
                "sluice.tick.test.sentinel-huge",
                "sentinel:huge-canary-name",
                messages.ENCODER.encode(
                    messages.Tick(
                        canary=messages.CanaryRef(namespace="test", name="n" * 900_000),
                        scheduled_at_ms=_AT_MS,
                    )
                ),
            ),
        ]
    elif row in (HINTS, EVENTS):
        subject = "sluice.events.test.podinfo.revision_detected"
        hint = messages.RevisionDetected(canary=_PODINFO, revision="abc", at_ms=_AT_MS)
        made = [
            (subject, "valid", messages.ENCODER.encode(hint)),
            (subject, "sentinel:deep-1000", _with_ignored(hint, deep)),
            (
                subject,
                "sentinel:huge-message",
                messages.ENCODER.encode(
                    messages.RevisionDetected(canary=_PODINFO, message="m" * 900_000, at_ms=_AT_MS)
                ),
            ),
        ]
        if row == HINTS:
            made += [
                (
                    subject,
                    f"sentinel:{what}",
                    messages.ENCODER.encode(
                        messages.RevisionDetected(
                            canary=messages.CanaryRef(namespace=namespace, name=name), at_ms=_AT_MS
                        )
                    ),
                )
                for what, namespace, name in (
                    ("canary-name-5000", "test", "n" * 5000),
                    ("namespace-with-space", "a b", "podinfo"),
                    ("name-with-dots", "test", "my.app"),
                )
            ]
        else:
            halted = messages.Halted(
                canary=_PODINFO,
                reason="r" * 400_000,
                failed_checks=1,
                message="m" * 400_000,
                at_ms=_AT_MS,
            )
            made.append(
                (
                    "sluice.events.test.podinfo.halted",
                    "sentinel:huge-halted",
                    messages.ENCODER.encode(halted),
                )
            )
    elif row == TRAFFIC:

        def weights(canary: messages.CanaryRef) -> messages.SetWeights:
            return messages.SetWeights(
                canary=canary,
                route="podinfo",
                service="podinfo",
                primary_weight=90,
                canary_weight=10,
            )

        valid = weights(_PODINFO)
        made = [
            (row, "valid", messages.ENCODER.encode(valid)),
            (row, "sentinel:deep-1000", _with_ignored(valid, deep)),
            (
                row,
                "sentinel:reply-over-max-payload",
                messages.ENCODER.encode(weights(huge_pair)),
            ),
        ]
    elif row == WORKLOAD:
        valid_scale = messages.ScaleWorkload(canary=_PODINFO, workload="podinfo", replicas=0)
        made = [
            (row, "valid", messages.ENCODER.encode(valid_scale)),
            (row, "sentinel:deep-1000", _with_ignored(valid_scale, deep)),
            (
                row,
                "sentinel:reply-over-max-payload",
                messages.ENCODER.encode(
                    messages.ScaleWorkload(canary=huge_pair, workload="podinfo", replicas=1)
                ),
            ),
        ]
    elif row == WEBHOOK:

        def hook(url: str, **changes: Any) -> messages.WebhookSpec:
            fields: dict[str, Any] = {
                "name": "load-test",
                "type": messages.WebhookType.ROLLOUT,
                "url": url,
                "timeout_s": 0.5,
                **changes,
            }
            return messages.WebhookSpec(**fields)

        def run(spec: messages.WebhookSpec, timeout_s: float = 2.0) -> bytes:
            return messages.ENCODER.encode(
                messages.RunWebhook(
                    canary=_PODINFO,
                    webhook=spec,
                    phase=messages.Phase.PROGRESSING,
                    timeout_s=timeout_s,
                )
            )

        refused = f"http://{REFUSED_HOST}/hook?token={SECRET}"
        valid_hook = messages.RunWebhook(
            canary=_PODINFO, webhook=hook(refused), phase=messages.Phase.PROGRESSING
        )
        made = [
            (row, "valid", run(hook(refused))),
            (row, "sentinel:deep-1000", _with_ignored(valid_hook, deep)),
            (
                row,
                "sentinel:hostile-webhook",
                run(hook(refused, timeout_s=1e9, retries=10**9), timeout_s=1e9),
            ),
            *(
                (row, "sentinel:secret-url", run(hook(url)))
                for url in (
                    f"http://127.0.0.1:99999/hook?token={SECRET}",
                    f"ftp://127.0.0.1:1/hook?token={SECRET}",
                    f"http://user:{SECRET}@127.0.0.1:abc/hook",
                )
            ),
        ]
    return [Example(row=row, subject=s, payload=p, label=label) for s, label, p in made]


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


def examples(row: str, n: int, seed: int, chunk: int = 0) -> list[Example]:
    """The ``chunk``-th batch of ``n`` examples for ``row``, every generator with its share,
    interleaved; the first batch opens with the sentinels. The same for the same seed."""
    opening = sentinels(row)[:n] if chunk == 0 else []
    batches: list[list[Example]] = []
    for index, (label, count) in enumerate(_shares(labels(row), n - len(opening))):
        label_seed = ((seed * 7919 + ROWS.index(row)) * 104_729 + chunk) * 101 + index
        batches.append(draw_values(examples_for(row, label), count, label_seed) if count else [])
    mixed = [
        batch[i]
        for i in range(max(map(len, batches), default=0))
        for batch in batches
        if i < len(batch)
    ]
    return opening + mixed
