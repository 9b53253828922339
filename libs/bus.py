"""Typed publish and request on NATS, and what the consuming sides share.

Three modules make the bus, one direction each:

    bus         publish (events, ticks), request (commands), nats-py errors → ``libs.errors``,
                bounded concurrency, rejection counting
    serving     answer commands: ``serving.serve_requests`` (request/reply in a queue group)
    consuming   pull from JetStream: ``consuming.consume`` with poison handling, bounded
                retries and the dead-letter stream

How every service connects is here too: ``connect_options`` turns the ``SLUICE_NATS_*``
credential and TLS settings into nats-py's arguments, and ``connect_failure`` says in plain words
why a connection was refused (wrong credentials, a certificate that does not verify).

Nothing that arrives from the bus may stop a service or cut it off NATS: subjects are checked
before publishing (a subject longer than the server's control line would make it close the
connection), and every value a log line or an error text quotes is clipped (``logs.clip``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import ssl
import uuid
from collections.abc import AsyncIterator, Awaitable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg

from libs import errors, logs, messages, settings

if TYPE_CHECKING:  # lifecycle imports this module to connect
    from libs.lifecycle import Runtime

log = logging.getLogger(__name__)

T = TypeVar("T")

# Well below the server's 4 KiB control line, which holds the subject, the reply subject and
# the sizes; NATS closes a connection that sends a longer one. Sluice's own subjects stay under
# 400 characters (``messages`` holds names to Kubernetes' limits).
MAX_SUBJECT_CHARS = 1024


def check_subject(subject: str, what: str = "subject") -> str:
    """Refuse, as permanent input, a subject the server would answer by closing the connection."""
    if len(subject) > MAX_SUBJECT_CHARS:
        raise errors.InvalidInput(
            f"{what} {logs.clip(subject, 80)!r} is {len(subject)} characters long; "
            f"expected at most {MAX_SUBJECT_CHARS}",
            path=what,
            expected=f"at most {MAX_SUBJECT_CHARS} characters",
        )
    if not subject or any(c in subject for c in " \t\r\n"):
        raise errors.InvalidInput(
            f"{what} {logs.clip(subject, 80)!r} is not a NATS subject", path=what
        )
    return subject


def headers(msg_id: str | None = None, correlation_id: str | None = None) -> dict[str, str]:
    return {
        messages.HEADER_MSG_ID: msg_id or uuid.uuid4().hex,
        messages.HEADER_CORRELATION_ID: correlation_id or uuid.uuid4().hex,
    }


def context(msg: Msg) -> dict[str, str]:
    headers = msg.headers or {}
    return {
        "subject": msg.subject,
        "msg_id": headers.get(messages.HEADER_MSG_ID, ""),
        "correlation_id": headers.get(messages.HEADER_CORRELATION_ID, ""),
    }


# ----------------------------------------------------------------------------- connecting


def read_secret(path: str, setting: str) -> str:
    """The stripped content of a secret file; unreadable or empty names the setting and path."""
    try:
        with open(path, encoding="utf-8") as file:
            value = file.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise errors.InvalidInput(
            f"{setting}: cannot read {path!r}: {reason}", path=setting, expected="a readable file"
        ) from exc
    if not value:
        raise errors.InvalidInput(
            f"{setting}: {path!r} is empty", path=setting, expected="a non-empty file"
        )
    return value


def tls_context(
    ca_file: str, cert_file: str, key_file: str, *, names: tuple[str, str, str]
) -> ssl.SSLContext:
    """A client TLS context trusting ``ca_file`` (else the system's CAs), presenting
    ``cert_file`` + ``key_file`` when given (mutual TLS); ``names`` are the three settings, for
    errors."""
    ca_name, cert_name, _key_name = names
    try:
        context = ssl.create_default_context(cafile=ca_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise errors.InvalidInput(
            f"{ca_name}: {ca_file!r} is not a PEM CA bundle: {exc}",
            path=ca_name,
            expected="PEM certificates",
        ) from exc
    if cert_file:
        try:
            context.load_cert_chain(cert_file, key_file)
        except (OSError, ssl.SSLError) as exc:
            raise errors.InvalidInput(
                f"{cert_name}: {cert_file!r} with key {key_file!r} is not a PEM certificate and "
                f"its key: {exc}",
                path=cert_name,
                expected="a PEM certificate and its private key",
            ) from exc
    return context


def wants_tls(url: str, *files: str) -> bool:
    return url.startswith("tls://") or any(files)


def connect_options(cfg: settings.ServiceSettings) -> dict[str, Any]:
    """nats-py ``connect`` arguments for the credentials and TLS in ``cfg`` (files are read now,
    so a restarted service picks up a rotated Secret)."""
    env = settings.PREFIX
    options: dict[str, Any] = {}
    if cfg.nats_creds_file:
        read_secret(cfg.nats_creds_file, f"{env}NATS_CREDS_FILE")  # readable, not empty
        options["user_credentials"] = cfg.nats_creds_file
    if cfg.nats_nkey_file:
        options["nkeys_seed_str"] = read_secret(cfg.nats_nkey_file, f"{env}NATS_NKEY_FILE")
    if cfg.nats_user:
        options["user"] = cfg.nats_user
        options["password"] = read_secret(cfg.nats_password_file, f"{env}NATS_PASSWORD_FILE")
    if cfg.nats_token_file:
        options["token"] = read_secret(cfg.nats_token_file, f"{env}NATS_TOKEN_FILE")
    if wants_tls(cfg.nats_url, cfg.nats_tls_ca_file, cfg.nats_tls_cert_file):
        options["tls"] = tls_context(
            cfg.nats_tls_ca_file,
            cfg.nats_tls_cert_file,
            cfg.nats_tls_key_file,
            names=(
                f"{env}NATS_TLS_CA_FILE",
                f"{env}NATS_TLS_CERT_FILE",
                f"{env}NATS_TLS_KEY_FILE",
            ),
        )
    return options


def connect_failure(exc: BaseException) -> str:
    """Why a connection attempt failed, in words that say what to fix (never a secret: nats-py
    errors quote no credentials)."""
    text = str(exc).strip() or type(exc).__name__
    lowered = text.lower()
    if isinstance(exc, ssl.SSLCertVerificationError) or "certificate verify failed" in lowered:
        detail = getattr(exc, "verify_message", "") or text
        return (
            f"TLS handshake failed: the server's certificate does not verify ({detail}); "
            "check the CA bundle"
        )
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {text}"
    if "authorization violation" in lowered or "authentication" in lowered:
        return f"the server refused the credentials ({text})"
    if "tls" in lowered and ("required" in lowered or "not available" in lowered):
        return f"TLS mismatch between client and server: {text}"
    return text


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
    check_subject(subject)
    payload = messages.ENCODER.encode(value)
    timeout_s = rt.settings.nats_request_timeout_s
    with nats_errors(f"publishing to {subject}", timeout_s):
        await rt.js.publish(
            subject,
            payload,
            timeout=timeout_s,
            headers=headers(msg_id or content_id(payload), correlation_id),
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
    check_subject(subject)
    with nats_errors(f"request on {subject}", command.timeout_s):
        msg = await rt.nc.request(
            subject,
            messages.ENCODER.encode(command),
            timeout=command.timeout_s,
            headers=headers(correlation_id=correlation_id),
        )
    try:
        return messages.REPLY_DECODER.decode(msg.data)
    except Exception as exc:  # any failure to decode (even RecursionError) is a bad reply
        raise errors.InvalidInput(f"undecodable reply on {subject}: {logs.clip(str(exc))}") from exc


# ----------------------------------------------------------------------------- shared by consumers


def decode(decoder: msgspec.json.Decoder[T], data: bytes) -> T:
    """Decode a payload; every failure, whatever its type, is a permanent ``InvalidInput``.

    msgspec raises ``DecodeError`` / ``ValidationError`` for bad input but ``RecursionError``
    for deeply nested JSON, even inside fields it ignores; a consumer must treat all of them as
    a poison message, never as a crash."""
    try:
        return decoder.decode(data)
    except Exception as exc:
        detail = str(exc) if isinstance(exc, msgspec.MsgspecError) else type(exc).__name__
        raise errors.InvalidInput(logs.clip(detail or type(exc).__name__)) from exc


class Limiter:
    """At most ``limit`` handlers at once; tracks them so shutdown can wait for them, and
    cancels the ones still running when that wait is itself cancelled (grace period over)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._tasks: set[asyncio.Task[None]] = set()
        self._freed = asyncio.Event()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    @property
    def free(self) -> int:
        return self.limit - len(self._tasks)

    async def wait_for_slot(self, stopping: asyncio.Event) -> bool:
        """Wait until a slot is free (True) or the service stops (False)."""
        while self.free <= 0 and not stopping.is_set():
            self._freed.clear()
            freed = asyncio.ensure_future(self._freed.wait())
            stop = asyncio.ensure_future(stopping.wait())
            try:
                await asyncio.wait({freed, stop}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                freed.cancel()
                stop.cancel()
        return not stopping.is_set()

    def start(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``coro`` as a tracked task (callers make sure a slot is ``free``)."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._freed.set()

    async def drain(self, *, cancel: bool = False) -> None:
        """Wait for every handler (or cancel them at once with ``cancel``); if this wait is
        itself cancelled — the grace period is over — the handlers are cancelled too."""
        running = list(self._tasks)
        if not running:
            return
        if not cancel:
            try:
                await asyncio.wait(running)  # unlike gather, leaves them running if cancelled
                return
            except asyncio.CancelledError:
                await self._cancel(running)
                raise
        await self._cancel(running)

    @staticmethod
    async def _cancel(running: list[asyncio.Task[None]]) -> None:
        unfinished = [task for task in running if not task.done()]
        for task in unfinished:
            task.cancel()
        if unfinished:
            log.warning(
                "cancelled %d handler(s) still running after the grace period", len(unfinished)
            )
            await asyncio.gather(*unfinished, return_exceptions=True)


def reject(rt: Runtime, msg: Msg, subscription: str, reason: str, detail: str) -> None:
    """Log and count a message that will not be processed (call after it was settled)."""
    rt.metrics.rejected.labels(subject=subscription, reason=reason).inc()
    logs.ContextAdapter(log, context(msg)).warning(
        "rejected message (%s): %s", reason, logs.clip(detail)
    )


async def until_stopping(rt: Runtime, source: Any) -> AsyncIterator[Any]:
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


async def settle(ack: Awaitable[None]) -> None:
    """Ack/nak/term are best effort: if the bus is gone, the message is redelivered anyway."""
    with contextlib.suppress(nats.errors.Error, nats.js.errors.Error):
        await ack
