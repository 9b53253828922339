"""What to say and where to say it, independent of any chat tool.

``Notice`` mirrors the arguments of Flagger's ``notifier.Interface.Post(workload, namespace,
message, fields, severity)``; ``Target`` is one resolved alert destination (an AlertProvider
after its secret was read, or a Canary's ``event`` webhook).

A ``Target`` holds secrets (the URL's path and query, the token, proxy credentials), so its
``repr`` shows them redacted: a Target that ends up in a log line or a traceback leaks nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import msgspec

from libs import logs, messages
from libs.model import alerts

Severity = messages.Severity

# Flagger's AlertProvider types, plus "webhook": a Canary's ``event`` webhook (or the controller's
# global event webhook), which receives Flagger's generic event payload.
TargetType = alerts.ProviderType | Literal["webhook"]

# Which MS Teams card to send: "auto" decides from the URL (``payloads.teams_format``).
TeamsFormat = Literal["auto", "messagecard", "adaptivecard"]


class Field(msgspec.Struct, frozen=True, kw_only=True):
    """One name/value line of an alert (Flagger's ``notifier.Field``)."""

    name: str
    value: str


class Notice(msgspec.Struct, frozen=True, kw_only=True):
    """One alert about one canary.

    ``name`` and ``namespace`` are the Canary's; ``severity`` ``""`` (unset) counts as info.
    ``phase``, ``checksum`` and ``at_ms`` are read only by the event-webhook payload (Flagger
    sends the canary's phase, its status checksum and the event time there); pass the event's
    own ``at_ms`` so that every replica builds the same body for the same event.
    """

    name: str
    namespace: str
    message: str
    fields: tuple[Field, ...] = ()
    severity: Severity
    phase: str = ""
    checksum: str = ""
    at_ms: int = msgspec.field(default_factory=messages.now_ms)


class Target(msgspec.Struct, frozen=True, kw_only=True):
    """One resolved destination.

    ``url`` is the provider's address (AlertProvider ``spec.address`` or the secret's
    ``address`` key), ``token`` the secret's optional ``token`` key, ``proxy`` the
    AlertProvider's ``spec.proxy``. ``username`` and ``channel`` default as in Flagger;
    ``teams_format`` matters only for ``msteams``; ``metadata`` only for ``webhook`` (the
    hook's own metadata, added to Flagger's event keys without overriding them).
    """

    type: TargetType
    url: str
    token: str = ""
    proxy: str = ""
    username: str = alerts.DEFAULT_USERNAME
    channel: str = alerts.DEFAULT_CHANNEL
    teams_format: TeamsFormat = "auto"
    metadata: dict[str, str] = {}

    def _safe_items(self) -> Iterator[tuple[str, Any]]:
        yield "type", self.type
        yield "url", logs.redact_url(self.url)
        if self.token:
            yield "token", "<redacted>"
        if self.proxy:
            yield "proxy", logs.redact_url(self.proxy)
        yield "username", self.username
        yield "channel", self.channel
        yield "teams_format", self.teams_format
        if self.metadata:
            yield "metadata", f"<{len(self.metadata)} keys>"

    def __repr__(self) -> str:
        inner = ", ".join(f"{key}={value!r}" for key, value in self._safe_items())
        return f"Target({inner})"

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        return list(self._safe_items())
