"""The ``flagger.app/v1beta1`` AlertProvider and severity routing."""

from __future__ import annotations

from typing import Any, Literal

from libs.model import analysis, meta

API_VERSION = "flagger.app/v1beta1"
KIND = "AlertProvider"
DEFAULT_CHANNEL = "general"
DEFAULT_USERNAME = "flagger"

ProviderType = Literal["slack", "msteams", "discord", "rocket", "gchat"]

_RANK = {analysis.Severity.INFO: 0, analysis.Severity.WARN: 1, analysis.Severity.ERROR: 2}


class AlertProviderSpec(meta.Model, frozen=True):
    """``spec`` of an AlertProvider; the secret key ``address`` overrides ``address``."""

    type: ProviderType
    channel: str | None = None
    username: str | None = None
    address: meta.HttpUrl | None = None
    proxy: str | None = None
    secret_ref: meta.LocalObjectReference | None = None

    def channel_or_default(self) -> str:
        """The channel, default ``general``."""
        return self.channel or DEFAULT_CHANNEL

    def username_or_default(self) -> str:
        """The bot username, default ``flagger``."""
        return self.username or DEFAULT_USERNAME


class AlertProvider(meta.Object, frozen=True):
    """A Flagger AlertProvider object."""

    spec: AlertProviderSpec
    status: dict[str, Any] | None = None


def receives(alert_severity: analysis.Severity, event_severity: analysis.Severity) -> bool:
    """Whether an alert of ``alert_severity`` receives an event of ``event_severity``.

    ``info`` receives everything, ``warn`` receives warn and error, ``error`` only error;
    an unset severity is ``info``.
    """
    alert = alert_severity or analysis.Severity.INFO
    event = event_severity or analysis.Severity.INFO
    return _RANK[event] >= _RANK[alert]


def parse_alert_provider(obj: dict[str, Any]) -> AlertProvider:
    """Validate and decode one AlertProvider; ``InvalidInput`` lists every problem."""
    from libs.model import validation

    return validation.parse_one(obj, AlertProvider)
