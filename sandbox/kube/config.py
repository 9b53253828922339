"""Settings of one simulated cluster (shared by the API server and the controllers)."""

from __future__ import annotations

import dataclasses
import ipaddress
import pathlib
from typing import Any

import yaml

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


def kubeconfig(server: str, token: str = "sandbox", user: str = "sandbox") -> dict[str, Any]:
    """A kubeconfig for the simulator at ``server`` (cluster and context ``sandbox``)."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "sandbox", "cluster": {"server": server}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [
            {
                "name": "sandbox",
                "context": {"cluster": "sandbox", "user": user, "namespace": "default"},
            }
        ],
        "current-context": "sandbox",
        "preferences": {},
    }


def service_account_kubeconfig(
    path: str | pathlib.Path, server: str, namespace: str, name: str
) -> pathlib.Path:
    """Write a kubeconfig acting as ServiceAccount ``namespace/name`` (RBAC applies to it).

    Its server URL ends in ``/sandbox-sa/<namespace>/<name>`` (kubectl sends no token over
    plain HTTP) and its token is ``sandbox-sa:<namespace>:<name>`` (``authentication``); its
    context's namespace is the ServiceAccount's. Returns the path.
    """
    from sandbox.kube.authentication import service_account_path, service_account_token

    url = server.rstrip("/") + service_account_path(namespace, name)
    config = kubeconfig(url, service_account_token(namespace, name), f"{namespace}:{name}")
    config["contexts"][0]["context"]["namespace"] = namespace
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
