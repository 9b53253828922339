"""Standalone canaries in the ``sluice_canaries`` KV bucket: the bucket is their API server.

In Kubernetes mode the watcher copies each Canary into ``sluice_canaries``; in standalone mode
the entry *is* the canary: ``sluice apply`` (or the watcher, from ``SLUICE_CANARIES_DIR``)
writes the spec, the analyzer writes the status, the traffic-shifter the finalizer. Every write
is a compare-and-set on the entry's KV revision, which plays the part of ``resourceVersion``:
two analyzer replicas can never both commit a step, and an apply never loses a status write.

The value is a ``messages.CanaryObservation`` whose ``canary`` is the Flagger Canary the
analyzer steps (``standalone.to_canary``), with the route and upstreams in ``apisix``.

    store = CanaryStore(await js.key_value("sluice_canaries"), timeout_s=5)
    await store.apply(apisix_canary)                    # "created" / "configured" / "unchanged"
    observed = await store.get("default", "podinfo")    # resource_version = KV revision
    await store.write_status(ref, observed.resource_version, status)
    await store.delete(ref)                             # "deleting" (finalizer) / "deleted"
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Callable

import msgspec
from nats.js.kv import KeyValue

from libs import bus, errors, messages
from libs.model import canary as canary_model
from libs.model import standalone

ATTEMPTS = 8  # compare-and-set rounds before a write that keeps losing gives up


def _rfc3339(ms: int) -> str:
    return (
        datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
        .isoformat(timespec="seconds")
        .replace("+00:00", "Z")
    )


class CanaryStore:
    def __init__(self, kv: KeyValue, timeout_s: float = 5.0) -> None:
        self.kv = kv
        self.timeout_s = timeout_s

    # --- reads

    async def get(self, namespace: str, name: str) -> messages.CanaryObservation | None:
        """The canary, with its KV revision as ``resource_version``; None when there is none."""
        key = messages.canary_key(namespace, name)
        try:
            with bus.nats_errors(f"reading {key}", self.timeout_s):
                entry = await self.kv.get(key)
        except errors.NotFound:
            return None
        if not entry.value:
            return None
        observed = bus.decode(messages.CANARY_OBSERVATION_DECODER, entry.value)
        return msgspec.structs.replace(observed, resource_version=str(entry.revision))

    async def fresh(self, ref: messages.CanaryRef) -> tuple[canary_model.Canary, str]:
        """The canary and its resource version, as a control request needs them."""
        observed = await self.get(ref.namespace, ref.name)
        if observed is None or observed.canary is None:
            raise errors.NotFound(f"canary {ref.name}.{ref.namespace} not found")
        return observed.canary, observed.resource_version

    async def target(self, ref: messages.CanaryRef) -> standalone.ApisixTarget:
        """The route and upstreams of a standalone canary (the traffic-shifter's question)."""
        observed = await self.get(ref.namespace, ref.name)
        if observed is None or observed.apisix is None:
            raise errors.NotFound(f"standalone canary {ref.name}.{ref.namespace} not found")
        return observed.apisix

    # --- writes

    async def apply(self, obj: standalone.ApisixCanary) -> str:
        """Create the canary or change its spec, keeping its status: ``"created"``,
        ``"configured"`` or ``"unchanged"``. A canary being deleted is refused."""
        namespace = obj.metadata.namespace or standalone.DEFAULT_NAMESPACE
        name = obj.metadata.name or ""
        target = standalone.target_of(obj)
        wanted = standalone.to_canary(obj)

        def change(old: messages.CanaryObservation | None) -> messages.CanaryObservation | None:
            now = messages.now_ms()
            if old is None or old.canary is None:
                metadata = msgspec.structs.replace(
                    wanted.metadata,
                    uid=str(uuid.uuid4()),
                    generation=1,
                    creation_timestamp=_rfc3339(now),
                    finalizers=(),
                )
                canary = msgspec.structs.replace(wanted, metadata=metadata, status=None)
                return messages.CanaryObservation(
                    namespace=namespace,
                    name=name,
                    uid=metadata.uid or "",
                    resource_version="",
                    generation=1,
                    canary=canary,
                    apisix=target,
                )
            current = old.canary
            if current.metadata.deletion_timestamp:
                raise errors.Conflict(
                    f"canary {name}.{namespace} is being deleted; apply it again once it is gone"
                )
            same_meta = (
                current.metadata.labels == wanted.metadata.labels
                and current.metadata.annotations == wanted.metadata.annotations
            )
            if current.spec == wanted.spec and old.apisix == target and same_meta:
                return None
            generation = old.generation + (
                0 if current.spec == wanted.spec and old.apisix == target else 1
            )
            metadata = msgspec.structs.replace(
                current.metadata,
                labels=wanted.metadata.labels,
                annotations=wanted.metadata.annotations,
                generation=generation,
            )
            canary = msgspec.structs.replace(current, metadata=metadata, spec=wanted.spec)
            return msgspec.structs.replace(
                old, canary=canary, apisix=target, generation=generation, observed_at_ms=now
            )

        outcome = await self._change(namespace, name, change, create=True)
        return outcome

    async def write_status(
        self, ref: messages.CanaryRef, resource_version: str, status: canary_model.CanaryStatus
    ) -> None:
        """Compare-and-set: a stale ``resource_version`` raises ``errors.Conflict``."""
        observed = await self.get(ref.namespace, ref.name)
        if observed is None or observed.canary is None:
            raise errors.NotFound(f"canary {ref.name}.{ref.namespace} not found")
        if observed.resource_version != resource_version:
            raise errors.Conflict(
                f"canary {ref.name}.{ref.namespace} changed since revision {resource_version}"
            )
        canary = msgspec.structs.replace(observed.canary, status=status)
        await self._update(ref, msgspec.structs.replace(observed, canary=canary), resource_version)

    async def mark_invalid(
        self, ref: messages.CanaryRef, resource_version: str, message: str
    ) -> None:
        """``Valid`` False with ``message``, the other conditions kept."""
        observed = await self.get(ref.namespace, ref.name)
        if observed is None or observed.canary is None:
            return
        status = observed.canary.status or canary_model.CanaryStatus()
        old = next((c for c in status.conditions if c.type == "Valid"), None)
        if old is not None and old.status == "False" and old.message == message:
            return
        now = _rfc3339(messages.now_ms())
        valid = canary_model.Condition(
            type="Valid",
            status="False",
            reason="InvalidSpec",
            message=message,
            last_transition_time=now,
            last_update_time=now,
        )
        others = tuple(c for c in status.conditions if c.type != "Valid")
        status = msgspec.structs.replace(status, conditions=(*others, valid))
        await self.write_status(ref, observed.resource_version, status)

    async def set_finalizer(self, ref: messages.CanaryRef, present: bool) -> None:
        """Add or remove Sluice's finalizer; removing it from a canary being deleted deletes
        the canary (there is nothing else to wait for)."""

        def change(old: messages.CanaryObservation | None) -> messages.CanaryObservation | None:
            if old is None or old.canary is None:
                return None
            metadata = old.canary.metadata
            has = canary_model.FINALIZER in metadata.finalizers
            if has == present:
                return None
            finalizers = (
                (*metadata.finalizers, canary_model.FINALIZER)
                if present
                else tuple(f for f in metadata.finalizers if f != canary_model.FINALIZER)
            )
            canary = msgspec.structs.replace(
                old.canary, metadata=msgspec.structs.replace(metadata, finalizers=finalizers)
            )
            return msgspec.structs.replace(old, canary=canary)

        await self._change(ref.namespace, ref.name, change)

    async def delete(self, ref: messages.CanaryRef) -> str:
        """``"deleting"``: the finalizer holds it while the route is given back (the analyzer
        does that); ``"deleted"``: it is gone. A canary that does not exist raises NotFound."""

        def change(old: messages.CanaryObservation | None) -> messages.CanaryObservation | None:
            if old is None or old.canary is None:
                raise errors.NotFound(f"canary {ref.name}.{ref.namespace} not found")
            if old.canary.metadata.deletion_timestamp:
                return None
            metadata = msgspec.structs.replace(
                old.canary.metadata, deletion_timestamp=_rfc3339(messages.now_ms())
            )
            return msgspec.structs.replace(
                old, canary=msgspec.structs.replace(old.canary, metadata=metadata)
            )

        await self._change(ref.namespace, ref.name, change)
        observed = await self.get(ref.namespace, ref.name)
        return "deleting" if observed is not None else "deleted"

    # --- compare-and-set

    async def _change(
        self,
        namespace: str,
        name: str,
        change: Callable[[messages.CanaryObservation | None], messages.CanaryObservation | None],
        *,
        create: bool = False,
    ) -> str:
        """Apply ``change`` to the current value until the compare-and-set holds; a change
        that leaves a deleting canary without finalizers deletes it."""
        ref = messages.CanaryRef(namespace=namespace, name=name)
        for _ in range(ATTEMPTS):
            old = await self.get(namespace, name)
            new = change(old)
            if new is None:
                return "unchanged"
            if old is None:
                if not create:
                    return "unchanged"
                try:
                    with bus.nats_errors(f"creating {name}.{namespace}", self.timeout_s):
                        await self.kv.create(
                            messages.canary_key(namespace, name), messages.ENCODER.encode(new)
                        )
                except errors.Conflict:
                    continue
                return "created"
            try:
                if (
                    new.canary is not None
                    and new.canary.metadata.deletion_timestamp
                    and not new.canary.metadata.finalizers
                ):
                    with bus.nats_errors(f"deleting {name}.{namespace}", self.timeout_s):
                        await self.kv.delete(
                            messages.canary_key(namespace, name), last=int(old.resource_version)
                        )
                    return "deleted"
                await self._update(ref, new, old.resource_version)
            except errors.Conflict:
                continue
            return "configured"
        raise errors.Conflict(
            f"canary {name}.{namespace} changed {ATTEMPTS} times while it was written; try again"
        )

    async def _update(
        self, ref: messages.CanaryRef, value: messages.CanaryObservation, resource_version: str
    ) -> None:
        value = msgspec.structs.replace(
            value, resource_version="", observed_at_ms=messages.now_ms()
        )
        with bus.nats_errors(f"writing {ref.name}.{ref.namespace}", self.timeout_s):
            await self.kv.update(
                messages.canary_key(ref.namespace, ref.name),
                messages.ENCODER.encode(value),
                last=int(resource_version),
            )
