"""Answering commands: NATS request/reply in a queue group, one reply for every request.

``serve_requests`` decodes each command into its typed Struct and runs the handler with at
most ``SLUICE_MAX_IN_FLIGHT`` commands at once. Whatever arrives, the requester gets exactly
one ``Reply`` while it is still waiting::

    does not decode (any exception)     CommandFailed(temporary=false), counted as rejected
    every slot busy                     CommandFailed(temporary=true, "busy ..."), at once
    handler raises SluiceError          CommandFailed with the error's retry decision
    handler crashes                     CommandFailed(temporary=true), logged with traceback
    handler exceeds the timeout         CommandFailed(temporary=true); the handler is cancelled
    reply larger than the server allows a short CommandFailed instead, counted

The handler's time is the command's own ``timeout_s``, clamped to ``SLUICE_MAX_COMMAND_TIMEOUT_S``
(a command cannot hold a slot for longer), and ``/readyz`` says "busy" while every slot is taken.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
import nats.errors
from nats.aio.msg import Msg

from libs import bus, errors, logs, messages
from libs.lifecycle import Runtime

log = logging.getLogger(__name__)

T = TypeVar("T")

Handler = Callable[[Any], Awaitable[messages.Reply]]

REPLY_HEADROOM_BYTES = 1024  # room for the reply subject and headers under max_payload
MAX_ERROR_CHARS = 1000  # an error text in a reply


def command_timeout(command: object, rt: Runtime) -> float:
    """The command's ``timeout_s`` when it is a sane number of seconds, within the maximum."""
    limit = rt.settings.max_command_timeout_s
    wanted = getattr(command, "timeout_s", None)
    if not isinstance(wanted, int | float) or not math.isfinite(wanted) or wanted <= 0:
        return min(rt.settings.nats_request_timeout_s, limit)
    return min(float(wanted), limit)


def _failed(command: object, error: str, *, temporary: bool) -> messages.CommandFailed:
    canary = getattr(command, "canary", None)
    return messages.CommandFailed(
        canary=canary if isinstance(canary, messages.CanaryRef) else None,
        error=logs.clip(error, MAX_ERROR_CHARS),
        temporary=temporary,
    )


async def serve_requests(
    rt: Runtime,
    subject: str,
    queue: str,
    decoder: msgspec.json.Decoder[T],
    handler: Callable[[T], Awaitable[messages.Reply]],
    verify: Callable[[str, T], None] | None = None,
) -> None:
    """Answer commands on ``subject`` as one member of ``queue`` until the service stops.

    ``verify(msg_subject, command)`` raises ``InvalidInput`` when a command does not belong on
    the subject it came on (subjects that carry what permissions are granted on)."""
    sub = await rt.nc.subscribe(subject, queue=queue)
    limiter = bus.Limiter(rt.settings.max_in_flight)
    rt.add_readiness_check(
        lambda: (
            f"busy: {limiter.in_flight} commands in flight on {subject}"
            if limiter.free <= 0
            else None
        )
    )

    async def handle(msg: Msg) -> None:
        ctx = logs.ContextAdapter(log, bus.context(msg))
        started = time.perf_counter()
        reply: messages.Reply
        try:
            command = bus.decode(decoder, msg.data)
            if verify is not None:
                verify(msg.subject, command)
        except errors.InvalidInput as exc:
            bus.reject(rt, msg, subject, "undecodable", str(exc))
            reply = _failed(None, f"invalid command: {exc}", temporary=False)
        else:
            reply = await _run(rt, subject, handler, command, ctx)
        rt.metrics.handled.labels(subject=subject).observe(time.perf_counter() - started)
        await respond(rt, msg, subject, reply)

    cancelled = False
    try:
        async for msg in bus.until_stopping(rt, sub.messages):
            rt.metrics.received.labels(subject=subject).inc()
            if limiter.free <= 0:
                # answering now lets the requester retry (maybe on another replica) instead of
                # waiting out its timeout behind commands that may take minutes
                bus.reject(rt, msg, subject, "busy", f"all {limiter.limit} slots are taken")
                await respond(
                    rt,
                    msg,
                    subject,
                    _failed(
                        None,
                        f"busy: {limiter.limit} commands in flight on this replica; retry later",
                        temporary=True,
                    ),
                )
                continue
            limiter.start(handle(msg), name=f"{rt.name}:{subject}")
    except BaseException:
        cancelled = True
        raise
    finally:
        try:
            await sub.unsubscribe()
        except nats.errors.Error as exc:
            log.debug("unsubscribing from %s failed: %s", subject, exc)
        await limiter.drain(cancel=cancelled)


async def _run(
    rt: Runtime,
    subject: str,
    handler: Callable[[T], Awaitable[messages.Reply]],
    command: T,
    ctx: logs.ContextAdapter,
) -> messages.Reply:
    timeout_s = command_timeout(command, rt)
    try:
        async with asyncio.timeout(timeout_s):
            return await handler(command)
    except TimeoutError:
        # the requester has given up by now; free the slot and say so
        rt.metrics.failed.labels(subject=subject, decision="temporary").inc()
        ctx.warning("command did not finish within its timeout of %.1fs", timeout_s)
        return _failed(command, f"did not finish within {timeout_s:g}s", temporary=True)
    except errors.SluiceError as exc:
        decision = "temporary" if exc.temporary else "permanent"
        rt.metrics.failed.labels(subject=subject, decision=decision).inc()
        ctx.warning("command failed: %s", exc)
        return _failed(command, str(exc), temporary=exc.temporary)
    except Exception as exc:
        rt.metrics.failed.labels(subject=subject, decision="temporary").inc()
        ctx.exception("command handler crashed")
        return _failed(
            command, f"internal error: {type(exc).__name__}: {logs.clip(str(exc))}", temporary=True
        )


async def respond(rt: Runtime, msg: Msg, subject: str, reply: messages.Reply) -> None:
    """Send ``reply`` to the requester; a reply that cannot be sent is replaced or counted."""
    if not msg.reply:
        return
    if len(msg.reply) > bus.MAX_SUBJECT_CHARS:
        # publishing to it would exceed the server's control line and close our connection
        rt.metrics.reply_failures.labels(subject=subject, reason="reply_subject_too_long").inc()
        log.warning("not answering a command whose reply subject is %d characters", len(msg.reply))
        return
    payload = messages.ENCODER.encode(reply)
    limit = rt.nc.max_payload - len(msg.reply) - REPLY_HEADROOM_BYTES
    if len(payload) > limit:
        rt.metrics.reply_failures.labels(subject=subject, reason="too_large").inc()
        log.warning(
            "reply of %d bytes exceeds the server's limit; answering with an error", len(payload)
        )
        payload = messages.ENCODER.encode(
            messages.CommandFailed(
                canary=None,
                error=f"the reply ({len(payload)} bytes) exceeds the server's max payload "
                f"({rt.nc.max_payload} bytes)",
                temporary=False,
            )
        )
    try:
        await msg.respond(payload)
    except nats.errors.Error as exc:
        rt.metrics.reply_failures.labels(subject=subject, reason="unsendable").inc()
        log.warning("could not send the reply on %s: %s", subject, logs.clip(str(exc)))
