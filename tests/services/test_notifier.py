"""The notifier as processes on a real nats-server, telling a local sink (global notifier):
which events alert, exactly once across replicas, a dead provider delays nothing, and no
secret reaches a log line."""

from __future__ import annotations

import asyncio
import pathlib

import pytest
from nats.aio.client import Client

from libs import messages
from tests.fixtures import services
from tests.fixtures.nats import NatsServer
from tests.fixtures.services import ServiceFactory
from tests.fixtures.sinks import Sink

pytestmark = pytest.mark.integration

CANARY = messages.CanaryRef(namespace="test", name="podinfo")
SECRET = services.secret("T000/B000/XXXXsecretXXXX")  # in the sink's URL


async def publish(nc: Client, event: messages.EventBase) -> None:
    subject = messages.event_subject(
        event.canary.namespace, event.canary.name, messages.event_kind(event)
    )
    await nc.jetstream().publish(subject, messages.ENCODER.encode(event))


async def drained(nc: Client, timeout: float = 20.0) -> None:
    """Until the notifier acknowledged every event published so far."""
    async with asyncio.timeout(timeout):
        while True:
            info = await nc.jetstream().consumer_info("SLUICE_EVENTS", "notifier")
            if not info.num_pending and not info.num_ack_pending:
                return
            await asyncio.sleep(0.05)


def initialized(n: int = 0) -> messages.Initialized:
    return messages.Initialized(
        canary=CANARY, message="Initialization done! podinfo.test", at_ms=1_700_000_000_000 + n
    )


async def test_flaggers_alerts_go_to_the_global_slack_and_the_rest_does_not(
    nats_server: NatsServer, service: ServiceFactory, nc: Client, sink: Sink
) -> None:
    proc = service("notifier", nats_server.url, SLUICE_SLACK_URL=sink.url)
    await proc.ready()
    await publish(
        nc,
        messages.WeightAdvanced(
            canary=CANARY,
            canary_weight=10,
            primary_weight=90,
            message="Advance podinfo.test canary weight 10",
        ),
    )
    await publish(nc, initialized())
    rolled_back = messages.RolledBack(
        canary=CANARY,
        severity=messages.Severity.ERROR,
        reason="failed checks threshold reached 10",
        failed_checks=10,
        message="Canary failed! Scaling down podinfo.test",
    )
    await publish(nc, rolled_back)
    await sink.wait_for(2)
    # a person acting on a rollout is news too: the team hears who
    await publish(
        nc,
        messages.ControlRequested(
            canary=CANARY,
            severity=messages.Severity.WARN,
            action="abort",
            by="alice",
            message="Abort of podinfo.test requested by alice",
        ),
    )
    await sink.wait_for(3)
    texts = [body["attachments"][0]["text"] for body in sink.bodies]
    assert texts == [
        "Initialization done! podinfo.test",
        "Canary failed! Scaling down podinfo.test",
        "Abort of podinfo.test requested by alice",
    ]
    failed = sink.bodies[1]["attachments"][0]
    assert failed["color"] == "danger"
    assert {"title": "Reason", "value": "failed checks threshold reached 10", "short": False} in [
        {k: f.get(k) for k in ("title", "value", "short")} for f in failed["fields"]
    ] or any(f.get("value") == "failed checks threshold reached 10" for f in failed["fields"])
    assert await proc.metric("sluice_notifications_total", provider="slack", outcome="ok") == 3
    assert SECRET not in proc.log_text()


async def test_a_muted_webhooks_failure_is_not_alerted(
    nats_server: NatsServer, service: ServiceFactory, nc: Client, sink: Sink
) -> None:
    proc = service("notifier", nats_server.url, SLUICE_SLACK_URL=sink.url)
    await proc.ready()
    failed = {
        "canary": CANARY,
        "severity": messages.Severity.ERROR,
        "webhook": "smoke",
        "type": messages.WebhookType.POST_ROLLOUT,
        "error": "500",
        "message": "Post-rollout check smoke failed",
    }
    await publish(nc, messages.WebhookFailed(**failed, mute_alert=True))  # type: ignore[arg-type]
    await publish(nc, messages.WebhookFailed(**failed, at_ms=1))  # type: ignore[arg-type]
    await drained(nc)
    assert len(sink.bodies) == 1


async def test_two_replicas_alert_each_event_exactly_once(
    nats_server: NatsServer, service: ServiceFactory, nc: Client, sink: Sink
) -> None:
    replicas = [service("notifier", nats_server.url, SLUICE_SLACK_URL=sink.url) for _ in range(2)]
    await asyncio.gather(*(r.ready() for r in replicas))
    count = 1000
    for n in range(count):
        await publish(nc, initialized(n))
    await sink.wait_for(count, timeout=120)
    await drained(nc)  # every event acknowledged ...
    assert len(sink.bodies) == count  # ... and nothing told twice
    shares = [
        await r.metric("sluice_notifications_total", provider="slack", outcome="ok")
        for r in replicas
    ]
    assert sum(shares) == count
    assert all(share > 0 for share in shares), shares


async def test_a_dead_provider_delays_nothing_else(
    nats_server: NatsServer, service: ServiceFactory, nc: Client, sink: Sink
) -> None:
    proc = service(
        "notifier",
        nats_server.url,
        SLUICE_SLACK_URL="http://127.0.0.1:1/hooks/" + SECRET,
        SLUICE_MSTEAMS_URL=sink.url,
        SLUICE_ALERT_DEADLINE_S="1",
    )
    await proc.ready()
    for n in range(5):
        await publish(nc, initialized(n))
    await sink.wait_for(5)
    await proc.wait_metric(
        "sluice_notifications_total", lambda v: v == 5, provider="slack", outcome="failed"
    )
    assert SECRET not in proc.log_text()


async def test_a_redelivered_event_is_not_alerted_twice(
    nats_server: NatsServer, service: ServiceFactory, nc: Client, sink: Sink
) -> None:
    first = service("notifier", nats_server.url, SLUICE_SLACK_URL=sink.url)
    await first.ready()
    await publish(nc, initialized())
    await sink.wait_for(1)
    assert first.terminate() == 0
    # the same event again (as after a crash before the ack): it was told already
    await publish(nc, initialized())
    second = service("notifier", nats_server.url, SLUICE_SLACK_URL=sink.url)
    await second.ready()
    await second.wait_metric(
        "sluice_notifications_total", lambda v: v == 1, provider="slack", outcome="duplicate"
    )
    assert len(sink.bodies) == 1


async def test_urls_can_come_from_files(
    nats_server: NatsServer, service: ServiceFactory, nc: Client, sink: Sink, tmp_path: pathlib.Path
) -> None:
    secret_file = tmp_path / "slack-url"
    secret_file.write_text(sink.url + "\n")
    proc = service("notifier", nats_server.url, SLUICE_SLACK_URL_FILE=str(secret_file))
    await proc.ready()
    await publish(nc, initialized())
    await sink.wait_for(1)
    assert sink.paths == [f"/services/{SECRET}"]
