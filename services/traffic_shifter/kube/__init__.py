"""The traffic-shifter's Kubernetes side: canary ApisixRoutes, primary Deployments, Services,
primary HPAs and scaling, all through ``libs.adapters.kubernetes``.

Modules, by concern: ``objects`` (conditional writes with conflict retries, Flagger's metadata
rules), ``routes`` (``TrafficRouter``), ``workloads`` (``WorkloadController``: initialize,
scale, promote), ``finalizing`` (its deletion commands: the Canary's finalizer and the revert),
``services``, ``configs``, ``autoscalers``.
"""

from __future__ import annotations

from libs.adapters import kubernetes
from services.traffic_shifter import capabilities
from services.traffic_shifter.kube import finalizing, objects, routes


def platform(kube: kubernetes.Kube, options: objects.Options) -> capabilities.Platform:
    """The Kubernetes router and workload controller, sharing one client."""
    store = objects.Objects(kube, options)
    return capabilities.Platform(
        router=routes.ApisixRoutes(store),
        workloads=finalizing.Deployments(store),
        name="kubernetes",
    )
