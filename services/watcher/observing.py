"""Recording observations: the level-based truth other services read.

Three KV buckets, each keyed ``<namespace>.<name>`` and each written with compare-and-set on
the KV revision (so two watcher replicas cannot interleave stale writes; a lost race re-reads
and decides again against the latest stored value):

    sluice_workloads   WorkloadObservation   targets (``Watcher.record``, which publishes
                                             ``revision_detected``) and primaries
                                             (``Watcher.record_quietly``, which does not)
    sluice_canaries    CanaryObservation     ``Objects.record`` (``canaries(rt, kv)``)
    sluice_templates   TemplateObservation   ``Objects.record`` (``templates(rt, kv)``)

``Watcher.record`` publishes a ``revision_detected`` event when the pod-template hash or a
tracked config checksum changed since the stored observation; replica-count changes are not
revisions. A primary's template changing is Sluice's own promotion, never a revision, so its
observation is recorded quietly. Canary and template observations are not replaced by an
observation of an older version of the same object (``objects.stored_is_current``).
``forget`` deletes an observation whose object is gone, so a canary created again is a new
revision.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Generic, TypeVar

import msgspec
import nats.js.errors
from nats.js.kv import KeyValue

from libs import bus, errors, lifecycle, messages
from services.watcher import objects

log = logging.getLogger(__name__)

CAS_ATTEMPTS = 5  # compare-and-set tries before the conflict is reported (a temporary error)

T = TypeVar("T", bound=msgspec.Struct)


def is_new_revision(
    previous: messages.WorkloadObservation | None, current: messages.WorkloadObservation
) -> bool:
    if previous is None:
        return True
    return (
        previous.revision != current.revision or previous.tracked_configs != current.tracked_configs
    )


class Store(Generic[T]):
    """One KV bucket of observations of one type."""

    def __init__(
        self,
        rt: lifecycle.Runtime,
        kv: KeyValue,
        decoder: msgspec.json.Decoder[T],
        key: Callable[[str, str], str],
        *,
        what: str = "observation",
    ) -> None:
        self.rt = rt
        self.kv = kv
        self.decoder = decoder
        self.key = key
        self.what = what

    async def _load(self, key: str) -> tuple[T | None, int]:
        try:
            with bus.nats_errors(
                f"reading {self.what} {key}", self.rt.settings.nats_request_timeout_s
            ):
                entry = await self.kv.get(key)
        except errors.NotFound:
            return None, 0
        if entry.value is None:
            return None, entry.revision or 0
        try:
            return self.decoder.decode(entry.value), entry.revision or 0
        except msgspec.DecodeError:
            log.warning("replacing undecodable %s at %s", self.what, key)
            return None, entry.revision or 0

    async def get(self, key: str) -> T | None:
        """The stored observation (None when there is none, or it does not decode)."""
        found, _ = await self._load(key)
        return found

    async def put(
        self, key: str, value: T, *, keep: Callable[[T | None], bool] | None = None
    ) -> tuple[bool, T | None]:
        """Write ``value`` unless ``keep(stored)`` says the stored value stays.

        Returns whether it wrote, and the stored value it decided against."""
        data = messages.ENCODER.encode(value)
        for attempt in range(1, CAS_ATTEMPTS + 1):
            previous, revision = await self._load(key)
            if keep is not None and keep(previous):
                return False, previous
            try:
                with bus.nats_errors(
                    f"writing {self.what} {key}", self.rt.settings.nats_request_timeout_s
                ):
                    if revision:
                        await self.kv.update(key, data, last=revision)
                    else:
                        await self.kv.create(key, data)
                return True, previous
            except errors.Conflict:
                if attempt == CAS_ATTEMPTS:
                    raise
                log.debug("%s %s changed concurrently; reading it again", self.what, key)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def forget(self, namespace: str, name: str) -> None:
        """Delete an object's observation (the object, or what made it observed, is gone)."""
        key = self.key(namespace, name)
        with bus.nats_errors(
            f"deleting {self.what} {key}", self.rt.settings.nats_request_timeout_s
        ):
            await self.kv.delete(key)

    async def keys(self) -> list[str]:
        """The keys of every stored observation."""
        with bus.nats_errors(f"listing {self.what}s", self.rt.settings.nats_request_timeout_s):
            try:
                return list(await self.kv.keys())
            except nats.js.errors.NoKeysError:  # an empty bucket is not an error here
                return []


class Watcher(Store[messages.WorkloadObservation]):
    """Workload observations (``sluice_workloads``) and the ``revision_detected`` events."""

    def __init__(self, rt: lifecycle.Runtime, kv: KeyValue) -> None:
        super().__init__(rt, kv, messages.OBSERVATION_DECODER, messages.workload_key)

    async def record(
        self, canary: messages.CanaryRef, observation: messages.WorkloadObservation
    ) -> bool:
        """Store a target's observation; publish ``revision_detected`` if it is a new revision."""
        key = messages.workload_key(observation.namespace, observation.name)
        _, previous = await self.put(key, observation)
        if not is_new_revision(previous, observation):
            return False
        await bus.publish_event(
            self.rt,
            messages.RevisionDetected(
                canary=canary,
                target=observation.name,
                revision=observation.revision,
                tracked_configs=observation.tracked_configs,
                message=f"revision {observation.revision} of {observation.name}.{observation.namespace}",
            ),
        )
        return True

    async def record_quietly(self, observation: messages.WorkloadObservation) -> bool:
        """Store a workload's observation without any event (a canary's primary); an equal
        stored observation is left as it is. Returns whether it wrote."""
        key = messages.workload_key(observation.namespace, observation.name)
        plain = objects.without_time(observation)
        written, _ = await self.put(
            key,
            observation,
            keep=lambda stored: stored is not None and objects.without_time(stored) == plain,
        )
        return written


Obs = TypeVar("Obs", messages.CanaryObservation, messages.TemplateObservation)


class Objects(Store[Obs]):
    """Observations of Flagger objects (Canaries, MetricTemplates), one per object."""

    async def record(self, observation: Obs) -> bool:
        """Store the observation unless the stored one is current (the same, or of a later
        version of the object). Returns whether it wrote."""
        written, _ = await self.put(
            self.key(observation.namespace, observation.name),
            observation,
            keep=lambda stored: objects.stored_is_current(stored, observation),
        )
        return written


def canaries(rt: lifecycle.Runtime, kv: KeyValue) -> Objects[messages.CanaryObservation]:
    """The ``sluice_canaries`` bucket."""
    return Objects(
        rt, kv, messages.CANARY_OBSERVATION_DECODER, messages.canary_key, what="canary observation"
    )


def templates(rt: lifecycle.Runtime, kv: KeyValue) -> Objects[messages.TemplateObservation]:
    """The ``sluice_templates`` bucket."""
    return Objects(
        rt,
        kv,
        messages.TEMPLATE_OBSERVATION_DECODER,
        messages.template_key,
        what="template observation",
    )
