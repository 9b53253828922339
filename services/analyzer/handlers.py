"""Message handlers of the analyzer.

Hints only wake things up: a ``revision_detected`` event schedules a tick for its canary now;
every decision is re-derived from current state when the tick runs, so a lost hint never loses
a rollout.
"""

from __future__ import annotations

import logging
from typing import Any

from libs import bus, consuming, lifecycle, logs, messages

log = logging.getLogger(__name__)

MAX_REPORTED_ERROR_CHARS = 300


class Analyzer:
    def __init__(self, rt: lifecycle.Runtime) -> None:
        self.rt = rt

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
        # The canary state machine runs here once canaries are loaded from the platform;
        # until then a tick is acknowledged and nothing is decided.
        log.info(
            "analysis step due for %s.%s",
            tick.canary.name,
            tick.canary.namespace,
            extra={"canary": f"{tick.canary.namespace}/{tick.canary.name}"},
        )
        return None

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
