"""Deleting a Canary: its finalizer, and giving the workload back (Flagger's
``pkg/controller/finalizer.go`` with the Deployment controller's and Kubernetes router's
``Finalize``).

``set_finalizer`` — ``spec.revertOnDeletion`` is kept as ``canary_model.FINALIZER`` in the
Canary's ``metadata.finalizers``: added or removed with a merge patch conditional on the
``resourceVersion`` it was read at, so other finalizers are never lost (a lost race re-reads).
Removing it from a Canary that is already gone is done; adding one to a Canary being deleted
is refused (Kubernetes forbids it).

``revert`` — what a Canary with revertOnDeletion gives back while it is being deleted, each
step idempotent:

1. the target Deployment scaled up by Flagger's scale-from-zero rule
   (``autoscalers.scale_up_replicas``; 1 when there is no primary to take the count from);
2. until it is ready, a temporary ``NotReady`` (the command is tried again); a target past
   its progress deadline is not waited for;
3. the apex Service selects the target's pods (``<label>: <value>``, not ``<value>-primary``)
   and, when the Canary owns it, loses that owner reference — so garbage collection leaves it
   and the user's ApisixRoute keeps serving through it (Flagger lets an owned apex Service be
   collected);
4. the canary ApisixRoute, if there is one, sends everything to the primary (100/0) until it
   is garbage-collected with the Canary.

The primary Deployment, the ``-primary``/``-canary`` Services, the primary HPA and config
copies and the canary ApisixRoute stay owned by the Canary: Kubernetes deletes them once the
finalizer is removed.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from typing import Any

from libs import errors, messages
from libs.adapters import kubernetes
from libs.model import canary as canary_model
from services.traffic_shifter import capabilities
from services.traffic_shifter.kube import autoscalers, objects, routes, services, workloads

log = logging.getLogger(__name__)

Obj = dict[str, Any]


def _replicas(obj: Obj | None) -> int:
    value = ((obj or {}).get("spec") or {}).get("replicas")
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def finalizers_with(meta: Obj, present: bool) -> list[str] | None:
    """The Canary's finalizers with Sluice's added or removed, others kept in their order;
    None when nothing changes."""
    current = [f for f in meta.get("finalizers") or [] if isinstance(f, str)]
    if (canary_model.FINALIZER in current) == present:
        return None
    if present:
        return [*current, canary_model.FINALIZER]
    return [f for f in current if f != canary_model.FINALIZER]


def without_owner(refs: list[Obj], canary: canary_model.Canary) -> list[Obj]:
    """Owner references without the Canary's (by uid, or by kind and name when it has none)."""

    def ours(ref: Obj) -> bool:
        if canary.metadata.uid and ref.get("uid"):
            return bool(ref.get("uid") == canary.metadata.uid)
        return ref.get("kind") == canary_model.KIND and ref.get("name") == canary.name

    return [ref for ref in refs if not ours(ref)]


def reverted_apex(
    current: Obj, canary: canary_model.Canary, selector: services.Selector
) -> Obj | None:
    """The apex Service selecting the target's pods and not owned by the Canary (None: it is)."""
    updated = copy.deepcopy(current)
    spec = updated.setdefault("spec", {})
    spec["selector"] = {selector.label: selector.value}
    meta = objects.meta(updated)
    refs = meta.get("ownerReferences") or []
    kept = without_owner(refs, canary)
    if kept:
        meta["ownerReferences"] = kept
    else:
        meta.pop("ownerReferences", None)
    return None if updated == current else updated


class Deployments(workloads.Deployments):
    """``WorkloadController`` for Deployment targets, with the deletion commands."""

    async def set_finalizer(self, command: messages.SetFinalizer) -> messages.WorkloadApplied:
        ref = command.canary
        where = f"Canary {ref.namespace}/{ref.name}"
        applied = messages.WorkloadApplied(canary=ref, workload=ref.name)
        attempts = max(1, self.store.options.conflict_attempts)
        for attempt in range(1, attempts + 1):
            raw = await self.store.find(kubernetes.CANARIES, ref.namespace, ref.name)
            if raw is None:
                if not command.present:
                    return applied  # gone: nothing holds it any more
                raise errors.NotFound(f"{where} not found")
            meta = raw.get("metadata") or {}
            wanted = finalizers_with(meta, command.present)
            if wanted is None:
                return applied
            if command.present and meta.get("deletionTimestamp"):
                raise errors.InvalidInput(
                    f"{where} is being deleted: no finalizer can be added to it",
                    path="metadata.finalizers",
                )
            patch = {
                "metadata": {
                    "finalizers": wanted or None,
                    "resourceVersion": meta.get("resourceVersion"),
                }
            }
            try:
                await self.store.kube.patch(kubernetes.CANARIES, ref.namespace, ref.name, patch)
            except errors.NotFound:
                if command.present:
                    raise
                return applied
            except errors.Conflict:
                if attempt == attempts:
                    raise
                continue
            log.info(
                "%s: finalizer %s %s",
                where,
                canary_model.FINALIZER,
                "added" if command.present else "removed",
            )
            return applied
        raise AssertionError("unreachable")  # the loop returns or raises

    async def revert(self, command: messages.RevertCanary) -> messages.WorkloadApplied:
        canary = await self._canary(command.canary)
        namespace = canary.namespace
        target = await self._deployment(namespace, command.target, "the canary's target")
        selector = workloads.selector_of(target, self.store.options.selector_labels)
        try:
            replicas = await autoscalers.scale_up_replicas(self.store, canary, target)
        except errors.NotFound:
            replicas = 1  # never initialized: no primary to take the count from
        scaled = await self._set_replicas(namespace, command.target, replicas, target)
        problem = workloads.not_ready(
            scaled,
            canary.get_analysis().canary_ready_percent(),
            canary.progress_deadline_seconds(),
        )
        if problem is not None:
            message, final = problem
            if not final:
                raise workloads.NotReady(f"{command.target}.{namespace} not ready: {message}")
            log.warning(
                "%s.%s will not become ready (%s); reverting the routing anyway",
                command.target,
                namespace,
                message,
            )

        def apex(current: Obj | None) -> Obj | None:
            if current is None:
                raise errors.NotFound(f"Service {namespace}/{command.service} not found")
            return reverted_apex(current, canary, selector)

        try:
            await self.store.ensure(kubernetes.SERVICES, namespace, command.service, apex)
        except errors.NotFound:
            log.info("Service %s/%s not found: no apex to revert", namespace, command.service)
        weights = messages.SetWeights(
            canary=command.canary,
            route=canary.route_name(),
            service=command.service,
            primary_weight=100,
            canary_weight=0,
        )
        with contextlib.suppress(errors.NotFound):  # no canary route was ever made
            await routes.ApisixRoutes(self.store).set_weights(
                weights, capabilities.Weights(primary=100, canary=0)
            )
        return messages.WorkloadApplied(
            canary=command.canary, workload=command.target, replicas=_replicas(scaled)
        )
