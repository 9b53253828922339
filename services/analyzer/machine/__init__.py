"""One analysis step of one canary, as Flagger's scheduler takes it — with no I/O at all.

``step(ctx)`` is a generator. It yields the effects the step needs — run the webhooks of a type,
check the metrics, initialize, set weights, scale, promote, guard or revert on deletion — and
receives each one's outcome; it returns the ``Outcome``: the canary's new status and the events
of the step, in order. The analyzer drives it against the bus (commands, queries); tests drive
it with scripted answers, so every transition of Flagger's table is checked without a server.

A command that fails is not an outcome the step sees: the driver raises, nothing of the step
is committed, and the step is taken again later (commands are desired state, so repeating
them is harmless). The status write is the step's commit point.

``scheduler`` is Flagger's step (initialization, revisions, readiness, rollback, analysis,
promotion, deletion); ``strategies`` how a good step moves each strategy forward (canary
weights, blue/green and A/B iterations, mirroring) and the promotion gate; ``stepping`` the
state of a step while it runs; ``effects`` the vocabulary between the step and its driver.
"""

from services.analyzer.machine.effects import (
    Answer,
    CheckMetrics,
    Context,
    Effect,
    Hook,
    HooksOutcome,
    Initialize,
    MetricsOutcome,
    Outcome,
    Phase,
    Promote,
    Revert,
    RunHooks,
    Scale,
    SetFinalizer,
    SetWeights,
    Step,
)
from services.analyzer.machine.scheduler import step
from services.analyzer.machine.stepping import (
    GATE_CONDITION,
    PROMOTED_CONDITION,
    not_ready,
    parse_rfc3339,
    rfc3339,
)

__all__ = [
    "GATE_CONDITION",
    "PROMOTED_CONDITION",
    "Answer",
    "CheckMetrics",
    "Context",
    "Effect",
    "Hook",
    "HooksOutcome",
    "Initialize",
    "MetricsOutcome",
    "Outcome",
    "Phase",
    "Promote",
    "Revert",
    "RunHooks",
    "Scale",
    "SetFinalizer",
    "SetWeights",
    "Step",
    "not_ready",
    "parse_rfc3339",
    "rfc3339",
    "step",
]
