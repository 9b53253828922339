"""The Deployment controller: ReplicaSets per pod template, rolling updates, status.

Follows Kubernetes' ``syncDeployment``: paused and replica-only changes go through ``sync``
(scale, status counters); template changes roll out with ``RollingUpdate`` (new ReplicaSet up
to ``replicas + maxSurge`` pods, old ones down while ``replicas - maxUnavailable`` stay
available, one step per reconcile, the next step triggered by the ReplicaSets' status) or
``Recreate`` (all old pods gone first). The arithmetic is in ``rollout``; this module reads and
writes the store, records ``ScalingReplicaSet`` events and re-checks the progress deadline on a
timer. ReplicaSets and pods of a deleted Deployment go by the store's garbage collector.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Iterable
from typing import Any

from sandbox.kube import registry
from sandbox.kube import store as kstore
from sandbox.kube.controllers import events, objects, reconciling, rollout
from sandbox.kube.controllers import settings as csettings

log = logging.getLogger(__name__)

COMPONENT = "deployment-controller"
Obj = kstore.Obj


def _owner_keys(_event: str, rs: Obj) -> Iterable[reconciling.Key]:
    ref = objects.controller_ref(rs)
    if ref is not None and ref.get("kind") == "Deployment":
        yield (rs["metadata"].get("namespace", ""), ref["name"])


class DeploymentController:
    def __init__(self, store: kstore.Store, settings: csettings.ControllerSettings) -> None:
        self.store = store
        self.settings = settings
        self.loop = reconciling.WorkLoop("deployment", store, self.reconcile, settings)
        self.loop.watch(registry.DEPLOYMENTS)
        self.loop.watch(registry.REPLICASETS, _owner_keys)

    async def run(self) -> None:
        await self.loop.run()

    # ---------------------------------------------------------------- entry

    def reconcile(self, key: reconciling.Key) -> float | None:
        namespace, name = key
        try:
            deploy = self.store.get(registry.DEPLOYMENTS, namespace, name)
        except kstore.NotFound:
            return None
        uid = deploy["metadata"]["uid"]
        owned = [
            rs
            for rs in self.store.list(registry.REPLICASETS, namespace)[0]
            if objects.controller_uid(rs) == uid
        ]
        if objects.is_terminating(deploy):
            new_rs, _old = self._find(deploy, owned)
            self._write_status(deploy, rollout.calculate_status(deploy, owned, new_rs))
            return None
        if not (deploy.get("spec") or {}).get("selector"):
            log.warning("deployment %s/%s has no selector; skipped", namespace, name)
            return None
        deploy = self._check_paused(deploy)
        if deploy["spec"].get("paused") or self._is_scaling_event(deploy, owned):
            return self._sync(deploy, owned)
        if rollout.is_rolling(deploy):
            return self._rolling(deploy, owned)
        return self._recreate(deploy, owned)

    # ---------------------------------------------------------------- replica sets

    def _find(self, deploy: Obj, owned: list[Obj]) -> tuple[Obj | None, list[Obj]]:
        template = deploy["spec"].get("template") or {}
        matching = [
            rs
            for rs in rollout.by_age(owned)
            if rollout.same_template(rs["spec"].get("template") or {}, template)
        ]
        new_rs = matching[0] if matching else None
        old = [
            rs
            for rs in owned
            if new_rs is None or rs["metadata"]["uid"] != new_rs["metadata"]["uid"]
        ]
        return new_rs, old

    def _all_with_new(
        self, deploy: Obj, owned: list[Obj], *, create: bool
    ) -> tuple[Obj, Obj | None, list[Obj]]:
        """Kubernetes' getAllReplicaSetsAndSyncRevision: (deployment, new RS, old RSs)."""
        new_rs, old = self._find(deploy, owned)
        new_revision = max((rollout.revision(rs) for rs in old), default=0) + 1
        if new_rs is not None:
            new_rs = self._sync_new_rs(deploy, new_rs, new_revision)
            deploy = self._set_revision(deploy, rollout.revision(new_rs))
            if (
                self._has_deadline(deploy)
                and objects.get_condition(deploy.get("status"), "Progressing") is None
            ):
                status = copy.deepcopy(deploy.get("status") or {})
                objects.set_condition(
                    status,
                    "Progressing",
                    "True",
                    rollout.FOUND_NEW_RS,
                    f'Found new replica set "{new_rs["metadata"]["name"]}"',
                )
                deploy = self._write_status(deploy, status)
            return deploy, new_rs, old
        if not create:
            return deploy, None, old
        new_rs, created = self._create_new_rs(deploy, old, new_revision)
        if new_rs is None:
            return deploy, None, old
        deploy = self._set_revision(deploy, rollout.revision(new_rs))
        if created and self._has_deadline(deploy):
            status = copy.deepcopy(deploy.get("status") or {})
            objects.set_condition(
                status,
                "Progressing",
                "True",
                rollout.NEW_RS_CREATED,
                f'Created new replica set "{new_rs["metadata"]["name"]}"',
            )
            deploy = self._write_status(deploy, status)
        return deploy, new_rs, old

    def _sync_new_rs(self, deploy: Obj, rs: Obj, new_revision: int) -> Obj:
        updated = copy.deepcopy(rs)
        annotations = updated["metadata"].setdefault("annotations", {})
        wanted = rollout.rs_annotations(deploy, max(new_revision, rollout.revision(rs)))
        annotations.update(wanted)
        updated["spec"]["minReadySeconds"] = int(deploy["spec"].get("minReadySeconds") or 0)
        if updated == rs:
            return rs
        return self.store.update(registry.REPLICASETS, updated)

    def _create_new_rs(self, deploy: Obj, old: list[Obj], rev: int) -> tuple[Obj | None, bool]:
        meta, spec = deploy["metadata"], deploy["spec"]
        status = deploy.get("status") or {}
        collisions = status.get("collisionCount")
        template = copy.deepcopy(spec.get("template") or {})
        pod_hash = rollout.template_hash(template, collisions)
        template.setdefault("metadata", {}).setdefault("labels", {})[rollout.HASH_LABEL] = pod_hash
        selector = copy.deepcopy(spec["selector"])
        selector.setdefault("matchLabels", {})[rollout.HASH_LABEL] = pod_hash
        count = rollout.new_rs_target(deploy, old, None)
        rs = {
            "metadata": {
                "name": f"{meta['name']}-{pod_hash}",
                "namespace": meta["namespace"],
                "labels": dict(template["metadata"]["labels"]),
                "annotations": rollout.rs_annotations(deploy, rev),
                "ownerReferences": [objects.owner_reference(deploy)],
            },
            "spec": {
                "replicas": count,
                "minReadySeconds": int(spec.get("minReadySeconds") or 0),
                "selector": selector,
                "template": template,
            },
        }
        try:
            created = self.store.create(registry.REPLICASETS, rs)
        except kstore.AlreadyExists:
            existing = self.store.get(
                registry.REPLICASETS, meta["namespace"], rs["metadata"]["name"]
            )
            if objects.controller_uid(existing) == meta["uid"] and rollout.same_template(
                existing["spec"].get("template") or {}, spec.get("template") or {}
            ):
                return existing, False
            # a hash collision: bump collisionCount, the next reconcile hashes again
            new_status = copy.deepcopy(status)
            new_status["collisionCount"] = int(collisions or 0) + 1
            self._write_status(deploy, new_status)
            self.loop.enqueue((meta["namespace"], meta["name"]))
            return None, False
        if count > 0:
            self._event(
                deploy, f"Scaled up replica set {created['metadata']['name']} from 0 to {count}"
            )
        return created, True

    def _set_revision(self, deploy: Obj, rev: int) -> Obj:
        annotations = deploy["metadata"].get("annotations") or {}
        if annotations.get(rollout.REVISION) == str(rev):
            return deploy
        updated = copy.deepcopy(deploy)
        updated["metadata"].setdefault("annotations", {})[rollout.REVISION] = str(rev)
        return self.store.update(registry.DEPLOYMENTS, updated)

    def _scale(self, deploy: Obj, rs: Obj, count: int) -> tuple[Obj, bool]:
        """Set a ReplicaSet's replicas and desired/max annotations; event on a size change."""
        updated = copy.deepcopy(rs)
        before = rollout.replicas(rs)
        updated["spec"]["replicas"] = count
        annotations = updated["metadata"].setdefault("annotations", {})
        annotations[rollout.DESIRED_REPLICAS] = str(rollout.replicas(deploy))
        annotations[rollout.MAX_REPLICAS] = str(
            rollout.replicas(deploy) + rollout.max_surge(deploy)
        )
        if updated == rs:
            return rs, False
        result = self.store.update(registry.REPLICASETS, updated)
        if count != before:
            direction = "up" if count > before else "down"
            self._event(
                deploy,
                f"Scaled {direction} replica set {rs['metadata']['name']} from {before} to {count}",
            )
        return result, count != before

    def _event(self, deploy: Obj, message: str) -> None:
        events.record(
            self.store, deploy, events.NORMAL, "ScalingReplicaSet", message, component=COMPONENT
        )

    def _cleanup(self, deploy: Obj, old: list[Obj]) -> None:
        limit = deploy["spec"].get("revisionHistoryLimit")
        for name in rollout.history_to_delete(old, None if limit is None else int(limit)):
            with contextlib.suppress(kstore.NotFound):
                self.store.delete(registry.REPLICASETS, deploy["metadata"]["namespace"], name)

    # ---------------------------------------------------------------- strategies

    def _rolling(self, deploy: Obj, owned: list[Obj]) -> float | None:
        deploy, new_rs, old = self._all_with_new(deploy, owned, create=True)
        if new_rs is None:
            return None
        all_rs = [*old, new_rs]
        target = rollout.new_rs_target(deploy, all_rs, new_rs)
        if target != rollout.replicas(new_rs):
            new_rs, _ = self._scale(deploy, new_rs, target)
            return self._rollout_status(deploy, [*old, new_rs], new_rs)
        targets = rollout.old_rs_targets(deploy, old, new_rs)
        if targets:
            old = [
                self._scale(deploy, rs, targets[rs["metadata"]["name"]])[0]
                if rs["metadata"]["name"] in targets
                else rs
                for rs in old
            ]
            return self._rollout_status(deploy, [*old, new_rs], new_rs)
        if rollout.is_complete(deploy, deploy.get("status") or {}):
            self._cleanup(deploy, old)
        return self._rollout_status(deploy, all_rs, new_rs)

    def _recreate(self, deploy: Obj, owned: list[Obj]) -> float | None:
        deploy, new_rs, old = self._all_with_new(deploy, owned, create=False)
        active = [rs for rs in old if rollout.replicas(rs) > 0]
        if active:
            old = [self._scale(deploy, rs, 0)[0] if rollout.replicas(rs) > 0 else rs for rs in old]
            return self._rollout_status(deploy, [*old, *([new_rs] if new_rs else [])], new_rs)
        if any(rollout.status_int(rs, "replicas") > 0 for rs in old):
            return self._rollout_status(deploy, [*old, *([new_rs] if new_rs else [])], new_rs)
        if new_rs is None:
            deploy, new_rs, old = self._all_with_new(deploy, owned, create=True)
            if new_rs is None:
                return None
        if rollout.replicas(new_rs) != rollout.replicas(deploy):
            new_rs, _ = self._scale(deploy, new_rs, rollout.replicas(deploy))
        if rollout.is_complete(deploy, deploy.get("status") or {}):
            self._cleanup(deploy, old)
        return self._rollout_status(deploy, [*old, new_rs], new_rs)

    def _sync(self, deploy: Obj, owned: list[Obj]) -> float | None:
        """Paused or a replica change: scale what exists, no new ReplicaSet, counters only."""
        deploy, new_rs, old = self._all_with_new(deploy, owned, create=False)
        targets = rollout.proportional_targets(deploy, new_rs, old)
        everything = [rs for rs in [*old, new_rs] if rs is not None]
        scaled = []
        for rs in everything:
            name = rs["metadata"]["name"]
            if name in targets or rollout.replicas(rs) > 0:
                rs, _ = self._scale(deploy, rs, targets.get(name, rollout.replicas(rs)))
            scaled.append(rs)
        if new_rs is not None:
            new_rs = next(rs for rs in scaled if rs["metadata"]["uid"] == new_rs["metadata"]["uid"])
        if deploy["spec"].get("paused"):
            self._cleanup(deploy, [rs for rs in scaled if rs is not new_rs])
        self._write_status(deploy, rollout.calculate_status(deploy, scaled, new_rs))
        return None

    # ---------------------------------------------------------------- status

    def _has_deadline(self, deploy: Obj) -> bool:
        return (
            rollout.progress_deadline(deploy, self.settings.default_progress_deadline_s) is not None
        )

    def _is_scaling_event(self, deploy: Obj, owned: list[Obj]) -> bool:
        want = str(rollout.replicas(deploy))
        for rs in owned:
            if rollout.replicas(rs) <= 0:
                continue
            desired = (rs["metadata"].get("annotations") or {}).get(rollout.DESIRED_REPLICAS)
            if desired is not None and desired != want:
                return True
        return False

    def _check_paused(self, deploy: Obj) -> Obj:
        cond = objects.get_condition(deploy.get("status"), "Progressing")
        if cond is not None and cond.get("reason") == rollout.TIMED_OUT:
            return deploy
        paused = bool(deploy["spec"].get("paused"))
        has_paused = cond is not None and cond.get("reason") == rollout.PAUSED
        status = copy.deepcopy(deploy.get("status") or {})
        if paused and not has_paused:
            objects.set_condition(
                status, "Progressing", "Unknown", rollout.PAUSED, "Deployment is paused"
            )
        elif not paused and has_paused:
            objects.set_condition(
                status, "Progressing", "Unknown", rollout.RESUMED, "Deployment is resumed"
            )
        else:
            return deploy
        return self._write_status(deploy, status)

    def _rollout_status(self, deploy: Obj, all_rs: list[Obj], new_rs: Obj | None) -> float | None:
        deadline = rollout.progress_deadline(deploy, self.settings.default_progress_deadline_s)
        status, recheck = rollout.rollout_status(
            deploy, all_rs, new_rs, deadline=deadline, now=objects.now()
        )
        self._write_status(deploy, status)
        # lastUpdateTime has one-second resolution: look again just after the deadline passes
        return None if recheck is None else recheck + 1.0

    def _write_status(self, deploy: Obj, status: dict[str, Any]) -> Obj:
        if (deploy.get("status") or {}) == status:
            return deploy
        updated = copy.deepcopy(deploy)
        updated["status"] = status
        return self.store.update(registry.DEPLOYMENTS, updated, subresource="status")
