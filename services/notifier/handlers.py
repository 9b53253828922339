"""What the notifier does with one event from ``SLUICE_EVENTS``.

In this order, so that a failure of a later step never repeats an earlier one:

1. **Alerts** (``alerting``): the destinations of an event Flagger alerts on, sent at once;
   each destination that got the event is marked in the ``sluice_notified`` KV bucket (the
   key derives from the event's identity and the destination), so a redelivered event — after
   a crash, or after step 3 failed — never alerts twice, on any replica.
2. **Event webhooks**: every recorded event, Flagger's payload, marked the same way.
3. **Kubernetes Event** on the Canary (``kubeevents``): Kubernetes being down is a temporary
   error, so the bus event comes back later and the Event is written then; a rate-limited burst
   is re-scheduled, never dropped.

A provider that fails (after its retries, within its deadline) does not hold up the others or
the stream: its outcome is a ``DeliveryResult`` with ``ok=false`` on
``sluice.deliveries.<ns>.<canary>`` and in ``sluice_notifications_total``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any

import prometheus_client as prom
from nats.js.kv import KeyValue

from libs import bus, consuming, errors, lifecycle, logs, messages
from libs.model import canary as canary_model
from services.notifier import alerting, kubeevents, lookup
from services.notifier.providers import delivery, notices

log = logging.getLogger(__name__)


def event_identity(event: messages.EventBase) -> str:
    """The event's message id as its publisher derived it (``bus.content_id`` of its JSON)."""
    return bus.content_id(messages.ENCODER.encode(event))


def _fields(event: messages.EventBase) -> tuple[notices.Field, ...]:
    """What the event itself says beyond its message (the values behind a decision)."""
    out: list[notices.Field] = []
    reason = getattr(event, "reason", "")
    if reason:
        out.append(notices.Field(name="Reason", value=str(reason)))
    failed = getattr(event, "failed_checks", 0)
    if failed:
        out.append(notices.Field(name="Failed checks", value=str(failed)))
    return tuple(out)


class Notifier:
    def __init__(
        self,
        rt: lifecycle.Runtime,
        *,
        router: alerting.Router,
        sender: delivery.Sender,
        marks: KeyValue,
        lookups: lookup.Lookup | None = None,
        recorder: kubeevents.Recorder | None = None,
        cluster_name: str = "",
    ) -> None:
        self.rt = rt
        self.router = router
        self.sender = sender
        self.marks = marks
        self.lookups = lookups
        self.recorder = recorder
        self.cluster_name = cluster_name
        self.sent = prom.Counter(
            "sluice_notifications_total",
            "Notifications by provider and outcome (ok, failed, duplicate)",
            ["provider", "outcome"],
            registry=rt.metrics.registry,
        )

    async def on_event(self, event: messages.Event) -> consuming.Later | None:
        ref = event.canary
        ctx = {"canary": f"{ref.namespace}/{ref.name}"}
        log.log(
            logging.WARNING if event.severity != messages.Severity.INFO else logging.INFO,
            "%s: %s",
            messages.event_kind(event),
            event.message or "(no message)",
            extra=ctx,
        )
        identity = event_identity(event)
        obj = await self.lookups.canary(ref.namespace, ref.name) if self.lookups else None
        canary = _parse(obj)
        destinations: list[alerting.Destination] = []
        if alerting.alerts_on(event):
            found, problems = await self.router.destinations(canary, event.severity)
            destinations += found
            for problem in problems:
                log.warning("%s", problem, extra=ctx)
        if kubeevents.records(event):
            destinations += self.router.event_webhooks(canary)
        if destinations:
            notice = self._notice(event, canary)
            await asyncio.gather(*(self._deliver(identity, d, notice, event) for d in destinations))
        if self.recorder is not None and obj is not None and kubeevents.records(event):
            try:
                await self.recorder.record(obj, event, identity)
            except kubeevents.RateLimited as exc:
                return consuming.Later(exc.wait_s)
            self.sent.labels(provider="kubernetes-event", outcome="ok").inc()
        return None

    def _notice(
        self, event: messages.EventBase, canary: canary_model.Canary | None
    ) -> notices.Notice:
        fields = alerting.metadata_fields(canary, self.cluster_name) if canary is not None else ()
        status = canary.status if canary is not None else None
        return notices.Notice(
            name=event.canary.name,
            namespace=event.canary.namespace,
            message=event.message or messages.event_kind(event),
            fields=fields + _fields(event),
            severity=event.severity,
            phase=str(status.phase) if status is not None else "",
            checksum=status.checksum() if status is not None else "",
            at_ms=event.at_ms,
        )

    async def _deliver(
        self,
        identity: str,
        destination: alerting.Destination,
        notice: notices.Notice,
        event: messages.EventBase,
    ) -> None:
        provider = destination.target.type
        key = hashlib.sha256(f"{identity}\0{destination.name}".encode()).hexdigest()[:40]
        if await self._marked(key):
            self.sent.labels(provider=provider, outcome="duplicate").inc()
            return
        outcome = await self.sender.send(destination.target, notice)
        self.sent.labels(provider=provider, outcome="ok" if outcome.ok else "failed").inc()
        if outcome.ok:
            await self._mark(key)
        else:
            log.warning(
                "%s could not be told about %s: %s",
                destination.name,
                messages.event_kind(event),
                outcome.error,
                extra={"canary": f"{event.canary.namespace}/{event.canary.name}"},
            )
        result = messages.DeliveryResult(
            canary=event.canary,
            event_kind=messages.event_kind(event),
            provider=destination.name,
            ok=outcome.ok,
            error=logs.clip(outcome.error),
        )
        try:
            subject = messages.delivery_subject(event.canary.namespace, event.canary.name)
            await self.rt.nc.publish(subject, messages.ENCODER.encode(result))
        except errors.SluiceError as exc:
            log.debug("delivery result not published: %s", exc)
        except Exception as exc:  # core NATS publish: best effort
            log.debug("delivery result not published: %s", logs.clip(str(exc)))

    async def _marked(self, key: str) -> bool:
        try:
            with bus.nats_errors(f"reading {key}", self.rt.settings.nats_request_timeout_s):
                await self.marks.get(key)
        except errors.NotFound:
            return False
        return True

    async def _mark(self, key: str) -> None:
        try:
            with bus.nats_errors(f"writing {key}", self.rt.settings.nats_request_timeout_s):
                await self.marks.put(key, b"1")
        except errors.SluiceError as exc:  # worst case: a redelivered event alerts again
            log.warning("could not mark a delivery as done: %s", exc)


def _parse(obj: dict[str, Any] | None) -> canary_model.Canary | None:
    if obj is None:
        return None
    try:
        return canary_model.parse_canary(obj)
    except errors.InvalidInput as exc:
        log.debug("canary does not parse (the watcher reports it): %s", exc)
        return None
