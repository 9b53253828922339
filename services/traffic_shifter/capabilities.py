"""What the traffic-shifter needs from a platform, one small Protocol per capability.

Flagger splits the same work into a mesh router (``pkg/router``) and a canary controller
(``pkg/canary``); Sluice keeps that split:

* ``TrafficRouter`` — the serving path's weights: reconcile the canary route, set its
  weights, read them back. Implemented on Kubernetes (the canary ``ApisixRoute`` the
  APISIX ingress controller syncs) and on the APISIX Admin API (standalone APISIX: the user's
  route split with ``traffic-split``, ``services.traffic_shifter.admin``).
* ``WorkloadController`` — the workloads behind the route: initialize the primary (with its
  Services, configs and autoscaler), scale a workload, promote the canary's spec to the primary;
  and when a Canary is deleted: keep its finalizer (revertOnDeletion), give the target back.

``Platform`` pairs one of each; ``services.traffic_shifter.kube.platform`` builds the
Kubernetes pair, ``services.traffic_shifter.admin.platform`` the Admin API pair. The handlers
only see these Protocols, so another router is a new module plus one branch in ``app.setup``.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

from libs import messages


@dataclasses.dataclass(frozen=True)
class Weights:
    """A split of one route's traffic, in percent."""

    primary: int
    canary: int

    def __str__(self) -> str:
        return f"{self.primary}/{self.canary}"


class TrafficRouter(Protocol):
    """The route in front of the primary and canary Services."""

    async def reconcile(self, command: messages.SetWeights) -> str:
        """Create or re-sync the canary route for ``command.route`` and ``command.service``
        (keeping the weights it has); return the name of the route traffic is split on."""
        ...

    async def set_weights(self, command: messages.SetWeights, weights: Weights) -> None:
        """Set the route's primary/canary weights (no write when they are already set)."""
        ...

    async def get_weights(self, command: messages.SetWeights) -> Weights:
        """The weights the route carries now, as the platform stores them."""
        ...


class WorkloadController(Protocol):
    """The primary workload, its Services and autoscaler, and scaling."""

    async def initialize(self, command: messages.InitializeWorkload) -> messages.WorkloadApplied:
        """Create what is missing (primary configs, primary workload, Services, primary
        autoscaler), point the apex Service at the primary once it is ready, and scale the
        target to zero while the canary initializes. Applying it twice changes nothing."""
        ...

    async def scale(self, command: messages.ScaleWorkload) -> messages.WorkloadApplied:
        """Set the replicas of the canary's target or of its primary."""
        ...

    async def promote(self, command: messages.PromoteWorkload) -> messages.WorkloadApplied:
        """Copy the target's pod template (and its configs) to the primary."""
        ...

    async def set_finalizer(self, command: messages.SetFinalizer) -> messages.WorkloadApplied:
        """Add or remove Sluice's finalizer on the Canary, keeping every other finalizer;
        removing it from a Canary that is gone is done."""
        ...

    async def revert(self, command: messages.RevertCanary) -> messages.WorkloadApplied:
        """The Canary is being deleted: scale the target back up, and once it is ready point
        the apex Service at its pods (no longer owned by the Canary, so it outlives it) and the
        canary route at the primary. Applying it twice changes nothing."""
        ...


@dataclasses.dataclass(frozen=True)
class Platform:
    router: TrafficRouter
    workloads: WorkloadController
    name: str  # for logs: "kubernetes"
