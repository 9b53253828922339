"""watcher: the only service that reads the platform in bulk.

It owns the observations (``sluice_workloads`` KV bucket, written through
``observing.Watcher.record``) and publishes ``revision_detected`` events. At start it declares
what it writes; the platform informers that feed ``record`` attach in ``setup``.
"""

from __future__ import annotations

from libs import lifecycle, settings, streams


class Settings(settings.ServiceSettings, frozen=True, kw_only=True):
    pass


async def setup(rt: lifecycle.Runtime, cfg: Settings) -> None:
    await streams.declare(
        rt.js,
        streams=(streams.EVENTS,),
        buckets=(streams.WORKLOADS,),
        timeout_s=cfg.nats_request_timeout_s,
    )
