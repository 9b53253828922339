"""``WorkloadController`` on plain APISIX: the user runs the instances, Sluice only points
upstreams at them.

* ``initialize`` — the route (``spec.route.id``) and the upstreams named by id must exist;
  the route's value is recorded in ``sluice_routes`` (once) so it can be given back.
* ``scale`` — nothing to do: the replies carry the replicas asked for.
* ``promote`` — the stable side serves what the canary serves: its nodes become the canary's
  (the canary's ``nodes``, or its upstream's). The stable upstream by id gets them at
  ``upstreams/<id>/nodes``; without a stable upstream the route's own does — its
  ``upstream_id``'s nodes, or its inline ``upstream/nodes``. A stable side given as ``nodes``
  cannot be promoted (it is the canary's spec, not something stored in APISIX).
* ``set_finalizer`` — the injected ``Finalizers`` (the state store holds the finalizer).
* ``revert`` — the canary is deleted: ``traffic-split`` and ``proxy-mirror`` get back the
  values recorded at initialization (or go), the route is read back and compared with the
  recording (apart from ``update_time``, and an inline upstream's nodes that a promotion
  changed on purpose), and the recording is deleted. Changes someone else made to the route
  meanwhile are left as they are and named in a warning.
"""

from __future__ import annotations

import logging
from typing import Any

from libs import errors, messages
from services.traffic_shifter.admin import context, splitting

log = logging.getLogger(__name__)

Obj = dict[str, Any]


class AdminWorkloads:
    """``WorkloadController`` for standalone canaries."""

    def __init__(self, ctx: context.Context) -> None:
        self.ctx = ctx

    async def initialize(self, command: messages.InitializeWorkload) -> messages.WorkloadApplied:
        target = await self.ctx.target(command.canary)
        route = await self.ctx.route(target)
        if target.canary.id is not None:
            await self.ctx.upstream(target.canary.id, "spec.upstreams.canary.id")
        if target.stable is not None and target.stable.id is not None:
            await self.ctx.upstream(target.stable.id, "spec.upstreams.stable.id")
        await self.ctx.records.record(command.canary, route.value)
        return messages.WorkloadApplied(canary=command.canary, workload=command.target)

    async def scale(self, command: messages.ScaleWorkload) -> messages.WorkloadApplied:
        return messages.WorkloadApplied(
            canary=command.canary, workload=command.workload, replicas=command.replicas
        )

    async def promote(self, command: messages.PromoteWorkload) -> messages.WorkloadApplied:
        target = await self.ctx.target(command.canary)
        nodes = await self.ctx.canary_nodes(target)
        stable = target.stable
        if stable is not None and stable.id is not None:
            await self._set_upstream_nodes(stable.id, "spec.upstreams.stable.id", nodes)
        elif stable is not None:
            raise errors.Unsupported(
                "cannot promote: spec.upstreams.stable gives nodes, which APISIX does not "
                "store; give spec.upstreams.stable.id, or leave it out to promote the route's "
                "own upstream"
            )
        else:
            route = await self.ctx.route(target)
            upstream_id = route.value.get("upstream_id")
            inline = route.value.get("upstream")
            if upstream_id is not None:
                await self._set_upstream_nodes(
                    str(upstream_id), f"upstream_id of route {target.route_id}", nodes
                )
            elif isinstance(inline, dict):
                if inline.get("nodes") != nodes:
                    await self.ctx.api.patch(
                        "routes", target.route_id, nodes, path="upstream/nodes"
                    )
            else:
                raise errors.Unsupported(
                    f"cannot promote: route {target.route_id} has neither upstream_id nor an "
                    "inline upstream (a service_id's upstream is not written); give "
                    "spec.upstreams.stable.id"
                )
        log.info("promoted %s to nodes %s", command.canary.name, splitting.node_weights(nodes))
        return messages.WorkloadApplied(canary=command.canary, workload=command.target)

    async def _set_upstream_nodes(self, upstream_id: str, field: str, nodes: Any) -> None:
        upstream = await self.ctx.upstream(upstream_id, field)
        if upstream.value.get("nodes") != nodes:
            await self.ctx.api.patch("upstreams", upstream_id, nodes, path="nodes")

    async def set_finalizer(self, command: messages.SetFinalizer) -> messages.WorkloadApplied:
        await self.ctx.finalizers(command.canary, command.present)
        return messages.WorkloadApplied(canary=command.canary, workload=command.canary.name)

    async def revert(self, command: messages.RevertCanary) -> messages.WorkloadApplied:
        ref = command.canary
        applied = messages.WorkloadApplied(canary=ref, workload=command.target)
        original = await self.ctx.records.get(ref)
        if original is None:
            return applied  # never initialized, or given back already
        target = await self.ctx.target(ref)
        try:
            before = await self.ctx.route(target)
        except errors.NotFound:
            log.info("route %s is gone: nothing to give back", target.route_id)
            await self.ctx.records.forget(ref)
            return applied
        kept = splitting.plugins_of(original)
        wanted = {name: kept.get(name) for name in splitting.OWNED_PLUGINS}
        after = await self.ctx.write_plugins(target.route_id, before, wanted, original)
        ignore: list[tuple[str, ...]] = []
        if target.stable is None and isinstance(original.get("upstream"), dict):
            ignore.append(("upstream", "nodes"))  # a promotion changes them on purpose
        now = splitting.without_volatile(after, ignore)
        was = splitting.without_volatile(original, ignore)
        if now != was:
            changed = splitting.differences(now, was)
            owned = [f for f in changed if f in {f"plugins.{p}" for p in splitting.OWNED_PLUGINS}]
            if owned:
                raise errors.Conflict(
                    f"route {target.route_id} still differs from its recorded value in "
                    f"{', '.join(owned)} after giving it back: another writer"
                )
            log.warning(
                "route %s given back; it differs from the value recorded before the canary in "
                "%s (changed by someone else meanwhile, left as it is)",
                target.route_id,
                ", ".join(changed),
            )
        await self.ctx.records.forget(ref)
        log.info("route %s given back for %s.%s", target.route_id, ref.name, ref.namespace)
        return applied
