"""Typed publish, request and consume on NATS, with bounded concurrency and poison handling.

Handlers receive decoded ``msgspec.Struct`` values, never bytes or dicts. A message that does
not decode is logged with its subject and the reason, counted in
``sluice_messages_rejected_total``, and terminated (JetStream ``term``, or a ``CommandFailed``
reply for a command) — it is never redelivered forever and never stops the service.

Handler outcomes on JetStream consumers:
    returns None            ack
    returns Later(delay)    nak with that delay (e.g. re-schedule a tick)
    raises TemporaryError   nak with ``retry_delay_s``
    raises PermanentError   term
    raises anything else    logged with traceback, nak with ``retry_delay_s``
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg

from libs import errors, logs, messages, streams
from libs.lifecycle import Runtime

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Later:
    """Handler result: redeliver this message after ``delay_s`` seconds."""

    delay_s: float


def _headers(msg_id: str | None = None, correlation_id: str | None = None) -> dict[str, str]:
    return {
        messages.HEADER_MSG_ID: msg_id or uuid.uuid4().hex,
        messages.HEADER_CORRELATION_ID: correlation_id or uuid.uuid4().hex,
    }


def _context(msg: Msg) -> dict[str, str]:
    headers = msg.headers or {}
    return {
        "subject": msg.subject,
        "msg_id": headers.get(messages.HEADER_MSG_ID, ""),
        "correlation_id": headers.get(messages.HEADER_CORRELATION_ID, ""),
    }


# ----------------------------------------------------------------------------- publishing


@contextlib.contextmanager
def nats_errors(what: str, timeout_s: float) -> Iterator[None]:
    """Translate nats-py exceptions into Sluice's hierarchy (the one place that does)."""
    try:
        yield
    except nats.js.errors.KeyNotFoundError as exc:
        raise errors.NotFound(f"{what}: no such key") from exc
    except nats.js.errors.KeyWrongLastSequenceError as exc:  # KV compare-and-set lost
        raise errors.Conflict(f"{what}: the value changed concurrently") from exc
    except nats.errors.NoRespondersError as exc:
        raise errors.Unavailable(f"{what}: no service answers") from exc
    except nats.errors.TimeoutError as exc:
        raise errors.Timeout(f"{what}: no answer within {timeout_s}s") from exc
    except (nats.errors.Error, nats.js.errors.Error) as exc:
        raise errors.Unavailable(f"{what}: {exc}") from exc


def content_id(payload: bytes) -> str:
    """A message id derived from the payload: publishing the same value twice (a retry after a
    timeout) is stored once by JetStream's de-duplication window."""
    return hashlib.sha256(payload).hexdigest()[:32]


async def publish(
    rt: Runtime,
    subject: str,
    value: msgspec.Struct,
    *,
    msg_id: str | None = None,
    correlation_id: str | None = None,
) -> None:
    """Append a typed value to the stream that owns ``subject``."""
    payload = messages.ENCODER.encode(value)
    timeout_s = rt.settings.nats_request_timeout_s
    with nats_errors(f"publishing to {subject}", timeout_s):
        await rt.js.publish(
            subject,
            payload,
            timeout=timeout_s,
            headers=_headers(msg_id or content_id(payload), correlation_id),
        )


async def publish_event(
    rt: Runtime, event: messages.EventBase, *, correlation_id: str | None = None
) -> None:
    """Append an event to ``SLUICE_EVENTS``; a retried publish of the same event is stored once
    (its message id is derived from its content, which includes its timestamp)."""
    subject = messages.event_subject(
        event.canary.namespace, event.canary.name, messages.event_kind(event)
    )
    await publish(rt, subject, event, correlation_id=correlation_id)


