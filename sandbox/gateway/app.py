"""``Gateway``: apisix-ingress-controller + APISIX in one aiohttp process.

Two listeners, like APISIX's ports: the data plane (APISIX's :9080) and the export server
(APISIX's :9091) serving ``GET /apisix/prometheus/metrics``, plus the sandbox's own
``GET /sandbox/routes`` (the current route table as JSON) and ``GET /sandbox/healthz``.

    async with Gateway(kube_url=cluster.url) as gw:
        await gw.wait_synced(lambda t: t.get("test_podinfo_rule") is not None)
        ... requests to gw.url, scrape gw.metrics_url ...
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Callable
from types import TracebackType

from aiohttp import web

from sandbox import kubewatch
from sandbox.gateway import exporting, proxying, syncing, translation

METRICS_PATH = "/apisix/prometheus/metrics"
ROUTES_PATH = "/sandbox/routes"


@dataclasses.dataclass(frozen=True)
class GatewaySettings:
    proxy: proxying.ProxySettings = dataclasses.field(default_factory=proxying.ProxySettings)
    watch: kubewatch.WatchSettings = dataclasses.field(default_factory=kubewatch.WatchSettings)
    # Seconds in-flight requests get to finish when the gateway stops.
    shutdown_timeout: float = 5.0
    # Seconds ``wait_synced`` waits when not told otherwise.
    sync_timeout: float = 10.0


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket; port 0 picks a free one (read it back from ``getsockname``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class Gateway:
    def __init__(
        self,
        kube_url: str,
        host: str = "127.0.0.1",
        port: int = 0,
        metrics_port: int = 0,
        settings: GatewaySettings | None = None,
        hostname: str | None = None,
    ) -> None:
        self.settings = settings or GatewaySettings()
        self.host, self._port, self._metrics_port = host, port, metrics_port
        self.metrics = exporting.ApisixMetrics(hostname)
        self.data_plane = proxying.DataPlane(self.metrics, self.settings.proxy)
        self.sync = syncing.RouteSync(kube_url, self.data_plane.set_table, self.settings.watch)
        self._runners: list[web.BaseRunner] = []
        self.url = ""
        self.metrics_url = ""  # base URL of the export listener (metrics at + METRICS_PATH)

    @property
    def table(self) -> translation.RouteTable:
        return self.sync.table

    @property
    def metrics_endpoint(self) -> str:
        return self.metrics_url + METRICS_PATH

    @property
    def metrics_target(self) -> str:
        """``host:port`` of the export listener, as a Prometheus scrape target."""
        return self.metrics_url.removeprefix("http://")

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        try:
            await self.data_plane.start()
            data_sock = listen(self.host, self._port)
            data_runner = web.ServerRunner(
                web.Server(self.data_plane.handle, access_log=None),
                shutdown_timeout=self.settings.shutdown_timeout,
            )
            await self._start_site(data_runner, data_sock)
            self.url = _url(data_sock)

            export = web.Application()
            export.router.add_get(METRICS_PATH, self._metrics_handler)
            export.router.add_get(ROUTES_PATH, self._routes_handler)
            export.router.add_get("/sandbox/healthz", self._health_handler)
            metrics_sock = listen(self.host, self._metrics_port)
            await self._start_site(
                web.AppRunner(
                    export, access_log=None, shutdown_timeout=self.settings.shutdown_timeout
                ),
                metrics_sock,
            )
            self.metrics_url = _url(metrics_sock)
            await self.sync.start()
        except BaseException:
            await self.stop()
            raise

    async def _start_site(self, runner: web.BaseRunner, sock: socket.socket) -> None:
        self._runners.append(runner)
        await runner.setup()
        await web.SockSite(runner, sock).start()

    async def stop(self) -> None:
        await self.sync.stop()
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()
        await self.data_plane.stop()

    async def wait_synced(
        self,
        predicate: Callable[[translation.RouteTable], bool] | None = None,
        timeout: float | None = None,
    ) -> translation.RouteTable:
        """Wait for the first complete sync, or until the route table satisfies ``predicate``."""
        return await self.sync.wait_for(
            predicate or (lambda _table: True),
            self.settings.sync_timeout if timeout is None else timeout,
        )

    async def wait_weights(
        self, route: str, weights: dict[str, int], timeout: float | None = None
    ) -> translation.Route:
        """Wait until route ``route`` exists and sends ``weights`` (service name → weight)."""

        def ready(table: translation.RouteTable) -> bool:
            found = table.get(route)
            return found is not None and found.weights() == weights

        table = await self.wait_synced(ready, timeout)
        found = table.get(route)
        assert found is not None
        return found

    async def _metrics_handler(self, _request: web.Request) -> web.Response:
        return web.Response(
            body=self.metrics.exposition(), headers={"Content-Type": exporting.CONTENT_TYPE}
        )

    async def _routes_handler(self, _request: web.Request) -> web.Response:
        body = self.table.to_json() | {
            "synced": self.sync.synced,
            "generation": self.sync.generation,
        }
        return web.json_response(body)

    async def _health_handler(self, _request: web.Request) -> web.Response:
        return web.json_response(
            {"synced": self.sync.synced}, status=200 if self.sync.synced else 503
        )
