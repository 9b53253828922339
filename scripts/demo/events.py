"""Reading the bus: the canary's events from a JetStream ordered consumer, so they are the stream's
de-duplicated events, exactly what the notifier sees; each one updates the board as it arrives
and can be waited for."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time

import msgspec
import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import api as js_api

from libs import messages
from scripts.demo import snapshot, tutorial

SUBJECT = f"{messages.EVENTS_PREFIX}.{tutorial.NAMESPACE}.{tutorial.CANARY}.>"


@dataclasses.dataclass(frozen=True)
class Arrival:
    at: float  # time.monotonic() when the bus delivered it
    event: messages.EventBase


class Follower:
    """Follows ``SUBJECT`` and keeps every event that arrived, with when it arrived."""

    def __init__(self, board: snapshot.Board) -> None:
        self.board = board
        self.nc: NATS | None = None
        self.arrivals: list[Arrival] = []
        self.arrived = asyncio.Condition()

    async def follow(self, url: str) -> None:
        """Follow the canary's events on the bus at ``url`` (JetStream, so de-duplicated)."""

        async def quiet(_error: Exception) -> None:
            pass

        self.nc = await nats.connect(
            url,
            connect_timeout=5,
            max_reconnect_attempts=5,
            error_cb=quiet,
            name="sluice-demo",
        )
        js = self.nc.jetstream()
        await js.subscribe(
            SUBJECT,
            cb=self._on_message,
            ordered_consumer=True,
            deliver_policy=js_api.DeliverPolicy.ALL,  # the stack is new: all there is
        )
        self.board.action(f"following {SUBJECT} on {url}")

    async def _on_message(self, msg: Msg) -> None:
        arrived = time.monotonic()
        try:
            event = messages.EVENT_DECODER.decode(msg.data)
        except msgspec.DecodeError as exc:  # a newer kind of event: say so, go on
            self.board.action(f"undecodable event on {msg.subject}: {exc}", style="yellow")
            return
        self.board.event(event, arrived)
        async with self.arrived:
            self.arrivals.append(Arrival(arrived, event))
            self.arrived.notify_all()

    async def wait(self, kind: str, after: float, timeout: float) -> Arrival:
        """The first ``kind`` event that arrived after ``after`` (monotonic); ``TimeoutError``
        when none arrives within ``timeout``."""

        def found() -> Arrival | None:
            for arrival in self.arrivals:
                if arrival.at >= after and messages.event_kind(arrival.event) == kind:
                    return arrival
            return None

        async with self.arrived:
            existing = found()
            if existing is not None:
                return existing
            await asyncio.wait_for(self.arrived.wait_for(lambda: found() is not None), timeout)
        arrival = found()
        assert arrival is not None
        return arrival

    async def close(self) -> None:
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.close(), 5)
            self.nc = None
