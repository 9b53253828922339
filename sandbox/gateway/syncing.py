"""Route sync: the ingress controller's loop, feeding the pure translation from the cluster.

List + watch ApisixRoutes, ApisixUpstreams and ApisixPluginConfigs (``apisix.apache.org/v2``),
Services, Endpoints and Pods (their labels select ApisixUpstream subsets) across all
namespaces over HTTP (``sandbox.kubewatch``); after any change, once all have been listed,
translate everything again (coalesced: one translation per event-loop turn however many
events arrived) and hand the new ``RouteTable`` to the data plane. Waiters in
``wait_for`` are woken after every new table. Each ApisixRoute's outcome is then written to its
status (``statuses``), as the controller does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from sandbox import kubewatch
from sandbox.gateway import statuses, translation

logger = logging.getLogger(__name__)

RESOURCES = (
    kubewatch.APISIX_ROUTES,
    kubewatch.SERVICES,
    kubewatch.ENDPOINTS,
    kubewatch.APISIX_UPSTREAMS,  # Service settings and external upstreams
    kubewatch.APISIX_PLUGIN_CONFIGS,  # plugin_config_name
    kubewatch.PODS,  # pod labels, for ApisixUpstream subsets
)


class RouteSync:
    def __init__(
        self,
        kube_url: str,
        on_table: Callable[[translation.RouteTable], None],
        settings: kubewatch.WatchSettings | None = None,
    ) -> None:
        self._on_table = on_table
        self.watcher = kubewatch.Watcher(kube_url, RESOURCES, self._changed, settings)
        self.table = translation.RouteTable()
        self.generation = 0  # bumped with every new table
        self._new_table = asyncio.Event()  # set (and replaced) whenever a new table is in place
        self._scheduled = False
        self.status_writer = statuses.StatusWriter(
            kube_url, lambda: self.table, lambda: self.watcher.cache(kubewatch.APISIX_ROUTES)
        )

    async def start(self) -> None:
        await self.status_writer.start()
        await self.watcher.start()

    async def stop(self) -> None:
        await self.watcher.stop()
        await self.status_writer.stop()

    @property
    def synced(self) -> bool:
        return self.generation > 0

    def _changed(self, _informer: kubewatch.Informer) -> None:
        if not self.watcher.synced() or self._scheduled:
            return
        self._scheduled = True
        asyncio.get_running_loop().call_soon(self._rebuild)

    def _rebuild(self) -> None:
        self._scheduled = False
        table = translation.translate(
            self.watcher.cache(kubewatch.APISIX_ROUTES).values(),
            self.watcher.cache(kubewatch.SERVICES),
            self.watcher.cache(kubewatch.ENDPOINTS),
            apisix_upstreams=self.watcher.cache(kubewatch.APISIX_UPSTREAMS),
            plugin_configs=self.watcher.cache(kubewatch.APISIX_PLUGIN_CONFIGS),
            pods=self.watcher.cache(kubewatch.PODS),
        )
        for error in set(table.errors) - set(self.table.errors):
            logger.warning("ApisixRoute not translated: %s", error)
        self.table = table
        self.generation += 1
        self._on_table(table)
        self.status_writer.changed()
        event, self._new_table = self._new_table, asyncio.Event()
        event.set()

    async def wait_for(
        self, predicate: Callable[[translation.RouteTable], bool], timeout: float
    ) -> translation.RouteTable:
        """Wait until a table from a completed sync satisfies ``predicate``; ``TimeoutError``
        otherwise (its message shows the last table's routes and weights)."""
        try:
            async with asyncio.timeout(timeout):
                while not (self.synced and predicate(self.table)):
                    await self._new_table.wait()
        except TimeoutError:
            summary = {r.name: r.weights() for r in self.table.routes}
            raise TimeoutError(
                f"route table did not reach the expected state within {timeout}s; "
                f"synced={self.synced}, routes={summary}, errors={list(self.table.errors)}"
            ) from None
        return self.table
