"""``sluice watch NAME``: follow one canary until its rollout ends.

Reads the watcher's observation of the Canary (``sluice_canaries``) and of its target
(``sluice_workloads``) every ``POLL_S``, and hears the canary's events on
``sluice.events.<ns>.<name>.>``. It shows the phase, the canary weight against the maximum
weight (iterations N/M for blue/green and A/B), failed checks against the threshold, each
metric's last value against its threshold, the gate the canary waits at and the events as they
arrive: redrawn in place on a terminal, one plain line per change (and per event) otherwise.

A rollout is over when the phase is Succeeded, Initialized or Failed and no new revision is
pending, by the analyzer's own rule (``pending_revision``): right after ``kubectl set image``
the phase is still the previous rollout's, and the target's revision is not yet the applied
one. A rollout seen over at the very start is only believed after ``--grace`` seconds, the
time the watcher may need to see the new revision.

Exit status: 0 when the rollout succeeded (or there was nothing new to roll out); 1 when it
failed, the Canary was deleted, is invalid or does not exist, or NATS cannot be reached; 2 on
``--timeout``; 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from typing import Any, TypeVar

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.kv import KeyValue
from rich.console import Console

from cli import connecting, events
from cli.watchview import (
    EXIT_FAILED,
    EXIT_OK,
    Frame,
    LiveView,
    MetricView,
    PlainView,
    event_line,
    frame_of,
    metric_of,
    metrics_of,
    verdict,
)
from libs import messages, streams
from libs.model import canary as canary_model

Phase = canary_model.Phase
T = TypeVar("T")
EXIT_TIMEOUT = 2
EXIT_INTERRUPTED = 130
DEFAULT_TIMEOUT = "10m"
DEFAULT_GRACE_S = 3.0
POLL_S = 0.5
EARLIER_S = 2.0  # events this long before the command started are shown too


def register(subparsers: Any) -> None:
    """Add ``watch``."""
    parser = subparsers.add_parser("watch", help="follow one canary until its rollout ends")
    parser.add_argument("name", help="the Canary's name")
    events.add_namespace_arguments(parser)
    parser.add_argument(
        "--timeout",
        default=DEFAULT_TIMEOUT,
        help=f"give up after this long, exit status 2 (default {DEFAULT_TIMEOUT})",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=DEFAULT_GRACE_S,
        help=argparse.SUPPRESS,  # seconds a missing canary / a rollout over at start is given
    )
    connecting.add_nats_arguments(parser)
    parser.set_defaults(handler=run)


# --------------------------------------------------------------------------- the decision


def run(args: argparse.Namespace) -> int:
    try:
        timeout_s = events.parse_duration(args.timeout, "--timeout")
        namespace = events.check_token(events.namespace_of(args), "namespace")
        name = events.check_token(args.name, "canary")
        started = time.time()
        return asyncio.run(_watch(args, namespace, name, timeout_s, started))
    except connecting.CliError as exc:
        print(f"sluice: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


async def _watch(
    args: argparse.Namespace, namespace: str, name: str, timeout_s: float, started: float
) -> int:
    nc = await connecting.connect(args)
    try:
        view: PlainView | LiveView
        view = LiveView(Console()) if sys.stdout.isatty() else PlainView(sys.stdout)
        try:
            status, message = await Watch(nc, namespace, name, view).run(
                args.timeout, timeout_s, args.grace, since=started - EARLIER_S
            )
        finally:
            view.close()
    finally:
        with contextlib.suppress(Exception):
            await nc.close()
    print(message, file=sys.stdout if status == EXIT_OK else sys.stderr, flush=True)
    return status


class Watch:
    """The loop: observations read every ``POLL_S`` (at once when an event arrives); the
    canary's events replayed from JetStream from ``since`` on, and followed."""

    def __init__(self, nc: Client, namespace: str, name: str, view: PlainView | LiveView) -> None:
        self.nc, self.namespace, self.name, self.view = nc, namespace, name, view
        self.who = f"{name}.{namespace}"
        self.key = messages.canary_key(namespace, name)
        self.metrics: dict[str, MetricView] = {}
        self.lines: list[str] = []
        self.woken = asyncio.Event()
        self.buckets: dict[str, KeyValue] = {}
        self.last_status: canary_model.CanaryStatus | None = None
        self.stop = asyncio.Event()
        self.shown: Frame | None = None

    async def run(
        self, timeout: str, timeout_s: float, grace_s: float, *, since: float
    ) -> tuple[int, str]:
        started = time.monotonic()
        hearing = asyncio.ensure_future(self._hear(max(time.time() - since, 0.001)))
        seen_running = False
        try:
            while True:
                observation = await self._read(
                    streams.CANARIES.name, self.key, messages.CANARY_OBSERVATION_DECODER
                )
                workload = None
                if observation is not None and observation.canary is not None:
                    target = messages.workload_key(
                        self.namespace, observation.canary.spec.target_ref.name
                    )
                    workload = await self._read(
                        streams.WORKLOADS.name, target, messages.OBSERVATION_DECODER
                    )
                decision = verdict(self.who, observation, workload)
                self._show(observation, workload)
                elapsed = time.monotonic() - started
                if decision.over and (seen_running or elapsed >= grace_s):
                    return decision.status, decision.message
                if observation is None and elapsed >= grace_s:
                    return EXIT_FAILED, (
                        f"canary {self.who} not found (is it applied? is the watcher running?)"
                    )
                if not decision.over and observation is not None:
                    seen_running = True
                if elapsed >= timeout_s:
                    return EXIT_TIMEOUT, f"timed out after {timeout}: {decision.message}"
                self.woken.clear()
                wait = min(POLL_S, max(timeout_s - elapsed, 0.0))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.woken.wait(), timeout=wait)
        except (nats.errors.Error, nats.js.errors.Error) as exc:
            raise connecting.CliError(f"lost the connection to NATS: {exc}") from exc
        finally:
            self.stop.set()
            with contextlib.suppress(Exception):
                await hearing

    async def _hear(self, since_s: float) -> None:
        """The canary's events from JetStream, else (no stream) as they are published."""
        subject = events.subject_for(self.namespace, self.name)
        try:
            await events.replay(
                self.nc, subject, since_s, self._on_event, follow=True, stop=self.stop
            )
            return
        except connecting.CliError:
            pass
        sub = await self.nc.subscribe(subject, cb=self._on_message)
        try:
            await self.stop.wait()
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    def _show(
        self,
        observation: messages.CanaryObservation | None,
        workload: messages.WorkloadObservation | None,
    ) -> None:
        if observation is not None and observation.canary is not None:
            status = observation.canary.status
            if status is not None and status != self.last_status and status.metrics:
                self.metrics = metrics_of(status)
            self.last_status = status
        frame = frame_of(self.who, observation, workload, self.metrics)
        new, self.lines = self.lines, []
        if new or frame != self.shown:
            self.view.show(frame, new, messages.now_ms())
        self.shown = frame

    async def _on_message(self, msg: Msg) -> None:
        try:
            event = messages.EVENT_DECODER.decode(msg.data)
        except (msgspec.DecodeError, ValueError):
            return
        self._on_event(msg.data, event)

    def _on_event(self, _: bytes, event: messages.EventBase) -> None:
        if isinstance(event, messages.MetricChecked):
            self.metrics[event.metric] = metric_of(event)
        line = event_line(event)
        if line is not None:
            self.lines.append(line)
        self.woken.set()

    async def _read(self, bucket: str, key: str, decoder: msgspec.json.Decoder[T]) -> T | None:
        """The entry's value; None when absent, deleted or undecodable."""
        kv = self.buckets.get(bucket)
        try:
            if kv is None:
                kv = self.buckets[bucket] = await self.nc.jetstream().key_value(bucket)
            entry = await kv.get(key)
            return decoder.decode(entry.value) if entry.value else None
        except (nats.js.errors.NotFoundError, msgspec.DecodeError, ValueError):
            return None  # no bucket, no key (KeyDeletedError included), or not a value
