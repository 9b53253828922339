"""Sentinels: hand-written examples of the defect classes this suite exists for.

``sentinels(row)`` open every run (the first chunk of each row), so each class is exercised
whatever Hypothesis draws: nesting 1000 and 3000 levels deep, strings of ~900 KB, canary names
and namespaces a subject cannot carry, replies that would exceed the max payload, webhooks with
absurd timeouts and retries, and unparseable webhook URLs carrying ``values.SECRET``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from libs import messages
from tests.fuzz import mutations, subjects, values

_PODINFO = messages.CanaryRef(namespace="test", name="podinfo")
_AT_MS = 1_700_000_000_000  # fixed timestamps: the same seed gives the same bytes


def _with_ignored(value: msgspec.Struct, nested: bytes) -> bytes:
    return messages.ENCODER.encode(value)[:-1] + b',"x_fuzz_nested":' + nested + b"}"


def sentinels(row: str) -> list[subjects.Example]:
    """Hand-written examples of each defect class this suite must find, first in every run."""
    deep = mutations.nested_json(1000, "array")
    huge_pair = messages.CanaryRef(namespace="a" * 450_000, name="b" * 450_000)
    made: list[tuple[str, str, bytes]] = []
    if row == subjects.TICKS:
        tick = messages.Tick(canary=_PODINFO, scheduled_at_ms=_AT_MS)
        made = [
            ("sluice.tick.test.sentinel-valid", "valid", messages.ENCODER.encode(tick)),
            ("sluice.tick.test.sentinel-deep", "sentinel:deep-1000", _with_ignored(tick, deep)),
            (
                "sluice.tick.test.sentinel-deep-object",
                "sentinel:deep-3000-object",
                _with_ignored(tick, mutations.nested_json(3000, "object")),
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
    elif row in (subjects.HINTS, subjects.EVENTS):
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
        if row == subjects.HINTS:
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
    elif row == subjects.TRAFFIC:

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
    elif row == subjects.WORKLOAD:
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
    elif row == subjects.WEBHOOK:

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

        refused = f"http://{values.REFUSED_HOST}/hook?token={values.SECRET}"
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
                    f"http://127.0.0.1:99999/hook?token={values.SECRET}",
                    f"ftp://127.0.0.1:1/hook?token={values.SECRET}",
                    f"http://user:{values.SECRET}@127.0.0.1:abc/hook",
                )
            ),
        ]
    return [subjects.Example(row=row, subject=s, payload=p, label=label) for s, label, p in made]
