"""Settings of one simulated cluster (shared by the API server and the controllers)."""

from __future__ import annotations

import dataclasses
import ipaddress
import pathlib

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


@dataclasses.dataclass(frozen=True)
class ClusterSettings:
    # Pod IPs are taken from this loopback network, so every simulated pod can really listen on
    # <podIP>:<containerPort>. Tests pick a random /16 so that several clusters can run at once.
    pod_network: ipaddress.IPv4Network = ipaddress.IPv4Network("127.42.0.0/16")  # noqa: RUF009 - immutable
    # ClusterIPs handed to Services (nothing listens on them; clients resolve to endpoints).
    service_network: ipaddress.IPv4Network = ipaddress.IPv4Network("127.43.0.0/16")  # noqa: RUF009 - immutable
    # Seconds a new pod takes to become ready (its app answers at once; readiness is delayed).
    pod_ready_delay: float = 1.0
    # Seconds between BOOKMARK events on watches that asked for them.
    bookmark_interval: float = 10.0
    # Where the CRDs installed at start-up live (Sluice's own, one source for all).
    crd_dir: pathlib.Path = REPO_ROOT / "deploy" / "crds"
    # Watch events kept for resuming a watch; a resourceVersion older than these gets 410 Gone.
    watch_history: int = 5000
    # Namespaces present at start, as in a fresh cluster.
    namespaces: tuple[str, ...] = ("default", "kube-system", "kube-public", "kube-node-lease")
