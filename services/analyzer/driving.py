"""Taking one step of a canary for real: the pure ``machine.step`` driven against the bus.

For one tick:

1. read the canary, its target and its primary from the watcher's observations (KV) — no
   Kubernetes read on this path;
2. run ``machine.step``: each effect becomes a command to the traffic-shifter
   (``sluice.cmd.workload``, ``sluice.cmd.traffic.set``), webhook calls through the
   webhook-runner (``sluice.cmd.webhook.run``) or metric checks (``checking``); a command that
   fails raises, and nothing of the step is committed;
3. write the new status with compare-and-set on the Canary's ``resourceVersion`` (the commit
   point of the step): a lost race is a ``Conflict`` and the step is taken again, from the
   newer state, having told no one anything;
4. publish the step's events, only once committed — each with a message id derived from the
   canary, the status revision the step started from and its position, so a publish retried
   (NATS restarting) is stored once. Publishing first would leave a phantom in the event
   stream whenever the commit is lost: a step that never happened, or, taken again, a weight
   step told twice. Between the write and the publish the step's events wait in the outbox
   (``committing``): a write that timed out may still land, a replica may die before it
   publishes, and whichever replica takes the canary's next step tells them if it did.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from typing import Protocol

import msgspec

from libs import bus, errors, lifecycle, messages
from libs.model import analysis as analysis_model
from libs.model import canary as canary_model
from libs.model import standalone
from services.analyzer import committing, machine

log = logging.getLogger(__name__)
PUBLISH_RETRY_S = 0.5  # between attempts to publish a committed step's events

Hook = analysis_model.WebhookType


class InvalidCanary(errors.InvalidInput):
    """The Canary does not validate: nothing to analyse until it is fixed (it was told)."""


class CommandRefused(InvalidCanary):
    """A command of the step failed for good (the platform's objects do not fit the Canary:
    an ApisixRoute without the rule to copy, a name Kubernetes refuses): the step is taken
    again later, so fixing the objects resumes the analysis."""


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
        on_stepped: Callable[[float], None] | None = None,
        outbox: committing.Outbox | None = None,
    ) -> None:
        self.rt = rt
        self.observations = observations
        self.metrics = metrics
        self.writer = writer
        self.command_timeout_s = command_timeout_s
        self.on_checked = on_checked
        # a finished step's own seconds: without awaiting Prometheus and webhooks
        self.on_stepped = on_stepped
        # the spec generation of each invalid canary already told about (one entry a canary)
        self._reported: dict[tuple[str, str], int] = {}
        # the generation and error of each canary whose refused command was told about
        self._refused: dict[tuple[str, str], str] = {}
        # committed (or maybe committed) steps' events until they are published
        self.outbox: committing.Outbox = outbox or committing.MemoryOutbox()

    async def take_step(self, ref: messages.CanaryRef, now_ms: int) -> canary_model.Canary | None:
        """One step; the canary with its new status (None when it does not exist any more)."""
        started = time.perf_counter()
        observed = await self.observations.canary(ref.namespace, ref.name)
        if observed is None:
            return None
        if observed.canary is None:
            await self._invalid(ref, observed)
            raise InvalidCanary(f"{ref.name}.{ref.namespace} is invalid")
        canary = observed.canary
        target = canary.spec.target_ref.name
        # the reads at once: a step's own time is mostly such round trips
        target_obs, primary_obs, held = await asyncio.gather(
            self.observations.workload(ref.namespace, target),
            self.observations.workload(ref.namespace, f"{target}-primary"),
            self.outbox.read(ref),
        )
        if held is not None:
            held = await self._settle(ref, held, observed)
        ctx = machine.Context(
            canary=canary,
            status=canary.status or canary_model.CanaryStatus(),
            target=target_obs,
            primary=primary_obs,
            now_ms=now_ms,
        )
        gen = machine.step(ctx)
        answer: machine.Answer = None
        waited = 0.0  # awaiting Prometheus and webhooks: not the analyzer's own time
        try:
            while True:
                effect = gen.send(answer)
                if isinstance(effect, machine.CheckMetrics | machine.RunHooks):
                    before = time.perf_counter()
                    answer = await self._run(ctx, effect)
                    waited += time.perf_counter() - before
                else:
                    answer = await self._run(ctx, effect)
        except StopIteration as stop:
            outcome: machine.Outcome = stop.value
        status = _validated(outcome.status, now_ms)
        written = status != ctx.status
        if written:
            rv = observed.resource_version
            await self.outbox.hold(ref, committing.with_attempt(held, rv, status, outcome.events))
            # a write that fails may still land (a timeout): the outbox tells it if it did
            await self.writer.write(canary, rv, status)
        if self.on_stepped is not None:
            self.on_stepped(time.perf_counter() - started - waited)
        # committed: only now is the step told (one that lost its compare-and-set told nothing)
        await self._publish(ref, observed.resource_version, outcome.events)
        if written:
            await self.outbox.release(ref)
        return msgspec.structs.replace(canary, status=status)

    async def _settle(
        self,
        ref: messages.CanaryRef,
        held: committing.Held,
        observed: messages.CanaryObservation,
    ) -> committing.Held | None:
        """Tell a held step whose write turns out to have landed; the entry if it stays."""
        assert observed.canary is not None
        settled = committing.settle(held, observed.resource_version, observed.canary.status)
        if settled.landed is not None:
            await self._publish(ref, *settled.landed)
        if settled.keep:
            return held
        await self.outbox.release(ref)
        return None

    async def _publish(
        self, ref: messages.CanaryRef, resource_version: str, events: tuple[messages.EventBase, ...]
    ) -> None:
        """Publish a committed step's events, retrying a failed publish (NATS restarting)
        within the command timeout; the step is not taken again for it (it happened)."""
        deadline = time.monotonic() + self.command_timeout_s
        for index, event in enumerate(events):
            kind = messages.event_kind(event)
            msg_id = event_id(ref, resource_version, index, kind)
            subject = messages.event_subject(ref.namespace, ref.name, kind)
            while True:
                try:
                    await bus.publish(self.rt, subject, event, msg_id=msg_id)
                    break
                except errors.TemporaryError as exc:
                    if time.monotonic() >= deadline:
                        log.error("a committed step's %s event is lost: %s", kind, exc)
                        break
                    await asyncio.sleep(PUBLISH_RETRY_S)

    async def _invalid(self, ref: messages.CanaryRef, observed: messages.CanaryObservation) -> None:
        """Say once per version of an invalid Canary's spec what is wrong, as ``sluice
        validate`` does: a Warning event and a ``Valid`` status condition."""
        key = (ref.namespace, ref.name)
        if self._reported.get(key) == observed.generation:
            return
        problems = observed.problems or ["invalid"]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        await self._not_valid(
            ref,
            observed.resource_version,
            "; ".join(problems),
            reason="invalid canary",
            message=f"Canary {ref.name}.{ref.namespace} is invalid: {problems[0]}{more}",
            msg_id=event_id(ref, f"generation-{observed.generation}", 0, "invalid"),
        )
        self._reported[key] = observed.generation

    async def _not_valid(
        self,
        ref: messages.CanaryRef,
        resource_version: str,
        condition: str,
        *,
        reason: str,
        message: str,
        msg_id: str,
    ) -> None:
        """``Valid`` False with ``condition``, and a Warning event saying ``message``."""
        await self.writer.mark_invalid(ref, resource_version, condition)
        event = messages.Halted(
            canary=ref,
            target=ref.name,
            severity=messages.Severity.WARN,
            reason=reason,
            failed_checks=0,
            counted=False,
            message=message,
        )
        subject = messages.event_subject(ref.namespace, ref.name, messages.event_kind(event))
        await bus.publish(self.rt, subject, event, msg_id=msg_id)

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
                if standalone.is_standalone(canary):  # the checks tell the sides by node
                    canary = standalone.with_nodes(
                        canary,
                        ctx.target.nodes if ctx.target else [],
                        ctx.primary.nodes if ctx.primary else [],
                    )
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
            cls = errors.Unavailable if reply.temporary else CommandRefused
            raise cls(f"{type(command).__name__} failed: {reply.error}")
        return reply

    async def refused(self, ref: messages.CanaryRef, error: str) -> None:
        """Say once per spec version and error why a step cannot go on: a Warning event and
        the ``Valid`` condition False with the error (it turns True after a step succeeds)."""
        observed = await self.observations.canary(ref.namespace, ref.name)
        if observed is None:
            return
        key, told = (ref.namespace, ref.name), f"{observed.generation}:{error}"
        if self._refused.get(key) == told:
            return
        digest = hashlib.sha256(told.encode()).hexdigest()[:16]
        await self._not_valid(
            ref,
            observed.resource_version,
            error,
            reason="command refused",
            message=f"Canary {ref.name}.{ref.namespace} cannot proceed: {error}",
            msg_id=event_id(ref, f"refused-{digest}", 0, "refused"),
        )
        self._refused[key] = told

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
