"""traffic-shifter: the only service that writes to the serving path.

Answers ``sluice.cmd.traffic.set`` (weights) and ``sluice.cmd.workload`` (primary workload,
Services, scaling, promotion) in queue group ``traffic-shifter``. The platform is chosen at
start: with ``SLUICE_KUBECONFIG`` or inside a pod it is Kubernetes (canary ApisixRoutes for
the APISIX ingress controller, Deployments, Services, HPAs; ``kube.platform``). In standalone
mode (``SLUICE_MODE=standalone``) it is APISIX's Admin API: the ``traffic-split`` plugin on the
user's route, the upstreams' nodes (``admin.platform``). Without either there is no platform, and every command is refused with a permanent
``CommandFailed`` naming what is missing — it never pretends a route changed.
"""

from __future__ import annotations

import logging

from libs import lifecycle, messages, serving, settings, streams
from libs.adapters import apisix_admin, kubernetes
from libs.standalone import store as canary_store
from services.traffic_shifter import admin, capabilities, handlers, kube
from services.traffic_shifter.kube import objects

log = logging.getLogger(__name__)


class Settings(settings.ServiceSettings, frozen=True, kw_only=True):
    kubeconfig: str = ""  # path to a kubeconfig; empty: the in-cluster service account
    kube_request_timeout_s: float = 10.0  # one Kubernetes request
    kube_conflict_attempts: int = 4  # read-and-write rounds of one object before a Conflict fails
    # Flagger's -selector-labels: pod labels the primary's selector is derived from, in order
    selector_labels: str = "app,name,app.kubernetes.io/name"
    # Flagger's -include-label-prefix: labels copied to primaries ("*": all; empty: none)
    include_label_prefix: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.kube_request_timeout_s < float("inf"):
            raise ValueError(
                "kube_request_timeout_s: expected a positive number of seconds, "
                f"got {self.kube_request_timeout_s}"
            )
        if self.kube_conflict_attempts < 1:
            raise ValueError(
                f"kube_conflict_attempts: expected at least 1, got {self.kube_conflict_attempts}"
            )
        if not _split(self.selector_labels):
            raise ValueError(
                f"selector_labels: expected at least one label, got {self.selector_labels!r}"
            )

    def kube_options(self) -> objects.Options:
        return objects.Options(
            selector_labels=_split(self.selector_labels),
            include_label_prefixes=_split(self.include_label_prefix),
            conflict_attempts=self.kube_conflict_attempts,
        )


def _split(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


async def _platform(rt: lifecycle.Runtime, cfg: Settings) -> capabilities.Platform | None:
    if cfg.standalone:
        return await _admin_platform(rt, cfg)
    if not cfg.kubeconfig and not kubernetes.in_cluster():
        log.warning(
            "no SLUICE_KUBECONFIG and not running in a cluster: no traffic router or workload "
            "adapter is configured; every command is refused"
        )
        return None
    client = await kubernetes.Kube.connect(
        kubernetes.Config(
            kubeconfig=cfg.kubeconfig,
            request_timeout_s=cfg.kube_request_timeout_s,
            agent="sluice-traffic-shifter",
        )
    )
    rt.on_close(client.close)
    log.info("acting on Kubernetes at %s", client.host)
    return kube.platform(client, cfg.kube_options())


async def _admin_platform(rt: lifecycle.Runtime, cfg: Settings) -> capabilities.Platform:
    await streams.declare(
        rt.js,
        buckets=(streams.CANARIES, streams.ROUTES),
        timeout_s=cfg.nats_request_timeout_s,
        replicas=cfg.stream_replicas,
    )
    api = apisix_admin.from_settings(
        cfg.apisix_admin_url, cfg.apisix_admin_key_file, cfg.apisix_admin_timeout_s
    )
    rt.on_close(api.close)
    store = canary_store.CanaryStore(
        await rt.js.key_value(streams.CANARIES.name), cfg.nats_request_timeout_s
    )
    log.info("acting on APISIX through its Admin API at %s", cfg.apisix_admin_url)
    return admin.platform(
        api, store.target, await rt.js.key_value(streams.ROUTES.name), store.set_finalizer
    )


async def setup(rt: lifecycle.Runtime, cfg: Settings) -> None:
    shifter = handlers.Shifter(await _platform(rt, cfg))
    rt.spawn(
        "traffic",
        serving.serve_requests(
            rt,
            messages.CMD_TRAFFIC,
            messages.QUEUE_TRAFFIC_SHIFTER,
            messages.TRAFFIC_DECODER,
            shifter.set_weights,
        ),
    )
    rt.spawn(
        "workload",
        serving.serve_requests(
            rt,
            messages.CMD_WORKLOAD,
            messages.QUEUE_TRAFFIC_SHIFTER,
            messages.WORKLOAD_DECODER,
            shifter.workload,
        ),
    )
