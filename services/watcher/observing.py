"""Recording observations: the level-based truth other services read.

``record`` writes a workload's observation to the ``sluice_workloads`` bucket with
compare-and-set on the KV revision (so two watcher replicas cannot interleave stale writes)
and publishes a ``revision_detected`` event when the pod-template hash or a tracked config
checksum changed since the stored observation. Replica-count changes are not revisions.
"""

from __future__ import annotations

import logging

import msgspec
from nats.js.kv import KeyValue

from libs import bus, errors, lifecycle, messages

log = logging.getLogger(__name__)


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
        previous, revision = await self._load(key)
        data = messages.ENCODER.encode(observation)
        with bus.nats_errors(f"writing observation {key}", self.rt.settings.nats_request_timeout_s):
            if revision:
                await self.kv.update(key, data, last=revision)
            else:
                await self.kv.create(key, data)
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
