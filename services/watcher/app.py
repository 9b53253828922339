"""watcher: the only service that reads the platform in bulk.

It owns the observations — KV buckets ``sluice_workloads`` (targets and primaries),
``sluice_canaries`` and ``sluice_templates``, written through ``observing`` — and publishes
``revision_detected`` events. At start it declares what it writes, connects to Kubernetes
(``SLUICE_KUBECONFIG``, else the in-cluster service account) and runs five informers —
Canaries, Deployments, ConfigMaps, Secrets, MetricTemplates, in every namespace or in
``SLUICE_WATCH_NAMESPACES`` — feeding ``watching.Reconciler``. ``/readyz`` is
503 while an informer has not synced or the Kubernetes API fails; the informers retry.

In standalone mode (``SLUICE_MODE=standalone``) there is no Kubernetes: the watcher follows
the canaries kept in KV, answers rollout requests and reads upstream nodes from APISIX's Admin
API (``standalone``). In Kubernetes mode without a kubeconfig and outside a cluster there is
nothing to watch: the watcher says so once and only keeps its bus declarations.
"""

from __future__ import annotations

import asyncio
import logging

from libs import errors, lifecycle, messages, serving, settings, streams
from libs.adapters import apisix_admin, informers, kubernetes
from services.watcher import observing, standalone, watching

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
    # standalone mode: a directory of ApisixCanary / MetricTemplate files applied at start and
    # on change, and how often upstream nodes are read again from the Admin API
    canaries_dir: str = ""
    nodes_refresh_s: float = 30.0

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
    if cfg.standalone:
        await _standalone(rt, cfg)
        return
    if not cfg.kubeconfig and not kubernetes.in_cluster():
        log.warning(
            "no SLUICE_KUBECONFIG and not running in a cluster: not watching Kubernetes "
            "(standalone mode)"
        )
        return
    kube = await kubernetes.Kube.connect(
        kubernetes.Config(
            kubeconfig=cfg.kubeconfig,
            request_timeout_s=cfg.kube_request_timeout_s,
            agent="sluice-watcher",
        )
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


async def _standalone(rt: lifecycle.Runtime, cfg: Settings) -> None:
    admin = None
    if cfg.apisix_admin_key_file:
        admin = apisix_admin.from_settings(
            cfg.apisix_admin_url, cfg.apisix_admin_key_file, cfg.apisix_admin_timeout_s
        )
        rt.on_close(admin.close)
    else:
        log.warning(
            "no SLUICE_APISIX_ADMIN_KEY_FILE: upstreams given by id have no nodes for the "
            "builtin checks"
        )
    watcher = standalone.StandaloneWatcher(
        rt,
        await rt.js.key_value(streams.CANARIES.name),
        await rt.js.key_value(streams.WORKLOADS.name),
        await rt.js.key_value(streams.TEMPLATES.name),
        admin,
        canaries_dir=cfg.canaries_dir,
        refresh_s=cfg.nodes_refresh_s,
    )
    log.info(
        "standalone mode: following the canaries in KV %s%s",
        streams.CANARIES.name,
        f" and the files in {cfg.canaries_dir}" if cfg.canaries_dir else "",
    )
    rt.spawn("canaries", watcher.run())
    rt.spawn(
        "rollouts",
        serving.serve_requests(
            rt,
            messages.ROLLOUT_ALL,
            messages.QUEUE_WATCHER,
            messages.ROLLOUT_DECODER,
            watcher.on_rollout,
            verify=_verify_rollout,
        ),
    )


def _verify_rollout(subject: str, request: messages.RolloutRequest) -> None:
    """The body must name the canary of the subject it came on (permissions are per subject)."""
    expected = messages.rollout_subject(request.canary.namespace, request.canary.name)
    if subject != expected:
        raise errors.InvalidInput(
            f"a rollout of {request.canary.name}.{request.canary.namespace} must be sent to "
            f"{expected}, not {subject}",
            path="subject",
            expected=expected,
        )


async def _run_informers(rt: lifecycle.Runtime, caches: watching.Caches) -> None:
    """All informers until the service stops; then each stops its stream promptly."""
    async with asyncio.TaskGroup() as tg:
        for informer in caches.all():
            tg.create_task(informer.run(), name=f"informer:{informer.resource.plural}")
        await rt.stopping.wait()
        for informer in caches.all():
            informer.stop()
