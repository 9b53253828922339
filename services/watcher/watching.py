"""From the informers' caches to observations: which canary to re-evaluate, and evaluating it.

Every change only marks canaries *dirty* (a de-duplicated queue); one worker evaluates them
from the caches, so the result is level-based — whatever was missed, the next evaluation of
a canary sees the current state:

    Canary changed                      → that canary
    Deployment changed                  → canaries whose targetRef names it    (index by target)
    ConfigMap / Secret changed          → canaries whose target's pod template uses it
                                          (index by config, rebuilt at each evaluation)

Evaluating a canary: parse it with ``libs.model`` (an invalid one is logged once per
resourceVersion with every problem, counted in ``sluice_watcher_invalid_canaries_total`` and
skipped), find its Deployment and the ConfigMaps/Secrets its template uses, build the
``WorkloadObservation`` and hand it to ``Watcher.record`` unless it equals the last recorded one.
A canary or target that disappears has its observation deleted, so that a canary created again
starts as a new revision. The watcher only reads Kubernetes; it never writes to it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import defaultdict
from typing import Any

import msgspec
import prometheus_client as prom

from libs import errors, lifecycle, messages
from libs.adapters import informers
from libs.model import canary as canary_model
from services.watcher import observing, revisions

log = logging.getLogger(__name__)

Obj = dict[str, Any]


@dataclasses.dataclass
class Caches:
    canaries: informers.Informer
    deployments: informers.Informer
    configmaps: informers.Informer
    secrets: informers.Informer

    def all(self) -> tuple[informers.Informer, ...]:
        return (self.canaries, self.deployments, self.configmaps, self.secrets)

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
        "checksum": revisions.config_checksum(obj),
    }


def _split(key: str) -> tuple[str, str]:
    namespace, _, name = key.partition("/")
    return namespace, name


def _without_time(observation: messages.WorkloadObservation) -> messages.WorkloadObservation:
    return msgspec.structs.replace(observation, observed_at_ms=0)


class Reconciler:
    def __init__(
        self,
        rt: lifecycle.Runtime,
        watcher: observing.Watcher,
        *,
        retry_delay_s: float = 2.0,
        namespaces: tuple[str, ...] = (),
    ) -> None:
        self.rt = rt
        self.watcher = watcher
        self.retry_delay_s = retry_delay_s
        self.namespaces = namespaces
        self.caches: Caches | None = None
        self.invalid = prom.Counter(
            "sluice_watcher_invalid_canaries_total",
            "Canary objects (per resourceVersion) skipped because they are invalid",
            ["namespace"],
            registry=rt.metrics.registry,
        )
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._pending: set[str] = set()
        self._by_target: dict[str, set[str]] = defaultdict(set)  # "ns/deployment" → canaries
        self._target_of: dict[str, str] = {}  # canary → "ns/deployment"
        self._by_config: dict[str, set[str]] = defaultdict(set)  # "ns/configmap/x" → canaries
        self._configs_of: dict[str, set[str]] = {}
        self._recorded: dict[
            str, tuple[str, messages.WorkloadObservation]
        ] = {}  # canary → (target, obs)
        self._said: dict[str, str] = {}  # canary → last notice logged (log once per state)
        self._retries: set[asyncio.TimerHandle] = set()

    # --- change handlers (called by the informers; they only mark canaries dirty) ---

    def mark(self, canary_key: str) -> None:
        if canary_key not in self._pending:
            self._pending.add(canary_key)
            self._queue.put_nowait(canary_key)

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
        for canary_key in list(self._by_target.get(change.key, ())):
            self.mark(canary_key)

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
                key = getter.result()
                self._pending.discard(key)
                await self._evaluate_safely(key)
        finally:
            stopping.cancel()
            for handle in self._retries:
                handle.cancel()
            self._retries.clear()

    @staticmethod
    async def _synced(caches: Caches) -> None:
        for informer in caches.all():
            await informer.synced.wait()

    async def _evaluate_safely(self, key: str) -> None:
        try:
            await self.evaluate(key)
        except errors.TemporaryError as exc:
            log.warning("canary %s: %s; retrying in %.1fs", key, exc, self.retry_delay_s)
            self._retry_later(key)
        except Exception:
            log.exception(
                "canary %s: evaluation failed; retrying in %.1fs", key, self.retry_delay_s
            )
            self._retry_later(key)

    def _retry_later(self, key: str) -> None:
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._retries.discard(handle)
            self.mark(key)

        handle = loop.call_later(self.retry_delay_s, fire)
        self._retries.add(handle)

    def _say_once(self, key: str, notice: str, level: int = logging.WARNING) -> None:
        if self._said.get(key) != notice:
            self._said[key] = notice
            log.log(level, "%s", notice, extra={"canary": key})

    def _index_configs(self, key: str, configs: set[str]) -> None:
        for old in self._configs_of.pop(key, set()):
            self._by_config[old].discard(key)
        if configs:
            self._configs_of[key] = configs
            for config in configs:
                self._by_config[config].add(key)

    async def _drop(self, key: str, reason: str) -> None:
        """The canary no longer has an observable target: delete what it recorded."""
        self._index_configs(key, set())
        recorded = self._recorded.pop(key, None)
        if recorded is None:
            return
        target, _ = recorded
        if any(t == target for t, _ in self._recorded.values()):
            return  # another canary observes the same workload
        namespace, name = _split(target)
        await self.watcher.forget(namespace, name)
        log.info("forgot the observation of %s.%s: %s", name, namespace, reason)

    async def evaluate(self, key: str) -> None:
        """Re-derive one canary's observation from the caches and record it."""
        assert self.caches is not None
        namespace, name = _split(key)
        raw = self.caches.canaries.cache.get(key)
        if raw is None:
            self._said.pop(key, None)
            await self._drop(key, f"canary {name}.{namespace} deleted")
            return
        version = str((raw.get("metadata") or {}).get("resourceVersion", ""))
        try:
            canary = canary_model.parse_canary(raw)
        except errors.InvalidInput as exc:
            notice = (
                f"invalid canary {name}.{namespace} (resourceVersion {version}), skipped:\n{exc}"
            )
            if self._said.get(key) != notice:
                self.invalid.labels(namespace=namespace).inc()
            self._say_once(key, notice)
            self._index_configs(key, set())
            return
        target_ref = canary.spec.target_ref
        if target_ref.kind != "Deployment":
            self._say_once(
                key, f"canary {name}.{namespace}: {target_ref.kind} targets are not observed yet"
            )
            await self._drop(key, f"target kind {target_ref.kind}")
            return
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
        for ref in revisions.config_refs(revisions.pod_spec(deployment)):
            watched.add(f"{namespace}/{ref.kind}/{ref.name}")
            config = self.caches.config(ref.kind).get(namespace, ref.name)
            if config is None:
                if not ref.optional:
                    missing.append(ref.key)
                continue
            if revisions.tracking_disabled(config):
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
        observation = revisions.observe(deployment, tracked)
        target = f"{namespace}/{target_ref.name}"
        previous = self._recorded.get(key)
        if previous is not None and previous == (target, _without_time(observation)):
            return
        if previous is not None and previous[0] != target:
            await self._drop(key, f"canary {name}.{namespace} now targets {target_ref.name}")
        canary_ref = messages.CanaryRef(namespace=namespace, name=name)
        if await self.watcher.record(canary_ref, observation):
            log.info(
                "new revision %s of %s.%s%s",
                observation.revision,
                target_ref.name,
                namespace,
                f" (configs {', '.join(sorted(tracked))})" if tracked else "",
                extra={"canary": key},
            )
        self._recorded[key] = (target, _without_time(observation))
        self._said.pop(key, None)

    async def _forget_orphans(self) -> None:
        """After the first sync: delete observations no canary accounts for any more (their
        canary was deleted while no watcher ran)."""
        assert self.caches is not None
        wanted = {target.replace("/", ".", 1) for target in self._target_of.values()}
        try:
            for stored in await self.watcher.keys():
                namespace = stored.split(".", 1)[0]
                if self.namespaces and namespace not in self.namespaces:
                    continue
                if stored not in wanted:
                    await self.watcher.forget(*stored.split(".", 1))
                    log.info("forgot the observation %s: no canary targets it", stored)
        except errors.SluiceError as exc:
            log.warning("could not clean up stale observations: %s", exc)
