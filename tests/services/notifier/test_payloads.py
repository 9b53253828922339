"""Provider bodies, URLs and headers as pure functions (no sockets): Flagger's shapes, the Teams
card choice, colours, the event-webhook metadata, Retry-After parsing, redaction."""

from __future__ import annotations

import datetime
import json
import typing
from typing import Any

import pytest

from libs.model import alerts
from services.notifier.providers import delivery, notices, payloads

Severity = notices.Severity

NOTICE = notices.Notice(
    name="podinfo",
    namespace="test",
    message="New revision detected, progressing canary analysis.",
    fields=(
        notices.Field(name="Target", value="Deployment/podinfo.test"),
        notices.Field(name="Failed checks threshold", value="10"),
    ),
    severity=Severity.INFO,
    phase="Progressing",
    checksum="6b8f7d9c",
    at_ms=1_700_000_000_123,
)


def body(target: notices.Target, notice: notices.Notice = NOTICE) -> Any:
    return json.loads(payloads.encode(payloads.payload(target, notice)))


def target(type_: notices.TargetType, url: str = "https://chat.example.com/hook", **kw: Any) -> Any:
    return notices.Target(type=type_, url=url, **kw)


def test_target_types_cover_flaggers_alert_providers_plus_webhook() -> None:
    provider_types = set(typing.get_args(alerts.ProviderType))
    target_types = {
        arg for lit in typing.get_args(notices.TargetType) for arg in typing.get_args(lit)
    }
    assert target_types == provider_types | {"webhook"}


# ----------------------------------------------------------------------------- Teams choice


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # Office 365 connectors ("Incoming Webhook"): Flagger's MessageCard
        ("https://contoso.webhook.office.com/webhookb2/a@b/IncomingWebhook/c/d", "messagecard"),
        ("https://CONTOSO.Webhook.Office.com./webhookb2/a", "messagecard"),
        ("https://outlook.office.com/webhook/a@b/IncomingWebhook/c/d", "messagecard"),
        ("https://outlook.office365.com/webhook/a", "messagecard"),
        # Teams Workflows / Power Automate / Logic Apps: Adaptive Card
        (
            "https://prod-12.westeurope.logic.azure.com:443/workflows/abc/triggers/manual/"
            "paths/invoke?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=x",
            "adaptivecard",
        ),
        (
            "https://default1234.56.environment.api.powerplatform.com:443/powerautomate/"
            "automations/direct/workflows/abc/triggers/manual/paths/invoke?api-version=1&sig=x",
            "adaptivecard",
        ),
        ("https://api.powerautomate.com/webhook/abc", "adaptivecard"),
        ("https://prod-01.usgovtexas.logic.azure.us/workflows/abc", "adaptivecard"),
        # unknown hosts (relays, gateways, custom domains): Adaptive Card
        ("https://teams-relay.example.com/alerts", "adaptivecard"),
        ("https://webhook.office.com.evil.example/x", "adaptivecard"),
        ("http://127.0.0.1:8080/hook", "adaptivecard"),
        ("not a url", "adaptivecard"),
        ("https://[::1/x", "adaptivecard"),
    ],
)
def test_teams_auto_format_from_the_url(url: str, expected: str) -> None:
    assert payloads.teams_format_for_url(url) == expected
    assert payloads.teams_format(target("msteams", url)) == expected


@pytest.mark.parametrize("forced", ["messagecard", "adaptivecard"])
def test_teams_format_can_be_forced(forced: notices.TeamsFormat) -> None:
    for url in ("https://x.webhook.office.com/webhookb2/a", "https://x.logic.azure.com/w"):
        assert payloads.teams_format(target("msteams", url, teams_format=forced)) == forced


# ----------------------------------------------------------------------------- colours


def _colour(type_: notices.TargetType, severity: Severity, url: str) -> str:
    sent = body(
        target(type_, url), notices.Notice(name="a", namespace="b", message="m", severity=severity)
    )
    match type_:
        case "slack" | "discord" | "rocket":
            return str(sent["attachments"][0]["color"])
        case "msteams" if "webhook.office.com" in url:
            return str(sent["themeColor"])
        case "msteams":
            return str(sent["attachments"][0]["content"]["body"][0]["color"])
    raise AssertionError(type_)


