"""Pulling from JetStream durable consumers: poison handling, bounded retries, dead letters.

Handlers receive decoded ``msgspec.Struct`` values, never bytes or dicts. Outcomes::

    handler returns None            ack
    handler returns Later(delay)    nak with that delay (e.g. re-schedule a tick)
    raises TemporaryError           retried after a backoff (``_backoff``)
    raises anything else            logged with traceback, retried after a backoff
    raises PermanentError           dead-lettered, then terminated
    does not decode (any exception) dead-lettered, then terminated, counted as rejected
    retries exhausted               dead-lettered, then terminated

Retries are bounded and back off: ``SLUICE_RETRY_DELAY_S`` after the first failure, doubling
up to ``SLUICE_MAX_RETRY_DELAY_S``. On an ordinary consumer the server counts deliveries and the last allowed
one (``max_deliver``) is dead-lettered when it fails. A consumer whose handlers re-schedule
messages (``Consumer.reschedules``, the ticks) cannot use the delivery count, which grows with
every reschedule; there a failed message is retried as a copy that carries its failure count
and the time before which it must not run (``Sluice-Failures``, ``Sluice-Not-Before-Ms``
headers), and the ``SLUICE_MAX_FAILURES``-th failure is dead-lettered. A success after failures
re-publishes a clean copy, so only consecutive failures count.

A dead letter is the original payload on ``sluice.dead.<durable>`` in the ``SLUICE_DEAD`` stream,
with the reason, the original subject, the consumer, the error and the delivery count in
headers (``messages.HEADER_DEAD_*``). A message is terminated only after its dead letter is
stored; if that fails (NATS away) it is redelivered instead, so nothing is lost. The optional
``on_dead`` callback lets a service tell people (the analyzer raises a warning event).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg

from libs import bus, errors, logs, messages, streams
from libs.lifecycle import Runtime

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_HEADER_CHARS = 500  # a header value in a dead letter (the error text is clipped to it)
DEAD_LETTER_HEADROOM_BYTES = 4096  # room for the headers under max_payload


@dataclasses.dataclass(frozen=True)
class Delivery:
    """Which stored message a handler is handling, and its how-many-th delivery this is: a
    message re-scheduled with ``Later`` comes back as the same ``stream_seq``, one delivery on."""

    stream_seq: int
    num_delivered: int


_DELIVERY: contextvars.ContextVar[Delivery | None] = contextvars.ContextVar(
    "sluice_delivery", default=None
)


def current_delivery() -> Delivery | None:
    """Inside a handler: the delivery it handles (None outside one)."""
    return _DELIVERY.get()


@dataclasses.dataclass(frozen=True)
class Later:
    """Handler result: redeliver this message after ``delay_s`` seconds."""

    delay_s: float


@dataclasses.dataclass(frozen=True)
class DeadLetter(Generic[T]):
    """What ``on_dead`` learns about a message that was given up on."""

    subject: str  # where it was consumed from
    reason: str  # undecodable | permanent | exhausted
    error: str
    deliveries: int
    value: T | None  # None when it did not decode


class _Retry(Exception):
    """The dead letter could not be stored: redeliver the message instead of terminating it."""


def _header_value(text: str) -> str:
    """Header values are one line of printable text."""
    return logs.clip(" ".join(text.split()), MAX_HEADER_CHARS)


def _delivery(msg: Msg) -> Delivery | None:
    try:
        meta = msg.metadata
    except Exception:  # not a JetStream delivery (no ack subject to read it from)
        return None
    return Delivery(stream_seq=meta.sequence.stream, num_delivered=meta.num_delivered)


def _int_header(msg: Msg, name: str) -> int:
    try:
        return max(int((msg.headers or {}).get(name, "0")), 0)
    except ValueError:
        return 0


async def consume(
    rt: Runtime,
    consumer: streams.Consumer,
    decoder: msgspec.json.Decoder[T],
    handler: Callable[[T], Awaitable[Later | None]],
    *,
    on_dead: Callable[[DeadLetter[T]], Awaitable[None]] | None = None,
    batch: int = 10,
) -> None:
    """Pull from a durable JetStream consumer until the service stops (pull timeout and retry
    delay are the ``SLUICE_FETCH_TIMEOUT_S`` / ``SLUICE_RETRY_DELAY_S`` settings)."""
    worker = _Worker(rt, consumer, decoder, handler, on_dead)
    psub = await rt.js.pull_subscribe_bind(durable=consumer.durable, stream=consumer.stream)
    limiter = bus.Limiter(rt.settings.max_in_flight)
    cancelled = False
    try:
        while await limiter.wait_for_slot(rt.stopping):
            if not rt.nc.is_connected:
                await _pause(rt)
                continue
            msgs = await _fetch(rt, psub, consumer, min(batch, limiter.free))
            if msgs is None:  # stopping
                break
            for msg in msgs:
                rt.metrics.received.labels(subject=consumer.filter_subject).inc()
                limiter.start(worker.handle(msg), name=f"{rt.name}:{consumer.durable}")
    except BaseException:
        cancelled = True
        raise
    finally:
        await limiter.drain(cancel=cancelled)
        try:
            await psub.unsubscribe()
        except nats.errors.Error as exc:
            log.debug("unsubscribing %s failed: %s", consumer.durable, exc)


async def _pause(rt: Runtime) -> None:
    """Wait a reconnect interval, or less if the service starts stopping."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(rt.stopping.wait(), timeout=rt.settings.nats_reconnect_wait_s)


