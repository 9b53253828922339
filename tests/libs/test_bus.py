"""libs.bus against a real nats-server: de-duplication, error mapping, handler timeouts."""

from __future__ import annotations

import asyncio

import pytest

from libs import bus, errors, lifecycle, messages, serving, streams

pytestmark = pytest.mark.integration

CANARY = messages.CanaryRef(namespace="test", name="podinfo")


async def test_a_retried_event_is_stored_once(runtime: lifecycle.Runtime) -> None:
    event = messages.WeightAdvanced(canary=CANARY, canary_weight=10, primary_weight=90)
    await bus.publish_event(runtime, event)
    await bus.publish_event(runtime, event)  # e.g. after a publish timeout
    other = messages.WeightAdvanced(canary=CANARY, canary_weight=20, primary_weight=80)
    await bus.publish_event(runtime, other)
    info = await runtime.js.stream_info(streams.EVENTS.name)
    assert info.state.messages == 2


async def test_request_without_responder_is_a_temporary_unavailable(
    runtime: lifecycle.Runtime,
) -> None:
    command = messages.ScaleWorkload(canary=CANARY, workload="podinfo", replicas=1, timeout_s=1)
    with pytest.raises(errors.Unavailable, match="no service answers") as info:
        await bus.request(runtime, messages.CMD_WORKLOAD, command)
    assert info.value.temporary


async def test_a_handler_slower_than_the_command_timeout_gets_a_temporary_failure(
    runtime: lifecycle.Runtime,
) -> None:
    release = asyncio.Event()

    async def slow(command: messages.WorkloadCommand) -> messages.Reply:
        await release.wait()
        return messages.WorkloadApplied(canary=command.canary, workload="podinfo")

    runtime.spawn(
        "serve",
        serving.serve_requests(
            runtime, messages.CMD_WORKLOAD, "q", messages.WORKLOAD_DECODER, slow
        ),
    )
    await runtime.nc.flush()
    command = messages.ScaleWorkload(canary=CANARY, workload="podinfo", replicas=1, timeout_s=0.3)
    msg = await runtime.nc.request(
        messages.CMD_WORKLOAD, messages.ENCODER.encode(command), timeout=5
    )
    reply = messages.REPLY_DECODER.decode(msg.data)
    assert isinstance(reply, messages.CommandFailed)
    assert (reply.error, reply.temporary) == ("did not finish within 0.3s", True)
    release.set()


async def test_kv_compare_and_set_conflict_is_mapped(runtime: lifecycle.Runtime) -> None:
    kv = await runtime.js.create_key_value(bucket="cas_test")
    revision = await kv.create("k", b"1")
    await kv.update("k", b"2", last=revision)
    with pytest.raises(errors.Conflict), bus.nats_errors("writing k", 1.0):
        await kv.update("k", b"3", last=revision)
    with pytest.raises(errors.NotFound), bus.nats_errors("reading x", 1.0):
        await kv.get("x")
