"""In-process controllers that make the simulated API server behave like a cluster.

``run_all`` runs, in one TaskGroup until cancelled:

* ``deployment`` — ReplicaSets per pod template, rolling updates, Deployment status/conditions;
* ``replicaset`` — pods per ReplicaSet, ReplicaSet status;
* ``kubelet`` — binds and runs pods: IPs, one podinfo-like app per container, readiness;
* ``endpoints`` — Endpoints of selector Services, ClusterIPs;
* ``hpa`` — HorizontalPodAutoscaler status and min/max bounds (no metrics).

Each controller lists+watches the ``Store`` and reconciles keys on one worker
(``reconciling.WorkLoop``); timers replace polling. Garbage collection by ownerReferences and
namespace finalization belong to the store / API server.
"""

from __future__ import annotations

import asyncio

from sandbox import faults
from sandbox.kube import config as kconfig
from sandbox.kube import registry as kregistry
from sandbox.kube import store as kstore
from sandbox.kube.controllers import deployment, endpoints, hpa, kubelet, replicaset
from sandbox.kube.controllers.settings import ControllerSettings

__all__ = ["ControllerSettings", "run_all"]


async def run_all(
    store: kstore.Store,
    registry: kregistry.Registry,
    settings: kconfig.ClusterSettings,
    *,
    controller_settings: ControllerSettings | None = None,
    app_factory: kubelet.AppFactory | None = None,
    switches: faults.Switches | None = None,
) -> None:
    """Run every controller until cancelled (or until one of them fails, which re-raises).

    On return every pod app has stopped listening and every task and timer is gone.
    ``app_factory`` replaces the podinfo-like app for every container (tests, other images).
    ``switches``: the API server's fault switches (the kubelet honours ``pod-unready``).
    """
    tuning = controller_settings or ControllerSettings()
    for rtype in kregistry.BUILTIN:  # the garbage collector must know the built-in types
        store.register(rtype)
    controllers = (
        deployment.DeploymentController(store, tuning),
        replicaset.ReplicaSetController(store, tuning),
        kubelet.Kubelet(store, settings, tuning, app_factory, switches),
        endpoints.EndpointsController(store, settings, tuning),
        hpa.HPAController(store, registry, tuning),
    )
    async with asyncio.TaskGroup() as group:
        for controller in controllers:
            group.create_task(controller.run(), name=f"controller-{controller.loop.name}")
