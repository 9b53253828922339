"""Gates and rollback switches of the loadtester API, kept in NATS KV.

flagger-loadtester keeps them in one pod's memory: a restart forgets an approval and two
replicas disagree. Here every replica reads and writes the ``sluice_gates`` bucket, so they all
answer the same and a restart forgets nothing. Semantics stay Flagger's: a switch that was never
opened is closed; ``/gate/check`` is 200 while open, 403 while closed.

Each open or close is also a ``gate_changed`` event on the bus (with who asked), so integrations
and the notifier see approvals as they happen.
"""

from __future__ import annotations

import logging

from nats.js.kv import KeyValue

from libs import bus, errors, lifecycle, messages

log = logging.getLogger(__name__)

_SWITCH_NAMES = {"gate": "Gate", "rollback": "Rollback switch"}


class GateStore:
    def __init__(self, rt: lifecycle.Runtime, kv: KeyValue) -> None:
        self.rt = rt
        self.kv = kv

    async def is_open(self, kind: str, canary: messages.CanaryRef) -> bool:
        key = messages.gate_key(kind, canary.namespace, canary.name)
        try:
            with bus.nats_errors(f"reading {key}", self.rt.settings.nats_request_timeout_s):
                entry = await self.kv.get(key)
        except errors.NotFound:
            return False
        if not entry.value:  # deleted or purged
            return False
        try:
            return messages.GATE_DECODER.decode(entry.value).open
        except Exception:  # a value written by hand that does not decode means closed
            log.warning("%s holds an unreadable value; treating it as closed", key)
            return False

    async def set(self, kind: str, canary: messages.CanaryRef, *, open: bool, by: str) -> None:
        """Open or close a switch, then tell the bus (the switch is set even if that fails)."""
        key = messages.gate_key(kind, canary.namespace, canary.name)
        state = messages.GateState(open=open, by=by)
        with bus.nats_errors(f"writing {key}", self.rt.settings.nats_request_timeout_s):
            await self.kv.put(key, messages.ENCODER.encode(state))
        verb = "opened" if open else "closed"
        message = f"{_SWITCH_NAMES[kind]} for {canary.name}.{canary.namespace} {verb} by {by}"
        log.info("%s", message, extra={"canary": f"{canary.namespace}/{canary.name}"})
        event = messages.GateChanged(
            canary=canary, target=canary.name, message=message, gate=kind, open=open, by=by
        )
        try:
            await bus.publish_event(self.rt, event)
        except errors.SluiceError as exc:
            log.warning("could not publish %s: %s", messages.event_kind(event), exc)