async def _fetch(
    rt: Runtime, psub: object, consumer: streams.Consumer, count: int
) -> list[Msg] | None:
    """One pull; [] when nothing came or the pull failed (the loop goes on), None when stopping.

    An idle pull ends in a timeout, which nats-py raises as its own ``TimeoutError`` or as a
    bare ``asyncio.TimeoutError`` depending on the release; both are the builtin
    ``TimeoutError``. Any other failure is logged and retried after a pause: nothing a pull
    raises may end the consumer."""
    fetching = asyncio.ensure_future(psub.fetch(count, timeout=rt.settings.fetch_timeout_s))  # type: ignore[attr-defined]
    stopping = asyncio.ensure_future(rt.stopping.wait())
    try:
        await asyncio.wait({fetching, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if not fetching.done():  # stop now: a pending pull is simply abandoned
        fetching.cancel()
        try:
            await fetching
        except BaseException as exc:
            log.debug("abandoned pull on %s ended with %r", consumer.durable, exc)
        return None
    try:
        return list(fetching.result())
    except TimeoutError:
        return []
    except Exception as exc:
        level = logging.DEBUG if isinstance(exc, nats.errors.Error) else logging.WARNING
        log.log(level, "pull from %s failed: %s", consumer.durable, logs.clip(repr(exc)))
        await _pause(rt)
        return []


class _Worker(Generic[T]):
    """Handles one consumer's messages: decode, run the handler, settle, retry or bury."""

    def __init__(
        self,
        rt: Runtime,
        consumer: streams.Consumer,
        decoder: msgspec.json.Decoder[T],
        handler: Callable[[T], Awaitable[Later | None]],
        on_dead: Callable[[DeadLetter[T]], Awaitable[None]] | None,
    ) -> None:
        self.rt = rt
        self.consumer = consumer
        self.decoder = decoder
        self.handler = handler
        self.on_dead = on_dead
        self.name = consumer.filter_subject  # the label of every metric

    async def handle(self, msg: Msg) -> None:
        started = time.perf_counter()
        try:
            await self._handle(msg)
        except _Retry:
            await bus.settle(msg.nak(delay=self.rt.settings.retry_delay_s))
        except Exception:  # the bus's own bookkeeping failed: never lose the message
            log.exception("handling a message from %s failed", self.consumer.durable)
            await bus.settle(msg.nak(delay=self.rt.settings.retry_delay_s))
        finally:
            self.rt.metrics.handled.labels(subject=self.name).observe(time.perf_counter() - started)

    async def _handle(self, msg: Msg) -> None:
        ctx = logs.ContextAdapter(log, bus.context(msg))
        wait_ms = _int_header(msg, messages.HEADER_NOT_BEFORE_MS) - messages.now_ms()
        if wait_ms > 0:  # a retried copy that came too early
            await bus.settle(msg.nak(delay=wait_ms / 1000))
            return
        try:
            value = bus.decode(self.decoder, msg.data)
        except errors.InvalidInput as exc:
            await self._bury(msg, "undecodable", str(exc), None)
            self.rt.metrics.rejected.labels(subject=self.name, reason="undecodable").inc()
            return
        try:
            _DELIVERY.set(_delivery(msg))  # each message is handled in its own task
            outcome = await self.handler(value)
        except errors.PermanentError as exc:
            self.rt.metrics.failed.labels(subject=self.name, decision="permanent").inc()
            ctx.warning("handling failed (permanent): %s", exc)
            await self._bury(msg, "permanent", str(exc), value)
        except Exception as exc:
            self.rt.metrics.failed.labels(subject=self.name, decision="temporary").inc()
            if isinstance(exc, errors.SluiceError):
                ctx.warning("handling failed (temporary): %s", exc)
            else:
                ctx.exception("handler crashed; the message will be retried")
            await self._retry(msg, f"{type(exc).__name__}: {exc}", value)
        else:
            await self._done(msg, outcome)

    async def _done(self, msg: Msg, outcome: Later | None) -> None:
        if outcome is None:
            await bus.settle(msg.ack())
        elif self.consumer.reschedules and _int_header(msg, messages.HEADER_FAILURES):
            # succeeded after failures: a clean copy starts counting from zero again
            await self._copy(msg, failures=0, delay_s=outcome.delay_s)
        else:
            await bus.settle(msg.nak(delay=outcome.delay_s))

    async def _retry(self, msg: Msg, error: str, value: T) -> None:
        if self.consumer.reschedules:
            failures = _int_header(msg, messages.HEADER_FAILURES) + 1
            if failures >= self.rt.settings.max_failures:
                await self._bury(msg, "exhausted", error, value, deliveries=failures)
            else:
                await self._copy(msg, failures=failures, delay_s=self._backoff(failures))
            return
        deliveries = msg.metadata.num_delivered or 1
        if 0 < self.consumer.max_deliver <= deliveries:
            await self._bury(msg, "exhausted", error, value)
        else:
            await bus.settle(msg.nak(delay=self._backoff(deliveries)))

    def _backoff(self, failures: int) -> float:
        """``SLUICE_RETRY_DELAY_S`` after the first failure, doubling up to
        ``SLUICE_MAX_RETRY_DELAY_S``: an outage of minutes costs a handful of attempts."""
        settings = self.rt.settings
        return float(
            min(settings.retry_delay_s * 2 ** min(failures - 1, 30), settings.max_retry_delay_s)
        )

    async def _copy(self, msg: Msg, *, failures: int, delay_s: float) -> None:
        """Replace ``msg`` by a copy that runs after ``delay_s`` and carries ``failures``.

        The stream keeps one message per subject, so the copy takes the original's place."""
        headers = {
            **bus.headers(uuid.uuid4().hex, bus.context(msg)["correlation_id"] or None),
            messages.HEADER_NOT_BEFORE_MS: str(messages.now_ms() + int(delay_s * 1000)),
        }
        if failures:
            headers[messages.HEADER_FAILURES] = str(failures)
        try:
            with bus.nats_errors(
                f"re-publishing to {msg.subject}", self.rt.settings.nats_request_timeout_s
            ):
                await self.rt.js.publish(
                    msg.subject,
                    msg.data,
                    timeout=self.rt.settings.nats_request_timeout_s,
                    headers=headers,
                )
        except errors.SluiceError as exc:
            log.warning("could not re-publish %s (%s); redelivering it instead", msg.subject, exc)
            raise _Retry from exc
        await bus.settle(msg.ack())

    async def _bury(
        self, msg: Msg, reason: str, error: str, value: T | None, *, deliveries: int = 0
    ) -> None:
        """Store the message in ``SLUICE_DEAD``, then terminate it; tell ``on_dead``."""
        deliveries = deliveries or msg.metadata.num_delivered or 1
        await dead_letter(self.rt, self.consumer, msg, reason, error, deliveries)
        await bus.settle(msg.term())
        self.rt.metrics.dead_lettered.labels(subject=self.name, reason=reason).inc()
        log.warning(
            "moved a message from %s to %s (%s after %d deliveries): %s",
            logs.clip(msg.subject, 200),
            streams.DEAD.name,
            reason,
            deliveries,
            logs.clip(error),
            extra=bus.context(msg),
        )
        if self.on_dead is not None:
            letter = DeadLetter(
                subject=msg.subject, reason=reason, error=error, deliveries=deliveries, value=value
            )
            try:
                await self.on_dead(letter)
            except Exception as exc:  # telling people is best effort; the letter is stored
                log.warning("reporting a dead letter failed: %s", logs.clip(str(exc)))


async def dead_letter(
    rt: Runtime, consumer: streams.Consumer, msg: Msg, reason: str, error: str, deliveries: int
) -> None:
    """Publish ``msg``'s payload to ``sluice.dead.<durable>``; raise ``_Retry`` if it fails."""
    meta = msg.metadata
    headers = {
        # one dead letter per consumer, stream message and reason, however often this is
        # retried (two consumers of one stream each keep their own)
        messages.HEADER_MSG_ID: f"{consumer.stream}-{consumer.durable}-{meta.sequence.stream}-{reason}",
        messages.HEADER_CORRELATION_ID: _header_value(bus.context(msg)["correlation_id"]),
        messages.HEADER_DEAD_REASON: reason,
        messages.HEADER_DEAD_SUBJECT: _header_value(msg.subject),
        messages.HEADER_DEAD_CONSUMER: f"{consumer.stream}/{consumer.durable}",
        messages.HEADER_DEAD_ERROR: _header_value(error) or "-",
        messages.HEADER_DEAD_DELIVERIES: str(deliveries),
    }
    payload = msg.data
    room = rt.nc.max_payload - DEAD_LETTER_HEADROOM_BYTES
    if len(payload) > room:
        headers["Sluice-Dead-Truncated-From"] = str(len(payload))
        payload = payload[:room]
    try:
        with bus.nats_errors(
            f"dead-lettering to {streams.DEAD.name}", rt.settings.nats_request_timeout_s
        ):
            await rt.js.publish(
                messages.dead_subject(consumer.durable),
                payload,
                timeout=rt.settings.nats_request_timeout_s,
                headers=headers,
            )
    except errors.SluiceError as exc:
        log.warning("could not store a dead letter (%s); the message will be redelivered", exc)
        raise _Retry from exc
