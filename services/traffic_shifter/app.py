"""traffic-shifter: the only service that writes to the serving path.

Answers ``sluice.cmd.traffic.set`` (weights) and ``sluice.cmd.workload`` (primary workload,
Services, scaling, promotion) in queue group ``traffic-shifter``. Until a router for the
platform is configured it refuses every command with a permanent ``CommandFailed`` naming
what is missing — it never pretends a route changed.
"""

from __future__ import annotations

from libs import lifecycle, messages, serving, settings
from services.traffic_shifter import handlers


class Settings(settings.ServiceSettings, frozen=True, kw_only=True):
    pass


async def setup(rt: lifecycle.Runtime, cfg: Settings) -> None:
    shifter = handlers.Shifter()
    rt.spawn(
        "traffic",
        serving.serve_requests(
            rt,
            messages.CMD_TRAFFIC,
            messages.QUEUE_TRAFFIC_SHIFTER,
            messages.TRAFFIC_DECODER,
            shifter.set_weights,
        ),
    )
    rt.spawn(
        "workload",
        serving.serve_requests(
            rt,
            messages.CMD_WORKLOAD,
            messages.QUEUE_TRAFFIC_SHIFTER,
            messages.WORKLOAD_DECODER,
            shifter.workload,
        ),
    )
