"""What the Admin API router and workload controller share: the client, the canaries'
targets, the recorded routes, and the reads and writes both make."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from libs import errors, messages
from libs.adapters import apisix_admin
from libs.model import standalone
from services.traffic_shifter.admin import records, splitting

log = logging.getLogger(__name__)

Obj = dict[str, Any]
# The canary's route and upstreams (raises errors.NotFound for an unknown canary).
Targets = Callable[[messages.CanaryRef], Awaitable[standalone.ApisixTarget]]
# Add (True) or remove (False) the canary's finalizer in the state store; removing it from a
# deleted canary deletes the canary's state.
Finalizers = Callable[[messages.CanaryRef, bool], Awaitable[None]]


@dataclasses.dataclass(frozen=True)
class Context:
    api: apisix_admin.AdminApi
    targets: Targets
    records: records.RouteRecords
    finalizers: Finalizers

    async def target(self, ref: messages.CanaryRef) -> standalone.ApisixTarget:
        return await self.targets(ref)

    async def route(self, target: standalone.ApisixTarget) -> apisix_admin.Resource:
        try:
            return await self.api.get("routes", target.route_id)
        except errors.NotFound as exc:
            raise errors.NotFound(
                f"route {target.route_id} not found in APISIX (spec.route.id)"
            ) from exc

    async def upstream(self, upstream_id: str, field: str) -> apisix_admin.Resource:
        try:
            return await self.api.get("upstreams", upstream_id)
        except errors.NotFound as exc:
            raise errors.NotFound(f"upstream {upstream_id} not found in APISIX ({field})") from exc

    async def canary_nodes(self, target: standalone.ApisixTarget) -> Any:
        """The canary's nodes as APISIX writes them (hash or array form)."""
        if target.canary.id is None:
            return target.canary.node_weights()
        upstream = await self.upstream(target.canary.id, "spec.upstreams.canary.id")
        nodes = upstream.value.get("nodes")
        if not nodes:
            raise errors.Unsupported(
                f"upstream {target.canary.id} (spec.upstreams.canary.id) has no nodes (it "
                "uses service discovery): Sluice needs its nodes to mirror to or promote; "
                "give spec.upstreams.canary.nodes instead"
            )
        return nodes

    async def canary_first_node(self, target: standalone.ApisixTarget) -> str:
        node = splitting.first_node(await self.canary_nodes(target))
        if node is None:
            raise errors.Unsupported(
                "cannot mirror to the canary: it has no node (spec.upstreams.canary)"
            )
        return node

    async def write_plugins(
        self,
        route_id: str,
        before: apisix_admin.Resource,
        wanted: dict[str, Obj | None],
        original: Obj,
    ) -> Obj:
        """One PATCH bringing the route's owned plugins to ``wanted``, then a read-back that
        fails with ``Conflict`` when the route is not what the write should have made."""
        write = splitting.plugins_write(before.value, wanted, original)
        if write is None:
            return before.value
        path, body = write
        await self.api.patch("routes", route_id, body, path=path)
        after = await self.api.get("routes", route_id)
        wrong = splitting.applied(after.value, before.value, wanted)
        if wrong:
            raise errors.Conflict(
                f"route {route_id} changed while Sluice wrote it (modifiedIndex "
                f"{before.modified_index} before, {after.modified_index} after; "
                f"differs in {', '.join(wrong)}): another writer"
            )
        log.info(
            "route %s: %s",
            route_id,
            ", ".join(f"{name} {'set' if value else 'removed'}" for name, value in wanted.items()),
        )
        return after.value
