"""The routes as they were before Sluice touched them, in the ``sluice_routes`` KV bucket.

Key ``<namespace>.<canary>``, value the route's ``value`` exactly as the Admin API returned it
at initialization (JSON). It is written once (a KV create: the first recording wins, a second
``initialize`` keeps it), read whenever Sluice gives back a plugin it changed, and deleted when
the canary's route has been given back.
"""

from __future__ import annotations

from typing import Any

import msgspec
from nats.js.kv import KeyValue

from libs import bus, errors, messages

Obj = dict[str, Any]
TIMEOUT_S = 5.0  # the KV client's own request timeout bounds each call; named in errors
ATTEMPTS = 3
_DECODER = msgspec.json.Decoder(dict[str, Any])


class RouteRecords:
    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    @staticmethod
    def key(ref: messages.CanaryRef) -> str:
        return messages.canary_key(ref.namespace, ref.name)

    async def get(self, ref: messages.CanaryRef) -> Obj | None:
        key = self.key(ref)
        try:
            with bus.nats_errors(f"reading the recorded route {key}", TIMEOUT_S):
                entry = await self.kv.get(key)
        except errors.NotFound:
            return None
        if not entry.value:
            return None
        try:
            return _DECODER.decode(entry.value)
        except msgspec.DecodeError as exc:
            raise errors.InvalidInput(
                f"the recorded route {key} in sluice_routes is not a JSON object: {exc}",
                path=key,
            ) from exc

    async def record(self, ref: messages.CanaryRef, value: Obj) -> Obj:
        """Record ``value`` unless a value is recorded already; return the recorded one."""
        key = self.key(ref)
        for _ in range(ATTEMPTS):
            try:
                with bus.nats_errors(f"recording the route {key}", TIMEOUT_S):
                    await self.kv.create(key, msgspec.json.encode(value))
            except errors.Conflict:
                recorded = await self.get(ref)  # recorded before (a command, another replica)
                if recorded is not None:
                    return recorded
                continue  # deleted in between: record again
            return value
        raise errors.Conflict(f"recording the route {key}: it kept changing concurrently")

    async def forget(self, ref: messages.CanaryRef) -> None:
        key = self.key(ref)
        try:
            with bus.nats_errors(f"deleting the recorded route {key}", TIMEOUT_S):
                await self.kv.delete(key)
        except errors.NotFound:
            pass
