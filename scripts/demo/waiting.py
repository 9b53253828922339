"""Waiting with a deadline: the whole demo has one, every wait is clipped to it, and a wait that
polls says what it last saw when its time is up."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from scripts.demo import outcome, tutorial

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Deadline:
    """The demo's deadline: ``seconds`` after ``started`` (monotonic)."""

    started: float
    seconds: float = tutorial.DEADLINE_S

    @property
    def at(self) -> float:
        return self.started + self.seconds

    def budget(self, timeout: float) -> float:
        """``timeout`` clipped to what is left of the demo's deadline."""
        return max(0.0, min(timeout, self.at - time.monotonic()))

    def overdue(self) -> str:
        return (
            f" (the demo's {self.seconds:g}s deadline cut this wait short)"
            if time.monotonic() >= self.at - 0.5
            else ""
        )


async def poll(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    timeout: float,
    failure: Callable[[T | None], str],
    interval: float = tutorial.POLL_S,
) -> T:
    """``probe()`` every ``interval`` until ``done``; ``DemoFailure(failure(last))`` at the
    deadline. (``interval`` is a polling period, never a synchronisation sleep.)"""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = await probe()
        if done(last):
            return last
        if time.monotonic() >= deadline:
            raise outcome.DemoFailure(failure(last))
        await asyncio.sleep(min(interval, max(0.0, deadline - time.monotonic())))
