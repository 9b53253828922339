"""The podinfo-like HTTP app that serves one simulated container (aiohttp).

Endpoints (podinfo's, answering JSON):

=====================  ==========================================================
``GET /``              runtime info (podinfo answers JSON to API clients)
``GET /api/info``      the same info: hostname, version (image tag), revision, color, ...
``GET /version``       ``{"commit", "version"}``
``GET /healthz``       200 ``{"status": "OK"}``; 503 with ``--unhealthy``
``GET /readyz``        200 once ready (at start), 503 before and with ``SANDBOX_NEVER_READY``
``POST /readyz/enable``  / ``/readyz/disable``: flip readiness (202), as podinfo
``GET /status/{code}`` answers that code
``GET /delay/{n}``     sleeps n seconds (bounded by ``max_delay_s``)
``GET /env``           the container's environment as ``["K=V", ...]``
``GET /headers``       the request headers
``POST /echo``         echoes the body
``GET /metrics``       Prometheus text: ``http_requests_total{method,path,status}``
=====================  ==========================================================

The app logs a JSON line when it starts listening and one per request except the probes and
``/metrics`` (``PodApp.log_lines``, a ``logs.LogBuffer``): what ``kubectl logs`` prints.

Fault injection (``SANDBOX_LATENCY_MS``, ``--random-delay``, ``SANDBOX_ERROR_RATE``,
``--random-error``, in that order) applies to every path except the probes (``/healthz``,
``/readyz...``) and ``/metrics``, like podinfo's own fault-injection exclusions. (podinfo's
``--random-error`` middleware also hits the probes; a kubelet's failureThreshold of 3 hides that
in a real cluster, so the sandbox leaves probes alone instead.)
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import platform
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from sandbox.app import config as app_config
from sandbox.app import logs

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

PODINFO_ERROR_CODES = (500, 400, 409)  # podinfo's --random-error picks one of these


def _exempt(path: str) -> bool:
    return path in ("/healthz", "/metrics") or path.startswith("/readyz")


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(data, indent=2),
        status=status,
        content_type="application/json",
        headers={"X-Content-Type-Options": "nosniff"},
    )


class PodApp:
    """One container's app. ``start`` may be called once per port; ``stop`` closes them all."""

    def __init__(
        self,
        container: Mapping[str, Any],
        *,
        hostname: str = "podinfo",
        rng: random.Random | None = None,
        max_delay_s: float = 30.0,
        shutdown_timeout_s: float = 1.0,
    ) -> None:
        self.config = app_config.parse_container(container, hostname=hostname)
        self.ready = not self.config.never_ready
        self._rng = rng or random.Random()
        self._max_delay_s = max_delay_s
        self._shutdown_timeout_s = shutdown_timeout_s
        self._runner: web.AppRunner | None = None
        self._sites: list[web.TCPSite] = []
        self.addresses: list[tuple[str, int]] = []
        self.requests: collections.Counter[tuple[str, str, int]] = collections.Counter()
        self.log_lines = logs.LogBuffer()

    # ---------------------------------------------------------------- lifecycle

    def _build(self) -> web.Application:
        app = web.Application(middlewares=[self._count, self._faults])
        app.router.add_get("/", self._info)
        app.router.add_get("/api/info", self._info)
        app.router.add_get("/version", self._version)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_post("/readyz/enable", self._ready_enable)
        app.router.add_post("/readyz/disable", self._ready_disable)
        app.router.add_route("*", "/status/{code}", self._status)
        app.router.add_get("/delay/{seconds}", self._delay)
        app.router.add_get("/env", self._env)
        app.router.add_get("/headers", self._headers)
        app.router.add_post("/echo", self._echo)
        app.router.add_get("/metrics", self._metrics)
        return app

    async def start(self, host: str, port: int) -> None:
        """Listen on ``host:port`` (raises ``OSError`` if the address is taken)."""
        if self._runner is None:
            runner = web.AppRunner(
                self._build(), access_log=None, shutdown_timeout=self._shutdown_timeout_s
            )
            await runner.setup()
            self._runner = runner
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        await site.start()
        self._sites.append(site)
        self.log_lines.closed = False
        self.log_lines.write(
            "Starting HTTP Server", version=self.config.version, addr=f"{host}:{port}"
        )
        self.addresses.append((host, port))
        log.debug(
            "pod app %s (%s) listening on %s:%s",
            self.config.hostname,
            self.config.image,
            host,
            port,
        )

    async def stop(self) -> None:
        """Stop listening and drop in-flight requests after ``shutdown_timeout_s``. Idempotent."""
        runner, self._runner = self._runner, None
        self._sites.clear()
        self.log_lines.close()
        self.addresses.clear()
        if runner is None:
            return
        server = runner.server
        try:
            await runner.cleanup()
            # a connection the listener accepted just before it closed is made only after
            # the shutdown above cleared its list: give it its turn, then close it below
            for _ in range(3):
                await asyncio.sleep(0)
        finally:
            # also when cancelled while waiting for in-flight requests (a pod deleted, then
            # the cluster stopped): no socket is left to the garbage collector
            for handler in server.connections if server is not None else ():
                handler.force_close()

    # ---------------------------------------------------------------- middlewares

    @web.middleware
    async def _count(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route.resource
        path = route.canonical if route is not None else "unmatched"
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            self.requests[(request.method, path, exc.status)] += 1
            self._log_request(request, exc.status)
            raise
        self.requests[(request.method, path, response.status)] += 1
        self._log_request(request, response.status)
        return response

    def _log_request(self, request: web.Request, code: int) -> None:
        if _exempt(request.path):
            return
        self.log_lines.write(
            "request",
            method=request.method,
            uri=request.path_qs,
            status=code,
            remote=request.remote or "",
            user_agent=request.headers.get("User-Agent", ""),
        )

    @web.middleware
    async def _faults(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if _exempt(request.path):
            return await handler(request)
        cfg = self.config
        delay = cfg.latency_s
        if cfg.random_delay and cfg.random_delay_max > cfg.random_delay_min:
            units = self._rng.randrange(cfg.random_delay_min, cfg.random_delay_max)
            delay += units * cfg.random_delay_unit_s
        if delay > 0:
            await asyncio.sleep(delay)
        if cfg.error_rate > 0 and self._rng.random() < cfg.error_rate:
            return _json({"code": 500, "message": "sandbox injected error"}, status=500)
        if cfg.random_error and self._rng.randrange(3) == 0:
            code = self._rng.choice(PODINFO_ERROR_CODES)
            return _json({"code": code, "message": "random error occurred"}, status=code)
        return await handler(request)

    # ---------------------------------------------------------------- handlers

    def info(self) -> dict[str, str]:
        cfg = self.config
        return {
            "hostname": cfg.hostname,
            "version": cfg.version,
            "revision": cfg.revision,
            "color": cfg.color,
            "logo": "",
            "message": cfg.message,
            "goos": "linux",
            "goarch": platform.machine() or "amd64",
            "runtime": "sandbox-python" + platform.python_version(),
            "num_goroutine": str(len(asyncio.all_tasks())),
            "num_cpu": "1",
        }

    async def _info(self, request: web.Request) -> web.Response:
        return _json(self.info())

    async def _version(self, request: web.Request) -> web.Response:
        return _json({"commit": self.config.revision, "version": self.config.version})

    async def _healthz(self, request: web.Request) -> web.Response:
        if self.config.unhealthy:
            return web.Response(status=503)
        return _json({"status": "OK"})

    async def _readyz(self, request: web.Request) -> web.Response:
        if not self.ready:
            return web.Response(status=503)
        return _json({"status": "OK"})

    async def _ready_enable(self, request: web.Request) -> web.Response:
        if not self.config.never_ready:
            self.ready = True
        return web.Response(status=202)

    async def _ready_disable(self, request: web.Request) -> web.Response:
        self.ready = False
        return web.Response(status=202)

    async def _status(self, request: web.Request) -> web.Response:
        try:
            code = int(request.match_info["code"])
        except ValueError:
            return _json({"code": 400, "message": "status code must be an integer"}, status=400)
        if not 200 <= code <= 599:
            return _json({"code": 400, "message": "status code must be in [200, 599]"}, status=400)
        return _json({"status": code}, status=code)

    async def _delay(self, request: web.Request) -> web.Response:
        try:
            seconds = int(request.match_info["seconds"])
        except ValueError:
            return _json({"code": 400, "message": "delay must be an integer"}, status=400)
        await asyncio.sleep(max(0.0, min(float(seconds), self._max_delay_s)))
        return _json({"delay": seconds})

    async def _env(self, request: web.Request) -> web.Response:
        return _json([f"{k}={v}" for k, v in self.config.env])

    async def _headers(self, request: web.Request) -> web.Response:
        headers: dict[str, list[str]] = {}
        for key, value in request.headers.items():
            headers.setdefault(key, []).append(value)
        return _json(headers)

    async def _echo(self, request: web.Request) -> web.Response:
        body = await request.read()
        return web.Response(body=body, status=202, content_type=request.content_type)

    async def _metrics(self, request: web.Request) -> web.Response:
        lines = [
            "# HELP http_requests_total The total number of HTTP requests.",
            "# TYPE http_requests_total counter",
        ]
        for (method, path, status), count in sorted(self.requests.items()):
            lines.append(
                f'http_requests_total{{method="{method}",path="{path}",status="{status}"}} {count}'
            )
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")
