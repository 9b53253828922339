"""Control requests — promote, abort, pause, resume, retry, approve, reject — with no I/O.

``admit`` decides whether a request fits the canary now and what to write to its status:
pause and resume take effect at once (the ``Paused`` condition); the others are recorded as
``status.control``, a pending request, and carried out by the canary's next step, so the
step stays the one place where a canary moves and a crash between the two loses nothing:

* promote — Progressing or WaitingPromotion: the rest of the analysis (and a waiting gate)
  is skipped, the target's spec is copied to the primary, then Promoting and Finalising as
  usual;
* abort — Progressing, WaitingPromotion or Waiting: rolled back now, as a failed analysis;
* reject — like abort, for the gate the canary waits at;
* retry — Failed: the same revision is analysed again (confirm-rollout gate first);
* approve — the gate the canary waits at opens once, when the step next asks it.

A request that no longer fits when its step comes (the canary moved on first) is dropped and
said so. One request is pending at a time; abort replaces a pending one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator

import msgspec

from libs import messages
from libs.model import canary as canary_model
from services.analyzer.machine.effects import Answer, Effect, Hook, HooksOutcome, Phase, RunHooks
from services.analyzer.machine.stepping import (
    PASSED_PREFIX,
    StepState,
    rfc3339,
    waiting_at,
    with_condition,
)

PAUSED_CONDITION = "Paused"
GATES = (Hook.CONFIRM_ROLLOUT, Hook.CONFIRM_TRAFFIC_INCREASE, Hook.CONFIRM_PROMOTION)
ANALYSING = (Phase.PROGRESSING, Phase.WAITING_PROMOTION)
ABORTABLE = (*ANALYSING, Phase.WAITING)
AT_ONCE = ("pause", "resume")  # take effect when admitted; the others by the next step
ON_NEXT_STEP = ("promote", "abort", "reject")  # carried out as the next step starts


@dataclasses.dataclass(frozen=True)
class Admission:
    accepted: bool
    message: str  # what the requester is told
    status: canary_model.CanaryStatus | None = None  # the status to write when accepted
    gate: str = ""  # approve / reject: the gate's webhook type


def label(canary: canary_model.Canary) -> str:
    return f"{canary.metadata.name}.{canary.metadata.namespace}"


def paused(status: canary_model.CanaryStatus) -> canary_model.Condition | None:
    """The ``Paused`` condition while ``sluice pause`` holds the canary."""
    found = next((c for c in status.conditions if c.type == PAUSED_CONDITION), None)
    return found if found is not None and found.status == "True" else None


def pending(status: canary_model.CanaryStatus) -> canary_model.ControlRecord | None:
    record = status.control
    return record if record is not None and record.pending else None


def resolve_gate(
    canary: canary_model.Canary, status: canary_model.CanaryStatus, wanted: str
) -> Hook | str:
    """The gate a request names — a confirm-* type or the name of a gate webhook — or, when it
    names none, the gate the canary waits at. A plain string is the refusal."""
    if not wanted:
        at = waiting_at(status)
        return at if at is not None else f"{label(canary)} is not waiting at any gate"
    try:
        kind = Hook(wanted)
    except ValueError:
        kind = None
    if kind is not None:
        if kind not in GATES:
            return f"{wanted} is not a gate; expected one of {', '.join(GATES)} or a gate webhook's name"
        return kind
    for hook in canary.get_analysis().webhooks:
        if hook.name == wanted and hook.effective_type() in GATES:
            return Hook(hook.effective_type())
    names = [h.name for h in canary.get_analysis().webhooks if h.effective_type() in GATES]
    known = f" (its gates: {', '.join(names)})" if names else ""
    return f"{label(canary)} has no gate named {wanted!r}{known}"


def misfit(
    canary: canary_model.Canary,
    status: canary_model.CanaryStatus,
    action: str,
    gate: Hook | None,
) -> str | None:
    """Why ``action`` does not fit the canary in ``status``; None when it does."""
    who = label(canary)
    phase = status.phase or Phase.UNSET
    shown = phase.value or "not initialized"
    if canary.metadata.deletion_timestamp or phase in (Phase.TERMINATING, Phase.TERMINATED):
        return f"{who} is being deleted; nothing to {action}"
    if canary.spec.suspend and action != "pause":
        return f"{who} is suspended by its spec (spec.suspend: true); set it to false first"
    match action:
        case "pause":
            if canary.spec.suspend:
                return f"{who} is already suspended by its spec (spec.suspend: true)"
            held = paused(status)
            if held is not None:
                return f"{who} is already paused ({held.message})"
        case "resume":
            if paused(status) is None:
                return f"{who} is not paused; nothing to resume"
        case "promote":
            if phase == Phase.WAITING:
                return f"{who} is Waiting at confirm-rollout; approve it to start the analysis"
            if phase in (Phase.PROMOTING, Phase.FINALISING):
                return f"{who} is already {shown}"
            if phase == Phase.FAILED:
                return f"{who} is Failed; retry it to analyse the revision again"
            if phase not in ANALYSING:
                return f"{who} is {shown}; no analysis to promote"
        case "abort":
            if phase in (Phase.PROMOTING, Phase.FINALISING):
                return f"{who} is {shown}: the primary already runs the new revision; too late to abort"
            if phase not in ABORTABLE:
                return f"{who} is {shown}; nothing to abort"
        case "retry":
            if phase != Phase.FAILED:
                return f"{who} is {shown}; only a Failed canary can be retried"
        case "approve" | "reject":
            at = waiting_at(status)
            if at is None:
                return f"{who} is {shown} and not waiting at any gate; nothing to {action}"
            if gate is not None and gate != at:
                return f"{who} waits at {at}, not {gate}"
    return None


def admit(canary: canary_model.Canary, request: messages.ControlRequest, now_ms: int) -> Admission:
    """Whether ``request`` fits ``canary`` now, what to write to its status, what to say."""
    status = canary.status or canary_model.CanaryStatus()
    who = label(canary)
    action = request.action
    by = request.by or "someone"
    gate: Hook | None = None
    if action in ("approve", "reject"):
        resolved = resolve_gate(canary, status, request.gate)
        if not isinstance(resolved, Hook):
            return Admission(False, f"{resolved}; nothing to {action}")
        gate = resolved
    why = misfit(canary, status, action, gate)
    if why is not None:
        return Admission(False, why)
    earlier = pending(status)
    if earlier is not None and action not in AT_ONCE and action != "abort":
        return Admission(
            False,
            f"{who} already has a pending {earlier.action} requested by {earlier.by or 'someone'} "
            f"at {earlier.requested_at}; wait for it, or abort",
        )
    now = rfc3339(now_ms)
    because = f": {request.reason}" if request.reason else ""
    if action in AT_ONCE:
        pause = action == "pause"
        condition = with_condition(
            status,
            PAUSED_CONDITION,
            "True" if pause else "False",
            "Paused" if pause else "Resumed",
            f"{'Paused' if pause else 'Resumed'} by {by} at {now}{because}",
            now,
        )
        told = (
            f"{who} paused by {by}: no step is taken until it is resumed"
            if pause
            else f"{who} resumed by {by}: its analysis goes on with the next step"
        )
        return Admission(True, told, msgspec.structs.replace(status, conditions=condition))
    record = canary_model.ControlRecord(
        action=action,
        gate=str(gate) if gate is not None else None,
        by=by,
        reason=request.reason or None,
        requested_at=now,
    )
    replaced = f" (replacing the pending {earlier.action})" if earlier is not None else ""
    later = " once it is resumed" if paused(status) is not None else ""
    what = {
        "promote": "skipping the rest of the analysis and promoting",
        "abort": "rolling back",
        "retry": "analysing the revision again",
        "approve": f"opening {gate}",
        "reject": f"rejecting at {gate} and rolling back",
    }[action]
    when = "with its next step" if action in ON_NEXT_STEP or not later else later
    return Admission(
        True,
        f"{action} of {who} requested by {by}{replaced}: {what} {when}".rstrip(),
        msgspec.structs.replace(status, control=record),
        gate=str(gate) if gate is not None else "",
    )


def requested_event(
    canary: canary_model.Canary, request: messages.ControlRequest, admission: Admission, now_ms: int
) -> messages.ControlRequested:
    ref = messages.CanaryRef(
        namespace=canary.metadata.namespace or "", name=canary.metadata.name or ""
    )
    by = request.by or "someone"
    gate = f" at {admission.gate}" if admission.gate else ""
    because = f": {request.reason}" if request.reason else ""
    verb = {"pause": "Paused", "resume": "Resumed"}.get(request.action)
    message = (
        f"{verb} {label(canary)} by {by}{because}"
        if verb
        else f"{request.action.capitalize()}{gate} of {label(canary)} requested by {by}{because}"
    )
    return messages.ControlRequested(
        canary=ref,
        target=canary.spec.target_ref.name,
        severity=messages.Severity.WARN
        if request.action in ("abort", "reject")
        else messages.Severity.INFO,
        message=message,
        at_ms=now_ms,
        action=request.action,
        gate=admission.gate,
        by=by,
        reason=request.reason,
    )


# --------------------------------------------------------------------------- in the step


def due(s: StepState) -> canary_model.ControlRecord | None:
    """The pending request this step acts on; one that no longer fits is dropped (said)."""
    request = pending(s.ctx.status)
    if request is None:
        return None
    gate = Hook(request.gate) if request.gate in {str(g) for g in GATES} else None
    why = misfit(s.canary, s.ctx.status, request.action, gate)
    if why is not None:
        done(s, request, f"dropped: {why}", f"{_named(s, request)} dropped: {why}")
        return None
    return request


def done(s: StepState, request: canary_model.ControlRecord, outcome: str, message: str) -> None:
    """Record that ``request`` was acted on (``status.control``) and say so."""
    s.update(
        control=msgspec.structs.replace(request, handled_at=rfc3339(s.ctx.now_ms), outcome=outcome)
    )
    s.emit(
        s.event(
            messages.ControlApplied,
            messages.Severity.INFO,
            message,
            action=request.action,
            gate=request.gate or "",
            by=request.by,
            outcome=outcome,
        )
    )


def _named(s: StepState, request: canary_model.ControlRecord) -> str:
    gate = f" at {request.gate}" if request.gate else ""
    return f"{request.action.capitalize()}{gate} of {s.ref.name}.{s.ref.namespace} requested by {request.by}"


def ask_gate(s: StepState, kind: Hook, phase: Phase) -> Generator[Effect, Answer, HooksOutcome]:
    """A confirm-* gate: open at once when an approval for it is due, else its webhooks."""
    request = s.request
    if request is not None and request.action == "approve" and request.gate == kind:
        prefix = PASSED_PREFIX.get(kind, str(kind))
        done(s, request, "approved", f"{prefix} approved by {request.by}")
        s.request = None
        return HooksOutcome(ok=True)
    answer = yield RunHooks(kind, phase)
    assert isinstance(answer, HooksOutcome)
    return answer


def retrying(s: StepState) -> bool:
    """A due retry: the Failed revision is analysed again (from the confirm-rollout gate)."""
    request = s.request
    if request is None or request.action != "retry":
        return False
    done(s, request, "retrying", f"Analysing {s.who} again")
    s.request = None
    # until the analysis starts, the revision counts as not applied (a closed confirm-rollout
    # gate keeps it waiting, not forgotten)
    s.update(last_applied_spec=None)
    return True
