"""Each provider's request: URL, headers and JSON body, built from a ``Notice`` and a ``Target``.

Pure functions, no I/O. The shapes are Flagger's (``pkg/notifier/*.go``; ``CallEventWebhook`` in
``pkg/controller/webhook.go``) so that channels look the same after moving from Flagger:

==========  ==========================================================================
slack       ``{channel, username, icon_url, icon_emoji, attachments: [{color, author_name,
            text, mrkdwn_in, fields: [{title, value, short}]}]}``; Bearer token if set
discord     the Slack body, posted to ``<url>/slack`` (Discord's Slack-compatible endpoint)
rocket      the Slack body with hex colours
gchat       ``{cards: [{header: {title, subtitle, imageUrl}, sections: [{widgets:
            [{textParagraph: {text}}]}]}]}``: one section for the message, one per field
msteams     an Office 365 connector ``MessageCard``, or an Adaptive Card message for Teams
            Workflows (Power Automate), chosen by ``teams_format`` (Flagger has only the
            MessageCard, its issue #1753)
webhook     Flagger's event-webhook body ``{name, namespace, phase, checksum, metadata:
            {eventMessage, eventType, timestamp, ...}}``
==========  ==========================================================================

Colours follow Flagger: only ``error`` is painted red; ``warn`` looks like ``info`` everywhere
Flagger has a colour. The Adaptive Card, which Flagger lacks, marks ``warn`` as a warning.

Where Sluice differs on purpose (each noted where it happens): Slack text is escaped as Slack
requires (``&``, ``<``, ``>``); Google Chat text is HTML-escaped (its ``textParagraph`` is
HTML); the Discord URL keeps its query when ``/slack`` is appended; the event webhook's
``timestamp`` is the event's time, not the send time (replicas build identical bodies).

Bodies are msgspec Structs whose field names are the wire names (hence the camelCase).
"""

from __future__ import annotations

import html
import urllib.parse
from collections.abc import Mapping
from typing import Literal, assert_never

import msgspec

from services.notifier.providers import notices

Severity = notices.Severity

ICON_EMOJI = ":rocket:"  # Flagger's Slack/Discord/Rocket.Chat icon
GCHAT_TITLE = "Flagger"  # Google Chat card title and icon, as Flagger sends them (drop-in look)
GCHAT_IMAGE_URL = "https://flagger.app/favicon.png"
GCHAT_GREY = "#848484"
MESSAGECARD_CONTEXT = "http://schema.org/extensions"
ADAPTIVE_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
ADAPTIVE_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
ADAPTIVE_VERSION = "1.4"

# severity -> colour, per provider (unset severity is info)
SLACK_COLOURS: Mapping[Severity, str] = {
    Severity.UNSET: "good",
    Severity.INFO: "good",
    Severity.WARN: "good",  # Flagger paints warn like info
    Severity.ERROR: "danger",
}
ROCKET_COLOURS: Mapping[Severity, str] = {
    Severity.UNSET: "#0076D7",
    Severity.INFO: "#0076D7",
    Severity.WARN: "#0076D7",
    Severity.ERROR: "#FF0000",
}
MESSAGECARD_COLOURS: Mapping[Severity, str] = {
    Severity.UNSET: "0076D7",
    Severity.INFO: "0076D7",
    Severity.WARN: "0076D7",
    Severity.ERROR: "FF0000",
}
# Adaptive Card TextBlock colours (named, the host theme picks the shade): Accent is the blue
# of Flagger's MessageCard.
ADAPTIVE_COLOURS: Mapping[Severity, str] = {
    Severity.UNSET: "Accent",
    Severity.INFO: "Accent",
    Severity.WARN: "Warning",
    Severity.ERROR: "Attention",
}
# Kubernetes event type Flagger reports to event webhooks (recordEventInfof/Warningf/Errorf)
EVENT_TYPES: Mapping[Severity, str] = {
    Severity.UNSET: "Normal",
    Severity.INFO: "Normal",
    Severity.WARN: "Warning",
    Severity.ERROR: "Warning",
}


def pick(table: Mapping[Severity, str], severity: Severity) -> str:
    """``table[severity]``; a value outside the enum (a Notice is not validated when built)
    reads as info rather than failing the alert."""
    return table.get(severity, table[Severity.INFO])


def subject(notice: notices.Notice) -> str:
    """``name.namespace``, how Flagger names a canary in every alert."""
    return f"{notice.name}.{notice.namespace}"


