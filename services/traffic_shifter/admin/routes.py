"""``TrafficRouter`` on plain APISIX: the user's own route, split with ``traffic-split``.

Standalone canaries have no canary route of their own: the route named by the canary's
``spec.route.id`` is the one split. Only two of its plugins are ever written —
``traffic-split`` and ``proxy-mirror`` (``splitting``) — with one PATCH per change, so the
route is never half-applied. At 100/0 without mirroring the route gets back the values those
two plugins had before the canary (recorded in ``sluice_routes`` at initialization), or loses
them if it had none.

Compare-and-set: the Admin API has no conditional write (APISIX's own PATCH merges on the
latest stored value, atomically inside APISIX, but a client cannot make a write depend on the
version it read). Sluice reads the route (with its ``modifiedIndex``) before writing and reads
it back after: if the route then differs from what the write should have made of it, another
writer was there and the command fails with a temporary ``Conflict`` (retried from fresh
reads). The limit: a write by someone else that lands between Sluice's read and its PATCH and
only touches a plugin Sluice replaces in the same PATCH (the whole ``plugins`` map is replaced
when both owned plugins change at once) is overwritten without being noticed.
"""

from __future__ import annotations

import logging
from typing import Any

from libs import errors, messages
from libs.model import standalone
from services.traffic_shifter import capabilities
from services.traffic_shifter.admin import context, splitting

log = logging.getLogger(__name__)

Obj = dict[str, Any]


class AdminRoutes:
    """``TrafficRouter`` writing the route's plugins through the Admin API."""

    def __init__(self, ctx: context.Context) -> None:
        self.ctx = ctx

    async def reconcile(self, command: messages.SetWeights) -> str:
        target = await self.ctx.target(command.canary)
        route = await self.ctx.route(target)
        await self.ctx.records.record(command.canary, route.value)
        return target.route_id

    async def set_weights(
        self, command: messages.SetWeights, weights: capabilities.Weights
    ) -> None:
        target = await self.ctx.target(command.canary)
        before = await self.ctx.route(target)
        original = await self.ctx.records.record(command.canary, before.value)
        wanted = await self.wanted_plugins(command, weights, target, before.value, original)
        await self.ctx.write_plugins(target.route_id, before, wanted, original)

    async def get_weights(self, command: messages.SetWeights) -> capabilities.Weights:
        target = await self.ctx.target(command.canary)
        route = await self.ctx.route(target)
        original = await self.ctx.records.get(command.canary) or {}
        return weights_of(route.value, original, target)

    async def wanted_plugins(
        self,
        command: messages.SetWeights,
        weights: capabilities.Weights,
        target: standalone.ApisixTarget,
        route: Obj,
        original: Obj,
    ) -> dict[str, Obj | None]:
        """The owned plugins' values for the command (``None``: absent)."""
        kept = splitting.plugins_of(original)
        split: Obj | None
        if weights.canary == 0 and splitting.stable_is_route_upstream(target, route):
            split = kept.get(splitting.SPLIT_PLUGIN)
        else:
            split = splitting.split_plugin(target, weights, command.match)
        mirror: Obj | None = kept.get(splitting.MIRROR_PLUGIN)
        if command.mirror_percent:
            node = await self.ctx.canary_first_node(target)
            mirror = splitting.mirror_plugin(node, command.mirror_percent)
        return {splitting.SPLIT_PLUGIN: split, splitting.MIRROR_PLUGIN: mirror}


def weights_of(route: Obj, original: Obj, target: standalone.ApisixTarget) -> capabilities.Weights:
    """The route's split: no ``traffic-split``, or the one it had before the canary, is 100/0."""
    plugin = splitting.plugins_of(route).get(splitting.SPLIT_PLUGIN)
    if plugin is None or plugin == splitting.plugins_of(original).get(splitting.SPLIT_PLUGIN):
        return capabilities.Weights(primary=100, canary=0)
    if not isinstance(plugin, dict):
        raise errors.Conflict(
            f"the traffic-split plugin of route {target.route_id} is not an object"
        )
    return splitting.weights_of(plugin, target, target.route_id)
