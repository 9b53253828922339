"""Every service as a real process against a real nats-server: health, shutdown, NATS restarts
and poison messages."""

from __future__ import annotations

import asyncio

import msgspec
import nats
import pytest

from libs import messages, streams
from tests.fixtures.nats import NatsServer
from tests.fixtures.services import SERVICES, ServiceFactory

pytestmark = pytest.mark.integration

# What each service subscribes to, and how a poison message reaches it.
JETSTREAM_SUBJECTS = {
    "analyzer": ["sluice.tick.test.podinfo", "sluice.events.test.podinfo.revision_detected"],
    "notifier": ["sluice.events.test.podinfo.halted"],
}
DURABLES = {"analyzer": {"analyzer", "analyzer-hints"}, "notifier": {"notifier"}}
STREAM_OF = {
    "analyzer": [("SLUICE_TICKS", "analyzer"), ("SLUICE_EVENTS", "analyzer-hints")],
    "notifier": [("SLUICE_EVENTS", "notifier")],
}
_PODINFO = messages.CanaryRef(namespace="test", name="podinfo")
# a valid message for each, and the log line that proves it was handled
VALID = {
    "analyzer": (
        messages.tick_subject("test", "podinfo"),
        messages.Tick(canary=_PODINFO),
        "analysis step due for podinfo.test",
    ),
    "notifier": (
        messages.event_subject("test", "podinfo", "halted"),
        messages.Halted(
            canary=_PODINFO,
            reason="test",
            failed_checks=1,
            message="Halt podinfo.test advancement success rate 90.00% < 99%",
        ),
        "Halt podinfo.test advancement success rate",
    ),
}
COMMAND_SUBJECTS = {
    "traffic_shifter": [messages.CMD_TRAFFIC, messages.CMD_WORKLOAD],
    "webhook_runner": [messages.CMD_WEBHOOK],
}


@pytest.mark.parametrize("module", SERVICES)
async def test_service_is_healthy_ready_and_exits_cleanly(
    module: str, nats_server: NatsServer, service: ServiceFactory
) -> None:
    proc = service(module, nats_server.url)
    await proc.ready()
    assert (await proc.get("/healthz"))[0] == 200
    status, body = await proc.get("/metrics")
    assert status == 200
    assert f'sluice_info{{service="{module.replace("_", "-")}"' in body
    assert "sluice_nats_connected 1.0" in body
    assert proc.terminate() == 0
    assert "stopped (exit code 0)" in proc.log_text()


@pytest.mark.parametrize("module", SERVICES)
async def test_service_survives_a_nats_restart(
    module: str, nats_server: NatsServer, service: ServiceFactory
) -> None:
    proc = service(module, nats_server.url)
    await proc.ready()
    nats_server.stop()
    await proc.wait_status("/readyz", 503)
    assert (await proc.get("/healthz"))[0] == 200
    nats_server.start()
    await proc.wait_status("/readyz", 200)
    await proc.wait_metric("sluice_nats_reconnects_total", lambda v: v >= 1)
    # and its subscriptions work again: a message after the restart still reaches it
    nc = await nats.connect(nats_server.url)
    try:
        for subject in COMMAND_SUBJECTS.get(module, []):
            reply = await nc.request(subject, b"{}", timeout=5)
            assert isinstance(messages.REPLY_DECODER.decode(reply.data), messages.CommandFailed)
        for subject in JETSTREAM_SUBJECTS.get(module, []):
            await nc.jetstream().publish(subject, b"{}")
        expected = len(COMMAND_SUBJECTS.get(module, [])) + len(JETSTREAM_SUBJECTS.get(module, []))
        await proc.wait_metric(
            "sluice_messages_received_total", lambda v: v >= expected, timeout=20
        )
    finally:
        await nc.close()
    assert proc.terminate() == 0


async def test_service_waits_for_nats_that_is_not_there_yet(
    nats_server: NatsServer, service: ServiceFactory
) -> None:
    port = nats_server.port
    nats_server.stop()
    proc = service("notifier", f"nats://127.0.0.1:{port}")
    await proc.wait_listening()
    await proc.wait_status("/readyz", 503)
    nats_server.start()
    await proc.wait_status("/readyz", 200, timeout=30)
    assert proc.terminate() == 0


