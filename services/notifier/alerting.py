"""Who hears what: Flagger's alert rules, destinations and event webhooks for one bus event.

* **Which events alert** — the ones Flagger alerts on: initialization, a new revision, a gate
  starting to wait, rollbacks (threshold reached, progress deadline, the rollback webhook),
  promotion failures and success; plus any error, Sluice's own dead-letter warnings, and
  every accepted control request (who promoted, aborted, paused … the canary). A
  webhook's ``muteAlert`` silences the alert of its failure (the Event is still recorded).
* **Where alerts go** — a canary's ``analysis.alerts`` (AlertProviders, with the address and
  token from their ``secretRef``) filtered by severity (``libs.model.alerts.receives``); a
  canary without alerts uses the global notifier (Slack / MS Teams from settings), as Flagger.
* **Event webhooks** — the canary's ``event`` webhooks, or the global one when it has none,
  hear every event that is recorded, with Flagger's payload.
* **Fields** — Flagger's alert metadata: cluster, target, failed checks threshold, progress
  deadline, traffic routing.
"""

from __future__ import annotations

import dataclasses
import logging

from libs import errors, messages
from libs.model import alerts, strategy
from libs.model import analysis as analysis_model
from libs.model import canary as canary_model
from services.notifier import lookup
from services.notifier.providers import notices

log = logging.getLogger(__name__)

ALERTED_KINDS = frozenset(
    {
        "initialized",
        "new_revision",
        "waiting_approval",
        "rolled_back",
        "promotion_completed",
        "dead_lettered",
        "control_requested",  # someone promoted, aborted, paused … the canary: the team hears who
    }
)


def alerts_on(event: messages.EventBase) -> bool:
    """Whether ``event`` is one Flagger alerts on (and not muted by its webhook)."""
    if event.mute_alert:
        return False
    kind = messages.event_kind(event)
    return kind in ALERTED_KINDS or event.severity == messages.Severity.ERROR


def metadata_fields(canary: canary_model.Canary, cluster: str = "") -> tuple[notices.Field, ...]:
    """Flagger's alert fields for a canary."""
    spec = canary.spec
    fields: list[notices.Field] = []
    if cluster:
        fields.append(notices.Field(name="Cluster", value=cluster))
    ns = canary.metadata.namespace
    analysis = canary.get_analysis()
    fields += [
        notices.Field(name="Target", value=f"{spec.target_ref.kind}/{spec.target_ref.name}.{ns}"),
        notices.Field(name="Failed checks threshold", value=str(analysis.threshold_or_default())),
        notices.Field(name="Progress deadline", value=f"{canary.progress_deadline_seconds()}s"),
    ]
    routing = _routing(analysis)
    if routing:
        fields.append(notices.Field(name="Traffic routing", value=routing))
    return tuple(fields)


def _routing(analysis: analysis_model.CanaryAnalysis) -> str:
    match strategy.detect(analysis):
        case strategy.Strategy.AB_TESTING:
            return "A/B Testing"
        case strategy.Strategy.BLUE_GREEN:
            return "Blue/Green"
    max_weight = strategy.max_weight(analysis)
    if analysis.step_weight:
        return f"Weight step: {analysis.step_weight} max: {max_weight}"
    if analysis.step_weights:
        steps = ",".join(str(w) for w in analysis.step_weights)
        return f"Weight steps: {steps} max: {max_weight}"
    return ""


@dataclasses.dataclass(frozen=True)
class Destination:
    """Where one alert goes; ``name`` is what results and metrics call it."""

    name: str  # "slack/<alert name>", "msteams/global", ...
    target: notices.Target


@dataclasses.dataclass(frozen=True)
class GlobalNotifier:
    """Flagger's command-line notifier (``-slack-url``, ``-msteams-url``, ``-event-webhook``)."""

    slack_url: str = ""
    slack_channel: str = "general"
    slack_user: str = "flagger"
    slack_proxy: str = ""
    msteams_url: str = ""
    msteams_proxy: str = ""
    teams_format: notices.TeamsFormat = "auto"
    event_webhook_url: str = ""

    def destinations(self) -> list[Destination]:
        out: list[Destination] = []
        if self.slack_url:
            out.append(
                Destination(
                    "slack/global",
                    notices.Target(
                        type="slack",
                        url=self.slack_url,
                        proxy=self.slack_proxy,
                        username=self.slack_user,
                        channel=self.slack_channel,
                    ),
                )
            )
        if self.msteams_url:
            out.append(
                Destination(
                    "msteams/global",
                    notices.Target(
                        type="msteams",
                        url=self.msteams_url,
                        proxy=self.msteams_proxy,
                        teams_format=self.teams_format,
                    ),
                )
            )
        return out


class Router:
    def __init__(self, lookups: lookup.Lookup | None, global_notifier: GlobalNotifier) -> None:
        self.lookups = lookups
        self.global_notifier = global_notifier

    async def destinations(
        self, canary: canary_model.Canary | None, severity: messages.Severity
    ) -> tuple[list[Destination], list[str]]:
        """The alert destinations for an event of ``severity``, and the problems met (an
        AlertProvider missing or invalid: logged, never fatal for the others)."""
        configured = canary.get_analysis().alerts if canary is not None else ()
        if not configured:
            return self.global_notifier.destinations(), []
        assert canary is not None
        found: list[Destination] = []
        problems: list[str] = []
        for alert in configured:
            if not alerts.receives(alert.effective_severity(), severity):
                continue
            try:
                found.append(await self._resolve(canary, alert))
            except errors.SluiceError as exc:
                if exc.temporary:
                    raise
                problems.append(f"alert {alert.name}: {exc}")
        return found, problems

    async def _resolve(
        self, canary: canary_model.Canary, alert: analysis_model.Alert
    ) -> Destination:
        if self.lookups is None:
            raise errors.Unsupported("alert providers need Kubernetes")
        namespace = alert.provider_ref.namespace or canary.metadata.namespace or ""
        provider = await self.lookups.provider(namespace, alert.provider_ref.name)
        spec = provider.spec
        url, token = spec.address or "", ""
        if spec.secret_ref is not None:
            secret = await self.lookups.secret(namespace, spec.secret_ref.name)
            if "address" not in secret:
                raise errors.InvalidInput(
                    f"AlertProvider {namespace}/{alert.provider_ref.name}: secret "
                    f"{spec.secret_ref.name} has no key address"
                )
            url, token = secret["address"], secret.get("token", "")
        if not url:
            raise errors.InvalidInput(
                f"AlertProvider {namespace}/{alert.provider_ref.name}: no address"
            )
        target = notices.Target(
            type=spec.type,
            url=url,
            token=token,
            proxy=spec.proxy or "",
            username=spec.username_or_default(),
            channel=spec.channel_or_default(),
        )
        return Destination(f"{spec.type}/{alert.name}", target)

    def event_webhooks(self, canary: canary_model.Canary | None) -> list[Destination]:
        """Every ``event`` webhook of the canary, or the global one when it has none."""
        hooks = (
            canary.get_analysis().webhooks_of(analysis_model.WebhookType.EVENT)
            if canary is not None
            else []
        )
        if hooks:
            return [
                Destination(
                    f"webhook/{hook.name}",
                    notices.Target(type="webhook", url=hook.url, metadata=dict(hook.metadata)),
                )
                for hook in hooks
            ]
        if self.global_notifier.event_webhook_url:
            url = self.global_notifier.event_webhook_url
            return [Destination("webhook/global", notices.Target(type="webhook", url=url))]
        return []
