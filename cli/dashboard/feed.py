"""The dashboard's view of the bus: ``Feed`` follows a watch of the ``sluice_canaries`` KV
bucket and an ordered consumer on ``sluice.events.>`` (replaying the last ``REPLAY_S`` seconds
first), both applied to a ``state.Board``; every change goes to each connected page as a
server-sent event. When NATS goes away it reconnects (the page shows it meanwhile); a bucket or
stream that does not exist yet (no service has started) is waited for. ``Feed.control`` sends
a page's control request to the analyzer."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext, api

from cli import connecting
from cli.dashboard import state
from libs import errors, messages, streams

log = logging.getLogger("sluice.dashboard")

REPLAY_S = 30 * 60.0  # events replayed into the log at start
RETRY_S = 2.0  # between attempts to reach NATS, the bucket or the stream
REQUEST_TIMEOUT_S = 10.0
CLIENT_QUEUE = 1000  # SSE messages buffered per page; a page that falls behind reconnects

Connector = Callable[[], Awaitable[Client]]


def sse(name: str, payload: object) -> bytes:
    """One server-sent event (JSON data on one line)."""
    return b"event: " + name.encode() + b"\ndata: " + messages.ENCODER.encode(payload) + b"\n\n"


class Feed:
    """The bus, followed: the board of canaries and the pages listening to its changes."""

    def __init__(
        self,
        connector: Connector,
        identity: str,
        replay_s: float = REPLAY_S,
        retry_s: float = RETRY_S,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> None:
        self.board = state.Board()
        self.identity = identity
        self._connector = connector
        self._replay_s = replay_s
        self._retry_s = retry_s
        self._request_timeout_s = request_timeout_s
        self._nc: Client | None = None
        self._clients: set[asyncio.Queue[bytes | None]] = set()
        self._status: dict[str, Any] = {"connected": False, "problem": "connecting to NATS"}
        self.watching = asyncio.Event()  # set once the bucket and the stream are followed

    # ------------------------------------------------------------------ pages

    def attach(self) -> asyncio.Queue[bytes | None]:
        """A new page: its queue starts with the snapshot (no await in between, so nothing
        that changes the board can fall between the snapshot and the updates)."""
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=CLIENT_QUEUE)
        queue.put_nowait(sse("snapshot", self.snapshot()))
        self._clients.add(queue)
        return queue

    def detach(self, queue: asyncio.Queue[bytes | None]) -> None:
        self._clients.discard(queue)

    def close_pages(self) -> None:
        """End every page's stream (shutdown)."""
        for queue in list(self._clients):
            self._end(queue)
        self._clients.clear()

    def snapshot(self) -> dict[str, Any]:
        return {"canaries": self.board.snapshot(), "status": self._status}

    @property
    def pages(self) -> int:
        """How many pages listen now."""
        return len(self._clients)

    @property
    def status(self) -> dict[str, Any]:
        return dict(self._status)

    def _broadcast(self, chunk: bytes) -> None:
        for queue in list(self._clients):
            try:
                queue.put_nowait(chunk)
            except asyncio.QueueFull:
                # too far behind: end its stream; EventSource reconnects and gets a snapshot
                self._clients.discard(queue)
                self._end(queue)

    @staticmethod
    def _end(queue: asyncio.Queue[bytes | None]) -> None:
        while True:
            try:
                queue.put_nowait(None)
                return
            except asyncio.QueueFull:
                queue.get_nowait()

    def _set_status(self, connected: bool, problem: str = "") -> None:
        status = {"connected": connected, "problem": problem}
        if status != self._status:
            self._status = status
            if problem:
                log.warning("%s", problem)
            self._broadcast(sse("status", status))

    # ------------------------------------------------------------------ following the bus

    async def run(self, first: Client | None = None) -> None:
        """Follow the bus until cancelled, reconnecting when the connection ends."""
        nc = first
        try:
            while True:
                if nc is None:
                    try:
                        nc = await self._connector()
                    except connecting.CliError as exc:
                        self._set_status(False, str(exc))
                        await asyncio.sleep(self._retry_s)
                        continue
                self._nc = nc
                self._set_status(True, "")
                try:
                    await self._follow(nc)
                except* Exception as group:  # any failure: reconnect
                    cause = group.exceptions[0]
                    self._set_status(False, f"lost the bus: {cause or type(cause).__name__}")
                else:
                    self._set_status(False, "the connection to NATS closed; reconnecting")
                self.watching.clear()
                self._nc = None
                with contextlib.suppress(Exception):
                    await nc.close()
                nc = None
                await asyncio.sleep(self._retry_s)
        finally:
            if nc is not None:
                with contextlib.suppress(Exception):
                    await nc.close()

    async def _follow(self, nc: Client) -> None:
        js = nc.jetstream()
        ready = (asyncio.Event(), asyncio.Event())
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._watch_canaries(js, ready[0]), name="dashboard-canaries")
            tasks.create_task(self._follow_events(js, ready[1]), name="dashboard-events")
            tasks.create_task(self._until_ready(ready), name="dashboard-ready")
            closed = tasks.create_task(self._until_closed(nc), name="dashboard-closed")
            await closed
            raise ConnectionError("the connection to NATS closed")

    async def _until_ready(self, ready: tuple[asyncio.Event, asyncio.Event]) -> None:
        await asyncio.gather(ready[0].wait(), ready[1].wait())
        self.watching.set()

    @staticmethod
    async def _until_closed(nc: Client) -> None:
        # the CLI's connection has no closed callback to wait on; look twice a second
        while not nc.is_closed:  # noqa: ASYNC110
            await asyncio.sleep(0.5)

    async def _watch_canaries(self, js: JetStreamContext, ready: asyncio.Event) -> None:
        while True:
            try:
                kv = await js.key_value(streams.CANARIES.name)
                break
            except nats.js.errors.BucketNotFoundError:
                self._set_status(
                    True, f"waiting for the KV bucket {streams.CANARIES.name} (is the watcher up?)"
                )
                await asyncio.sleep(self._retry_s)
        watcher = await kv.watchall()
        self._clear_problem("KV bucket")
        try:
            _raise_if_cancelled()
            async for entry in watcher:
                if entry is None:  # the current values have all been delivered
                    ready.set()
                    continue
                deleted = entry.operation in ("DEL", "PURGE")
                changed = self.board.apply_entry(entry.key, None if deleted else entry.value)
                if changed is None:
                    continue
                ident, view = changed
                if view is None:
                    namespace, _, name = ident.partition("/")
                    self._broadcast(sse("removed", {"namespace": namespace, "name": name}))
                else:
                    self._broadcast(sse("canary", view))
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]
            _cancel_helpers(watcher._sub)

    async def _follow_events(self, js: JetStreamContext, ready: asyncio.Event) -> None:
        while True:
            config = api.ConsumerConfig(
                deliver_policy=api.DeliverPolicy.BY_START_TIME,
                opt_start_time=datetime.datetime.now(datetime.UTC)
                - datetime.timedelta(seconds=self._replay_s),
                inactive_threshold=60.0,
            )
            if self.board.last_seq:  # resuming after a reconnection
                config = api.ConsumerConfig(
                    deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
                    opt_start_seq=self.board.last_seq + 1,
                    inactive_threshold=60.0,
                )
            try:
                sub = await js.subscribe(
                    messages.EVENTS_ALL,
                    stream=streams.EVENTS.name,
                    ordered_consumer=True,
                    config=config,
                )
                break
            except nats.js.errors.NotFoundError:
                self._set_status(
                    True, f"waiting for the stream {streams.EVENTS.name} (is any service up?)"
                )
                await asyncio.sleep(self._retry_s)
        self._clear_problem("stream")
        try:
            _raise_if_cancelled()
            ready.set()
            async for msg in sub.messages:
                try:
                    event = messages.EVENT_DECODER.decode(msg.data)
                except (msgspec.DecodeError, msgspec.ValidationError):
                    continue
                ident = self.board.apply_event(event, msg.metadata.sequence.stream)
                if ident is None:
                    continue
                namespace, _, name = ident.partition("/")
                view = state.event_view(event, msg.metadata.sequence.stream)
                self._broadcast(sse("event", {"namespace": namespace, "name": name, "event": view}))
                if isinstance(event, messages.WeightAdvanced):
                    canary = self.board.view(ident)
                    if canary is not None:
                        self._broadcast(sse("canary", canary))
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
            _cancel_helpers(sub)

    def _clear_problem(self, what: str) -> None:
        if what in self._status.get("problem", ""):
            self._set_status(True, "")

    # ------------------------------------------------------------------ control

    async def control(
        self, namespace: str, name: str, action: str, gate: str = "", reason: str = ""
    ) -> tuple[int, dict[str, Any]]:
        """Send a ``ControlRequest``; the HTTP status and JSON body to answer with."""
        if action not in messages.CONTROL_ACTIONS:
            return 400, {
                "error": f"unknown action {action!r}; expected one of "
                + ", ".join(messages.CONTROL_ACTIONS)
            }
        try:
            subject = messages.control_subject(namespace, name, action)
        except errors.InvalidInput as exc:
            return 400, {"error": str(exc)}
        nc = self._nc
        if nc is None or not nc.is_connected:
            return 503, {"error": f"not connected to NATS: {self._status.get('problem') or '?'}"}
        request = messages.ControlRequest(
            canary=messages.CanaryRef(namespace=namespace, name=name),
            action=action,  # type: ignore[arg-type]  # checked against CONTROL_ACTIONS above
            gate=gate,
            by=self.identity,
            reason=reason,
            timeout_s=self._request_timeout_s,
        )
        try:
            reply = await nc.request(
                subject, messages.ENCODER.encode(request), timeout=self._request_timeout_s
            )
        except nats.errors.NoRespondersError:
            return 503, {
                "error": f"no analyzer answered {action} for {namespace}/{name}: nobody listens "
                f"on {subject} (is the analyzer running, and does it handle control requests?)"
            }
        except nats.errors.TimeoutError:
            return 504, {
                "error": f"the analyzer did not answer {action} for {namespace}/{name} "
                f"within {self._request_timeout_s:g}s"
            }
        except nats.errors.Error as exc:
            return 502, {"error": f"sending {action} failed: {exc or type(exc).__name__}"}
        try:
            answer = messages.REPLY_DECODER.decode(reply.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return 502, {"error": f"the analyzer's answer could not be read: {exc}"}
        if isinstance(answer, messages.ControlAnswer):
            return 200, {
                "action": answer.action,
                "accepted": answer.accepted,
                "message": answer.message,
                "phase": str(answer.phase),
            }
        if isinstance(answer, messages.CommandFailed):
            return 502, {"error": answer.error, "temporary": answer.temporary}
        return 502, {"error": f"unexpected answer {type(answer).__name__}"}


def _raise_if_cancelled() -> None:
    """Python 3.11's ``asyncio.wait_for`` (inside nats-py's requests) can swallow a cancellation
    that meets the reply; the task still counts it, so honour it here."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _cancel_helpers(sub: object) -> None:
    """End an ordered consumer's heartbeat and flow-control tasks: nats-py cancels them in
    ``unsubscribe``, which refuses to run once the connection is closed."""
    helpers = getattr(getattr(sub, "_sub", None), "_jsi", None)
    for name in ("_hbtask", "_fctask"):
        task = getattr(helpers, name, None)
        if isinstance(task, asyncio.Task):
            task.cancel()


# ----------------------------------------------------------------------------- web app
