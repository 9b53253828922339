"""``Cluster``: one simulated Kubernetes cluster — store, registry, API server, controllers.

::

    async with Cluster(ClusterSettings()) as cluster:
        kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig")
        ...  # kubectl --kubeconfig ..., kubernetes.config.load_kube_config(...)

The API server listens on ``127.0.0.1`` (a random port unless one is given), plain HTTP. The
default kubeconfig is cluster-admin; ``service_account_kubeconfig`` writes one acting as a
ServiceAccount, which RBAC applies to (``authentication``, ``authorization``). The controllers (``sandbox.kube.controllers.run_all``) run as one task while
the cluster is up (``controllers=False`` leaves them out: a bare API server).

With controllers, the cluster holds the node's kubelet port (``KUBELET_PORT`` on the pod
network's first address, the node's ``hostIP``) while it runs: that claims the pod network, so
a second cluster on the same network fails at start (``PodNetworkInUse``) instead of running
pods that cannot listen, and ``pod_network_in_use`` tells whether a network is free.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import pathlib
import socket
from typing import Any

import yaml
from aiohttp import web

from sandbox import faults, serving
from sandbox.kube import admission, crds, events, handlers, server
from sandbox.kube import config as config_mod
from sandbox.kube import controllers as controllers_mod
from sandbox.kube import registry as registry_mod
from sandbox.kube.config import ClusterSettings
from sandbox.kube.store import Store

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT = 5.0  # seconds in-flight requests get when the cluster stops
KUBELET_PORT = 10250  # the kubelet's port, held on the node address to claim the pod network
POD_PORT_PROBES = 8  # pod addresses probed on the app port (podinfo's 9898) by the check
POD_APP_PORT = 9898


class PodNetworkInUse(OSError):
    """Another cluster holds the pod network (its node address has the kubelet port taken)."""


def node_address(network: ipaddress.IPv4Network) -> str:
    return str(network.network_address + 1)


def claim_pod_network(network: ipaddress.IPv4Network) -> socket.socket:
    """Listen on the node's kubelet port; ``PodNetworkInUse`` when another cluster does."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((node_address(network), KUBELET_PORT))
        sock.listen()
    except OSError as exc:
        sock.close()
        raise PodNetworkInUse(
            f"pod network {network} is in use by another sandbox cluster "
            f"({node_address(network)}:{KUBELET_PORT} is taken: {exc.strerror}); "
            "give this one another pod network (--pod-network / SANDBOX_POD_NETWORK)"
        ) from exc
    return sock


def pod_network_in_use(network: ipaddress.IPv4Network) -> bool:
    """Whether a running cluster claims ``network``, or pods seem to listen on its first pod
    addresses (pod IPs are handed out from the third address on)."""
    addresses = [(node_address(network), KUBELET_PORT)]
    first = int(network.network_address) + 2
    addresses += [
        (str(ipaddress.IPv4Address(first + i)), POD_APP_PORT) for i in range(POD_PORT_PROBES)
    ]
    for address in addresses:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            # a listener blocks the bind; connections of a stopped one (TIME_WAIT) do not
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(address)
            except OSError:
                return True
    return False


class Cluster(serving.Component):
    def __init__(
        self,
        settings: ClusterSettings | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        controllers: bool = True,
    ) -> None:
        self.settings = settings or ClusterSettings()
        self.host = host
        self.port = port
        self.store = Store(history_limit=self.settings.watch_history)
        self.registry = registry_mod.Registry()
        for rtype in self.registry.all():
            self.store.register(rtype)
        self.store.add_view(
            registry_mod.EVENTS_V1, registry_mod.EVENTS, events.to_v1, events.from_v1
        )
        self.crd_installer = crds.CrdInstaller(self.store, self.registry)
        for name in self.settings.namespaces:
            namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
            admission.defaults(self.store, self.settings, registry_mod.NAMESPACES, namespace, None)
            self.store.create(registry_mod.NAMESPACES, namespace)
        self.installed_crds = crds.install_dir(self.store, self.settings.crd_dir)
        self.api = handlers.Api(self.store, self.registry, self.settings)
        self._run_controllers = controllers_mod.run_all if controllers else None
        self._controllers_task: asyncio.Task[None] | None = None
        self._sites = serving.Sites()
        self._node_claim: socket.socket | None = None
        self.switches: faults.Switches | None = None  # the API server's fault switches

    @property
    def has_controllers(self) -> bool:
        return self._run_controllers is not None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        self.api.stop.clear()
        if self._run_controllers is not None and self._node_claim is None:
            self._node_claim = claim_pod_network(self.settings.pod_network)
        app = server.make_app(self.api)
        self.switches = app[faults.SWITCHES]
        runner = web.AppRunner(
            app,
            handler_cancellation=True,
            shutdown_timeout=SHUTDOWN_TIMEOUT,
            access_log=None,
        )
        try:
            url = await self._sites.add(runner, self.host, self.port)
        except BaseException:
            if self._node_claim is not None:
                self._node_claim.close()
                self._node_claim = None
            raise
        self.port = int(url.rpartition(":")[2])
        if self._run_controllers is not None:
            self._controllers_task = asyncio.create_task(
                self._controllers(), name="sandbox-kube-controllers"
            )
        log.info("sandbox kube API server listening on %s", self.url)

    async def _controllers(self) -> None:
        assert self._run_controllers is not None
        try:
            await self._run_controllers(
                self.store, self.registry, self.settings, switches=self.switches
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("sandbox controllers stopped with an error")

    async def stop(self) -> None:
        if self._controllers_task is not None:
            self._controllers_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._controllers_task
            self._controllers_task = None
        self.api.stop.set()
        await self._sites.close()
        if self._node_claim is not None:
            self._node_claim.close()
            self._node_claim = None

    def kubeconfig(self) -> dict[str, Any]:
        return config_mod.kubeconfig(self.url)

    def service_account_kubeconfig(
        self, path: str | pathlib.Path, namespace: str, name: str
    ) -> pathlib.Path:
        """Write a kubeconfig acting as ServiceAccount ``namespace/name`` (RBAC applies)."""
        return config_mod.service_account_kubeconfig(path, self.url, namespace, name)

    def write_kubeconfig(self, path: str | pathlib.Path) -> pathlib.Path:
        """Write a kubeconfig (cluster, user and context ``sandbox``) and return its path."""
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(self.kubeconfig(), sort_keys=False))
        return path
