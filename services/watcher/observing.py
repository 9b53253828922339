"""Recording observations: the level-based truth other services read.

``record`` writes a workload's observation to the ``sluice_workloads`` bucket with
compare-and-set on the KV revision (so two watcher replicas cannot interleave stale writes)
and publishes a ``revision_detected`` event when the pod-template hash or a tracked config
checksum changed since the stored observation. Replica-count changes are not revisions.
A lost compare-and-set (another replica wrote first) re-reads and retries, so the event is
decided against the latest stored value and published once. ``forget`` deletes an
observation whose canary or workload is gone, so a canary created again is a new revision.
"""

from __future__ import annotations

import logging

import msgspec
import nats.js.errors
from nats.js.kv import KeyValue

from libs import bus, errors, lifecycle, messages

log = logging.getLogger(__name__)

CAS_ATTEMPTS = 5  # compare-and-set tries before the conflict is reported (a temporary error)


def is_new_revision(
    previous: messages.WorkloadObservation | None, current: messages.WorkloadObservation
) -> bool:
    if previous is None:
        return True
    return (
        previous.revision != current.revision or previous.tracked_configs != current.tracked_configs
    )


class Watcher:
    def __init__(self, rt: lifecycle.Runtime, kv: KeyValue) -> None:
        self.rt = rt
        self.kv = kv

    async def _load(self, key: str) -> tuple[messages.WorkloadObservation | None, int]:
        try:
            with bus.nats_errors(
                f"reading observation {key}", self.rt.settings.nats_request_timeout_s
            ):
                entry = await self.kv.get(key)
        except errors.NotFound:
            return None, 0
        if entry.value is None:
            return None, entry.revision or 0
        try:
            return messages.OBSERVATION_DECODER.decode(entry.value), entry.revision or 0
        except msgspec.DecodeError:
            log.warning("replacing undecodable observation at %s", key)
            return None, entry.revision or 0

    async def record(
        self, canary: messages.CanaryRef, observation: messages.WorkloadObservation
    ) -> bool:
        """Store the observation; publish ``revision_detected`` if it is a new revision."""
        key = messages.workload_key(observation.namespace, observation.name)
        data = messages.ENCODER.encode(observation)
        for attempt in range(1, CAS_ATTEMPTS + 1):
            previous, revision = await self._load(key)
            try:
                with bus.nats_errors(
                    f"writing observation {key}", self.rt.settings.nats_request_timeout_s
                ):
                    if revision:
                        await self.kv.update(key, data, last=revision)
                    else:
                        await self.kv.create(key, data)
                break
            except errors.Conflict:
                if attempt == CAS_ATTEMPTS:
                    raise
                log.debug("observation %s changed concurrently; reading it again", key)
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

    async def forget(self, namespace: str, name: str) -> None:
        """Delete a workload's observation (its canary or the workload itself is gone)."""
        key = messages.workload_key(namespace, name)
        with bus.nats_errors(
            f"deleting observation {key}", self.rt.settings.nats_request_timeout_s
        ):
            await self.kv.delete(key)

    async def keys(self) -> list[str]:
        """The keys of every stored observation."""
        with bus.nats_errors("listing observations", self.rt.settings.nats_request_timeout_s):
            try:
                return list(await self.kv.keys())
            except nats.js.errors.NoKeysError:  # an empty bucket is not an error here
                return []