CONNECTOR = "https://x.webhook.office.com/webhookb2/a"
WORKFLOW = "https://x.logic.azure.com/workflows/a"


@pytest.mark.parametrize(
    ("type_", "url", "info", "warn", "error"),
    [
        ("slack", "https://hooks.slack.com/services/a", "good", "good", "danger"),
        ("discord", "https://discord.com/api/webhooks/1/a", "good", "good", "danger"),
        ("rocket", "https://rocket.example.com/hooks/a", "#0076D7", "#0076D7", "#FF0000"),
        ("msteams", CONNECTOR, "0076D7", "0076D7", "FF0000"),
        ("msteams", WORKFLOW, "Accent", "Warning", "Attention"),
    ],
)
def test_severity_colours(
    type_: notices.TargetType, url: str, info: str, warn: str, error: str
) -> None:
    # Flagger paints only error differently; the Adaptive Card (new in Sluice) marks warn too
    assert _colour(type_, Severity.INFO, url) == info
    assert _colour(type_, Severity.UNSET, url) == info  # unset is info
    assert _colour(type_, Severity.WARN, url) == warn
    assert _colour(type_, Severity.ERROR, url) == error


# ----------------------------------------------------------------------------- shapes


def test_slack_body_matches_flaggers_shape() -> None:
    sent = body(target("slack", channel="deploys", username="sluice"))
    assert list(sent) == ["channel", "username", "icon_url", "icon_emoji", "attachments"]
    assert sent == {
        "channel": "deploys",
        "username": "sluice",
        "icon_url": "",
        "icon_emoji": ":rocket:",
        "attachments": [
            {
                "color": "good",
                "author_name": "podinfo.test",
                "text": "New revision detected, progressing canary analysis.",
                "mrkdwn_in": ["text"],
                "fields": [
                    {"title": "Target", "value": "Deployment/podinfo.test", "short": False},
                    {"title": "Failed checks threshold", "value": "10", "short": False},
                ],
            }
        ],
    }


def test_slack_escapes_its_control_characters_only() -> None:
    notice = notices.Notice(
        name="a",
        namespace="b",
        message="rate 97% < 99% & *bold* > x",
        fields=(notices.Field(name="<k>", value="v&w"),),
        severity=Severity.ERROR,
    )
    attachment = body(target("slack"), notice)["attachments"][0]
    assert attachment["text"] == "rate 97% &lt; 99% &amp; *bold* &gt; x"
    assert attachment["fields"] == [{"title": "&lt;k&gt;", "value": "v&amp;w", "short": False}]
    # Discord and Rocket.Chat do not read Slack entities: their text stays as it is
    for other in ("discord", "rocket"):
        assert body(target(other), notice)["attachments"][0]["text"] == notice.message


def test_empty_fields_are_empty_lists_as_flagger_sends_them() -> None:
    bare = notices.Notice(name="a", namespace="b", message="m", severity=Severity.INFO)
    assert body(target("slack"), bare)["attachments"][0]["fields"] == []
    assert body(target("msteams", CONNECTOR), bare)["sections"][0]["facts"] == []
    card = body(target("msteams", WORKFLOW), bare)["attachments"][0]["content"]
    assert [block["type"] for block in card["body"]] == ["TextBlock", "TextBlock"]  # no FactSet
    assert len(body(target("gchat"), bare)["cards"][0]["sections"]) == 1


