"""Valid values: strategies for the real Structs of ``libs.messages``, the building blocks of
every example (a valid message is drawn first, then sent as it is or spoiled by a mutation).

Webhook URLs only ever point at 127.0.0.1 on a refused port (1), or cannot be parsed at all
(``UNPARSEABLE_URLS``), so nothing outside this machine is ever called; many carry ``SECRET``,
which must never show up in a log line or a reply.
"""

from __future__ import annotations

import typing
from typing import Any

import msgspec
from hypothesis import strategies as st

from libs import messages
from tests.fixtures import services

SECRET = services.secret("FUZZSECRET")
REFUSED_HOST = "127.0.0.1:1"  # nothing listens on port 1: connection refused at once

COMMON_NAMESPACES = ("test", "default", "prod", "apisix", "team-a")
COMMON_NAMES = ("podinfo", "frontend", "backend-api", "app", "web-1")


def dns_labels(max_size: int = 63) -> st.SearchStrategy[str]:
    """RFC 1123 labels, as Kubernetes names namespaces (and a subject token: no dots)."""
    return st.from_regex(rf"[a-z0-9]([-a-z0-9]{{0,{max_size - 2}}}[a-z0-9])?", fullmatch=True)


namespaces = st.one_of(st.sampled_from(COMMON_NAMESPACES), dns_labels())
names = st.one_of(st.sampled_from(COMMON_NAMES), dns_labels())
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