async def test_sigterm_before_nats_is_reachable_exits_zero(
    nats_server: NatsServer, service: ServiceFactory
) -> None:
    port = nats_server.port
    nats_server.stop()
    proc = service("analyzer", f"nats://127.0.0.1:{port}")
    await proc.wait_listening()
    assert proc.terminate() == 0


async def test_bad_setting_fails_start_naming_the_variable(
    nats_server: NatsServer, service: ServiceFactory
) -> None:
    proc = service("watcher", nats_server.url, SLUICE_MAX_IN_FLIGHT="many")
    assert proc.proc is not None
    assert proc.proc.wait(timeout=15) == 2
    assert 'SLUICE_MAX_IN_FLIGHT: expected an integer, got "many"' in proc.log_text()


@pytest.mark.parametrize("module", sorted(JETSTREAM_SUBJECTS))
async def test_poison_on_a_stream_subject_is_terminated_not_redelivered(
    module: str, nats_server: NatsServer, service: ServiceFactory
) -> None:
    proc = service(module, nats_server.url)
    await proc.ready()
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        # JetStream announces every terminated message; count them per consumer
        terminated = await nc.subscribe("$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.>")
        for subject in JETSTREAM_SUBJECTS[module]:
            await js.publish(subject, b"{not json")
            await js.publish(subject, b'{"kind": "no-such-kind"}')
        expected = 2 * len(JETSTREAM_SUBJECTS[module])
        advisories = [
            msgspec.json.decode((await terminated.next_msg(timeout=20)).data)
            for _ in range(expected)
        ]
        consumers = {a["consumer"] for a in advisories}
        assert consumers == DURABLES[module]
        await proc.wait_metric("sluice_messages_rejected_total", lambda v: v == expected)
        # and the service is still alive and handles a valid message
        valid = VALID[module]
        await js.publish(valid[0], messages.ENCODER.encode(valid[1]))
        await proc.wait_log(valid[2])
        await proc.wait_status("/readyz", 200)
        # nothing was redelivered: the poison is gone, not waiting for another try
        for stream, durable in STREAM_OF[module]:
            info = await js.consumer_info(stream, durable)
            assert (info.num_ack_pending, info.num_redelivered) == (0, 0)
        await terminated.unsubscribe()
    finally:
        await nc.close()
    assert proc.terminate() == 0


@pytest.mark.parametrize("module", sorted(COMMAND_SUBJECTS))
async def test_poison_command_gets_a_permanent_failure_reply(
    module: str, nats_server: NatsServer, service: ServiceFactory
) -> None:
    proc = service(module, nats_server.url)
    await proc.ready()
    nc = await nats.connect(nats_server.url)
    try:
        for subject in COMMAND_SUBJECTS[module]:
            for poison in (b"\x00garbage", b'{"kind": "set_weights"}', b"[]"):
                reply = messages.REPLY_DECODER.decode(
                    (await nc.request(subject, poison, timeout=5)).data
                )
                assert isinstance(reply, messages.CommandFailed)
                assert reply.temporary is False
                assert reply.error.startswith("invalid command:")
        await proc.wait_metric(
            "sluice_messages_rejected_total",
            lambda v: v >= 3 * len(COMMAND_SUBJECTS[module]),
        )
        await proc.wait_status("/readyz", 200)
    finally:
        await nc.close()
    assert proc.terminate() == 0


async def test_services_declare_their_streams_idempotently(
    nats_server: NatsServer, service: ServiceFactory
) -> None:
    first = service("analyzer", nats_server.url)
    second = service("analyzer", nats_server.url)
    notifier = service("notifier", nats_server.url)
    await asyncio.gather(first.ready(), second.ready(), notifier.ready())
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        names = {info.config.name for info in await js.streams_info()}
        assert {streams.EVENTS.name, streams.TICKS.name} <= names
        assert (await js.consumer_info(streams.TICKS.name, "analyzer")).config.durable_name
    finally:
        await nc.close()
    for proc in (first, second, notifier):
        assert proc.terminate() == 0
