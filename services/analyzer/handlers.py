"""Message handlers of the analyzer.

Hints only wake things up: a ``revision_detected`` event schedules a tick for its canary now;
every decision is re-derived from current state when the tick runs, so a lost hint never loses
a rollout.
"""

from __future__ import annotations

import logging

from libs import bus, lifecycle, messages

log = logging.getLogger(__name__)


class Analyzer:
    def __init__(self, rt: lifecycle.Runtime) -> None:
        self.rt = rt

    async def schedule(self, canary: messages.CanaryRef, interval_s: float = 0.0) -> None:
        """Put a tick for ``canary`` in the work queue (one pending tick per canary)."""
        tick = messages.Tick(canary=canary, interval_s=interval_s)
        await bus.publish(self.rt, messages.tick_subject(canary.namespace, canary.name), tick)

    async def on_hint(self, event: messages.Event) -> bus.Later | None:
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

    async def on_tick(self, tick: messages.Tick) -> bus.Later | None:
        # The canary state machine runs here once canaries are loaded from the platform;
        # until then a tick is acknowledged and nothing is decided.
        log.info(
            "analysis step due for %s.%s",
            tick.canary.name,
            tick.canary.namespace,
            extra={"canary": f"{tick.canary.namespace}/{tick.canary.name}"},
        )
        return None
