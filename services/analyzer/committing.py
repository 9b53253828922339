"""The outbox: a step's events are held durably from just before its status write until they
are published, so that no replica's death or lost answer can lose them.

A step publishes its events only once its status write succeeded (``driving``): publishing
first would tell integrations about steps that never happened. That leaves two windows where a
committed step could go untold, and the outbox closes both:

* the write timed out or lost its connection, and the API server applied it anyway;
* the replica died (or lost NATS) between the write and the publish.

Before each status write the step's candidate (the status it writes and its events) is put in
the ``sluice_outbox`` bucket under the canary's key, with the ``resourceVersion`` the write is
conditioned on; after the events are published the entry is deleted. Every step first reads the
entry (by whichever replica takes it): when the canary is now observed at a newer
``resourceVersion`` holding exactly a held status (its timestamps make it unique), that write
landed, and its events are published then, with the message ids of the step that made them (so
a publish that did happen before the death is stored once, within the stream's duplicate
window). Any other observed change means it did not land, and the entry is forgotten. Attempts
from the same state accumulate (``MAX_ATTEMPTS``): a write that timed out and was taken again
may have landed either time.

``settle`` and ``with_attempt`` are the pure part; ``KvOutbox`` keeps entries in NATS KV and
``MemoryOutbox`` in memory (for one process, as in tests).
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Protocol

import msgspec
from nats.js.kv import KeyValue

from libs import bus, errors, lifecycle, messages
from libs.model import canary as canary_model

MAX_ATTEMPTS = 8  # candidates kept per canary (attempts from the same state)


class Candidate(msgspec.Struct, frozen=True, kw_only=True):
    """One attempted status write and the events it would tell."""

    status: canary_model.CanaryStatus
    events: tuple[messages.Event, ...] = ()


class Held(msgspec.Struct, frozen=True, kw_only=True):
    """The outbox entry of one canary: writes conditioned on ``resource_version``."""

    resource_version: str
    candidates: tuple[Candidate, ...] = ()


_DECODER = msgspec.json.Decoder(Held)


@dataclasses.dataclass(frozen=True)
class Settled:
    """What an observation says about a held entry."""

    # (the resourceVersion the landed write started from, its events): tell them now
    landed: tuple[str, tuple[messages.EventBase, ...]] | None = None
    keep: bool = False  # not observed since the writes: keep waiting


def with_attempt(
    held: Held | None,
    resource_version: str,
    status: canary_model.CanaryStatus,
    events: tuple[messages.EventBase, ...],
) -> Held:
    """``held`` with one more attempt from ``resource_version`` (a new state starts afresh)."""
    # a step's events are members of the Event union (the base class only types the tuple)
    candidate = Candidate(status=status, events=typing.cast(tuple[messages.Event, ...], events))
    if held is None or held.resource_version != resource_version:
        return Held(resource_version=resource_version, candidates=(candidate,))
    return Held(
        resource_version=resource_version,
        candidates=(*held.candidates, candidate)[-MAX_ATTEMPTS:],
    )


def settle(held: Held, resource_version: str, status: canary_model.CanaryStatus | None) -> Settled:
    """Given the canary as now observed: whether a held write landed, and if the entry stays."""
    if held.resource_version == resource_version:
        return Settled(keep=True)  # nothing observed since the writes
    for candidate in held.candidates:
        if candidate.status == status:
            return Settled(landed=(held.resource_version, candidate.events))
    return Settled()


class Outbox(Protocol):
    async def read(self, ref: messages.CanaryRef) -> Held | None: ...

    async def hold(self, ref: messages.CanaryRef, held: Held) -> None: ...

    async def release(self, ref: messages.CanaryRef) -> None: ...


class KvOutbox:
    """Entries in the ``sluice_outbox`` bucket, shared by every analyzer replica."""

    def __init__(self, rt: lifecycle.Runtime, kv: KeyValue) -> None:
        self.rt = rt
        self.kv = kv

    async def read(self, ref: messages.CanaryRef) -> Held | None:
        key = messages.canary_key(ref.namespace, ref.name)
        try:
            with bus.nats_errors(f"reading outbox {key}", self.rt.settings.nats_request_timeout_s):
                entry = await self.kv.get(key)
        except errors.NotFound:
            return None
        if not entry.value:
            return None
        try:
            return bus.decode(_DECODER, entry.value)
        except errors.InvalidInput:
            return None  # an entry no replica can read tells nothing; the next hold replaces it

    async def hold(self, ref: messages.CanaryRef, held: Held) -> None:
        key = messages.canary_key(ref.namespace, ref.name)
        with bus.nats_errors(f"writing outbox {key}", self.rt.settings.nats_request_timeout_s):
            await self.kv.put(key, messages.ENCODER.encode(held))

    async def release(self, ref: messages.CanaryRef) -> None:
        key = messages.canary_key(ref.namespace, ref.name)
        with bus.nats_errors(f"deleting outbox {key}", self.rt.settings.nats_request_timeout_s):
            await self.kv.delete(key)


class MemoryOutbox:
    """Entries in this process only (a replica that dies loses them)."""

    def __init__(self) -> None:
        self._held: dict[tuple[str, str], Held] = {}

    async def read(self, ref: messages.CanaryRef) -> Held | None:
        return self._held.get((ref.namespace, ref.name))

    async def hold(self, ref: messages.CanaryRef, held: Held) -> None:
        self._held[(ref.namespace, ref.name)] = held

    async def release(self, ref: messages.CanaryRef) -> None:
        self._held.pop((ref.namespace, ref.name), None)