# ----------------------------------------------------------------------------- Slack family


class SlackField(msgspec.Struct, frozen=True):
    title: str
    value: str
    short: bool = False  # Flagger never marks a field short


class SlackAttachment(msgspec.Struct, frozen=True, kw_only=True):
    color: str
    author_name: str
    text: str
    mrkdwn_in: tuple[str, ...] = ("text",)
    fields: tuple[SlackField, ...] = ()


class SlackPayload(msgspec.Struct, frozen=True, kw_only=True):
    channel: str
    username: str
    icon_url: str = ""  # Flagger always sends it, empty
    icon_emoji: str = ICON_EMOJI
    attachments: tuple[SlackAttachment, ...]


def slack_escape(text: str) -> str:
    """Slack's three control characters as entities (its "escaping text" rule); nothing else."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_family(
    notice: notices.Notice,
    target: notices.Target,
    colours: Mapping[Severity, str],
    *,
    escape: bool,
) -> SlackPayload:
    def text(value: str) -> str:
        return slack_escape(value) if escape else value

    return SlackPayload(
        channel=target.channel,
        username=target.username,
        attachments=(
            SlackAttachment(
                color=pick(colours, notice.severity),
                author_name=text(subject(notice)),
                text=text(notice.message),
                fields=tuple(SlackField(text(f.name), text(f.value)) for f in notice.fields),
            ),
        ),
    )


def slack(notice: notices.Notice, target: notices.Target) -> SlackPayload:
    """Flagger's Slack body (``color`` good/danger); text escaped as Slack requires."""
    return _slack_family(notice, target, SLACK_COLOURS, escape=True)


def discord(notice: notices.Notice, target: notices.Target) -> SlackPayload:
    """Flagger's Discord body: the Slack body, unescaped (Discord does not read Slack
    entities); ``destination`` sends it to ``<url>/slack``."""
    return _slack_family(notice, target, SLACK_COLOURS, escape=False)


def rocket(notice: notices.Notice, target: notices.Target) -> SlackPayload:
    """Flagger's Rocket.Chat body: the Slack body with ``#0076D7`` / ``#FF0000``."""
    return _slack_family(notice, target, ROCKET_COLOURS, escape=False)


# ----------------------------------------------------------------------------- Google Chat


class GChatText(msgspec.Struct, frozen=True):
    text: str


class GChatWidget(msgspec.Struct, frozen=True, kw_only=True):
    textParagraph: GChatText


class GChatSection(msgspec.Struct, frozen=True, kw_only=True):
    widgets: tuple[GChatWidget, ...]


class GChatHeader(msgspec.Struct, frozen=True, kw_only=True):
    title: str
    subtitle: str
    imageUrl: str


class GChatCard(msgspec.Struct, frozen=True, kw_only=True):
    header: GChatHeader
    sections: tuple[GChatSection, ...]


class GChatPayload(msgspec.Struct, frozen=True, kw_only=True):
    cards: tuple[GChatCard, ...]


def _gchat_paragraph(text: str) -> GChatSection:
    return GChatSection(widgets=(GChatWidget(textParagraph=GChatText(text)),))


def gchat(notice: notices.Notice) -> GChatPayload:
    """Flagger's Google Chat card: the message in grey bold, then one section per field
    (``name<br>`` + the value in grey bold). Text is HTML-escaped, since ``textParagraph`` is
    HTML: Flagger's raw ``<`` would break the markup."""

    def grey(text: str) -> str:
        return f"<font color={GCHAT_GREY}><strong>{html.escape(text, quote=False)}</strong></font>"

    sections = [_gchat_paragraph(grey(notice.message))]
    sections += [
        _gchat_paragraph(f"{html.escape(f.name, quote=False)}<br>{grey(f.value)}")
        for f in notice.fields
    ]
    return GChatPayload(
        cards=(
            GChatCard(
                header=GChatHeader(
                    title=GCHAT_TITLE, subtitle=subject(notice), imageUrl=GCHAT_IMAGE_URL
                ),
                sections=tuple(sections),
            ),
        )
    )


# ----------------------------------------------------------------------------- MS Teams


class MessageCardFact(msgspec.Struct, frozen=True):
    name: str
    value: str


class MessageCardSection(msgspec.Struct, frozen=True, kw_only=True):
    activityTitle: str
    activitySubtitle: str
    facts: tuple[MessageCardFact, ...]


