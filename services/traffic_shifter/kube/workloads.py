"""The primary Deployment: initialization, scaling and promotion (Flagger's
``pkg/canary/deployment_controller.go``, with its Services and primary HPA).

``initialize`` — in Flagger's order, each step idempotent:

1. read the Canary (spec, uid, phase) and the target Deployment; its selector label is the
   first of ``SLUICE_SELECTOR_LABELS`` in ``spec.selector.matchLabels``;
2. Services ``<svc>-canary`` and ``<svc>-primary`` (``kube.services``);
3. when ``<target>-primary`` is missing: the ``-primary`` copies of the target's configs, then
   the Deployment — target's labels by include prefix and annotations, selector and template
   labels with ``<value>-primary``, progressDeadlineSeconds / minReadySeconds /
   revisionHistoryLimit / strategy, the target's replicas (at least 1), the template with
   config references rewritten and the rollout id annotation;
4. while the Canary initializes (phase ``""`` or Initializing) and analysis is not skipped:
   the primary must be ready, else a temporary ``NotReady`` (Flagger retries the step);
5. the primary HPA when the command names an autoscaler (created, not updated);
6. the apex Service, now selecting the primary's pods;
7. while the Canary initializes: the target scaled to 0.

``promote`` copies the target to the existing primary (Flagger's copy rules, see
``promoted``), after refreshing the config copies, then refreshes the primary HPA.
``scale`` sets ``spec.replicas`` of the target or the primary with a merge patch; a canary
scale-up (``scale_up``) chooses the target's replicas by Flagger's rule
(``autoscalers.scale_up_replicas``) from the live objects, the command's ``replicas`` being
only the analyzer's estimate.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
from typing import Any

from libs import errors, messages
from libs.adapters import kubernetes
from libs.model import canary as canary_model
from libs.model import meta as meta_model
from services.traffic_shifter.kube import autoscalers, configs, objects, services

Obj = dict[str, Any]
COPIED_SPEC_FIELDS = (
    "progressDeadlineSeconds",
    "minReadySeconds",
    "revisionHistoryLimit",
    "strategy",
)
KEPT_ANNOTATION_PREFIX = "deployment.kubernetes.io/"  # the Deployment controller's own
REVISION_LENGTH = 16


class NotReady(errors.TemporaryError):
    """The primary is still rolling out; the step is tried again later."""


def template_hash(deployment: Obj) -> str:
    """The revision of a Deployment as the watcher computes it: sha256 of the canonical JSON
    of ``spec.template``, first 16 hex digits."""
    template = (deployment.get("spec") or {}).get("template") or {}
    return hashlib.sha256(objects.canonical_json(template)).hexdigest()[:REVISION_LENGTH]


def selector_of(deployment: Obj, labels: tuple[str, ...]) -> services.Selector:
    meta = deployment.get("metadata") or {}
    match = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    for label in labels:
        if label in match:
            return services.Selector(label, str(match[label]))
    raise errors.InvalidInput(
        f"Deployment {meta.get('namespace')}/{meta.get('name')}: spec.selector.matchLabels "
        f"must contain one of {', '.join(labels)}",
        path="spec.selector.matchLabels",
        expected=f"one of {', '.join(labels)}",
    )


def _with_primary_suffix(selector: Obj | None, target: str, labels: tuple[str, ...]) -> None:
    """Label selectors of the pod spec that name the target's pods name the primary's."""
    if not selector:
        return
    for expression in selector.get("matchExpressions") or []:
        if expression.get("key") in labels:
            values = expression.get("values") or []
            for i, value in enumerate(values):
                if value == target:
                    values[i] = f"{value}-primary"
                    break
    match = selector.get("matchLabels") or {}
    for key, value in list(match.items()):
        if key in labels and value == target:
            match[key] = f"{value}-primary"


def primary_pod_spec(target: Obj, found: list[configs.Config], labels: tuple[str, ...]) -> Obj:
    """The target's pod spec for the primary: ``-primary`` configs; spread constraints and
    pod anti-affinity that select the target's pods select the primary's."""
    name = target["metadata"]["name"]
    spec = configs.rewrite(target["spec"]["template"].get("spec") or {}, found)
    for constraint in spec.get("topologySpreadConstraints") or []:
        _with_primary_suffix(constraint.get("labelSelector"), name, labels)
    anti = (spec.get("affinity") or {}).get("podAntiAffinity") or {}
    for term in anti.get("preferredDuringSchedulingIgnoredDuringExecution") or []:
        _with_primary_suffix((term.get("podAffinityTerm") or {}).get("labelSelector"), name, labels)
    for term in anti.get("requiredDuringSchedulingIgnoredDuringExecution") or []:
        _with_primary_suffix(term.get("labelSelector"), name, labels)
    return spec


def primary_template(
    target: Obj, selector: services.Selector, found: list[configs.Config], labels: tuple[str, ...]
) -> Obj:
    template = target["spec"]["template"]
    template_meta = template.get("metadata") or {}
    rollout = objects.rollout_id(template, {c.key: c.version for c in found})
    return {
        "metadata": {
            "labels": objects.primary_labels(
                template_meta.get("labels"), selector.label, selector.primary
            ),
            "annotations": objects.pod_annotations(template_meta.get("annotations"), rollout),
        },
        "spec": primary_pod_spec(target, found, labels),
    }


def new_primary(
    canary: canary_model.Canary,
    target: Obj,
    selector: services.Selector,
    found: list[configs.Config],
    options: objects.Options,
) -> Obj:
    """The primary Deployment created at initialization."""
    meta = target.get("metadata") or {}
    spec = target.get("spec") or {}
    replicas = spec.get("replicas")
    primary_spec: Obj = {
        field: copy.deepcopy(spec[field]) for field in COPIED_SPEC_FIELDS if field in spec
    }
    primary_spec["replicas"] = replicas if isinstance(replicas, int) and replicas > 0 else 1
    primary_spec["selector"] = {"matchLabels": {selector.label: selector.primary}}
    primary_spec["template"] = primary_template(target, selector, found, options.selector_labels)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": f"{meta['name']}-primary",
            "namespace": canary.namespace,
            "labels": objects.primary_labels(
                objects.include_by_prefix(meta.get("labels"), options.include_label_prefixes),
                selector.label,
                selector.primary,
            ),
            "annotations": objects.copied_annotations(meta.get("annotations")),
            "ownerReferences": [objects.owner_reference(canary)],
        },
        "spec": primary_spec,
    }


def promoted(
    canary: canary_model.Canary,
    target: Obj,
    primary: Obj,
    selector: services.Selector,
    found: list[configs.Config],
    options: objects.Options,
) -> Obj | None:
    """The primary after a promotion (Flagger's ``Promote``), or None when it already is.

    Copied from the target: the pod template (configs rewritten, selector value
    ``<v>-primary`` in its labels, its annotations plus the rollout id),
    progressDeadlineSeconds, minReadySeconds, revisionHistoryLimit, strategy, replicas unless
    an autoscaler owns them, and the Deployment's labels and annotations by include prefix
    (the Deployment controller's own ``deployment.kubernetes.io/*`` annotations are kept)."""
    source = target.get("spec") or {}
    source_meta = target.get("metadata") or {}
    updated = copy.deepcopy(primary)
    spec = updated.setdefault("spec", {})
    for field in COPIED_SPEC_FIELDS:
        spec.pop(field, None)
        if field in source:
            spec[field] = copy.deepcopy(source[field])
    if canary.spec.autoscaler_ref is None and "replicas" in source:
        spec["replicas"] = source["replicas"]
    wanted = primary_template(target, selector, found, options.selector_labels)
    template = spec.setdefault("template", {})
    template["spec"] = wanted["spec"]
    template_meta = template.setdefault("metadata", {})
    template_meta["labels"] = wanted["metadata"]["labels"]
    template_meta["annotations"] = wanted["metadata"]["annotations"]
    meta = objects.meta(updated)
    kept = {
        k: v
        for k, v in (meta.get("annotations") or {}).items()
        if k.startswith(KEPT_ANNOTATION_PREFIX)
    }
    meta["annotations"] = {
        **objects.include_by_prefix(source_meta.get("annotations"), options.include_label_prefixes),
        **kept,
    }
    meta["labels"] = objects.primary_labels(
        objects.include_by_prefix(source_meta.get("labels"), options.include_label_prefixes),
        selector.label,
        selector.primary,
    )
    return None if updated == primary else updated


def _stuck(conditions: dict[Any, Obj], deadline_s: int, now: datetime.datetime) -> bool:
    """Pods unavailable for longer than the progress deadline (Flagger's non-retriable case)."""
    available = conditions.get("Available") or {}
    if "Progressing" not in conditions or not (
        available.get("status") == "False"
        and available.get("reason") == "MinimumReplicasUnavailable"
    ):
        return False
    try:
        since = datetime.datetime.fromisoformat(str(available.get("lastUpdateTime")))
    except ValueError:
        return False
    if since.tzinfo is None:
        since = since.replace(tzinfo=datetime.UTC)
    return since + datetime.timedelta(seconds=deadline_s) < now


def not_ready(
    deployment: Obj, threshold_percent: int, deadline_s: int, now: datetime.datetime | None = None
) -> tuple[str, bool] | None:
    """Why a Deployment is not ready yet, and whether that is final (Flagger's
    ``isDeploymentReady``: past the progress deadline it is); None when it is ready."""
    meta = deployment.get("metadata") or {}
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    if int(meta.get("generation") or 0) > int(status.get("observedGeneration") or 0):
        return (
            "waiting for rollout to finish: observed deployment generation less than desired "
            "generation",
            False,
        )
    conditions = {c.get("type"): c for c in status.get("conditions") or [] if isinstance(c, dict)}
    if (conditions.get("Progressing") or {}).get("reason") == "ProgressDeadlineExceeded":
        return f"deployment {meta.get('name')!r} exceeded its progress deadline", True
    final = _stuck(conditions, deadline_s, now or datetime.datetime.now(datetime.UTC))
    replicas = spec.get("replicas")
    updated = int(status.get("updatedReplicas") or 0)
    if isinstance(replicas, int) and updated < replicas:
        return (
            f"waiting for rollout to finish: {updated} out of {replicas} new replicas have "
            "been updated",
            final,
        )
    total = int(status.get("replicas") or 0)
    if total > updated:
        return (
            f"waiting for rollout to finish: {total - updated} old replicas are pending "
            "termination",
            final,
        )
    needed = int(updated * threshold_percent / 100)
    available = int(status.get("availableReplicas") or 0)
    if available < needed:
        return (
            f"waiting for rollout to finish: {available} of {needed} (readyThreshold "
            f"{threshold_percent}%) updated replicas are available",
            final,
        )
    return None


def _replicas(obj: Obj) -> int | None:
    value = (obj.get("spec") or {}).get("replicas")
    return value if isinstance(value, int) else None


def _phase(canary: canary_model.Canary) -> canary_model.Phase:
    return canary.status.phase if canary.status else canary_model.Phase.UNSET


class Deployments:
    """``WorkloadController`` for ``targetRef.kind: Deployment`` on Kubernetes."""

    def __init__(self, store: objects.Objects) -> None:
        self.store = store

    async def _canary(self, ref: messages.CanaryRef) -> canary_model.Canary:
        canary = await self.store.canary(ref)
        kind = canary.spec.target_ref.kind
        if kind != "Deployment":
            raise errors.Unsupported(
                f"targetRef.kind {kind} of Canary {canary.namespace}/{canary.name}: only "
                "Deployment targets are supported on Kubernetes for now"
            )
        return canary

    async def _deployment(self, namespace: str, name: str, role: str) -> Obj:
        try:
            return await self.store.kube.get(kubernetes.DEPLOYMENTS, namespace, name)
        except errors.NotFound as exc:
            raise errors.NotFound(f"Deployment {namespace}/{name} ({role}) not found") from exc

    async def initialize(self, command: messages.InitializeWorkload) -> messages.WorkloadApplied:
        canary = await self._canary(command.canary)
        namespace = canary.namespace
        options = self.store.options
        target = await self._deployment(namespace, command.target, "the canary's target")
        selector = selector_of(target, options.selector_labels)
        target_port: int | str = command.target_port or command.port
        pod_spec = target["spec"]["template"].get("spec") or {}
        extra = (
            services.discovered_ports(target_port, pod_spec)
            if canary.spec.service.port_discovery
            else {}
        )
        service_ports = services.ports(canary, command.port, target_port, extra)
        apex = command.service
        service_meta = canary.spec.service

        async def service(
            name: str, pods: str, metadata: meta_model.ServiceMetadata | None
        ) -> None:
            await services.reconcile(
                self.store, canary, name, pods, selector, service_ports, metadata
            )

        await service(f"{apex}-canary", selector.value, service_meta.canary)
        await service(f"{apex}-primary", selector.primary, service_meta.primary)
        primary_name = f"{command.target}-primary"
        primary = await self.store.find(kubernetes.DEPLOYMENTS, namespace, primary_name)
        if primary is None:
            found = await configs.used_by(self.store, namespace, pod_spec)
            await configs.sync_copies(self.store, canary, found)
            body = new_primary(canary, target, selector, found, options)
            primary = await self.store.ensure(
                kubernetes.DEPLOYMENTS,
                namespace,
                primary_name,
                lambda current: body if current is None else None,
            )
        initializing = _phase(canary) in (canary_model.Phase.UNSET, canary_model.Phase.INITIALIZING)
        if initializing and not canary.spec.skip_analysis:
            problem = not_ready(
                primary,
                canary.get_analysis().primary_ready_percent(),
                canary.progress_deadline_seconds(),
            )
            if problem is not None:
                message, final = problem
                text = f"{primary_name}.{namespace} not ready: {message}"
                raise errors.PermanentError(text) if final else NotReady(text)
        await autoscalers.reconcile_primary(
            self.store, canary, command.autoscaler, primary_name, update=False
        )
        await service(apex, selector.primary, service_meta.apex)  # traffic to the primary now
        if initializing:
            await self._set_replicas(namespace, command.target, 0)
        return messages.WorkloadApplied(
            canary=command.canary, workload=primary_name, replicas=_replicas(primary)
        )

    async def _set_replicas(
        self, namespace: str, name: str, replicas: int, current: Obj | None = None
    ) -> Obj:
        if current is None:
            current = await self._deployment(namespace, name, "to scale")
        if _replicas(current) == replicas:
            return current
        return await self.store.kube.patch(
            kubernetes.DEPLOYMENTS, namespace, name, {"spec": {"replicas": replicas}}
        )

    async def scale(self, command: messages.ScaleWorkload) -> messages.WorkloadApplied:
        canary = await self._canary(command.canary)
        target = canary.spec.target_ref.name
        allowed = (target, f"{target}-primary")
        if command.workload not in allowed:
            raise errors.InvalidInput(
                f"workload: Canary {canary.namespace}/{canary.name} scales {' or '.join(allowed)}, "
                f"not {command.workload!r}",
                path="workload",
                expected=" or ".join(allowed),
            )
        if command.scale_up and command.workload == target:
            current = await self._deployment(canary.namespace, target, "to scale")
            replicas = await autoscalers.scale_up_replicas(self.store, canary, current)
            scaled = await self._set_replicas(canary.namespace, target, replicas, current)
        else:
            try:
                scaled = await self._set_replicas(
                    canary.namespace, command.workload, command.replicas
                )
            except errors.NotFound:
                if command.replicas != 0:
                    raise
                # a missing Deployment has no pods: the rollback of a deleted target goes on
                scaled = {"spec": {"replicas": 0}}
        return messages.WorkloadApplied(
            canary=command.canary, workload=command.workload, replicas=_replicas(scaled)
        )

    async def promote(self, command: messages.PromoteWorkload) -> messages.WorkloadApplied:
        canary = await self._canary(command.canary)
        namespace = canary.namespace
        options = self.store.options
        target = await self._deployment(namespace, command.target, "the canary's target")
        if command.revision and template_hash(target) != command.revision:
            raise errors.Conflict(
                f"Deployment {namespace}/{command.target} is at revision {template_hash(target)}, "
                f"not {command.revision} that was analysed: not promoting a revision nobody checked"
            )
        selector = selector_of(target, options.selector_labels)
        pod_spec = target["spec"]["template"].get("spec") or {}
        found = await configs.used_by(self.store, namespace, pod_spec)
        await configs.sync_copies(self.store, canary, found)
        primary_name = f"{command.target}-primary"

        def build(current: Obj | None) -> Obj | None:
            if current is None:
                raise errors.NotFound(
                    f"Deployment {namespace}/{primary_name} not found: initialize the canary first"
                )
            return promoted(canary, target, current, selector, found, options)

        primary = await self.store.ensure(kubernetes.DEPLOYMENTS, namespace, primary_name, build)
        await autoscalers.reconcile_primary(
            self.store, canary, _autoscaler(canary), primary_name, update=True
        )
        return messages.WorkloadApplied(
            canary=command.canary, workload=primary_name, replicas=_replicas(primary)
        )


def _autoscaler(canary: canary_model.Canary) -> str:
    ref = canary.spec.autoscaler_ref
    return ref.name if ref is not None else ""
