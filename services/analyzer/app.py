"""analyzer: the only service that decides and writes canary state.

Pulls ``Tick`` messages from the ``SLUICE_TICKS`` work queue (shared by every replica) and
wake-up hints (``revision_detected`` events) from ``SLUICE_EVENTS``.
"""

from __future__ import annotations

from libs import consuming, lifecycle, messages, settings, streams
from services.analyzer import handlers


class Settings(settings.ServiceSettings, frozen=True, kw_only=True):
    pass


async def setup(rt: lifecycle.Runtime, cfg: Settings) -> None:
    await streams.declare(
        rt.js,
        streams=(streams.EVENTS, streams.TICKS, streams.DEAD),
        consumers=(streams.ANALYZER_TICKS, streams.ANALYZER_HINTS),
        buckets=(streams.WORKLOADS,),
        timeout_s=cfg.nats_request_timeout_s,
    )
    analyzer = handlers.Analyzer(rt)
    rt.spawn(
        "ticks",
        consuming.consume(
            rt,
            streams.ANALYZER_TICKS,
            messages.TICK_DECODER,
            analyzer.on_tick,
            on_dead=analyzer.on_dead_tick,
        ),
    )
    rt.spawn(
        "hints",
        consuming.consume(
            rt,
            streams.ANALYZER_HINTS,
            messages.EVENT_DECODER,
            analyzer.on_hint,
            on_dead=analyzer.on_dead_hint,
        ),
    )
