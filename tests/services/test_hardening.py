"""What a fuzzing run found, each as a regression test against real processes and a real
nats-server: a valid message that cut a service off NATS, poison that escaped, permanent errors
retried, log amplification, and a saturated replica that stopped answering."""

from __future__ import annotations

import asyncio
import logging
import pathlib
import time

import pytest
from aiohttp import web
from nats.aio.client import Client

from libs import lifecycle, logs, messages, settings, streams
from tests.fixtures.nats import NatsServer
from tests.fixtures.services import ServiceFactory, ServiceProcess

pytestmark = pytest.mark.integration

CANARY = messages.CanaryRef(namespace="test", name="podinfo")
HINTS = "sluice.events.*.*.revision_detected"


def hint(namespace: str, name: str) -> tuple[str, bytes]:
    """A revision_detected event as the watcher would publish it (the subject is built by hand:
    the names are exactly what Sluice refuses to build subjects from)."""
    event = messages.RevisionDetected(
        canary=messages.CanaryRef(namespace=namespace, name=name), revision="7d9f8c"
    )
    subject = f"sluice.events.{namespace.replace(' ', '_')}.x.revision_detected"
    return subject, messages.ENCODER.encode(event)


async def dead_reasons(nc: Client) -> list[str]:
    js = nc.jetstream()
    info = await js.stream_info(streams.DEAD.name)
    if not info.state.messages:
        return []
    return [
        (await js.get_msg(streams.DEAD.name, seq)).headers[messages.HEADER_DEAD_REASON]  # type: ignore[index]
        for seq in range(info.state.first_seq, info.state.last_seq + 1)
    ]


async def settled(nc: Client, stream: str, durable: str, timeout: float = 15.0) -> None:
    js = nc.jetstream()
    deadline = time.monotonic() + timeout
    while True:
        info = await js.consumer_info(stream, durable)
        if info.num_pending == 0 and info.num_ack_pending == 0:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"{durable}: {info.num_pending} pending, {info.num_ack_pending} unacked")
        await asyncio.sleep(0.05)


async def analyzer(service: ServiceFactory, nats_server: NatsServer) -> ServiceProcess:
    proc = service("analyzer", nats_server.url, SLUICE_RETRY_DELAY_S="0.1")
    await proc.ready()
    return proc


async def test_a_name_too_long_for_a_subject_cannot_cut_the_analyzer_off_nats(
    nats_server: NatsServer, service: ServiceFactory, nc: Client
) -> None:
    """A legal subject token of a few KB used to become a tick subject longer than the server's
    control line; the server closed the connection and the analyzer never came back."""
    proc = await analyzer(service, nats_server)
    subject, payload = hint("test", "a" * 5000)
    await nc.jetstream().publish(subject.replace(".x.", ".long."), payload)
    await settled(nc, "SLUICE_EVENTS", "analyzer-hints")
    assert await dead_reasons(nc) == ["permanent"]
    assert (await proc.get("/readyz"))[0] == 200
    assert (await proc.get("/healthz"))[0] == 200
    assert "is 5000 characters long; expected at most 253" in proc.log_text()
    # and it still works
    event = messages.RevisionDetected(canary=CANARY, revision="abc123")
    await nc.jetstream().publish(
        messages.event_subject("test", "podinfo", "revision_detected"),
        messages.ENCODER.encode(event),
    )
    await proc.wait_log("analysis step due for podinfo.test")
    assert proc.terminate() == 0


async def test_an_input_error_is_permanent_not_retried(
    nats_server: NatsServer, service: ServiceFactory, nc: Client
) -> None:
    proc = await analyzer(service, nats_server)
    subject, payload = hint("a b", "podinfo")
    await nc.jetstream().publish(subject, payload)
    await settled(nc, "SLUICE_EVENTS", "analyzer-hints")
    assert await dead_reasons(nc) == ["permanent"]
    info = await nc.jetstream().consumer_info("SLUICE_EVENTS", "analyzer-hints")
    assert info.num_redelivered == 0
    assert (
        await proc.metric("sluice_message_failures_total", subject=HINTS, decision="permanent") == 1
    )
    assert "Traceback" not in proc.log_text()
    assert proc.terminate() == 0


@pytest.mark.parametrize("module", ["analyzer", "notifier"])
async def test_deep_nesting_is_poison_not_a_crash(
    module: str, nats_server: NatsServer, service: ServiceFactory, nc: Client
) -> None:
    proc = service(module, nats_server.url)
    await proc.ready()
    nested = b"[" * 3000 + b"]" * 3000
    payload = (
        b'{"kind": "revision_detected", "canary": {"namespace": "test", "name": "podinfo"}, "x": '
        + nested
        + b"}"
    )
    await nc.jetstream().publish("sluice.events.test.podinfo.revision_detected", payload)
    durable = "analyzer-hints" if module == "analyzer" else "notifier"
    await settled(nc, "SLUICE_EVENTS", durable)
    assert await dead_reasons(nc) == ["undecodable"]
    subject = HINTS if module == "analyzer" else messages.EVENTS_ALL
    assert (
        await proc.metric("sluice_messages_rejected_total", subject=subject, reason="undecodable")
        == 1
    )
    info = await nc.jetstream().consumer_info("SLUICE_EVENTS", durable)
    assert info.num_redelivered == 0
    assert proc.terminate() == 0


