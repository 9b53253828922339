"""Event handling of the notifier.

Severity routing (which alert hears which event) is ``libs.model.alerts.receives``.
"""

from __future__ import annotations

import logging

from libs import consuming, lifecycle, messages

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, rt: lifecycle.Runtime) -> None:
        self.rt = rt

    async def on_event(self, event: messages.Event) -> consuming.Later | None:
        # Chat providers and Kubernetes Events are attached in later work; the event log line
        # is the channel every deployment has.
        log.log(
            logging.WARNING if event.severity != messages.Severity.INFO else logging.INFO,
            "%s: %s",
            messages.event_kind(event),
            event.message or "(no message)",
            extra={"canary": f"{event.canary.namespace}/{event.canary.name}"},
        )
        return None