class MessageCard(msgspec.Struct, frozen=True, kw_only=True):
    """An Office 365 connector card (legacy "actionable message card" format)."""

    type: str = msgspec.field(default="MessageCard", name="@type")
    context: str = msgspec.field(default=MESSAGECARD_CONTEXT, name="@context")
    themeColor: str
    summary: str
    sections: tuple[MessageCardSection, ...]


def teams_message_card(notice: notices.Notice) -> MessageCard:
    """Flagger's MS Teams body, for Office 365 connector URLs (``*.webhook.office.com``)."""
    return MessageCard(
        themeColor=pick(MESSAGECARD_COLOURS, notice.severity),
        summary=subject(notice),
        sections=(
            MessageCardSection(
                activityTitle=notice.message,
                activitySubtitle=subject(notice),
                facts=tuple(MessageCardFact(f.name, f.value) for f in notice.fields),
            ),
        ),
    )


class TextBlock(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag="TextBlock"):
    """Unset (empty) properties are left out, so the host's defaults apply."""

    text: str
    wrap: bool  # required, so always written: long messages wrap instead of being cut
    weight: str = ""
    size: str = ""
    color: str = ""
    isSubtle: bool = False
    spacing: str = ""


class Fact(msgspec.Struct, frozen=True):
    title: str
    value: str


class FactSet(msgspec.Struct, frozen=True, kw_only=True, tag="FactSet"):
    facts: tuple[Fact, ...]


class TeamsCardOptions(msgspec.Struct, frozen=True, kw_only=True):
    width: str = "Full"  # Teams' own card property: use the channel's full width


class AdaptiveCard(msgspec.Struct, frozen=True, kw_only=True, tag="AdaptiveCard"):
    schema: str = msgspec.field(default=ADAPTIVE_SCHEMA, name="$schema")
    version: str = ADAPTIVE_VERSION
    msteams: TeamsCardOptions = TeamsCardOptions()
    body: tuple[TextBlock | FactSet, ...]


class AdaptiveAttachment(msgspec.Struct, frozen=True, kw_only=True):
    contentType: str = ADAPTIVE_CONTENT_TYPE
    contentUrl: None = None  # null, as in Microsoft's documented envelope
    content: AdaptiveCard


class AdaptiveCardMessage(msgspec.Struct, frozen=True, kw_only=True, tag="message"):
    """The envelope Teams webhooks take an Adaptive Card in: ``{"type": "message",
    "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "content":
    card}]}``. The Workflows template "Post to a channel when a webhook request is received"
    posts each attachment's ``content`` as a card."""

    attachments: tuple[AdaptiveAttachment, ...]


def teams_adaptive_card(notice: notices.Notice) -> AdaptiveCardMessage:
    """An Adaptive Card (1.4) with what Flagger's MessageCard holds: the message as title
    (coloured by severity), ``name.namespace`` below it, the fields as a FactSet."""
    body: list[TextBlock | FactSet] = [
        TextBlock(
            text=notice.message,
            weight="Bolder",
            size="Medium",
            color=pick(ADAPTIVE_COLOURS, notice.severity),
            wrap=True,
        ),
        TextBlock(text=subject(notice), isSubtle=True, spacing="None", wrap=True),
    ]
    if notice.fields:  # an empty FactSet is not a valid element
        body.append(FactSet(facts=tuple(Fact(f.name, f.value) for f in notice.fields)))
    return AdaptiveCardMessage(
        attachments=(AdaptiveAttachment(content=AdaptiveCard(body=tuple(body))),)
    )


# Office 365 connector ("Incoming Webhook") hosts take MessageCards: <tenant>.webhook.office.com
# and the older outlook.office.com. Connectors are being retired by Microsoft; URLs that still
# work keep Flagger's card. Teams Workflows triggers (Power Automate / Logic Apps) take Adaptive
# Cards only: prod-NN.<region>.logic.azure.com/workflows/..., <env>.environment.api.powerplatform
# .com/powerautomate/..., and whatever host a relay or gateway puts in front of them.
_CONNECTOR_HOSTS = ("outlook.office.com", "outlook.office365.com", "webhook.office.com")
_CONNECTOR_SUFFIXES = (".webhook.office.com",)


