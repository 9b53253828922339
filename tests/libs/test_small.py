"""Small pure pieces: URL redaction, severity routing, weight checks, revision detection."""

from __future__ import annotations

import pytest

from libs import errors, logs, messages
from services.traffic_shifter.handlers import check_weights
from services.watcher.observing import is_new_revision
from services.webhook_runner.calling import payload, retryable

CANARY = messages.CanaryRef(namespace="test", name="podinfo")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.slack.com/services/T0/B0/SECRET", "https://hooks.slack.com/…"),
        ("http://flagger-loadtester.test/", "http://flagger-loadtester.test"),
        ("http://127.0.0.1:8080/gate?token=x", "http://127.0.0.1:8080/…"),
        ("not a url", "<redacted>"),
        ("http://[::1/hook?token=SECRET", "<unparseable url>"),
        ("http://h:99999/hook?token=SECRET", "<unparseable url>"),
    ],
)
def test_redact_url_never_shows_paths_or_queries(url: str, shown: str) -> None:
    assert logs.redact_url(url) == shown


@pytest.mark.parametrize(
    ("primary", "canary", "error"),
    [
        (100, 0, None),
        (0, 100, None),
        (50, 50, None),
        (101, -1, "primary_weight: expected 0..100, got 101"),
        (90, 20, "primary_weight + canary_weight: expected 100, got 110"),
        (10, -10, "canary_weight: expected 0..100, got -10"),
    ],
)
def test_weight_checks(primary: int, canary: int, error: str | None) -> None:
    command = messages.SetWeights(
        canary=CANARY, route="r", service="s", primary_weight=primary, canary_weight=canary
    )
    if error is None:
        check_weights(command)
    else:
        with pytest.raises(errors.InvalidInput, match=error.replace("+", r"\+")):
            check_weights(command)


def _obs(
    revision: str, replicas: int = 1, configs: dict[str, str] | None = None
) -> messages.WorkloadObservation:
    return messages.WorkloadObservation(
        namespace="test",
        name="podinfo",
        revision=revision,
        generation=1,
        observed_generation=1,
        replicas=replicas,
        tracked_configs=configs or {},
    )


def test_revision_detection_ignores_replica_changes() -> None:
    assert is_new_revision(None, _obs("a"))
    assert not is_new_revision(_obs("a"), _obs("a", replicas=5))
    assert is_new_revision(_obs("a"), _obs("b"))
    assert is_new_revision(
        _obs("a", configs={"configmap/c": "1"}), _obs("a", configs={"configmap/c": "2"})
    )


def test_webhook_payload_is_flaggers() -> None:
    command = messages.RunWebhook(
        canary=CANARY,
        webhook=messages.WebhookSpec(
            name="w", type=messages.WebhookType.PRE_ROLLOUT, url="http://x/"
        ),
        phase=messages.Phase.PROGRESSING,
        checksum="c",
    )
    assert payload(command) == (
        b'{"name":"podinfo","namespace":"test","phase":"Progressing","checksum":"c","metadata":{}}'
    )
    assert [s for s in (200, 202, 400, 403, 429, 500, 503) if retryable(s)] == [429, 500, 503]
