"""Status writes whose outcome is unknown: a step's write that timed out or lost its
connection may still have been applied by the API server after the analyzer stopped waiting.

A step publishes its events only once its status write succeeded (``driving``), so such a
step's events wait here, with the status it tried to write. When a later step observes the
canary at a newer ``resourceVersion`` holding exactly that status (its timestamps make it
unique), the write did land: its events are published then, with the message ids of the step
that made them. Any other observed change means it did not, and they are forgotten. Kept in
memory only: a replica that dies meanwhile loses them (the rollout itself never depends on
events).
"""

from __future__ import annotations

from libs import messages
from libs.model import canary as canary_model

MAX_ATTEMPTS = 8  # unconfirmed writes kept per canary (attempts from the same state)

Candidate = tuple[canary_model.CanaryStatus, tuple[messages.EventBase, ...]]


class Unconfirmed:
    def __init__(self) -> None:
        # canary → (the resourceVersion the writes were conditioned on, their candidates)
        self._steps: dict[tuple[str, str], tuple[str, list[Candidate]]] = {}

    def remember(
        self,
        ref: messages.CanaryRef,
        resource_version: str,
        status: canary_model.CanaryStatus,
        events: tuple[messages.EventBase, ...],
    ) -> None:
        key = (ref.namespace, ref.name)
        held = self._steps.get(key)
        if held is None or held[0] != resource_version:
            held = (resource_version, [])
            self._steps[key] = held
        held[1].append((status, events))
        del held[1][:-MAX_ATTEMPTS]

    def settle(
        self,
        ref: messages.CanaryRef,
        resource_version: str,
        status: canary_model.CanaryStatus | None,
    ) -> tuple[str, tuple[messages.EventBase, ...]] | None:
        """Given the canary as now observed: (the resourceVersion the landed step started from,
        its events) when an unconfirmed write turns out to have been applied; None otherwise.
        Forgets the canary's candidates once the observation has moved past them."""
        key = (ref.namespace, ref.name)
        held = self._steps.get(key)
        if held is None or held[0] == resource_version:
            return None  # nothing unconfirmed, or not observed since: keep waiting
        del self._steps[key]
        for candidate, events in held[1]:
            if candidate == status:
                return held[0], events
        return None