async def test_a_deeply_nested_command_is_answered(
    nats_server: NatsServer, service: ServiceFactory, nc: Client
) -> None:
    proc = service("traffic_shifter", nats_server.url)
    await proc.ready()
    payload = b'{"kind": "scale_workload", "x": ' + b'{"a":' * 3000 + b"1" + b"}" * 3000 + b"}"
    msg = await nc.request(messages.CMD_WORKLOAD, payload, timeout=5)
    reply = messages.REPLY_DECODER.decode(msg.data)
    assert isinstance(reply, messages.CommandFailed)
    assert (reply.temporary, reply.error) == (False, "invalid command: RecursionError")
    assert proc.terminate() == 0


async def test_huge_values_do_not_become_huge_log_lines(
    nats_server: NatsServer, service: ServiceFactory, nc: Client
) -> None:
    proc = service("notifier", nats_server.url)
    await proc.ready()
    js = nc.jetstream()
    event = messages.Halted(canary=CANARY, reason="x", failed_checks=1, message="M" * 800_000)
    await js.publish("sluice.events.test.podinfo.halted", messages.ENCODER.encode(event))
    bad_enum = (
        b'{"kind": "halted", "canary": {"namespace": "t", "name": "p"}, "severity": "'
        + b"A" * 800_000
        + b'"}'
    )
    await js.publish("sluice.events.test.podinfo.halted", bad_enum)
    await settled(nc, "SLUICE_EVENTS", "notifier")
    await proc.wait_log("MMMM")
    longest = max(len(line) for line in proc.log_text().splitlines())
    assert longest < logs.MAX_MESSAGE_CHARS + 2 * logs.MAX_CONTEXT_CHARS + 200
    assert len(proc.log_text()) < 20_000
    assert "Invalid enum value 'AAAA" in proc.log_text()
    assert proc.terminate() == 0


async def test_a_saturated_webhook_runner_answers_busy_reports_it_and_stops_in_time(
    nats_server: NatsServer, service: ServiceFactory, nc: Client
) -> None:
    """Slow hooks with huge timeouts used to take every slot: later commands got no reply,
    /readyz said 200, and SIGTERM ended in the hard-exit timer (exit 2 after 25 s)."""
    release = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response()

    app = web.Application()
    app.router.add_post("/", hang)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/"
    proc = service(
        "webhook_runner",
        nats_server.url,
        SLUICE_MAX_IN_FLIGHT="2",
        SLUICE_SHUTDOWN_GRACE_S="1",
        SLUICE_HARD_EXIT_S="10",
    )
    try:
        await proc.ready()
        command = messages.RunWebhook(
            canary=CANARY,
            webhook=messages.WebhookSpec(
                name="slow", type=messages.WebhookType.ROLLOUT, url=url, timeout_s=50.0
            ),
            phase=messages.Phase.PROGRESSING,
            timeout_s=60.0,
        )
        payload = messages.ENCODER.encode(command)
        slow = [
            asyncio.create_task(nc.request(messages.CMD_WEBHOOK, payload, timeout=60))
            for _ in range(2)
        ]
        await proc.wait_status("/readyz", 503)
        _, body = await proc.get("/readyz")
        assert "busy: 2 commands in flight" in body
        msg = await nc.request(messages.CMD_WEBHOOK, payload, timeout=5)
        reply = messages.REPLY_DECODER.decode(msg.data)
        assert isinstance(reply, messages.CommandFailed)
        assert reply.temporary
        assert reply.error.startswith("busy")
        # grace 1 s, then the in-flight calls are cancelled: exit 0, not the hard exit's 2
        assert proc.terminate(timeout=10) == 0
        assert "cancelled 2 handler(s) still running after the grace period" in proc.log_text()
        for task in slow:
            task.cancel()
        await asyncio.gather(*slow, return_exceptions=True)
    finally:
        release.set()
        await runner.cleanup()


async def test_a_connection_closed_for_good_stops_the_service(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture, tmp_path: pathlib.Path
) -> None:
    """nats-py closes the connection on any protocol error the server sends; a service must
    then exit (its process manager restarts it), never live on without a bus."""
    cfg = settings.ServiceSettings(
        nats_url=nats_server.url, shutdown_grace_s=1.0, hard_exit_s=10.0, health_port=0
    )

    async def setup(rt: lifecycle.Runtime) -> None:
        async def offend() -> None:
            # a subject past the server's control line, sent without Sluice's checks
            await rt.nc.publish("x" * 5000, b"")
            await rt.stopping.wait()

        rt.spawn("offend", offend())

    caplog.set_level(logging.INFO)
    code = await asyncio.wait_for(lifecycle.serve("test", cfg, setup), timeout=15)
    assert code == 1
    assert "the NATS connection was closed and will not reconnect" in caplog.text
    assert "maximum control line exceeded" in caplog.text.lower()
