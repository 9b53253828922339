"""notifier: the only service that talks to chat tools and writes Kubernetes Events.

Reads ``SLUICE_EVENTS`` through the durable consumer ``notifier`` (so nothing is missed while
it is down, and replicas share the work) and fans each event out to the channels whose
severity routing admits it.
"""

from __future__ import annotations

from libs import consuming, lifecycle, messages, settings, streams
from services.notifier import handlers


class Settings(settings.ServiceSettings, frozen=True, kw_only=True):
    pass


async def setup(rt: lifecycle.Runtime, cfg: Settings) -> None:
    await streams.declare(
        rt.js,
        streams=(streams.EVENTS, streams.DEAD),
        consumers=(streams.NOTIFIER_EVENTS,),
        timeout_s=cfg.nats_request_timeout_s,
    )
    notifier = handlers.Notifier(rt)
    rt.spawn(
        "events",
        consuming.consume(
            rt,
            streams.NOTIFIER_EVENTS,
            messages.EVENT_DECODER,
            notifier.on_event,
        ),
    )
