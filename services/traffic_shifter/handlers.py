"""Command handlers of the traffic-shifter.

Each command is desired state: applying the same command twice leaves the same routes and
workloads. Validation of the arithmetic happens here, before anything is written, so a bad
command can never leave a half-applied route.
"""

from __future__ import annotations

import logging

from libs import errors, messages

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


class Shifter:
    """Routes commands to the configured platform router (none is configured yet)."""

    async def set_weights(self, command: messages.SetWeights) -> messages.Reply:
        check_weights(command)
        raise errors.Unsupported(
            f"cannot set weights for {command.canary.name}.{command.canary.namespace}: "
            "no traffic router is configured for this platform"
        )

    async def workload(self, command: messages.WorkloadCommand) -> messages.Reply:
        match command:
            case messages.ScaleWorkload(replicas=replicas) if replicas < 0:
                raise errors.InvalidInput(
                    f"replicas: expected 0 or more, got {replicas}", path="replicas"
                )
            case _:
                pass
        raise errors.Unsupported(
            f"cannot apply {type(command).__name__} for {command.canary.name}.{command.canary.namespace}: "
            "no workload adapter is configured for this platform"
        )
