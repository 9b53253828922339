"""``sluice events [NAME]``: the canaries' events, replayed from JetStream and optionally followed.

Reads the ``SLUICE_EVENTS`` stream from ``--since`` ago (default 1h; ``0`` is everything kept)
with an ephemeral consumer filtered to ``sluice.events.<ns>.<name>.>`` (one canary),
``sluice.events.<ns>.>`` (a namespace) or ``sluice.events.>`` (``-A``), prints each event and
stops at the end of the replay; with ``-f`` it then follows new events until Ctrl-C.

``-o json`` prints each event exactly as on the wire, one per line (each line validates against
``docs/events/event.schema.json``); text mode prints time, canary, kind, severity and message in
columns and leaves out ``metric_checked`` unless ``--all``.

Exit status: 0 (also when stopped with Ctrl-C or SIGTERM); 1 when NATS or the stream cannot be
reached (the reason on stderr); 2 for usage errors.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import re
import secrets
import signal
import sys
import time
import typing
from collections.abc import Callable
from typing import Any, TextIO

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import api

from cli import canaries, connecting
from libs import logs, messages, streams
from libs.model import durations

EXIT_OK = 0
EXIT_FAILED = 1
DEFAULT_SINCE = "1h"
BATCH = 256
FOLLOW_POLL_S = 1.0
INACTIVE_THRESHOLD_S = 30.0

_TOKEN = re.compile(r"[A-Za-z0-9_-]+")
KINDS: tuple[str, ...] = tuple(
    str(cls.__struct_config__.tag) for cls in typing.get_args(messages.Event)
)
HIDDEN_IN_TEXT = frozenset({"metric_checked"})
COLUMNS = ("TIME", "CANARY", "KIND", "SEVERITY", "MESSAGE")
_WIDTHS = {"TIME": 19, "CANARY": 24, "KIND": max(map(len, KINDS)), "SEVERITY": 8}


def register(subparsers: Any) -> None:
    """Add ``events``."""
    parser = subparsers.add_parser(
        "events", help="the canaries' events from the bus, replayed and optionally followed"
    )
    parser.add_argument("name", nargs="?", help="one Canary (default: every canary)")
    add_namespace_arguments(parser)
    parser.add_argument(
        "-A", "--all-namespaces", action="store_true", help="every namespace (ignores -n)"
    )
    parser.add_argument(
        "--since",
        default=DEFAULT_SINCE,
        help=f"replay events newer than this, e.g. 10m, 2h (default {DEFAULT_SINCE}; 0: all kept)",
    )
    parser.add_argument(
        "-f", "--follow", action="store_true", help="keep printing new events until Ctrl-C"
    )
    parser.add_argument(
        "-o",
        "--output",
        choices=("text", "json"),
        default="text",
        help="text columns, or one JSON event per line as on the wire",
    )
    parser.add_argument(
        "--all", action="store_true", help="text mode: also the metric_checked events"
    )
    connecting.add_nats_arguments(parser)
    parser.set_defaults(handler=run)


def add_namespace_arguments(parser: argparse.ArgumentParser) -> None:
    """``-n`` and ``--kubeconfig`` (only read for the context's namespace), as ``get canaries``."""
    parser.add_argument("-n", "--namespace", help="namespace (default: the kubeconfig's)")
    parser.add_argument(
        "--kubeconfig",
        default=canaries.default_kubeconfig(),
        help="kubeconfig whose context names the default namespace "
        "(default: $KUBECONFIG, else ~/.kube/config)",
    )


def namespace_of(args: argparse.Namespace) -> str:
    """``-n``, else the kubeconfig context's namespace, else ``default`` (no cluster needed)."""
    return canaries.default_namespace(args)


# --------------------------------------------------------------------------- pure parts


def parse_duration(text: str, option: str) -> float:
    """Seconds in a Go duration (``90s``, ``10m``, ``1h30m``), or a ``CliError`` naming the option."""
    try:
        seconds = durations.parse_duration(text)
    except ValueError:
        seconds = -1.0
    if seconds < 0:
        raise connecting.CliError(
            f"{option}: expected a duration like 90s, 10m or 1h, got {text!r}"
        )
    return seconds


def check_token(value: str, what: str) -> str:
    """A namespace or name usable as a subject token (Kubernetes names always are)."""
    if not _TOKEN.fullmatch(value) or len(value) > messages.MAX_NAME:
        raise connecting.CliError(f"{what} {value!r} is not a valid Kubernetes name")
    return value


def subject_for(namespace: str | None, name: str | None) -> str:
    """The filter subject: one canary, one namespace (``namespace``), or all (None)."""
    ns = "*" if namespace is None else check_token(namespace, "namespace")
    if name:
        return f"{messages.EVENTS_PREFIX}.{ns}.{check_token(name, 'canary')}.>"
    if namespace is None:
        return messages.EVENTS_ALL
    return f"{messages.EVENTS_PREFIX}.{ns}.>"


def timestamp(at_ms: int) -> str:
    """Local time of an event, ``2026-11-30 10:00:01``."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at_ms / 1000))


def header() -> str:
    return _columns(dict(zip(COLUMNS, COLUMNS, strict=True)))


def text_line(event: messages.EventBase) -> str:
    """One event in text mode: time, namespace/name, kind, severity, message (aligned)."""
    kind = messages.event_kind(event)
    return _columns(
        {
            "TIME": timestamp(event.at_ms),
            "CANARY": f"{event.canary.namespace}/{event.canary.name}",
            "KIND": kind,
            "SEVERITY": str(event.severity or messages.Severity.INFO),
            "MESSAGE": event.message or describe(event),
        }
    )


def describe(event: messages.EventBase) -> str:
    """A message for the events that carry none (``metric_checked`` above all)."""
    if isinstance(event, messages.MetricChecked):
        value = "no values" if event.value is None else f"{event.value:g}"
        bounds = []
        if event.min is not None:
            bounds.append(f">= {event.min:g}")
        if event.max is not None:
            bounds.append(f"<= {event.max:g}")
        result = "passed" if event.passed else "failed"
        dry = " (dry run)" if event.dry_run else ""
        return f"{event.metric} {value} ({', '.join(bounds) or 'no range'}) {result}{dry}"
    return messages.event_kind(event).replace("_", " ")


def _columns(row: dict[str, str]) -> str:
    cells = [row[c].ljust(_WIDTHS[c]) if c in _WIDTHS else row[c] for c in COLUMNS]
    return "   ".join(cells).rstrip()


def shown(event: messages.EventBase, *, output: str, everything: bool) -> bool:
    """JSON shows every event; text leaves out metric_checked unless ``--all``."""
    return output == "json" or everything or messages.event_kind(event) not in HIDDEN_IN_TEXT


# --------------------------------------------------------------------------- reading


def run(args: argparse.Namespace) -> int:
    try:
        since_s = parse_duration(args.since, "--since")
        namespace = None if args.all_namespaces else namespace_of(args)
        subject = subject_for(namespace, args.name)
        return asyncio.run(_events(args, subject, since_s))
    except connecting.CliError as exc:
        print(f"sluice: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:  # before the signal handlers are in place
        return EXIT_OK


async def _events(args: argparse.Namespace, subject: str, since_s: float) -> int:
    nc = await connecting.connect(args)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        printer = Printer(sys.stdout, output=args.output, everything=args.all)
        await replay(nc, subject, since_s, printer.print, follow=args.follow, stop=stop)
        if printer.count == 0 and not args.follow:
            print(f"No events in the last {args.since} on {subject}.", file=sys.stderr)
        return EXIT_OK
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        with contextlib.suppress(Exception):
            await nc.close()


class Printer:
    """Prints what ``shown`` lets through, a header first in text mode."""

    def __init__(self, out: TextIO, *, output: str, everything: bool) -> None:
        self.out, self.output, self.everything = out, output, everything
        self.count = 0

    def print(self, data: bytes, event: messages.EventBase) -> None:
        if not shown(event, output=self.output, everything=self.everything):
            return
        if self.output == "json":
            line = data.decode("utf-8", errors="replace").strip()
        else:
            if self.count == 0:
                print(header(), file=self.out)
            line = text_line(event)
        self.count += 1
        print(line, file=self.out, flush=True)


async def replay(
    nc: Client,
    subject: str,
    since_s: float,
    handle: Callable[[bytes, messages.EventBase], None],
    *,
    follow: bool,
    stop: asyncio.Event,
) -> None:
    """Feed ``handle`` every event on ``subject`` stored since ``since_s`` ago (0: all), in
    stream order; return at the end of the replay, or with ``follow`` when ``stop`` is set."""
    js = nc.jetstream()
    config = api.ConsumerConfig(
        ack_policy=api.AckPolicy.NONE,
        inactive_threshold=INACTIVE_THRESHOLD_S,
        mem_storage=True,
        num_replicas=1,
    )
    if since_s > 0:
        start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=since_s)
        config.deliver_policy = api.DeliverPolicy.BY_START_TIME
        config.opt_start_time = start
    else:
        config.deliver_policy = api.DeliverPolicy.ALL
    config.name = f"sluice-cli-events-{secrets.token_hex(6)}"
    config.filter_subject = subject
    where = f"NATS at {logs.redact_url(nc.connected_url.geturl())}" if nc.connected_url else "NATS"
    try:
        await js.add_consumer(streams.EVENTS.name, config)
        sub = await js.pull_subscribe_bind(
            durable=None, stream=streams.EVENTS.name, name=config.name
        )
    except nats.js.errors.NotFoundError as exc:
        raise connecting.CliError(
            f"no {streams.EVENTS.name} stream on {where}; is Sluice running there?"
        ) from exc
    except (nats.errors.Error, nats.js.errors.Error) as exc:
        raise connecting.CliError(f"cannot read {streams.EVENTS.name} on {where}: {exc}") from exc
    try:
        remaining = (await sub.consumer_info()).num_pending
        while not stop.is_set():
            if remaining == 0 and not follow:
                return
            try:
                batch = await _fetch(sub, stop, timeout=FOLLOW_POLL_S)
            except nats.errors.TimeoutError:
                continue
            for msg in batch:
                remaining = msg.metadata.num_pending
                event = decode(msg)
                if event is not None:
                    handle(msg.data, event)
    except nats.errors.Error as exc:
        if stop.is_set():
            return
        raise connecting.CliError(f"lost {where}: {exc}") from exc
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
        with contextlib.suppress(Exception):
            await js.delete_consumer(streams.EVENTS.name, config.name)


async def _fetch(sub: Any, stop: asyncio.Event, *, timeout: float) -> list[Msg]:
    """One batch, or an early empty answer when ``stop`` is set meanwhile."""
    fetching = asyncio.ensure_future(sub.fetch(BATCH, timeout=timeout))
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({fetching, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if not fetching.done():
        fetching.cancel()
        with contextlib.suppress(BaseException):
            await fetching
        return []
    result: list[Msg] = fetching.result()
    return result


def decode(msg: Msg) -> messages.EventBase | None:
    """The event in a message, or None (with a note on stderr) when it does not decode."""
    try:
        event: messages.EventBase = messages.EVENT_DECODER.decode(msg.data)
    except (msgspec.DecodeError, ValueError) as exc:
        print(f"sluice: skipped an undecodable event on {msg.subject}: {exc}", file=sys.stderr)
        return None
    return event
