"""watcher: the only service that reads the platform in bulk.

It owns the observations — KV buckets ``sluice_workloads`` (targets and primaries),
``sluice_canaries`` and ``sluice_templates``, written through ``observing`` — and publishes
``revision_detected`` events. At start it declares what it writes, connects to Kubernetes
(``SLUICE_KUBECONFIG``, else the in-cluster service account) and runs five informers —
Canaries, Deployments, ConfigMaps, Secrets, MetricTemplates, in every namespace or in
``SLUICE_WATCH_NAMESPACES`` — feeding ``watching.Reconciler``. ``/readyz`` is
503 while an informer has not synced or the Kubernetes API fails; the informers retry.

Without a kubeconfig and outside a cluster there is no Kubernetes to watch (standalone mode,
e.g. docker-compose): the watcher says so once and only keeps its bus declarations.
"""

from __future__ import annotations

import asyncio
import logging

from libs import lifecycle, settings, streams
from libs.adapters import informers, kubernetes
from services.watcher import observing, watching

log = logging.getLogger(__name__)

# Declared here until libs/adapters/kubernetes declares it with the other kinds.
METRIC_TEMPLATES = kubernetes.Resource(
    "flagger.app", "v1beta1", "MetricTemplate", "metrictemplates"
)


class Settings(settings.ServiceSettings, frozen=True, kw_only=True):
    kubeconfig: str = ""  # path to a kubeconfig; empty: the in-cluster service account
    watch_namespaces: str = ""  # comma-separated; empty: all namespaces
    kube_request_timeout_s: float = 10.0  # one list/get request, and a watch's connect
    kube_watch_timeout_s: float = 10.0  # the server ends each watch stream after this long
    kube_backoff_initial_s: float = 0.5  # first retry after a failed list/watch
    kube_backoff_max_s: float = 30.0  # retries back off exponentially up to this
    reconcile_retry_s: float = 2.0  # a canary whose evaluation failed is retried after this

    def __post_init__(self) -> None:
        super().__post_init__()
        for field in ("kube_request_timeout_s", "kube_watch_timeout_s", "kube_backoff_max_s"):
            if getattr(self, field) <= 0:
                raise ValueError(f"{field}: expected a positive number, got {getattr(self, field)}")

    def namespaces(self) -> tuple[str, ...]:
        return tuple(ns.strip() for ns in self.watch_namespaces.split(",") if ns.strip())


async def setup(rt: lifecycle.Runtime, cfg: Settings) -> None:
    await streams.declare(
        rt.js,
        streams=(streams.EVENTS,),
        buckets=(streams.WORKLOADS, streams.CANARIES, streams.TEMPLATES),
        timeout_s=cfg.nats_request_timeout_s,
        replicas=cfg.stream_replicas,
    )
    if not cfg.kubeconfig and not kubernetes.in_cluster():
        log.warning(
            "no SLUICE_KUBECONFIG and not running in a cluster: not watching Kubernetes "
            "(standalone mode)"
        )
        return
    kube = await kubernetes.Kube.connect(
        kubernetes.Config(kubeconfig=cfg.kubeconfig, request_timeout_s=cfg.kube_request_timeout_s)
    )
    rt.on_close(kube.close)
    namespaces = cfg.namespaces()
    reconciler = watching.Reconciler(
        rt,
        observing.Watcher(rt, await rt.js.key_value(streams.WORKLOADS.name)),
        canaries=observing.canaries(rt, await rt.js.key_value(streams.CANARIES.name)),
        templates=observing.templates(rt, await rt.js.key_value(streams.TEMPLATES.name)),
        retry_delay_s=cfg.reconcile_retry_s,
        namespaces=namespaces,
    )

    def informer(
        resource: kubernetes.Resource, handler: informers.Handler, *, strip: bool = False
    ) -> informers.Informer:
        return informers.Informer(
            kube,
            resource,
            on_change=handler,
            namespaces=namespaces,
            watch_timeout_s=cfg.kube_watch_timeout_s,
            backoff_initial_s=cfg.kube_backoff_initial_s,
            backoff_max_s=cfg.kube_backoff_max_s,
            transform=watching.strip_config if strip else None,
        )

    caches = watching.Caches(
        canaries=informer(kubernetes.CANARIES, reconciler.on_canary),
        deployments=informer(kubernetes.DEPLOYMENTS, reconciler.on_deployment),
        configmaps=informer(kubernetes.CONFIGMAPS, reconciler.on_configmap, strip=True),
        secrets=informer(kubernetes.SECRETS, reconciler.on_secret, strip=True),
        templates=informer(METRIC_TEMPLATES, reconciler.on_template),
    )
    rt.add_readiness_check(caches.problem)
    log.info(
        "watching Kubernetes at %s in %s",
        kube.host,
        ", ".join(namespaces) if namespaces else "all namespaces",
    )
    rt.spawn("informers", _run_informers(rt, caches))
    rt.spawn("reconcile", reconciler.run(caches))


async def _run_informers(rt: lifecycle.Runtime, caches: watching.Caches) -> None:
    """All informers until the service stops; then each stops its stream promptly."""
    async with asyncio.TaskGroup() as tg:
        for informer in caches.all():
            tg.create_task(informer.run(), name=f"informer:{informer.resource.plural}")
        await rt.stopping.wait()
        for informer in caches.all():
            informer.stop()
