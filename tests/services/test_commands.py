"""Commands and events through real service processes on a real nats-server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from nats.aio.client import Client

from libs import messages
from tests.fixtures.nats import NatsServer
from tests.fixtures.services import ServiceFactory

pytestmark = pytest.mark.integration

CANARY = messages.CanaryRef(namespace="test", name="podinfo")


class HookServer:
    """A user's webhook endpoint: records what it receives, answers from a script."""

    def __init__(self, answers: list[int | str]) -> None:
        self.answers = answers
        self.received: list[dict[str, object]] = []
        self.url = ""
        self.release = asyncio.Event()  # set at teardown: a hanging answer ends

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(await request.json())
        answer = self.answers[min(len(self.received), len(self.answers)) - 1]
        if answer == "hang":
            await self.release.wait()
        return web.Response(status=int(answer), text=f"answer {answer}")


@pytest.fixture
async def hook_server() -> AsyncIterator[HookServer]:
    hook = HookServer([200])
    app = web.Application()
    app.router.add_post("/{tail:.*}", hook.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    hook.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield hook
    finally:
        hook.release.set()
        await runner.cleanup()


def run_webhook(url: str, **changes: object) -> messages.RunWebhook:
    spec = {
        "name": "load-test",
        "type": messages.WebhookType.ROLLOUT,
        "url": url,
        "timeout_s": 2.0,
        "metadata": {"cmd": "hey -z 1m http://apisix-gateway.apisix/api/info"},
        **changes,
    }
    return messages.RunWebhook(
        canary=CANARY,
        webhook=messages.WebhookSpec(**spec),  # type: ignore[arg-type]
        phase=messages.Phase.PROGRESSING,
        checksum="abc123",
        timeout_s=15.0,
    )


async def request(nc: Client, subject: str, command: messages.CommandBase) -> messages.Reply:
    msg = await nc.request(subject, messages.ENCODER.encode(command), timeout=command.timeout_s)
    return messages.REPLY_DECODER.decode(msg.data)


async def test_webhook_runner_posts_flaggers_payload_and_reports_success(
    nats_server: NatsServer, service: ServiceFactory, nc: Client, hook_server: HookServer
) -> None:
    proc = service("webhook_runner", nats_server.url)
    await proc.ready()
    reply = await request(nc, messages.CMD_WEBHOOK, run_webhook(hook_server.url))
    assert isinstance(reply, messages.WebhookResult)
    assert (reply.ok, reply.status_code, reply.attempts) == (True, 200, 1)
    assert reply.message == "answer 200"
    assert hook_server.received == [
        {
            "name": "podinfo",
            "namespace": "test",
            "phase": "Progressing",
            "checksum": "abc123",
            "metadata": {"cmd": "hey -z 1m http://apisix-gateway.apisix/api/info"},
        }
    ]
    assert proc.terminate() == 0


@pytest.mark.parametrize(
    ("answers", "retries", "ok", "status", "attempts"),
    [
        ([202], 0, True, 202, 1),  # Flagger: success is status <= 202
        ([403], 3, False, 403, 1),  # a closed gate is an answer, not retried
        ([500, 503, 200], 3, True, 200, 3),  # 5xx retried with backoff
        ([429, 500], 1, False, 500, 2),  # retries exhausted
    ],
)
async def test_webhook_statuses_and_retries(
    nats_server: NatsServer,
    service: ServiceFactory,
    nc: Client,
    hook_server: HookServer,
    answers: list[int | str],
    retries: int,
    ok: bool,
    status: int,
    attempts: int,
) -> None:
    hook_server.answers = answers
    proc = service("webhook_runner", nats_server.url, SLUICE_WEBHOOK_BACKOFF_BASE_S="0.01")
    await proc.ready()
    reply = await request(nc, messages.CMD_WEBHOOK, run_webhook(hook_server.url, retries=retries))
    assert isinstance(reply, messages.WebhookResult)
    assert (reply.ok, reply.status_code, reply.attempts) == (ok, status, attempts)


async def test_webhook_timeout_and_unreachable_url_are_failures_with_reasons(
    nats_server: NatsServer, service: ServiceFactory, nc: Client, hook_server: HookServer
) -> None:
    hook_server.answers = ["hang"]
    proc = service("webhook_runner", nats_server.url)
    await proc.ready()
    reply = await request(nc, messages.CMD_WEBHOOK, run_webhook(hook_server.url, timeout_s=0.5))
    assert isinstance(reply, messages.WebhookResult)
    assert (reply.ok, reply.status_code) == (False, None)
    assert reply.message == "no answer within 0.5s"
    reply = await request(nc, messages.CMD_WEBHOOK, run_webhook("http://127.0.0.1:1/"))
    assert isinstance(reply, messages.WebhookResult)
    assert not reply.ok
    assert "ClientConnectorError" in reply.message


async def test_traffic_shifter_refuses_what_it_cannot_do_and_rejects_bad_weights(
    nats_server: NatsServer, service: ServiceFactory, nc: Client
) -> None:
    proc = service("traffic_shifter", nats_server.url)
    await proc.ready()
    command = messages.SetWeights(
        canary=CANARY, route="podinfo", service="podinfo", primary_weight=90, canary_weight=10
    )
    reply = await request(nc, messages.CMD_TRAFFIC, command)
    assert isinstance(reply, messages.CommandFailed)
    assert reply.temporary is False
    assert "no traffic router is configured" in reply.error
    bad = messages.SetWeights(
        canary=CANARY, route="podinfo", service="podinfo", primary_weight=90, canary_weight=20
    )
    reply = await request(nc, messages.CMD_TRAFFIC, bad)
    assert isinstance(reply, messages.CommandFailed)
    assert reply.error == "primary_weight + canary_weight: expected 100, got 110"
    scale = messages.ScaleWorkload(canary=CANARY, workload="podinfo", replicas=-1)
    reply = await request(nc, messages.CMD_WORKLOAD, scale)
    assert isinstance(reply, messages.CommandFailed)
    assert reply.error == "replicas: expected 0 or more, got -1"


async def test_two_replicas_share_commands_through_the_queue_group(
    nats_server: NatsServer, service: ServiceFactory, nc: Client, hook_server: HookServer
) -> None:
    replicas = [service("webhook_runner", nats_server.url) for _ in range(2)]
    await asyncio.gather(*(r.ready() for r in replicas))
    for _ in range(20):
        reply = await request(nc, messages.CMD_WEBHOOK, run_webhook(hook_server.url))
        assert isinstance(reply, messages.WebhookResult)
        assert reply.ok
    assert len(hook_server.received) == 20  # each command answered exactly once
    counts = [
        await r.metric("sluice_messages_received_total", subject=messages.CMD_WEBHOOK)
        for r in replicas
    ]
    assert sum(counts) == 20
    assert all(c > 0 for c in counts), counts


async def test_revision_hint_schedules_an_analysis_tick(
    nats_server: NatsServer, service: ServiceFactory, nc: Client
) -> None:
    proc = service("analyzer", nats_server.url)
    await proc.ready()
    event = messages.RevisionDetected(canary=CANARY, target="podinfo", revision="7d9f8c")
    await nc.jetstream().publish(
        messages.event_subject("test", "podinfo", "revision_detected"),
        messages.ENCODER.encode(event),
    )
    await proc.wait_log("revision 7d9f8c detected for podinfo.test")
    await proc.wait_log("analysis step due for podinfo.test")
    assert await proc.metric("sluice_messages_received_total", subject=messages.TICKS_ALL) >= 1


async def test_notifier_reads_events_published_while_it_was_down(
    nats_server: NatsServer, service: ServiceFactory, nc: Client
) -> None:
    first = service("notifier", nats_server.url)
    await first.ready()
    assert first.terminate() == 0
    js = nc.jetstream()
    event = messages.RolledBack(
        canary=CANARY,
        reason="failed checks threshold reached 10",
        severity=messages.Severity.ERROR,
        message="Canary failed! Scaling down podinfo.test",
    )
    await js.publish(
        messages.event_subject("test", "podinfo", "rolled_back"), messages.ENCODER.encode(event)
    )
    second = service("notifier", nats_server.url)
    await second.ready()
    line = await second.wait_log(r"WARNING .*rolled_back: Canary failed! Scaling down podinfo.test")
    assert "canary=test/podinfo" in line.string
    info = await js.consumer_info("SLUICE_EVENTS", "notifier")
    assert info.num_pending == 0


async def test_prometheus_scrapes_a_service(
    nats_server: NatsServer, service: ServiceFactory, prometheus_factory: object
) -> None:
    proc = service("notifier", nats_server.url)
    await proc.ready()
    target = proc.base_url.removeprefix("http://")
    prom = prometheus_factory([target])  # type: ignore[operator]
    info = await prom.wait_for('sluice_info{service="notifier"}', lambda v: v == 1.0, timeout=30)
    assert info == 1.0
    connected = await prom.aquery(f'sluice_nats_connected{{instance="{target}"}}')
    assert connected == 1.0
