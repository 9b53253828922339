"""Tunables of the in-process controllers (``ClusterSettings`` holds the cluster-wide ones)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class ControllerSettings:
    # Name of the one simulated node; pods get ``spec.nodeName`` set to it.
    node_name: str = "sandbox-node"
    # Seconds between readiness probes of a running container (a real kubelet's periodSeconds
    # defaults to 10; the sandbox probes faster so readiness changes show up quickly).
    probe_period_s: float = 0.5
    # Seconds a readiness probe may take before it counts as failed.
    probe_timeout_s: float = 1.0
    # Seconds an app's /delay/{n} may sleep at most.
    app_max_delay_s: float = 30.0
    # Seconds a stopping app waits for in-flight requests before closing them.
    app_shutdown_timeout_s: float = 0.5
    # First and largest delay (seconds) before a failed reconcile is retried (doubling).
    retry_backoff_s: float = 0.05
    retry_backoff_max_s: float = 5.0
    # Progress deadline of Deployments that do not set spec.progressDeadlineSeconds.
    default_progress_deadline_s: int = 600
