"""notifier: the only service that talks to chat tools and writes Kubernetes Events.

Reads ``SLUICE_EVENTS`` through the durable consumer ``notifier`` (so nothing is missed while
it is down, and replicas share the work) and, for each event, sends the alerts Flagger would
send (Slack, MS Teams, Discord, Rocket.Chat, Google Chat — per canary from its AlertProviders,
else the global notifier below), calls event webhooks, and records a Kubernetes Event on the
Canary (``handlers``). Without Kubernetes (no ``SLUICE_KUBECONFIG``, not in a pod) only the
global notifier and the global event webhook are told.

The global notifier mirrors Flagger's flags: ``SLUICE_SLACK_URL`` (``-slack-url``),
``SLUICE_SLACK_CHANNEL``, ``SLUICE_SLACK_USER``, ``SLUICE_SLACK_PROXY_URL``,
``SLUICE_MSTEAMS_URL``, ``SLUICE_MSTEAMS_PROXY_URL``, ``SLUICE_EVENT_WEBHOOK_URL``
(``-event-webhook``), ``SLUICE_CLUSTER_NAME``. Each URL can instead be read from a file
(``SLUICE_SLACK_URL_FILE`` ..., a mounted Secret), so it need not sit in the environment.
"""

from __future__ import annotations

import logging
import pathlib

from libs import consuming, lifecycle, messages, settings, streams
from libs.adapters import kubernetes
from services.notifier import alerting, handlers, kubeevents, lookup
from services.notifier.providers import delivery, notices

log = logging.getLogger(__name__)

_SECRET_FILES = ("slack_url", "msteams_url", "event_webhook_url")


class Settings(settings.ServiceSettings, frozen=True, kw_only=True):
    kubeconfig: str = ""  # path to a kubeconfig; empty: the in-cluster service account
    kube_request_timeout_s: float = 10.0
    event_component: str = "flagger"  # source / reporting component of Kubernetes Events
    events_burst: int = 25  # Kubernetes Events written at once per canary ...
    events_per_s: float = 1.0  # ... then this many a second (a burst waits, nothing is dropped)
    cluster_name: str = ""  # the "Cluster" field of alerts (Flagger's -cluster-name)
    slack_url: str = ""
    slack_url_file: str = ""
    slack_channel: str = "general"
    slack_user: str = "flagger"
    slack_proxy_url: str = ""
    msteams_url: str = ""
    msteams_url_file: str = ""
    msteams_proxy_url: str = ""
    teams_format: notices.TeamsFormat = "auto"  # from the URL, or messagecard | adaptivecard
    event_webhook_url: str = ""
    event_webhook_url_file: str = ""
    alert_timeout_s: float = 5.0  # one attempt to tell a provider (Flagger's 5 s)
    alert_deadline_s: float = 15.0  # all attempts for one provider and event (under the ack wait)
    alert_proxy_from_env: bool = False  # HTTP(S)_PROXY for providers without spec.proxy

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in (
            "alert_timeout_s",
            "alert_deadline_s",
            "events_per_s",
            "kube_request_timeout_s",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: expected a positive number, got {getattr(self, name)}")
        if self.events_burst < 1:
            raise ValueError(f"events_burst: expected at least 1, got {self.events_burst}")
        for name in _SECRET_FILES:
            path = getattr(self, f"{name}_file")
            if path and not pathlib.Path(path).is_file():
                raise ValueError(f"{name}_file: expected a readable file, got {path!r}")

    def secret(self, name: str) -> str:
        """A URL from its ``*_file`` when set, else from its variable."""
        path = getattr(self, f"{name}_file")
        if path:
            return pathlib.Path(path).read_text().strip()
        return str(getattr(self, name))

    def global_notifier(self) -> alerting.GlobalNotifier:
        return alerting.GlobalNotifier(
            slack_url=self.secret("slack_url"),
            slack_channel=self.slack_channel,
            slack_user=self.slack_user,
            slack_proxy=self.slack_proxy_url,
            msteams_url=self.secret("msteams_url"),
            msteams_proxy=self.msteams_proxy_url,
            teams_format=self.teams_format,
            event_webhook_url=self.secret("event_webhook_url"),
        )


async def setup(rt: lifecycle.Runtime, cfg: Settings) -> None:
    await streams.declare(
        rt.js,
        streams=(streams.EVENTS, streams.DEAD),
        consumers=(streams.NOTIFIER_EVENTS,),
        buckets=(streams.NOTIFIED,),
        timeout_s=cfg.nats_request_timeout_s,
        replicas=cfg.stream_replicas,
    )
    lookups: lookup.Lookup | None = None
    recorder: kubeevents.Recorder | None = None
    if cfg.kubeconfig or kubernetes.in_cluster():
        kube = await kubernetes.Kube.connect(
            kubernetes.Config(
                kubeconfig=cfg.kubeconfig,
                request_timeout_s=cfg.kube_request_timeout_s,
                agent="sluice-notifier",
            )
        )
        rt.on_close(kube.close)
        lookups = lookup.Lookup(kube)
        recorder = kubeevents.Recorder(
            kube, cfg.event_component, burst=cfg.events_burst, rate_per_s=cfg.events_per_s
        )
    else:
        log.warning(
            "no SLUICE_KUBECONFIG and not running in a cluster: no Kubernetes Events and no "
            "per-canary alerts; only the global notifier is told"
        )
    sender = delivery.Sender(
        timeout_s=cfg.alert_timeout_s,
        deadline_s=cfg.alert_deadline_s,
        trust_env=cfg.alert_proxy_from_env,
    )
    rt.on_close(sender.close)
    notifier = handlers.Notifier(
        rt,
        router=alerting.Router(lookups, cfg.global_notifier()),
        sender=sender,
        marks=await rt.js.key_value(streams.NOTIFIED.name),
        lookups=lookups,
        recorder=recorder,
        cluster_name=cfg.cluster_name,
    )
    rt.spawn(
        "events",
        consuming.consume(rt, streams.NOTIFIER_EVENTS, messages.EVENT_DECODER, notifier.on_event),
    )
