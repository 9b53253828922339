"""The HTTP side every service has: ``/healthz``, ``/readyz`` and ``/metrics``.

``/healthz`` answers 200 while the process runs its loops; ``/readyz`` answers 200 only while
NATS is connected and start-up finished (so a Kubernetes Service stops sending to a replica
that lost the bus); ``/metrics`` is the service's Prometheus registry.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from aiohttp import web

from libs import metrics

log = logging.getLogger(__name__)


@dataclasses.dataclass
class HealthState:
    started: bool = False
    stopping: bool = False
    nats_connected: Callable[[], bool] = lambda: False

    def ready(self) -> tuple[bool, str]:
        if self.stopping:
            return False, "shutting down"
        if not self.started:
            return False, "starting"
        if not self.nats_connected():
            return False, "NATS not connected"
        return True, "ok"


class HealthServer:
    def __init__(self, state: HealthState, bus_metrics: metrics.BusMetrics) -> None:
        self.state = state
        self.metrics = bus_metrics
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self, host: str, port: int) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        log.info("health server listening on http://%s:%d", host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, _: web.Request) -> web.Response:
        ready, reason = self.state.ready()
        return web.json_response({"ready": ready, "reason": reason}, status=200 if ready else 503)

    async def _metrics(self, _: web.Request) -> web.Response:
        self.metrics.nats_connected.set(1 if self.state.nats_connected() else 0)
        body, content_type = metrics.exposition(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": content_type})
