"""libs.serving against a real nats-server: every request gets exactly one reply, in time."""

from __future__ import annotations

import asyncio
import math

import pytest

from libs import lifecycle, messages, serving, settings

pytestmark = pytest.mark.integration

CANARY = messages.CanaryRef(namespace="test", name="podinfo")
SUBJECT = messages.CMD_WORKLOAD


def scale(timeout_s: float = 5.0) -> bytes:
    command = messages.ScaleWorkload(
        canary=CANARY, workload="podinfo", replicas=1, timeout_s=timeout_s
    )
    return messages.ENCODER.encode(command)


async def ask(rt: lifecycle.Runtime, payload: bytes, timeout: float = 5.0) -> messages.Reply:
    msg = await rt.nc.request(SUBJECT, payload, timeout=timeout)
    return messages.REPLY_DECODER.decode(msg.data)


def metric(rt: lifecycle.Runtime, name: str, **labels: str) -> float:
    return rt.metrics.registry.get_sample_value(name, labels) or 0.0


async def serve(rt: lifecycle.Runtime, handler: serving.Handler) -> asyncio.Task[None]:
    task = asyncio.create_task(
        serving.serve_requests(rt, SUBJECT, "q", messages.WORKLOAD_DECODER, handler)
    )
    await asyncio.sleep(0)
    await rt.nc.flush()
    return task


async def stop(rt: lifecycle.Runtime, task: asyncio.Task[None]) -> None:
    rt.stopping.set()
    await asyncio.wait_for(task, timeout=10)


async def applied(command: messages.WorkloadCommand) -> messages.Reply:
    return messages.WorkloadApplied(canary=command.canary, workload="podinfo", replicas=1)


@pytest.mark.parametrize(
    "payload",
    [
        b'{"kind": "scale_workload", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}",  # RecursionError
        b"\xff\xfe not json",
        b'{"kind": "scale_workload", "canary": {"namespace": "' + b"A" * 300_000 + b'"}}',
    ],
    ids=["deeply-nested", "bytes", "huge-and-incomplete"],
)
async def test_an_undecodable_command_gets_a_short_permanent_failure(
    runtime: lifecycle.Runtime, payload: bytes
) -> None:
    task = await serve(runtime, applied)
    reply = await ask(runtime, payload)
    assert isinstance(reply, messages.CommandFailed)
    assert reply.temporary is False
    assert reply.error.startswith("invalid command: ")
    assert len(reply.error) <= serving.MAX_ERROR_CHARS
    assert (
        metric(runtime, "sluice_messages_rejected_total", subject=SUBJECT, reason="undecodable")
        == 1
    )
    assert isinstance(await ask(runtime, scale()), messages.WorkloadApplied)  # still serving
    await stop(runtime, task)


async def test_a_reply_too_large_to_send_is_replaced_by_a_failure(
    runtime: lifecycle.Runtime,
) -> None:
    async def huge(command: messages.WorkloadCommand) -> messages.Reply:
        return messages.WebhookResult(
            canary=command.canary,
            webhook="w",
            type=messages.WebhookType.ROLLOUT,
            ok=True,
            message="x" * (runtime.nc.max_payload + 10),
        )

    task = await serve(runtime, huge)
    reply = await ask(runtime, scale())
    assert isinstance(reply, messages.CommandFailed)
    assert "exceeds the server's max payload" in reply.error
    assert metric(runtime, "sluice_reply_failures_total", subject=SUBJECT, reason="too_large") == 1
    await stop(runtime, task)


async def test_a_saturated_replica_says_busy_at_once_and_is_not_ready(
    runtime: lifecycle.Runtime,
) -> None:
    runtime.settings = settings.ServiceSettings(max_in_flight=2, nats_request_timeout_s=2.0)
    release = asyncio.Event()
    both_started = asyncio.Event()
    started = 0

    async def slow(command: messages.WorkloadCommand) -> messages.Reply:
        nonlocal started
        started += 1
        if started == 2:
            both_started.set()
        await release.wait()
        return await applied(command)

    task = await serve(runtime, slow)
    first = [asyncio.create_task(ask(runtime, scale(30), timeout=30)) for _ in range(2)]
    await asyncio.wait_for(both_started.wait(), timeout=5)
    runtime.health.started = True
    runtime.health.nats_connected = lambda: True
    assert runtime.health.ready() == (False, f"busy: 2 commands in flight on {SUBJECT}")
    reply = await ask(runtime, scale(30), timeout=2)  # answered now, not after 30 s
    assert isinstance(reply, messages.CommandFailed)
    assert reply.temporary is True
    assert reply.error.startswith("busy: 2 commands in flight")
    release.set()
    assert all(isinstance(r, messages.WorkloadApplied) for r in await asyncio.gather(*first))
    assert runtime.health.ready() == (True, "ok")
    await stop(runtime, task)


async def test_handlers_still_running_after_the_grace_period_are_cancelled(
    runtime: lifecycle.Runtime,
) -> None:
    """The lifecycle cancels a root task at the end of the grace period; its handlers must end
    with it, not keep the process alive until the hard-exit timer."""
    cancelled = asyncio.Event()
    started = asyncio.Event()

    async def forever(command: messages.WorkloadCommand) -> messages.Reply:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()
        raise AssertionError("unreachable")

    task = await serve(runtime, forever)
    pending = asyncio.create_task(ask(runtime, scale(1e9), timeout=30))
    await started.wait()
    runtime.stopping.set()  # the loop stops reading and waits for the handler ...
    await asyncio.sleep(0.05)
    assert not task.done()
    task.cancel()  # ... until the grace period is over
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=5)
    assert cancelled.is_set()
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending


@pytest.mark.parametrize(
    ("wanted", "expected"),
    [(5.0, 5.0), (1e9, 300.0), (math.inf, 10.0), (math.nan, 10.0), (-1.0, 10.0), (0.0, 10.0)],
)
def test_a_command_cannot_ask_for_more_time_than_the_maximum(
    wanted: float, expected: float
) -> None:
    class Command:
        timeout_s = wanted

    class Runtime:
        settings = settings.ServiceSettings()

    assert serving.command_timeout(Command(), Runtime()) == expected  # type: ignore[arg-type]
