"""What a step asks of the world (effects), what it is told back (answers), what it starts from
(``Context``) and what it ends with (``Outcome``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Generator

from libs import messages
from libs.model import analysis as analysis_model
from libs.model import canary as canary_model

Phase = canary_model.Phase
Hook = analysis_model.WebhookType


@dataclasses.dataclass(frozen=True)
class Initialize:
    """Primary workload, Services, primary HPA; target scaled to 0."""


@dataclasses.dataclass(frozen=True)
class SetWeights:
    """The canary route's split. ``mirror``: the percentage of requests also copied to the
    canary (0 = none). The driver adds the A/B match of the canary's analysis."""

    primary: int
    canary: int
    mirror: int = 0


@dataclasses.dataclass(frozen=True)
class Scale:
    workload: str
    replicas: int
    up: bool = False  # Flagger's scale-up from zero: the traffic-shifter picks the replicas


@dataclasses.dataclass(frozen=True)
class Promote:
    """Copy the target's pod template (and configs) to the primary workload."""


@dataclasses.dataclass(frozen=True)
class RunHooks:
    """Call every webhook of ``type`` in order; answered with ``HooksOutcome``."""

    type: Hook
    phase: Phase


@dataclasses.dataclass(frozen=True)
class CheckMetrics:
    """Query every metric of the analysis in Flagger's order; answered with ``MetricsOutcome``."""


@dataclasses.dataclass(frozen=True)
class SetFinalizer:
    """Add or remove the revertOnDeletion finalizer on the Canary."""

    present: bool


@dataclasses.dataclass(frozen=True)
class Revert:
    """The Canary is being deleted with revertOnDeletion: give the target its traffic back."""


Effect = Initialize | SetWeights | Scale | Promote | RunHooks | CheckMetrics | SetFinalizer | Revert


@dataclasses.dataclass(frozen=True)
class HooksOutcome:
    ok: bool  # every hook answered <= 202 (no hooks of the type: True)
    failed: str = ""  # the first hook that did not
    error: str = ""
    mute_alert: bool = False  # that hook's muteAlert
    any_ok: bool = False  # at least one hook answered <= 202 (rollback hooks trigger on it)
    passed: tuple[str, ...] = ()  # the hooks that answered <= 202, in order


@dataclasses.dataclass(frozen=True)
class MetricsOutcome:
    ok: bool
    halt: str = ""  # Flagger's "Halt ..." message of the first failed check
    checked: tuple[messages.MetricChecked, ...] = ()  # every measured value, for events


Answer = HooksOutcome | MetricsOutcome | None  # None: a command was carried out


@dataclasses.dataclass(frozen=True)
class Context:
    canary: canary_model.Canary
    status: canary_model.CanaryStatus
    target: messages.WorkloadObservation | None  # the target Deployment, as the watcher sees it
    primary: messages.WorkloadObservation | None  # <target>-primary, once it exists
    now_ms: int


@dataclasses.dataclass(frozen=True)
class Outcome:
    status: canary_model.CanaryStatus
    events: tuple[messages.EventBase, ...] = ()


Step = Generator[Effect, Answer, Outcome]
Gate = Generator[Effect, Answer, bool]  # a gate's verdict: True when it is open
