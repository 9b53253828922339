"""Event handling of the notifier: severity routing decides who hears about an event.

Flagger's rule: an alert of severity ``info`` receives every event, ``warn`` receives warn and
error, ``error`` only error. (Flagger never fires alerts whose severity is empty although its
docs say the default is info; Sluice treats empty as info.)
"""

from __future__ import annotations

import logging

from libs import bus, lifecycle, messages

log = logging.getLogger(__name__)

_RANK = {messages.Severity.INFO: 0, messages.Severity.WARN: 1, messages.Severity.ERROR: 2}


def admits(alert_severity: messages.Severity | str, event_severity: messages.Severity) -> bool:
    """Whether an alert configured at ``alert_severity`` receives an event of ``event_severity``."""
    configured = messages.Severity(alert_severity or messages.Severity.INFO)
    return _RANK[event_severity] >= _RANK[configured]


class Notifier:
    def __init__(self, rt: lifecycle.Runtime) -> None:
        self.rt = rt

    async def on_event(self, event: messages.Event) -> bus.Later | None:
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
