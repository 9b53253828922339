"""analyzer: the only service that decides and writes canary state.

Pulls ``Tick`` messages from the ``SLUICE_TICKS`` work queue (shared by every replica) and
wake-up hints (``revision_detected`` events) from ``SLUICE_EVENTS``. Each tick takes one step
of the canary's state machine (``machine``) against the bus (``driving``): reading the
watcher's observations, asking the traffic-shifter and the webhook-runner, querying
Prometheus (``checking``), publishing the step's events and writing the Canary's status with
compare-and-set (``state``). Control requests from people and programs (``sluice promote``,
``abort`` …) arrive on ``sluice.control.>`` and are answered by one replica
(``controlling``); the next step carries them out. In standalone mode (``SLUICE_MODE=standalone``)
the canaries and their status live in the ``sluice_canaries`` KV bucket instead of Kubernetes
(``standalone``). In Kubernetes mode without Kubernetes (no ``SLUICE_KUBECONFIG``, not in a pod)
ticks are acknowledged and nothing is decided.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging

from libs import consuming, lifecycle, messages, serving, settings, streams
from libs.adapters import kubernetes
from libs.standalone import store as canary_store
from services.analyzer import (
    checking,
    committing,
    controlling,
    driving,
    handlers,
    recording,
    standalone,
    state,
)

log = logging.getLogger(__name__)


class Settings(settings.ServiceSettings, frozen=True, kw_only=True):
    kubeconfig: str = ""  # path to a kubeconfig; empty: the in-cluster service account
    kube_request_timeout_s: float = 10.0
    prometheus_url: str = "http://prometheus:9090"  # Flagger's -metrics-server default
    prometheus_timeout_s: float = 5.0  # one query (Flagger: 5 s)
    min_interval_s: float = 10.0  # a canary's analysis interval is at least this (Flagger: 10 s)
    step_command_timeout_s: float = 30.0  # one command to the traffic-shifter
    # worker threads for the blocking Kubernetes and Prometheus clients; Python's default
    # (cores + 4: 6 on 2 cores) made status writes queue behind slow Prometheus queries
    blocking_threads: int = 32
    secrets_dir: str = ""  # standalone mode: provider secrets as <dir>/<secret>/<key> files

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in (
            "kube_request_timeout_s",
            "prometheus_timeout_s",
            "min_interval_s",
            "step_command_timeout_s",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(
                    f"{name}: expected a positive number of seconds, got {getattr(self, name)}"
                )
        if self.blocking_threads < 1:
            raise ValueError(
                f"blocking_threads: expected at least 1 thread, got {self.blocking_threads}"
            )


State = tuple[state.KvObservations, checking.SecretSource, driving.StatusWriter, controlling.Fresh]


async def _state(rt: lifecycle.Runtime, cfg: Settings) -> State | None:
    """Where canaries are read and their status written: Kubernetes, or KV in standalone
    mode; None in Kubernetes mode without Kubernetes (ticks are then only acknowledged)."""
    observations = state.KvObservations(
        rt,
        await rt.js.key_value(streams.CANARIES.name),
        await rt.js.key_value(streams.WORKLOADS.name),
        await rt.js.key_value(streams.TEMPLATES.name),
    )
    if cfg.standalone:
        store = canary_store.CanaryStore(observations.canaries, cfg.nats_request_timeout_s)
        log.info("standalone mode: canaries and their status in KV %s", streams.CANARIES.name)
        return (
            standalone.Observations(observations, store),
            standalone.DirSecrets(cfg.secrets_dir),
            standalone.StatusWriter(store),
            store.fresh,
        )
    if not cfg.kubeconfig and not kubernetes.in_cluster():
        log.warning(
            "no SLUICE_KUBECONFIG and not running in a cluster: ticks are acknowledged, "
            "no canary is analysed"
        )
        return None
    kube = await kubernetes.Kube.connect(
        kubernetes.Config(
            kubeconfig=cfg.kubeconfig,
            request_timeout_s=cfg.kube_request_timeout_s,
            agent="sluice-analyzer",
        )
    )
    rt.on_close(kube.close)
    return (
        observations,
        state.KubeSecrets(kube),
        state.KubeStatusWriter(kube),
        state.KubeCanaries(kube),
    )


async def setup(rt: lifecycle.Runtime, cfg: Settings) -> None:
    asyncio.get_running_loop().set_default_executor(
        concurrent.futures.ThreadPoolExecutor(cfg.blocking_threads, thread_name_prefix="blocking")
    )
    await streams.declare(
        rt.js,
        streams=(streams.EVENTS, streams.TICKS, streams.DEAD),
        consumers=(streams.ANALYZER_TICKS, streams.ANALYZER_HINTS),
        buckets=(streams.WORKLOADS, streams.CANARIES, streams.TEMPLATES, streams.OUTBOX),
        timeout_s=cfg.nats_request_timeout_s,
        replicas=cfg.stream_replicas,
    )
    recorder = recording.Recorder(rt.metrics.registry, lifecycle.version())
    found = await _state(rt, cfg)
    if found is None:
        analyzer = handlers.Analyzer(rt, None, min_interval_s=cfg.min_interval_s, recorder=recorder)
    else:
        observations, secrets, writer, fresh = found
        checker = checking.Checker(
            cfg.prometheus_url, observations.template, secrets, timeout_s=cfg.prometheus_timeout_s
        )
        rt.on_close(checker.close)
        driver = driving.Driver(
            rt,
            observations,
            checker,
            writer,
            command_timeout_s=cfg.step_command_timeout_s,
            on_checked=recorder.checked,
            on_stepped=recorder.step_overhead.observe,
            outbox=committing.KvOutbox(rt, await rt.js.key_value(streams.OUTBOX.name)),
        )
        analyzer = handlers.Analyzer(
            rt, driver, min_interval_s=cfg.min_interval_s, recorder=recorder
        )
        controller = controlling.Controller(
            rt, fresh, writer, analyzer.schedule, locks=analyzer.locks
        )
        rt.spawn(
            "control",
            serving.serve_requests(
                rt,
                messages.CONTROL_ALL,
                messages.QUEUE_ANALYZER,
                messages.CONTROL_DECODER,
                controller.on_request,
                verify=controlling.verify,
            ),
        )
    rt.spawn(
        "ticks",
        consuming.consume(
            rt,
            streams.ANALYZER_TICKS,
            messages.TICK_DECODER,
            analyzer.on_tick,
            on_dead=analyzer.on_dead_tick,
        ),
    )
    rt.spawn(
        "hints",
        consuming.consume(
            rt,
            streams.ANALYZER_HINTS,
            messages.EVENT_DECODER,
            analyzer.on_hint,
            on_dead=analyzer.on_dead_hint,
        ),
    )