def teams_format_for_url(url: str) -> Literal["messagecard", "adaptivecard"]:
    """The card an MS Teams URL takes: connector URLs a MessageCard, everything else (Workflows
    URLs and unknown hosts) an Adaptive Card.

    Unknown hosts get an Adaptive Card because connectors are retired (new ones cannot be
    created and Microsoft is switching the existing ones off), so a URL that is not a connector
    is most likely a Workflows trigger behind another name (custom domain, relay, API gateway),
    and Workflows take Adaptive Cards only (Microsoft: "Workflows support Adaptive Cards only.
    It doesn't support the older message card format"). A relay that wants Flagger's
    MessageCard is chosen explicitly with ``teams_format="messagecard"``."""
    try:
        host = (urllib.parse.urlsplit(url.strip()).hostname or "").rstrip(".").lower()
    except ValueError:
        return "adaptivecard"
    if host in _CONNECTOR_HOSTS or host.endswith(_CONNECTOR_SUFFIXES):
        return "messagecard"
    return "adaptivecard"


def teams_format(target: notices.Target) -> Literal["messagecard", "adaptivecard"]:
    """``target.teams_format``, with ``"auto"`` decided from the URL."""
    if target.teams_format == "auto":
        return teams_format_for_url(target.url)
    return target.teams_format


# ----------------------------------------------------------------------------- event webhook


class EventWebhookPayload(msgspec.Struct, frozen=True, kw_only=True):
    """Flagger's ``CanaryWebhookPayload`` as ``CallEventWebhook`` fills it."""

    name: str
    namespace: str
    phase: str
    checksum: str
    metadata: dict[str, str]


def event_webhook(notice: notices.Notice, target: notices.Target) -> EventWebhookPayload:
    """``eventMessage``, ``eventType`` (``Normal`` for info, ``Warning`` for warn and error),
    ``timestamp`` (milliseconds as a string), then the hook's own metadata where it does not
    clash with those three. Keys sorted, as Go writes a map."""
    metadata = {
        "eventMessage": notice.message,
        "eventType": pick(EVENT_TYPES, notice.severity),
        "timestamp": str(notice.at_ms),
    }
    for key, value in target.metadata.items():
        metadata.setdefault(key, value)
    return EventWebhookPayload(
        name=notice.name,
        namespace=notice.namespace,
        phase=notice.phase,
        checksum=notice.checksum,
        metadata=dict(sorted(metadata.items())),
    )


# ----------------------------------------------------------------------------- requests

Payload = SlackPayload | GChatPayload | MessageCard | AdaptiveCardMessage | EventWebhookPayload

_ENCODER = msgspec.json.Encoder()


def payload(target: notices.Target, notice: notices.Notice) -> Payload:
    """The body ``target`` takes for ``notice``."""
    match target.type:
        case "slack":
            return slack(notice, target)
        case "discord":
            return discord(notice, target)
        case "rocket":
            return rocket(notice, target)
        case "gchat":
            return gchat(notice)
        case "msteams":
            if teams_format(target) == "messagecard":
                return teams_message_card(notice)
            return teams_adaptive_card(notice)
        case "webhook":
            return event_webhook(notice, target)
        case _:
            assert_never(target.type)


def encode(body: Payload) -> bytes:
    return _ENCODER.encode(body)


def destination(target: notices.Target) -> str:
    """The URL to post to: ``target.url``, except Discord's, which gets ``/slack`` appended to
    its path (unless already there) to reach Discord's Slack-compatible endpoint. Flagger
    tests the whole URL for the suffix; here the path is tested and the query kept."""
    if target.type != "discord":
        return target.url
    try:
        parts = urllib.parse.urlsplit(target.url)
    except ValueError:
        return target.url  # refused later by the sender's URL check, without quoting it
    if parts.path.endswith("/slack"):
        return target.url
    return urllib.parse.urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/slack"))


def headers(target: notices.Target) -> dict[str, str]:
    """``Content-Type``, and ``Authorization: Bearer <token>`` for Slack when a token is set.

    Flagger hands the token to its Slack notifier only (Slack's Web API ``chat.postMessage``
    needs it; every other provider authenticates by its URL), so a token configured for another
    type is not sent: it would reach a host that never asked for it."""
    result = {"Content-Type": "application/json"}
    if target.token and target.type == "slack":
        result["Authorization"] = f"Bearer {target.token}"
    return result


def success(target: notices.Target, status: int) -> bool:
    """Flagger's success rule: any 2xx for chat providers; ``<= 202`` for event webhooks
    (``callWebhook``), i.e. 200, 201, 202 since redirects are not followed."""
    if target.type == "webhook":
        return 200 <= status <= 202
    return 200 <= status < 300
