"""Command handlers of the traffic-shifter.

Each command is desired state: applying the same command twice leaves the same routes and
workloads. Validation of the arithmetic happens here, before anything is written, so a bad
command can never leave a half-applied route. The work itself is the platform's
(``capabilities.Platform``); without one every command is refused with a permanent
``CommandFailed`` naming what is missing.
"""

from __future__ import annotations

import logging
from typing import assert_never

from libs import errors, messages
from services.traffic_shifter import capabilities

log = logging.getLogger(__name__)


def check_weights(command: messages.SetWeights) -> None:
    """Weights are percentages of one route and must add up to 100."""
    for field, value in (
        ("primary_weight", command.primary_weight),
        ("canary_weight", command.canary_weight),
    ):
        if not 0 <= value <= 100:
            raise errors.InvalidInput(
                f"{field}: expected 0..100, got {value}", path=field, expected="0..100"
            )
    if command.primary_weight + command.canary_weight != 100:
        raise errors.InvalidInput(
            "primary_weight + canary_weight: expected 100, "
            f"got {command.primary_weight + command.canary_weight}",
            path="primary_weight",
        )


def _where(command: messages.CommandBase) -> str:
    return f"{command.canary.name}.{command.canary.namespace}"


class Shifter:
    """Routes commands to the configured platform (``None``: refuse them)."""

    def __init__(self, platform: capabilities.Platform | None = None) -> None:
        self.platform = platform

    async def set_weights(self, command: messages.SetWeights) -> messages.WeightsApplied:
        check_weights(command)
        if self.platform is None:
            raise errors.Unsupported(
                f"cannot set weights for {_where(command)}: "
                "no traffic router is configured for this platform"
            )
        router = self.platform.router
        wanted = capabilities.Weights(command.primary_weight, command.canary_weight)
        route = await router.reconcile(command)
        await router.set_weights(command, wanted)
        applied = await router.get_weights(command)
        if applied != wanted:
            raise errors.Conflict(
                f"route {route} of {_where(command)} carries {applied} after setting {wanted}: "
                "another writer changed it"
            )
        log.info("route %s of %s at %s", route, _where(command), applied)
        return messages.WeightsApplied(
            canary=command.canary,
            route=route,
            primary_weight=applied.primary,
            canary_weight=applied.canary,
        )

    async def workload(self, command: messages.WorkloadCommand) -> messages.WorkloadApplied:
        match command:
            case messages.ScaleWorkload(replicas=replicas) if replicas < 0:
                raise errors.InvalidInput(
                    f"replicas: expected 0 or more, got {replicas}", path="replicas"
                )
            case _:
                pass
        if self.platform is None:
            raise errors.Unsupported(
                f"cannot apply {type(command).__name__} for {_where(command)}: "
                "no workload adapter is configured for this platform"
            )
        workloads = self.platform.workloads
        match command:
            case messages.InitializeWorkload():
                reply = await workloads.initialize(command)
            case messages.ScaleWorkload():
                reply = await workloads.scale(command)
            case messages.PromoteWorkload():
                reply = await workloads.promote(command)
            case messages.SetFinalizer(present=present):
                reply = await workloads.set_finalizer(command)
                log.info(
                    "SetFinalizer for %s: %s",
                    _where(command),
                    "present" if present else "removed",
                )
                return reply
            case messages.RevertCanary():
                reply = await workloads.revert(command)
            case _:
                assert_never(command)
        log.info(
            "%s for %s: %s at %s replicas",
            type(command).__name__,
            _where(command),
            reply.workload,
            reply.replicas,
        )
        return reply