def test_gchat_card_matches_flaggers_shape_and_escapes_html() -> None:
    assert body(target("gchat")) == {
        "cards": [
            {
                "header": {
                    "title": "Flagger",
                    "subtitle": "podinfo.test",
                    "imageUrl": "https://flagger.app/favicon.png",
                },
                "sections": [
                    {
                        "widgets": [
                            {
                                "textParagraph": {
                                    "text": "<font color=#848484><strong>New revision detected, "
                                    "progressing canary analysis.</strong></font>"
                                }
                            }
                        ]
                    },
                    {
                        "widgets": [
                            {
                                "textParagraph": {
                                    "text": "Target<br><font color=#848484><strong>"
                                    "Deployment/podinfo.test</strong></font>"
                                }
                            }
                        ]
                    },
                    {
                        "widgets": [
                            {
                                "textParagraph": {
                                    "text": "Failed checks threshold<br><font color=#848484>"
                                    "<strong>10</strong></font>"
                                }
                            }
                        ]
                    },
                ],
            }
        ]
    }
    notice = notices.Notice(name="a", namespace="b", message="1 < 2 & 3", severity=Severity.INFO)
    text = body(target("gchat"), notice)["cards"][0]["sections"][0]["widgets"][0]
    assert (
        text["textParagraph"]["text"]
        == "<font color=#848484><strong>1 &lt; 2 &amp; 3</strong></font>"
    )


def test_teams_message_card_matches_flaggers_shape() -> None:
    assert body(target("msteams", CONNECTOR)) == {
        "@type": "MessageCard",
        "@context": "http://schema.org/extensions",
        "themeColor": "0076D7",
        "summary": "podinfo.test",
        "sections": [
            {
                "activityTitle": "New revision detected, progressing canary analysis.",
                "activitySubtitle": "podinfo.test",
                "facts": [
                    {"name": "Target", "value": "Deployment/podinfo.test"},
                    {"name": "Failed checks threshold", "value": "10"},
                ],
            }
        ],
    }


def test_teams_adaptive_card_is_the_workflows_envelope() -> None:
    assert body(target("msteams", WORKFLOW)) == {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": {
                    "type": "AdaptiveCard",
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "version": "1.4",
                    "msteams": {"width": "Full"},
                    "body": [
                        {
                            "type": "TextBlock",
                            "text": "New revision detected, progressing canary analysis.",
                            "wrap": True,
                            "weight": "Bolder",
                            "size": "Medium",
                            "color": "Accent",
                        },
                        {
                            "type": "TextBlock",
                            "text": "podinfo.test",
                            "wrap": True,
                            "isSubtle": True,
                            "spacing": "None",
                        },
                        {
                            "type": "FactSet",
                            "facts": [
                                {"title": "Target", "value": "Deployment/podinfo.test"},
                                {"title": "Failed checks threshold", "value": "10"},
                            ],
                        },
                    ],
                },
            }
        ],
    }


@pytest.mark.parametrize(
    ("severity", "event_type"),
    [
        (Severity.INFO, "Normal"),
        (Severity.UNSET, "Normal"),
        (Severity.WARN, "Warning"),
        (Severity.ERROR, "Warning"),
    ],
)
def test_event_webhook_body_is_flaggers(severity: Severity, event_type: str) -> None:
    notice = notices.Notice(
        name="podinfo",
        namespace="test",
        message="Canary failed! Scaling down podinfo.test",
        severity=severity,
        phase="Failed",
        checksum="abc123",
        at_ms=1_700_000_000_123,
    )
    hook = target("webhook", metadata={"eventType": "ignored", "team": "payments", "a": "1"})
    sent = body(hook, notice)
    assert sent == {
        "name": "podinfo",
        "namespace": "test",
        "phase": "Failed",
        "checksum": "abc123",
        "metadata": {
            "a": "1",
            "eventMessage": "Canary failed! Scaling down podinfo.test",
            "eventType": event_type,  # the hook's own "eventType" never overrides Flagger's
            "team": "payments",
            "timestamp": "1700000000123",  # milliseconds, as a string
        },
    }
    assert list(sent["metadata"]) == sorted(sent["metadata"])  # Go writes map keys sorted


# ----------------------------------------------------------------------------- URL, headers


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://discord.com/api/webhooks/1/tok", "https://discord.com/api/webhooks/1/tok/slack"),
        ("https://discord.com/api/webhooks/1/tok/", "https://discord.com/api/webhooks/1/tok/slack"),
        (
            "https://discord.com/api/webhooks/1/tok/slack",
            "https://discord.com/api/webhooks/1/tok/slack",
        ),
        (
            "https://discord.com/api/webhooks/1/tok?thread_id=9",
            "https://discord.com/api/webhooks/1/tok/slack?thread_id=9",
        ),
    ],
)
def test_discord_posts_to_its_slack_endpoint(url: str, expected: str) -> None:
    assert payloads.destination(target("discord", url)) == expected


