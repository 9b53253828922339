"""Answering control requests (``sluice promote``, ``abort``, ``pause`` …) on the bus.

One analyzer replica (queue group ``analyzer``) takes each ``ControlRequest`` from
``sluice.control.<namespace>.<canary>.<action>``. The subject is what NATS permissions are
granted on, so a request whose body names another canary or action than its subject is
refused. The handler reads the Canary fresh (from Kubernetes, or from KV in standalone mode), asks ``machine.control.admit``
whether the request fits, and when it does writes the status (compare-and-set, taken again on
a lost race), publishes ``control_requested`` with who asked, and schedules the canary's step
now — the step carries the request out (``machine.scheduler``). The requester hears
"accepted" with what will happen, or the refusal ("podinfo.test is Succeeded; nothing to
abort").
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from libs import bus, errors, lifecycle, messages
from libs.model import canary as canary_model
from services.analyzer import driving, handlers
from services.analyzer.machine import control

log = logging.getLogger(__name__)

Fresh = Callable[[messages.CanaryRef], Awaitable[tuple[canary_model.Canary, str]]]
ATTEMPTS = 5  # compare-and-set races lost in a row before the requester is told to retry
STEP_WAIT_S = 5.0  # how long a request waits for a step of its canary under way here


def verify(subject: str, request: messages.ControlRequest) -> None:
    """The body must name the canary and action of the subject it came on."""
    expected = messages.control_subject(
        request.canary.namespace, request.canary.name, request.action
    )
    if subject != expected:
        raise errors.InvalidInput(
            f"a {request.action} request for {request.canary.name}.{request.canary.namespace} "
            f"must be sent to {expected}, not {subject}",
            path="subject",
            expected=expected,
        )


class Controller:
    def __init__(
        self,
        rt: lifecycle.Runtime,
        fresh: Fresh,
        writer: driving.StatusWriter,
        schedule: Callable[[messages.CanaryRef], Awaitable[None]],
        locks: handlers.CanaryLocks | None = None,
    ) -> None:
        self.rt = rt
        self.fresh = fresh  # the canary and its resource version, read now
        self.writer = writer
        self.schedule = schedule
        self.locks = locks or handlers.CanaryLocks()

    async def on_request(self, request: messages.ControlRequest) -> messages.Reply:
        # written between two steps, not under one that would then lose its status write
        # after acting (a long step is not waited for beyond STEP_WAIT_S)
        async with self.locks.hold(request.canary, timeout_s=STEP_WAIT_S):
            return await self._decide(request)

    async def _decide(self, request: messages.ControlRequest) -> messages.Reply:
        ref = request.canary
        ctx = {"canary": f"{ref.namespace}/{ref.name}"}
        for _ in range(ATTEMPTS):
            try:
                canary, version = await self.fresh(ref)
            except errors.NotFound:
                return self._answer(
                    request, False, f"canary {ref.name}.{ref.namespace} not found", None
                )
            except errors.InvalidInput as exc:
                first = exc.message.split("\n")[0]
                return self._answer(
                    request,
                    False,
                    f"{ref.name}.{ref.namespace} is invalid ({first}); fix it first",
                    None,
                )
            now = messages.now_ms()
            admission = control.admit(canary, request, now)
            if not admission.accepted or admission.status is None:
                log.info("refused %s: %s", request.action, admission.message, extra=ctx)
                return self._answer(request, False, admission.message, canary)
            try:
                await self.writer.write(canary, version, admission.status)
            except errors.Conflict:
                continue  # the canary moved meanwhile: decide again from its new state
            event = control.requested_event(canary, request, admission, now)
            await bus.publish_event(self.rt, event)
            await self.schedule(ref)
            log.info("accepted %s by %s", request.action, request.by or "someone", extra=ctx)
            return self._answer(request, True, admission.message, canary)
        raise errors.Unavailable(
            f"{ref.name}.{ref.namespace} changed {ATTEMPTS} times while the request was decided; "
            "try again"
        )

    def _answer(
        self,
        request: messages.ControlRequest,
        accepted: bool,
        message: str,
        canary: canary_model.Canary | None,
    ) -> messages.ControlAnswer:
        status = canary.status if canary is not None else None
        return messages.ControlAnswer(
            canary=request.canary,
            action=request.action,
            accepted=accepted,
            message=message,
            phase=status.phase if status is not None else messages.Phase.UNSET,
        )