async def request(
    rt: Runtime,
    subject: str,
    command: messages.CommandBase,
    *,
    correlation_id: str | None = None,
) -> messages.Reply:
    """Send a command and decode the typed reply; no responder or no answer is temporary."""
    with nats_errors(f"request on {subject}", command.timeout_s):
        msg = await rt.nc.request(
            subject,
            messages.ENCODER.encode(command),
            timeout=command.timeout_s,
            headers=_headers(correlation_id=correlation_id),
        )
    try:
        return messages.REPLY_DECODER.decode(msg.data)
    except msgspec.DecodeError as exc:
        raise errors.InvalidInput(f"undecodable reply on {subject}: {exc}") from exc


# ----------------------------------------------------------------------------- consuming


class _Limiter:
    """At most ``limit`` handlers at once; tracks them so shutdown can wait for them."""

    def __init__(self, limit: int) -> None:
        self._sem = asyncio.Semaphore(limit)
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, coro_fn: Callable[[], Awaitable[None]], name: str) -> None:
        await self._sem.acquire()

        async def wrapped() -> None:
            try:
                await coro_fn()
            finally:
                self._sem.release()

        task = asyncio.create_task(wrapped(), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def reject(rt: Runtime, msg: Msg, subscription: str, reason: str, detail: str) -> None:
    """Log and count a message that will not be processed (call after it was settled)."""
    rt.metrics.rejected.labels(subject=subscription, reason=reason).inc()
    logs.ContextAdapter(log, _context(msg)).warning("rejected message (%s): %s", reason, detail)


async def serve_requests(
    rt: Runtime,
    subject: str,
    queue: str,
    decoder: msgspec.json.Decoder[T],
    handler: Callable[[T], Awaitable[messages.Reply]],
) -> None:
    """Answer commands on ``subject`` as one member of ``queue`` until the service stops."""
    sub = await rt.nc.subscribe(subject, queue=queue)
    limiter = _Limiter(rt.settings.max_in_flight)

    async def handle(msg: Msg) -> None:
        ctx = logs.ContextAdapter(log, _context(msg))
        started = time.perf_counter()
        reply: messages.Reply
        try:
            command = decoder.decode(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            reject(rt, msg, subject, "undecodable", str(exc))
            reply = messages.CommandFailed(error=f"invalid command: {exc}", temporary=False)
        else:
            try:
                timeout_s = getattr(command, "timeout_s", rt.settings.nats_request_timeout_s)
                async with asyncio.timeout(timeout_s):
                    reply = await handler(command)
            except TimeoutError:
                # the requester has given up by now; free the slot and say so
                rt.metrics.failed.labels(subject=subject, decision="temporary").inc()
                ctx.warning("command did not finish within its timeout of %.1fs", timeout_s)
                reply = messages.CommandFailed(
                    canary=getattr(command, "canary", None),
                    error=f"did not finish within {timeout_s}s",
                    temporary=True,
                )
            except errors.SluiceError as exc:
                rt.metrics.failed.labels(
                    subject=subject, decision="temporary" if exc.temporary else "permanent"
                ).inc()
                ctx.warning("command failed: %s", exc)
                reply = messages.CommandFailed(
                    canary=getattr(command, "canary", None), error=str(exc), temporary=exc.temporary
                )
            except Exception as exc:
                rt.metrics.failed.labels(subject=subject, decision="temporary").inc()
                ctx.exception("command handler crashed")
                reply = messages.CommandFailed(
                    canary=getattr(command, "canary", None),
                    error=f"internal error: {type(exc).__name__}: {exc}",
                    temporary=True,
                )
        rt.metrics.handled.labels(subject=subject).observe(time.perf_counter() - started)
        if msg.reply:
            with contextlib.suppress(nats.errors.Error):
                await msg.respond(messages.ENCODER.encode(reply))

    try:
        async for msg in _until_stopping(rt, sub.messages):
            rt.metrics.received.labels(subject=subject).inc()
            await limiter.run(lambda msg=msg: handle(msg), name=f"{rt.name}:{subject}")  # type: ignore[misc]
    finally:
        with contextlib.suppress(nats.errors.Error):
            await sub.unsubscribe()
        await limiter.drain()


async def _until_stopping(rt: Runtime, source: Any) -> Any:
    """Iterate an async iterator of messages until the runtime starts stopping."""
    iterator = source.__aiter__()
    stop = asyncio.ensure_future(rt.stopping.wait())
    try:
        while True:
            nxt = asyncio.ensure_future(iterator.__anext__())
            done, _ = await asyncio.wait({nxt, stop}, return_when=asyncio.FIRST_COMPLETED)
            if nxt in done:
                try:
                    yield nxt.result()
                except StopAsyncIteration:
                    return
                continue
            nxt.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await nxt
            return
    finally:
        stop.cancel()


async def consume(
    rt: Runtime,
    consumer: streams.Consumer,
    decoder: msgspec.json.Decoder[T],
    handler: Callable[[T], Awaitable[Later | None]],
    *,
    batch: int = 10,
) -> None:
    """Pull from a durable JetStream consumer until the service stops (pull timeout and retry
    delay are the ``SLUICE_FETCH_TIMEOUT_S`` / ``SLUICE_RETRY_DELAY_S`` settings)."""
    fetch_timeout_s = rt.settings.fetch_timeout_s
    retry_delay_s = rt.settings.retry_delay_s
    limiter = _Limiter(rt.settings.max_in_flight)
    name = consumer.filter_subject
    psub = await rt.js.pull_subscribe_bind(durable=consumer.durable, stream=consumer.stream)

    async def handle(msg: Msg) -> None:
        ctx = logs.ContextAdapter(log, _context(msg))
        started = time.perf_counter()
        try:
            value = decoder.decode(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            await _settle(msg.term())
            reject(rt, msg, name, "undecodable", str(exc))
            return
        try:
            outcome = await handler(value)
        except errors.SluiceError as exc:
            decision = "temporary" if exc.temporary else "permanent"
            rt.metrics.failed.labels(subject=name, decision=decision).inc()
            ctx.warning("handling failed (%s): %s", decision, exc)
            await _settle(msg.nak(delay=retry_delay_s) if exc.temporary else msg.term())
        except Exception:
            rt.metrics.failed.labels(subject=name, decision="temporary").inc()
            ctx.exception("handler crashed; message will be redelivered")
            await _settle(msg.nak(delay=retry_delay_s))
        else:
            await _settle(msg.nak(delay=outcome.delay_s) if outcome else msg.ack())
        finally:
            rt.metrics.handled.labels(subject=name).observe(time.perf_counter() - started)

    try:
        while not rt.stopping.is_set():
            if not rt.nc.is_connected:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(
                        rt.stopping.wait(), timeout=rt.settings.nats_reconnect_wait_s
                    )
                continue
            fetching = asyncio.ensure_future(psub.fetch(batch, timeout=fetch_timeout_s))
            stopping = asyncio.ensure_future(rt.stopping.wait())
            await asyncio.wait({fetching, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not fetching.done():  # stop now: a pending pull is simply abandoned
                fetching.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await fetching
                break
            try:
                msgs = fetching.result()
            except nats.errors.TimeoutError:
                continue
            except (nats.errors.Error, nats.js.errors.Error) as exc:
                log.debug("fetch from %s failed: %s", consumer.durable, exc)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(
                        rt.stopping.wait(), timeout=rt.settings.nats_reconnect_wait_s
                    )
                continue
            for msg in msgs:
                rt.metrics.received.labels(subject=name).inc()
                await limiter.run(lambda msg=msg: handle(msg), name=f"{rt.name}:{consumer.durable}")  # type: ignore[misc]
    finally:
        await limiter.drain()
        with contextlib.suppress(nats.errors.Error):
            await psub.unsubscribe()


async def _settle(ack: Awaitable[None]) -> None:
    """Ack/nak/term are best effort: if the bus is gone, the message is redelivered anyway."""
    with contextlib.suppress(nats.errors.Error, nats.js.errors.Error):
        await ack