def test_other_destinations_are_the_url() -> None:
    for type_ in ("slack", "rocket", "gchat", "msteams", "webhook"):
        url = "https://chat.example.com/hook/tok?x=1"
        assert payloads.destination(target(type_, url)) == url


def test_bearer_token_only_for_slack_as_in_flagger() -> None:
    assert payloads.headers(target("slack", token="xoxb-1")) == {
        "Content-Type": "application/json",
        "Authorization": "Bearer xoxb-1",
    }
    assert payloads.headers(target("slack")) == {"Content-Type": "application/json"}
    for type_ in ("discord", "rocket", "gchat", "msteams", "webhook"):
        assert "Authorization" not in payloads.headers(target(type_, token="xoxb-1"))


@pytest.mark.parametrize(
    ("type_", "status", "ok"),
    [
        ("slack", 200, True),
        ("slack", 204, True),
        ("slack", 299, True),
        ("slack", 302, False),
        ("slack", 199, False),
        ("msteams", 202, True),
        ("webhook", 202, True),
        ("webhook", 203, False),  # Flagger's callWebhook: status <= 202
        ("webhook", 204, False),
    ],
)
def test_success_rule(type_: notices.TargetType, status: int, ok: bool) -> None:
    assert payloads.success(target(type_), status) is ok


# ----------------------------------------------------------------------------- delivery helpers


NOW = datetime.datetime(2025, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("0", 0.0),
        ("1", 1.0),
        (" 120 ", 120.0),
        ("1.5", 1.5),
        ("-1", None),
        ("soon", None),
        ("Wed, 01 Jan 2025 12:00:30 GMT", 30.0),
        ("Wed, 01 Jan 2025 11:59:00 GMT", 0.0),  # in the past: no wait
        ("Wednesday, 01-Jan-25 12:00:10 GMT", 10.0),  # obsolete RFC 850 form
    ],
)
def test_retry_after_parsing(value: str | None, expected: float | None) -> None:
    assert delivery.parse_retry_after(value, now=NOW) == expected


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://hooks.slack.com/services/a", None),
        ("http://127.0.0.1:8080/x", None),
        ("", "url is empty"),
        ("ftp://files.example.com/secret", "url must be http or https"),
        ("hooks.slack.com/services/SECRET", "url must be http or https"),
        ("https:///SECRET", "url has no host"),
        ("https://host:99999/SECRET", "url cannot be parsed"),
        ("https://host/a b/SECRET", "url contains whitespace or control characters"),
    ],
)
def test_url_problems_never_quote_the_url(url: str, problem: str | None) -> None:
    assert delivery.url_problem(url) == problem


def test_target_repr_hides_secrets() -> None:
    secret = notices.Target(
        type="slack",
        url="https://hooks.slack.com/services/T0/B0/URLSECRET?q=QUERYSECRET",
        token="TOKENSECRET",
        proxy="http://user:PROXYSECRET@proxy.example.com:3128",
        metadata={"k": "METASECRET"},
    )
    for text in (repr(secret), str(secret), f"{secret!r}", str([secret])):
        assert "SECRET" not in text
        assert "hooks.slack.com" in text


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timeout_s": 0},
        {"deadline_s": float("nan")},
        {"deadline_s": float("inf")},
        {"backoff_base_s": -1},
        {"max_retry_after_s": 0},
        {"max_attempts": 0},
    ],
)
def test_sender_settings_are_checked(kwargs: dict[str, float]) -> None:
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=f"^{name}: expected"):
        delivery.Sender(**kwargs)  # type: ignore[arg-type]


def test_an_unknown_severity_reads_as_info() -> None:
    odd = notices.Notice(name="a", namespace="b", message="m", severity="critical")  # type: ignore[arg-type]
    assert body(target("slack"), odd)["attachments"][0]["color"] == "good"
    assert body(target("webhook"), odd)["metadata"]["eventType"] == "Normal"
