"""Message handlers of the analyzer.

Hints only wake things up: a ``revision_detected`` event schedules a tick for its canary now;
every decision is re-derived from current state when the tick runs (``driving``), so a lost
hint never loses a rollout. A tick takes one step of the canary and re-schedules itself for the
canary's analysis interval; a tick for a canary that no longer exists ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from libs import bus, consuming, errors, lifecycle, logs, messages
from libs.model import durations
from services.analyzer import driving, recording

log = logging.getLogger(__name__)

MAX_REPORTED_ERROR_CHARS = 300
INVALID_RETRY_S = 30.0  # an invalid Canary is looked at again after this
CONFLICT_RETRY_S = 0.2  # another replica committed first: take the step again from its state


class CanaryLocks:
    """One step of a canary at a time in this replica, and control requests written between
    steps: a tick scheduled while another is under way (a control request, a new revision)
    waits for it instead of racing it to the status write. (Across replicas the status's
    compare-and-set still decides.)"""

    def __init__(self) -> None:
        self._held: dict[tuple[str, str], tuple[asyncio.Lock, int]] = {}

    def __len__(self) -> int:
        return len(self._held)

    @contextlib.asynccontextmanager
    async def hold(
        self, ref: messages.CanaryRef, timeout_s: float | None = None
    ) -> AsyncIterator[bool]:
        """Hold the canary's lock; with ``timeout_s``, give up waiting then (yields False)."""
        key = (ref.namespace, ref.name)
        lock, users = self._held.get(key, (asyncio.Lock(), 0))
        self._held[key] = (lock, users + 1)
        acquired = False
        try:
            if timeout_s is None:
                await lock.acquire()
                acquired = True
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lock.acquire(), timeout_s)
                    acquired = True
            yield acquired
        finally:
            if acquired:
                lock.release()
            _, left = self._held[key]
            if left <= 1:
                del self._held[key]
            else:
                self._held[key] = (lock, left - 1)


def _next(before: consuming.Delivery | None, now: consuming.Delivery | None) -> bool:
    """``now`` is the delivery right after ``before`` of the same stored tick (not one another
    replica took in between, nor a new tick)."""
    if before is None or now is None:
        return before is None and now is None  # handled outside a consumer (tests, tools)
    return now.stream_seq == before.stream_seq and now.num_delivered == before.num_delivered + 1


class Analyzer:
    def __init__(
        self,
        rt: lifecycle.Runtime,
        driver: driving.Driver | None = None,
        min_interval_s: float = 10.0,
        recorder: recording.Recorder | None = None,
        locks: CanaryLocks | None = None,
    ) -> None:
        self.rt = rt
        self.driver = driver
        self.min_interval_s = min_interval_s
        self.recorder = recorder
        self.locks = locks or CanaryLocks()
        # each tick this replica re-scheduled: when it is due (ms) and its delivery then. How
        # late it starts is measured when its very next delivery comes back here (another
        # replica may take it; then the entry is stale and replaced)
        self._due: dict[tuple[str, str], tuple[int, consuming.Delivery | None]] = {}

    async def schedule(self, canary: messages.CanaryRef, interval_s: float = 0.0) -> None:
        """Put a tick for ``canary`` in the work queue (one pending tick per canary)."""
        tick = messages.Tick(canary=canary, interval_s=interval_s)
        await bus.publish(self.rt, messages.tick_subject(canary.namespace, canary.name), tick)

    async def on_hint(self, event: messages.Event) -> consuming.Later | None:
        match event:
            case messages.RevisionDetected(canary=canary, revision=revision):
                log.info(
                    "revision %s detected for %s.%s; scheduling analysis",
                    revision,
                    canary.name,
                    canary.namespace,
                    extra={"canary": f"{canary.namespace}/{canary.name}"},
                )
                await self.schedule(canary)
            case _:
                log.debug("ignoring %s hint", messages.event_kind(event))
        return None

    async def on_tick(self, tick: messages.Tick) -> consuming.Later | None:
        key = (tick.canary.namespace, tick.canary.name)
        delivery = consuming.current_delivery()
        due = self._due.pop(key, None)
        if due is not None and self.recorder is not None and _next(due[1], delivery):
            self.recorder.tick_lateness.observe(max(messages.now_ms() - due[0], 0) / 1000)
        later = await self._step(tick)
        if later is not None:
            self._due[key] = (messages.now_ms() + int(later.delay_s * 1000), delivery)
        return later

    async def _step(self, tick: messages.Tick) -> consuming.Later | None:
        ref = tick.canary
        ctx = {"canary": f"{ref.namespace}/{ref.name}"}
        log.info("analysis step due for %s.%s", ref.name, ref.namespace, extra=ctx)
        if self.driver is None:  # no Kubernetes: nothing to analyse in this mode yet
            return None
        try:
            async with self.locks.hold(ref):
                canary = await self.driver.take_step(ref, messages.now_ms())
        except driving.CommandRefused as exc:
            # told once; the step is taken again later, so fixed objects resume the analysis
            await self.driver.refused(ref, logs.clip(str(exc), MAX_REPORTED_ERROR_CHARS))
            return consuming.Later(INVALID_RETRY_S)
        except driving.InvalidCanary:
            # told once per version of the Canary; a fixed Canary is analysed again
            return consuming.Later(INVALID_RETRY_S)
        except errors.Conflict as exc:
            log.info(
                "step of %s.%s lost a race (%s); taking it again",
                ref.name,
                ref.namespace,
                exc,
                extra=ctx,
            )
            return consuming.Later(CONFLICT_RETRY_S)
        if canary is None:
            log.info(
                "%s.%s does not exist any more; its ticks end", ref.name, ref.namespace, extra=ctx
            )
            if self.recorder is not None:
                self.recorder.forget(ref)
            return None
        if self.recorder is not None:
            self.recorder.observe(canary)
        analysis = canary.get_analysis()
        interval = durations.interval_seconds(
            analysis.interval, default=60.0, minimum=self.min_interval_s
        )
        return consuming.Later(interval)

    async def on_dead_tick(self, letter: consuming.DeadLetter[messages.Tick]) -> None:
        """A tick was given up on: say so on the canary (a warning people and alerts see)."""
        if letter.value is not None:
            await self._report_dead(letter.value.canary, letter, "Analysis of {canary} stopped")

    async def on_dead_hint(self, letter: consuming.DeadLetter[messages.Event]) -> None:
        if letter.value is not None:
            await self._report_dead(
                letter.value.canary, letter, "A new revision of {canary} could not be scheduled"
            )

    async def _report_dead(
        self, canary: messages.CanaryRef, letter: consuming.DeadLetter[Any], what: str
    ) -> None:
        times = "once" if letter.deliveries <= 1 else f"{letter.deliveries} times"
        error = logs.clip(letter.error, MAX_REPORTED_ERROR_CHARS)
        event = messages.DeadLettered(
            canary=canary,
            target=canary.name,
            severity=messages.Severity.WARN,
            message=f"{what.format(canary=f'{canary.name}.{canary.namespace}')}: the message "
            f"failed {times} ({letter.reason}) and was moved to SLUICE_DEAD: {error}",
            subject=letter.subject,
            reason=letter.reason,
            error=error,
            deliveries=letter.deliveries,
        )
        await bus.publish_event(self.rt, event)
