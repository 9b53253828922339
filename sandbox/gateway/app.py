"""``Gateway``: apisix-ingress-controller + APISIX in one aiohttp process.

Two listeners, like APISIX's ports: the data plane (APISIX's :9080) and the export server
(APISIX's :9091) serving ``GET /apisix/prometheus/metrics``, plus the sandbox's own
``GET /sandbox/routes`` (the current route table as JSON), ``GET /sandbox/healthz`` and the
``metrics-gone`` fault switch at ``/sandbox/faults`` (``sandbox.faults``: while it is on, the
metrics path answers 503, as if APISIX's exporter were gone).

    async with Gateway(kube_url=cluster.url) as gw:
        await gw.wait_synced(lambda t: t.get("test_podinfo_rule") is not None)
        ... requests to gw.url, scrape gw.metrics_url ...

Standalone (APISIX without Kubernetes): ``kube_url=None`` syncs nothing, and ``admin_key``
opens a third listener, APISIX's Admin API (:9180) at ``gw.admin_url`` (``admin``). Routes set
there join the same route table as the synced ones (the data plane serves both, and
``/sandbox/routes`` shows both), at once after each write.

    async with Gateway(None, admin_key="secret") as gw:
        ... PUT gw.admin_url + "/apisix/admin/routes/1" with X-API-KEY: secret ...
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

from aiohttp import web

from sandbox import faults, kubewatch, serving
from sandbox.gateway import (
    admin,
    admin_store,
    admin_translation,
    exporting,
    proxying,
    syncing,
    translation,
)

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


class Gateway(serving.Component):
    def __init__(
        self,
        kube_url: str | None,
        host: str = "127.0.0.1",
        port: int = 0,
        metrics_port: int = 0,
        settings: GatewaySettings | None = None,
        hostname: str | None = None,
        admin_key: str | None = None,
        admin_port: int = 0,
    ) -> None:
        self.settings = settings or GatewaySettings()
        self.host, self._port, self._metrics_port = host, port, metrics_port
        self._admin_port = admin_port
        self.metrics = exporting.ApisixMetrics(hostname)
        self.data_plane = proxying.DataPlane(self.metrics, self.settings.proxy)
        self.sync = (
            syncing.RouteSync(kube_url, self._kube_table, self.settings.watch)
            if kube_url is not None
            else None
        )
        self.store = admin_store.Store(self._admin_changed)
        self.admin = admin.AdminApi(self.store, admin_key) if admin_key is not None else None
        self._kube_routes = translation.RouteTable()
        self._admin_routes: tuple[translation.Route, ...] = ()
        self._table = translation.RouteTable()
        self._changed = asyncio.Event()  # set (and replaced) whenever the table changes
        self._sites = serving.Sites()
        self.faults = faults.Switches()
        self.url = ""
        self.metrics_url = ""  # base URL of the export listener (metrics at + METRICS_PATH)
        self.admin_url = ""  # base URL of the Admin API listener (paths under admin.PREFIX)

    @property
    def table(self) -> translation.RouteTable:
        """What the data plane serves: the synced routes, then the Admin API's."""
        return self._table

    @property
    def synced(self) -> bool:
        return self.sync is None or self.sync.synced

    def _kube_table(self, table: translation.RouteTable) -> None:
        self._kube_routes = table
        self._publish()

    def _admin_changed(self) -> None:
        self._admin_routes = admin_translation.routes(
            self.store.values(admin_store.ROUTES), self.store.upstream
        )
        self._publish()

    def _publish(self) -> None:
        kube = self._kube_routes
        self._table = translation.RouteTable((*kube.routes, *self._admin_routes), kube.errors)
        self.data_plane.set_table(self._table)
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    @property
    def metrics_endpoint(self) -> str:
        return self.metrics_url + METRICS_PATH

    @property
    def metrics_target(self) -> str:
        """``host:port`` of the export listener, as a Prometheus scrape target."""
        return self.metrics_url.removeprefix("http://")

    async def start(self) -> None:
        try:
            await self.data_plane.start()
            data_runner = web.ServerRunner(
                web.Server(self.data_plane.handle, access_log=None),
                shutdown_timeout=self.settings.shutdown_timeout,
            )
            self.url = await self._sites.add(data_runner, self.host, self._port)

            export = web.Application()
            export.router.add_get(METRICS_PATH, self._metrics_handler)
            export.router.add_get(ROUTES_PATH, self._routes_handler)
            export.router.add_get("/sandbox/healthz", self._health_handler)
            faults.add_routes(export, self.faults, faults.GATEWAY_FAULTS)
            export_runner = web.AppRunner(
                export, access_log=None, shutdown_timeout=self.settings.shutdown_timeout
            )
            self.metrics_url = await self._sites.add(export_runner, self.host, self._metrics_port)
            if self.admin is not None:
                admin_runner = web.AppRunner(
                    self.admin.application(),
                    access_log=None,
                    shutdown_timeout=self.settings.shutdown_timeout,
                )
                self.admin_url = await self._sites.add(admin_runner, self.host, self._admin_port)
            if self.sync is not None:
                await self.sync.start()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        if self.sync is not None:
            await self.sync.stop()
        await self._sites.close()
        await self.data_plane.stop()

    async def wait_synced(
        self,
        predicate: Callable[[translation.RouteTable], bool] | None = None,
        timeout: float | None = None,
    ) -> translation.RouteTable:
        """Wait for the first complete sync, or until the route table satisfies ``predicate``."""
        check = predicate or (lambda _table: True)
        seconds = self.settings.sync_timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(seconds):
                while not (self.synced and check(self._table)):
                    await self._changed.wait()
        except TimeoutError:
            summary = {r.key: r.weights() for r in self._table.routes}
            raise TimeoutError(
                f"route table did not reach the expected state within {seconds}s; "
                f"synced={self.synced}, routes={summary}, errors={list(self._table.errors)}"
            ) from None
        return self._table

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
        if self.faults.active("metrics-gone") > 0:
            return web.Response(status=503, text="metrics unavailable (sandbox fault)\n")
        return web.Response(
            body=self.metrics.exposition(), headers={"Content-Type": exporting.CONTENT_TYPE}
        )

    async def _routes_handler(self, _request: web.Request) -> web.Response:
        body = self.table.to_json() | {
            "synced": self.synced,
            "generation": self.sync.generation if self.sync is not None else 0,
            "admin_revision": self.store.revision,
        }
        return web.json_response(body)

    async def _health_handler(self, _request: web.Request) -> web.Response:
        return web.json_response({"synced": self.synced}, status=200 if self.synced else 503)
