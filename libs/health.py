"""The HTTP side every service has: ``/healthz``, ``/readyz`` and ``/metrics``.

``/healthz`` answers 200 while the process runs its loops (503 once the NATS connection is
closed for good, which also stops the service); ``/readyz`` answers 200 only while
NATS is connected and start-up finished (so a Kubernetes Service stops sending to a replica
that lost the bus) and every extra check a service added (``checks``: each returns None when
fine, else the reason, e.g. the watcher's "Kubernetes: ... unreachable"); ``/metrics`` is the
service's Prometheus registry.
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
    nats_closed: Callable[[], bool] = lambda: False  # closed for good: no reconnect comes
    checks: list[Callable[[], str | None]] = dataclasses.field(default_factory=list)

    def ready(self) -> tuple[bool, str]:
        if self.stopping:
            return False, "shutting down"
        if not self.started:
            return False, "starting"
        if not self.nats_connected():
            return False, "NATS not connected"
        for check in self.checks:
            reason = check()
            if reason is not None:
                return False, reason
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
        # a probe or scrape in flight must not hold up shutdown for aiohttp's default 60s
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
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
        if self.state.started and not self.state.stopping and self.state.nats_closed():
            return web.json_response({"status": "NATS connection closed"}, status=503)
        return web.json_response({"status": "ok"})

    async def _readyz(self, _: web.Request) -> web.Response:
        ready, reason = self.state.ready()
        return web.json_response({"ready": ready, "reason": reason}, status=200 if ready else 503)

    async def _metrics(self, _: web.Request) -> web.Response:
        self.metrics.nats_connected.set(1 if self.state.nats_connected() else 0)
        body, content_type = metrics.exposition(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": content_type})
