"""From the informers' caches to observations: which canary to re-evaluate, and evaluating it.

Every change only marks canaries *dirty* (a de-duplicated queue); one worker evaluates them
from the caches, so the result is level-based — whatever was missed, the next evaluation of
a canary sees the current state:

    Canary changed                      → that canary
    Deployment changed                  → canaries whose targetRef names it, or whose
                                          primary (``<target>-primary``) it is (index by target)
    ConfigMap / Secret changed          → canaries whose target's pod template uses it
                                          (index by config, rebuilt at each evaluation)
    MetricTemplate changed              → that template

Evaluating a canary, in this order (so that whoever hears ``revision_detected`` finds the rest):

1. its ``CanaryObservation`` (``objects.observe_canary``: the validated model, or the
   problems) goes to ``sluice_canaries`` whenever it changed — spec, status or
   resourceVersion. An invalid one is also logged once per resourceVersion with every
   problem, counted in ``sluice_watcher_invalid_canaries_total``, and goes no further;
2. the primary Deployment ``<target>-primary``, once it exists, is observed and recorded
   quietly (no event: its template changes by Sluice's own promotion);
3. the target Deployment and the ConfigMaps/Secrets its template uses make the target's
   ``WorkloadObservation``, handed to ``Watcher.record`` (which publishes ``revision_detected``
   for a new revision, a new canary's first included) unless it equals the last recorded one.

Evaluating a MetricTemplate records its ``TemplateObservation`` (validated, or its problems,
logged once per resourceVersion and counted in ``sluice_watcher_invalid_templates_total``).
Whatever disappears — a canary, its target or primary, a template — has its observation
deleted, so that a canary created again starts as a new revision. A Canary being deleted but
held by finalizers has not disappeared: it stays observed, ``metadata.deletionTimestamp`` and
``finalizers`` included (the analyzer's cue to revert it), until Kubernetes really removes it. The watcher only reads
Kubernetes; it never writes to it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import defaultdict
from typing import Any, Literal

import prometheus_client as prom

from libs import bus, errors, lifecycle, messages
from libs.adapters import informers
from libs.model import configrefs
from services.watcher import objects, observing, revisions

log = logging.getLogger(__name__)

Obj = dict[str, Any]


@dataclasses.dataclass
class Caches:
    canaries: informers.Informer
    deployments: informers.Informer
    configmaps: informers.Informer
    secrets: informers.Informer
    templates: informers.Informer

    def all(self) -> tuple[informers.Informer, ...]:
        return (self.canaries, self.deployments, self.configmaps, self.secrets, self.templates)

    def config(self, kind: str) -> informers.Informer:
        return self.configmaps if kind == "configmap" else self.secrets

    def problem(self) -> str | None:
        for informer in self.all():
            if (reason := informer.problem()) is not None:
                return f"Kubernetes: {reason}"
        return None


def strip_config(obj: Obj) -> Obj:
    """Informer transform for ConfigMaps and Secrets: keep metadata and a checksum only, so
    secret values never stay in memory (and big ConfigMaps cost a few bytes)."""
    meta = obj.get("metadata") or {}
    return {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "resourceVersion": meta.get("resourceVersion"),
            "annotations": meta.get("annotations") or {},
        },
        **({"type": obj["type"]} if "type" in obj else {}),  # a Secret's: some are not tracked
        "checksum": revisions.config_checksum(obj),
    }


def _split(key: str) -> tuple[str, str]:
    namespace, _, name = key.partition("/")
    return namespace, name


Kind = Literal["canary", "template"]
TEMPLATE_NOTICE = "template "  # prefix of a template's key among the logged notices
Dirty = tuple[Kind, str]  # what to evaluate: a canary or a template, by "<ns>/<name>"


class Reconciler:
    def __init__(
        self,
        rt: lifecycle.Runtime,
        watcher: observing.Watcher,
        *,
        canaries: observing.Objects[messages.CanaryObservation],
        templates: observing.Objects[messages.TemplateObservation],
        retry_delay_s: float = 2.0,
        namespaces: tuple[str, ...] = (),
    ) -> None:
        self.rt = rt
        self.watcher = watcher
        self.canaries = canaries
        self.templates = templates
        self.retry_delay_s = retry_delay_s
        self.namespaces = namespaces
        self.caches: Caches | None = None
        self.invalid = prom.Counter(
            "sluice_watcher_invalid_canaries_total",
            "Canary objects (per resourceVersion) skipped because they are invalid",
            ["namespace"],
            registry=rt.metrics.registry,
        )
        self.invalid_templates = prom.Counter(
            "sluice_watcher_invalid_templates_total",
            "MetricTemplate objects (per resourceVersion) recorded with problems",
            ["namespace"],
            registry=rt.metrics.registry,
        )
        self._queue: asyncio.Queue[Dirty] = asyncio.Queue()
        self._pending: set[Dirty] = set()
        self._by_target: dict[str, set[str]] = defaultdict(set)  # "ns/deployment" → canaries
        self._target_of: dict[str, str] = {}  # canary → "ns/deployment"
        self._by_config: dict[str, set[str]] = defaultdict(set)  # "ns/configmap/x" → canaries
        self._configs_of: dict[str, set[str]] = {}
        self._recorded: dict[
            str, tuple[str, messages.WorkloadObservation]
        ] = {}  # canary → (target, obs)
        self._primaries: dict[str, tuple[str, messages.WorkloadObservation]] = {}  # the same
        self._canaries: dict[str, messages.CanaryObservation] = {}  # canary → last recorded
        self._templates: dict[str, messages.TemplateObservation] = {}  # template → the same
        self._said: dict[str, str] = {}  # canary → last notice logged (log once per state)
        self._deleting: set[str] = set()  # canaries seen with a deletionTimestamp (hinted once)
        self._retries: set[asyncio.TimerHandle] = set()

    # --- change handlers (called by the informers; they only mark canaries dirty) ---

    def mark(self, canary_key: str) -> None:
        self._mark(("canary", canary_key))

    def _mark(self, dirty: Dirty) -> None:
        if dirty not in self._pending:
            self._pending.add(dirty)
            self._queue.put_nowait(dirty)

    async def on_canary(self, change: informers.Change) -> None:
        spec = change.obj.get("spec") or {}
        target = spec.get("targetRef") or {}
        namespace, _ = _split(change.key)
        old = self._target_of.pop(change.key, None)
        if old is not None:
            self._by_target[old].discard(change.key)
        if change.type != "DELETED" and isinstance(target.get("name"), str):
            new = f"{namespace}/{target['name']}"
            self._target_of[change.key] = new
            self._by_target[new].add(change.key)
        self.mark(change.key)

    async def on_deployment(self, change: informers.Change) -> None:
        canaries = set(self._by_target.get(change.key, ()))
        if change.key.endswith(objects.PRIMARY_SUFFIX):  # a primary: its canaries' target
            canaries |= self._by_target.get(change.key.removesuffix(objects.PRIMARY_SUFFIX), set())
        for canary_key in sorted(canaries):
            self.mark(canary_key)

    async def on_template(self, change: informers.Change) -> None:
        self._mark(("template", change.key))

    async def on_configmap(self, change: informers.Change) -> None:
        self._config_changed("configmap", change.key)

    async def on_secret(self, change: informers.Change) -> None:
        self._config_changed("secret", change.key)

    def _config_changed(self, kind: str, key: str) -> None:
        namespace, name = _split(key)
        for canary_key in list(self._by_config.get(f"{namespace}/{kind}/{name}", ())):
            self.mark(canary_key)

    # --- the worker ---

    async def run(self, caches: Caches) -> None:
        """Evaluate dirty canaries until the service stops (after the first full sync)."""
        self.caches = caches
        stopping = asyncio.ensure_future(self.rt.stopping.wait())
        try:
            synced = asyncio.ensure_future(self._synced(caches))
            await asyncio.wait({synced, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not synced.done():
                synced.cancel()
                await asyncio.wait({synced})
                return
            log.info("Kubernetes caches synced: %d canaries", len(caches.canaries.cache))
            await self._forget_orphans()
            while not self.rt.stopping.is_set():
                getter = asyncio.ensure_future(self._queue.get())
                await asyncio.wait({getter, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    await asyncio.wait({getter})
                    return
                dirty = getter.result()
                self._pending.discard(dirty)
                await self._evaluate_safely(dirty)
        finally:
            stopping.cancel()
            for handle in self._retries:
                handle.cancel()
            self._retries.clear()

    @staticmethod
    async def _synced(caches: Caches) -> None:
        for informer in caches.all():
            await informer.synced.wait()

    async def _evaluate_safely(self, dirty: Dirty) -> None:
        kind, key = dirty
        try:
            if kind == "template":
                await self.evaluate_template(key)
            else:
                await self.evaluate(key)
        except errors.TemporaryError as exc:
            log.warning("%s %s: %s; retrying in %.1fs", kind, key, exc, self.retry_delay_s)
            self._retry_later(dirty)
        except errors.PermanentError as exc:
            # e.g. a name that cannot be a KV key or subject token: retrying the same objects
            # cannot help, and the next change of any of them is evaluated again
            said = f"{TEMPLATE_NOTICE}{key}" if kind == "template" else key
            self._say_once(said, f"{kind} {key}: {exc}; waiting for a change")
        except Exception:
            log.exception(
                "%s %s: evaluation failed; retrying in %.1fs", kind, key, self.retry_delay_s
            )
            self._retry_later(dirty)

    def _retry_later(self, dirty: Dirty) -> None:
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._retries.discard(handle)
            self._mark(dirty)

        handle = loop.call_later(self.retry_delay_s, fire)
        self._retries.add(handle)

    def _say_once(self, key: str, notice: str, level: int = logging.WARNING) -> None:
        """Log a notice about a canary (``ns/name``) or a template (``template ns/name``) once
        until it changes."""
        if self._said.get(key) != notice:
            self._said[key] = notice
            context = {} if key.startswith(TEMPLATE_NOTICE) else {"canary": key}
            log.log(level, "%s", notice, extra=context)

    def _index_configs(self, key: str, configs: set[str]) -> None:
        for old in self._configs_of.pop(key, set()):
            self._by_config[old].discard(key)
        if configs:
            self._configs_of[key] = configs
            for config in configs:
                self._by_config[config].add(key)

    def _in_use(self, workload: str) -> bool:
        """Whether some canary still observes the workload (``ns/name``), as target or primary."""
        return any(w == workload for w, _ in self._recorded.values()) or any(
            w == workload for w, _ in self._primaries.values()
        )

    async def _forget_workload(self, workload: str, reason: str) -> None:
        if self._in_use(workload):
            return  # another canary observes the same workload
        namespace, name = _split(workload)
        await self.watcher.forget(namespace, name)
        log.info("forgot the observation of %s.%s: %s", name, namespace, reason)

    async def _drop(self, key: str, reason: str) -> None:
        """The canary no longer has an observable target: delete what it recorded."""
        self._index_configs(key, set())
        recorded = self._recorded.pop(key, None)
        if recorded is not None:
            await self._forget_workload(recorded[0], reason)

    async def _drop_primary(self, key: str, reason: str) -> None:
        """The canary no longer has an observable primary: delete its observation."""
        recorded = self._primaries.pop(key, None)
        if recorded is not None:
            await self._forget_workload(recorded[0], reason)

    async def _record_canary(self, key: str, observation: messages.CanaryObservation) -> None:
        plain = objects.without_time(observation)
        if self._canaries.get(key) == plain:
            return
        await self.canaries.record(observation)
        self._canaries[key] = plain

    async def _record_primary(self, key: str, namespace: str, target: str) -> None:
        """Record the canary's primary Deployment quietly once it exists; forget it when gone."""
        assert self.caches is not None
        name = objects.primary_name(target)
        deployment = self.caches.deployments.get(namespace, name)
        if deployment is None:
            await self._drop_primary(key, f"Deployment {name} not found")
            return
        primary = f"{namespace}/{name}"
        observation = revisions.observe(deployment)
        plain = objects.without_time(observation)
        previous = self._primaries.get(key)
        if previous == (primary, plain):
            return
        if previous is not None and previous[0] != primary:
            await self._drop_primary(key, f"canary now has primary {name}")
        await self.watcher.record_quietly(observation)
        self._primaries[key] = (primary, plain)

    async def evaluate(self, key: str) -> None:
        """Re-derive one canary's observations from the caches and record them."""
        assert self.caches is not None
        namespace, name = _split(key)
        raw = self.caches.canaries.cache.get(key)
        if raw is None:
            self._said.pop(key, None)
            self._deleting.discard(key)
            self._canaries.pop(key, None)
            await self._drop_primary(key, f"canary {name}.{namespace} deleted")
            await self._drop(key, f"canary {name}.{namespace} deleted")
            await self._forget_canary(namespace, name)
            return
        try:
            messages.canary_key(namespace, name)
        except errors.InvalidInput as exc:
            # no subject can name it: no tick, no event, so no observation either
            self._say_once(key, f"canary {name}.{namespace} is not observed: {exc}")
            return
        observation = objects.observe_canary(raw)
        await self._record_canary(key, observation)
        canary = observation.canary
        if canary is not None and canary.metadata.deletion_timestamp:
            if key not in self._deleting:
                # wake the analyzer: a canary with revertOnDeletion waits for its revert
                self._deleting.add(key)
                hint = messages.RevisionDetected(
                    canary=messages.CanaryRef(namespace=namespace, name=name)
                )
                await bus.publish_event(self.rt, hint)
        else:
            self._deleting.discard(key)
        if canary is None:
            notice = (
                f"invalid canary {name}.{namespace} "
                f"(resourceVersion {observation.resource_version}), recorded with its problems:\n"
                + "\n".join(observation.problems)
            )
            if self._said.get(key) != notice:
                self.invalid.labels(namespace=namespace).inc()
                # wake the analyzer: it tells the canary's owners what is wrong (an event)
                hint = messages.RevisionDetected(
                    canary=messages.CanaryRef(namespace=namespace, name=name)
                )
                await bus.publish_event(self.rt, hint)
            self._say_once(key, notice)
            self._index_configs(key, set())
            return
        target_ref = canary.spec.target_ref
        if target_ref.kind != "Deployment":
            self._say_once(
                key, f"canary {name}.{namespace}: {target_ref.kind} targets are not observed yet"
            )
            await self._drop_primary(key, f"target kind {target_ref.kind}")
            await self._drop(key, f"target kind {target_ref.kind}")
            return
        await self._record_primary(key, namespace, target_ref.name)
        deployment = self.caches.deployments.get(namespace, target_ref.name)
        if deployment is None:
            self._say_once(
                key,
                f"canary {name}.{namespace}: Deployment {target_ref.name} not found",
                logging.INFO,
            )
            await self._drop(key, f"Deployment {target_ref.name} not found")
            return
        tracked: dict[str, str] = {}
        watched: set[str] = set()
        missing: list[str] = []
        for ref in configrefs.config_refs(revisions.pod_spec(deployment)):
            watched.add(f"{namespace}/{ref.kind}/{ref.name}")
            config = self.caches.config(ref.kind).get(namespace, ref.name)
            if config is None:
                if not ref.optional:
                    missing.append(ref.key)
                continue
            if not configrefs.tracked(ref.kind, config):
                continue
            tracked[ref.key] = str(config.get("checksum") or revisions.config_checksum(config))
        self._index_configs(key, watched)
        if missing:
            # as Flagger: a required config that does not exist stops the canary from syncing
            self._say_once(
                key,
                f"canary {name}.{namespace}: Deployment {target_ref.name} uses "
                f"{', '.join(missing)} which does not exist; waiting for it",
            )
            return
        observation_of_target = revisions.observe(deployment, tracked)
        target = f"{namespace}/{target_ref.name}"
        previous = self._recorded.get(key)
        plain = objects.without_time(observation_of_target)
        if previous is not None and previous == (target, plain):
            return
        if previous is not None and previous[0] != target:
            await self._drop(key, f"canary {name}.{namespace} now targets {target_ref.name}")
        canary_ref = messages.CanaryRef(namespace=namespace, name=name)
        if await self.watcher.record(canary_ref, observation_of_target):
            log.info(
                "new revision %s of %s.%s%s",
                observation_of_target.revision,
                target_ref.name,
                namespace,
                f" (configs {', '.join(sorted(tracked))})" if tracked else "",
                extra={"canary": key},
            )
        self._recorded[key] = (target, plain)
        self._said.pop(key, None)

    async def _forget_canary(self, namespace: str, name: str) -> None:
        try:
            messages.canary_key(namespace, name)
        except errors.InvalidInput:
            return  # never recorded
        await self.canaries.forget(namespace, name)
        log.info("forgot the canary %s.%s: deleted", name, namespace)

    async def evaluate_template(self, key: str) -> None:
        """Record one MetricTemplate's observation from the cache (or delete it)."""
        assert self.caches is not None
        namespace, name = _split(key)
        said = f"{TEMPLATE_NOTICE}{key}"
        raw = self.caches.templates.cache.get(key)
        try:
            messages.template_key(namespace, name)
        except errors.InvalidInput as exc:
            if raw is not None:
                self._say_once(said, f"MetricTemplate {name}.{namespace} is not observed: {exc}")
            return
        if raw is None:
            self._said.pop(said, None)
            self._templates.pop(key, None)
            await self.templates.forget(namespace, name)
            log.info("forgot the MetricTemplate %s.%s: deleted", name, namespace)
            return
        observation = objects.observe_template(raw)
        if observation.template is None:
            notice = (
                f"invalid MetricTemplate {name}.{namespace} "
                f"(resourceVersion {observation.resource_version}), recorded with its problems:\n"
                + "\n".join(observation.problems)
            )
            if self._said.get(said) != notice:
                self.invalid_templates.labels(namespace=namespace).inc()
            self._say_once(said, notice)
        else:
            self._said.pop(said, None)
        plain = objects.without_time(observation)
        if self._templates.get(key) == plain:
            return
        await self.templates.record(observation)
        self._templates[key] = plain

    async def _forget_orphans(self) -> None:
        """After the first sync: delete observations nothing accounts for any more (their
        object was deleted while no watcher ran)."""
        assert self.caches is not None
        workloads = {target.replace("/", ".", 1) for target in self._target_of.values()}
        workloads |= {objects.primary_name(workload) for workload in workloads}
        canaries = {key.replace("/", ".", 1) for key in self.caches.canaries.cache}
        templates = {key.replace("/", ".", 1) for key in self.caches.templates.cache}
        await self._forget_unwanted(self.watcher, workloads, "no canary targets it")
        await self._forget_unwanted(self.canaries, canaries, "no such canary")
        await self._forget_unwanted(self.templates, templates, "no such MetricTemplate")

    async def _forget_unwanted(
        self,
        store: observing.Store[Any],
        wanted: set[str],
        reason: str,
    ) -> None:
        try:
            for stored in await store.keys():
                namespace = stored.split(".", 1)[0]
                if self.namespaces and namespace not in self.namespaces:
                    continue
                if stored not in wanted:
                    await store.forget(*stored.split(".", 1))
                    log.info("forgot the %s %s: %s", store.what, stored, reason)
        except errors.SluiceError as exc:
            log.warning("could not clean up stale %ss: %s", store.what, exc)
