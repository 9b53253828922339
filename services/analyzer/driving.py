"""Taking one step of a canary for real: the pure ``machine.step`` driven against the bus.

For one tick:

1. read the canary, its target and its primary from the watcher's observations (KV) — no
   Kubernetes read on this path;
2. run ``machine.step``: each effect becomes a command to the traffic-shifter
   (``sluice.cmd.workload``, ``sluice.cmd.traffic.set``), webhook calls through the
   webhook-runner (``sluice.cmd.webhook.run``) or metric checks (``checking``); a command that
   fails raises, and nothing of the step is committed;
3. publish the step's events — each with a message id derived from the canary, the status
   revision the step started from and its position, so a step taken again after a crash
   publishes the same ids and JetStream stores them once;
4. write the new status with compare-and-set on the Canary's ``resourceVersion`` (the commit
   point of the step): a lost race is a ``Conflict`` and the step is taken again, from the
   newer state.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import Protocol

import msgspec

from libs import bus, errors, lifecycle, messages
from libs.model import analysis as analysis_model
from libs.model import canary as canary_model
from services.analyzer import machine

log = logging.getLogger(__name__)

Hook = analysis_model.WebhookType


class InvalidCanary(errors.InvalidInput):
    """The Canary does not validate: nothing to analyse until it is fixed (it was told)."""


class Observations(Protocol):
    async def canary(self, namespace: str, name: str) -> messages.CanaryObservation | None: ...

    async def workload(self, namespace: str, name: str) -> messages.WorkloadObservation | None: ...


class MetricChecker(Protocol):
    async def check(self, canary: canary_model.Canary) -> machine.MetricsOutcome: ...


class StatusWriter(Protocol):
    async def write(
        self, canary: canary_model.Canary, resource_version: str, status: canary_model.CanaryStatus
    ) -> None:
        """Compare-and-set: a stale ``resource_version`` raises ``errors.Conflict``."""
        ...

    async def mark_invalid(
        self, ref: messages.CanaryRef, resource_version: str, message: str
    ) -> None:
        """Set the ``Valid`` condition to False with ``message`` (the spec does not validate)."""
        ...


def _validated(status: canary_model.CanaryStatus, now_ms: int) -> canary_model.CanaryStatus:
    """A Canary that validates again: its ``Valid`` condition turns True."""
    if not any(c.type == "Valid" and c.status != "True" for c in status.conditions):
        return status
    now = machine.rfc3339(now_ms)
    valid = canary_model.Condition(
        type="Valid",
        status="True",
        reason="Valid",
        message="The Canary's spec is valid.",
        last_transition_time=now,
        last_update_time=now,
    )
    others = tuple(c for c in status.conditions if c.type != "Valid")
    return msgspec.structs.replace(status, conditions=(*others, valid))


def event_id(ref: messages.CanaryRef, resource_version: str, index: int, kind: str) -> str:
    """The same step from the same state publishes the same ids (JetStream de-duplicates)."""
    text = f"{ref.namespace}/{ref.name}@{resource_version}#{index}:{kind}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _webhook_spec(hook: analysis_model.Webhook) -> messages.WebhookSpec:
    return messages.WebhookSpec(
        name=hook.name,
        type=hook.effective_type(),
        url=hook.url,
        timeout_s=hook.timeout_seconds(),
        retries=hook.retries or 0,
        mute_alert=hook.mute_alert,
        disable_tls=hook.disable_tls,
        metadata=dict(hook.metadata),
    )


class Driver:
    def __init__(
        self,
        rt: lifecycle.Runtime,
        observations: Observations,
        metrics: MetricChecker,
        writer: StatusWriter,
        command_timeout_s: float = 30.0,
        on_checked: Callable[[messages.MetricChecked], None] | None = None,
    ) -> None:
        self.rt = rt
        self.observations = observations
        self.metrics = metrics
        self.writer = writer
        self.command_timeout_s = command_timeout_s
        self.on_checked = on_checked
        # the spec generation of each invalid canary already told about (one entry a canary)
        self._reported: dict[tuple[str, str], int] = {}

    async def take_step(self, ref: messages.CanaryRef, now_ms: int) -> canary_model.Canary | None:
        """One step; the canary with its new status (None when it does not exist any more)."""
        observed = await self.observations.canary(ref.namespace, ref.name)
        if observed is None:
            return None
        if observed.canary is None:
            await self._invalid(ref, observed)
            raise InvalidCanary(f"{ref.name}.{ref.namespace} is invalid")
        canary = observed.canary
        target = canary.spec.target_ref.name
        ctx = machine.Context(
            canary=canary,
            status=canary.status or canary_model.CanaryStatus(),
            target=await self.observations.workload(ref.namespace, target),
            primary=await self.observations.workload(ref.namespace, f"{target}-primary"),
            now_ms=now_ms,
        )
        gen = machine.step(ctx)
        answer: machine.Answer = None
        try:
            while True:
                effect = gen.send(answer)
                answer = await self._run(ctx, effect)
        except StopIteration as stop:
            outcome: machine.Outcome = stop.value
        for index, event in enumerate(outcome.events):
            msg_id = event_id(ref, observed.resource_version, index, messages.event_kind(event))
            await bus.publish(
                self.rt,
                messages.event_subject(ref.namespace, ref.name, messages.event_kind(event)),
                event,
                msg_id=msg_id,
            )
        status = _validated(outcome.status, now_ms)
        if status != ctx.status:
            await self.writer.write(canary, observed.resource_version, status)
        return msgspec.structs.replace(canary, status=status)

    async def _invalid(self, ref: messages.CanaryRef, observed: messages.CanaryObservation) -> None:
        """Say once per version of an invalid Canary's spec what is wrong, as ``sluice
        validate`` does: a Warning event and a ``Valid`` status condition."""
        key = (ref.namespace, ref.name)
        if self._reported.get(key) == observed.generation:
            return
        problems = observed.problems or ["invalid"]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        await self.writer.mark_invalid(ref, observed.resource_version, "; ".join(problems))
        event = messages.Halted(
            canary=ref,
            target=ref.name,
            severity=messages.Severity.WARN,
            reason="invalid canary",
            failed_checks=0,
            counted=False,
            message=f"Canary {ref.name}.{ref.namespace} is invalid: {problems[0]}{more}",
        )
        msg_id = event_id(ref, f"generation-{observed.generation}", 0, "invalid")
        subject = messages.event_subject(ref.namespace, ref.name, messages.event_kind(event))
        await bus.publish(self.rt, subject, event, msg_id=msg_id)
        self._reported[key] = observed.generation

    # --- effects ---

    async def _run(self, ctx: machine.Context, effect: machine.Effect) -> machine.Answer:
        canary = ctx.canary
        ref = messages.CanaryRef(
            namespace=canary.metadata.namespace or "", name=canary.metadata.name or ""
        )
        match effect:
            case machine.RunHooks(type=kind, phase=phase):
                return await self._hooks(canary, ref, kind, phase, ctx.status)
            case machine.CheckMetrics():
                checked = await self.metrics.check(canary)
                if self.on_checked is not None:
                    for event in checked.checked:
                        self.on_checked(event)
                return checked
            case machine.Initialize():
                command: messages.Command = messages.InitializeWorkload(
                    canary=ref,
                    target=canary.spec.target_ref.name,
                    service=canary.service_name(),
                    port=canary.spec.service.port,
                    target_port=canary.target_port(),
                    autoscaler=canary.spec.autoscaler_ref.name
                    if canary.spec.autoscaler_ref
                    else "",
                    timeout_s=self.command_timeout_s,
                )
                await self._command(messages.CMD_WORKLOAD, command)
            case machine.SetWeights(primary=primary, canary=weight, mirror=mirror):
                route = canary.spec.route_ref.name if canary.spec.route_ref else ""
                analysis = canary.get_analysis()
                command = messages.SetWeights(
                    canary=ref,
                    route=route,
                    service=canary.service_name(),
                    primary_weight=primary,
                    canary_weight=weight,
                    match=messages.match_groups(analysis.match),
                    mirror_percent=mirror,
                    timeout_s=self.command_timeout_s,
                )
                await self._command(messages.CMD_TRAFFIC, command)
            case machine.Scale(workload=workload, replicas=replicas, up=up):
                command = messages.ScaleWorkload(
                    canary=ref,
                    workload=workload,
                    replicas=replicas,
                    scale_up=up,
                    timeout_s=self.command_timeout_s,
                )
                await self._command(messages.CMD_WORKLOAD, command)
            case machine.SetFinalizer(present=present):
                command = messages.SetFinalizer(
                    canary=ref, present=present, timeout_s=self.command_timeout_s
                )
                await self._command(messages.CMD_WORKLOAD, command)
            case machine.Revert():
                command = messages.RevertCanary(
                    canary=ref,
                    target=canary.spec.target_ref.name,
                    service=canary.service_name(),
                    timeout_s=self.command_timeout_s,
                )
                await self._command(messages.CMD_WORKLOAD, command)
            case machine.Promote():
                command = messages.PromoteWorkload(
                    canary=ref,
                    target=canary.spec.target_ref.name,
                    revision=ctx.target.revision if ctx.target else "",
                    timeout_s=self.command_timeout_s,
                )
                await self._command(messages.CMD_WORKLOAD, command)
        return None

    async def _command(self, subject: str, command: messages.CommandBase) -> messages.Reply:
        reply = await bus.request(self.rt, subject, command)
        if isinstance(reply, messages.CommandFailed):
            cls = errors.Unavailable if reply.temporary else errors.PermanentError
            raise cls(f"{type(command).__name__} failed: {reply.error}")
        return reply

    async def _hooks(
        self,
        canary: canary_model.Canary,
        ref: messages.CanaryRef,
        kind: Hook,
        phase: canary_model.Phase,
        status: canary_model.CanaryStatus,
    ) -> machine.HooksOutcome:
        """Every hook of ``kind`` in order; the first failure ends the run (Flagger)."""
        hooks = canary.get_analysis().webhooks_of(kind)
        any_ok = False
        passed: list[str] = []
        for hook in hooks:
            spec = _webhook_spec(hook)
            command = messages.RunWebhook(
                canary=ref,
                webhook=spec,
                phase=phase,
                checksum=status.checksum(),
                timeout_s=spec.timeout_s * (spec.retries + 1) + 5.0,
            )
            reply = await self._command(messages.CMD_WEBHOOK, command)
            assert isinstance(reply, messages.WebhookResult)
            if reply.ok:
                any_ok = True
                passed.append(hook.name)
                if kind == Hook.ROLLBACK:
                    break  # the first rollback hook that says yes decides (Flagger)
                continue
            if kind == Hook.ROLLBACK:
                continue  # a rollback hook that says no is simply no rollback
            error = reply.message or (
                f"status {reply.status_code}" if reply.status_code else "no answer"
            )
            return machine.HooksOutcome(
                ok=False,
                failed=hook.name,
                error=error,
                mute_alert=hook.mute_alert,
                any_ok=any_ok,
                passed=tuple(passed),
            )
        return machine.HooksOutcome(ok=True, any_ok=any_ok, passed=tuple(passed))
