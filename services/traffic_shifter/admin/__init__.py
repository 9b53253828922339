"""The traffic-shifter's standalone side: plain APISIX through its Admin API, no Kubernetes.

Modules, by concern: ``splitting`` (pure: the ``traffic-split`` and ``proxy-mirror``
configurations, A/B ``vars``, reading weights back, the one PATCH per change), ``routes``
(``TrafficRouter`` on the user's route), ``workloads`` (``WorkloadController``: initialize,
scale, promote, finalizer, revert), ``records`` (the routes' values before the canary, in the
``sluice_routes`` KV bucket), ``context`` (what both share).

    platform(api, targets, routes_kv, finalizers) -> capabilities.Platform

``targets`` gives a canary's ``ApisixTarget`` (raising ``errors.NotFound`` for an unknown
canary); ``finalizers(ref, present)`` adds or removes the canary's finalizer in the state store.
"""

from __future__ import annotations

from nats.js.kv import KeyValue

from libs.adapters import apisix_admin
from services.traffic_shifter import capabilities
from services.traffic_shifter.admin import context, records, routes, workloads

Targets = context.Targets
Finalizers = context.Finalizers


def platform(
    api: apisix_admin.AdminApi,
    targets: Targets,
    routes_kv: KeyValue,
    finalizers: Finalizers,
) -> capabilities.Platform:
    """The Admin API router and workload controller, sharing one client."""
    ctx = context.Context(
        api=api, targets=targets, records=records.RouteRecords(routes_kv), finalizers=finalizers
    )
    return capabilities.Platform(
        router=routes.AdminRoutes(ctx),
        workloads=workloads.AdminWorkloads(ctx),
        name="apisix-admin",
    )
