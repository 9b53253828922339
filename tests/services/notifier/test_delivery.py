"""``Sender`` against local HTTP endpoints: what each provider receives over the wire, the token
header, proxies, retries, Retry-After, final failures, the deadline, and no leaked secrets."""

from __future__ import annotations

import asyncio
import logging
import pathlib
import shutil
import ssl
from typing import Any

import pytest
from aiohttp import web

from services.notifier.providers import delivery, notices
from tests.services.notifier.conftest import Endpoint, Reply, SenderFactory

pytestmark = pytest.mark.integration

Severity = notices.Severity
REFUSED = "http://127.0.0.1:1"  # nothing listens on port 1: connections are refused at once

NOTICE = notices.Notice(
    name="podinfo",
    namespace="test",
    message="Canary failed! Scaling down podinfo.test",
    fields=(notices.Field(name="Target", value="Deployment/podinfo.test"),),
    severity=Severity.ERROR,
    phase="Failed",
    checksum="abc123",
    at_ms=1_700_000_000_123,
)

SLACK_BODY: dict[str, Any] = {
    "channel": "general",
    "username": "flagger",
    "icon_url": "",
    "icon_emoji": ":rocket:",
    "attachments": [
        {
            "color": "danger",
            "author_name": "podinfo.test",
            "text": "Canary failed! Scaling down podinfo.test",
            "mrkdwn_in": ["text"],
            "fields": [{"title": "Target", "value": "Deployment/podinfo.test", "short": False}],
        }
    ],
}

WIRE_CASES: list[tuple[notices.TargetType, dict[str, Any], str, dict[str, Any]]] = [
    ("slack", {}, "/hook", SLACK_BODY),
    ("discord", {}, "/hook/slack", SLACK_BODY),
    (
        "rocket",
        {"channel": "ops", "username": "bot"},
        "/hook",
        {
            **SLACK_BODY,
            "channel": "ops",
            "username": "bot",
            "attachments": [{**SLACK_BODY["attachments"][0], "color": "#FF0000"}],
        },
    ),
    (
        "gchat",
        {},
        "/hook",
        {
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
                                        "text": "<font color=#848484><strong>Canary failed! "
                                        "Scaling down podinfo.test</strong></font>"
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
                    ],
                }
            ]
        },
    ),
    (
        "msteams",
        {"teams_format": "messagecard"},
        "/hook",
        {
            "@type": "MessageCard",
            "@context": "http://schema.org/extensions",
            "themeColor": "FF0000",
            "summary": "podinfo.test",
            "sections": [
                {
                    "activityTitle": "Canary failed! Scaling down podinfo.test",
                    "activitySubtitle": "podinfo.test",
                    "facts": [{"name": "Target", "value": "Deployment/podinfo.test"}],
                }
            ],
        },
    ),
    (
        "msteams",
        {},  # auto: a local address is no connector, so an Adaptive Card
        "/hook",
        {
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
                                "text": "Canary failed! Scaling down podinfo.test",
                                "wrap": True,
                                "weight": "Bolder",
                                "size": "Medium",
                                "color": "Attention",
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
                                "facts": [{"title": "Target", "value": "Deployment/podinfo.test"}],
                            },
                        ],
                    },
                }
            ],
        },
    ),
    (
        "webhook",
        {"metadata": {"cluster": "eu-1"}},
        "/hook",
        {
            "name": "podinfo",
            "namespace": "test",
            "phase": "Failed",
            "checksum": "abc123",
            "metadata": {
                "cluster": "eu-1",
                "eventMessage": "Canary failed! Scaling down podinfo.test",
                "eventType": "Warning",
                "timestamp": "1700000000123",
            },
        },
    ),
]


@pytest.mark.parametrize(
    ("type_", "extra", "path", "expected"),
    WIRE_CASES,
    ids=["slack", "discord", "rocket", "gchat", "teams-messagecard", "teams-adaptive", "webhook"],
)
async def test_each_provider_receives_flaggers_body(
    sink: Endpoint,
    make_sender: SenderFactory,
    type_: notices.TargetType,
    extra: dict[str, Any],
    path: str,
    expected: dict[str, Any],
) -> None:
    target = notices.Target(type=type_, url=sink.url("/hook"), **extra)
    result = await make_sender().send(target, NOTICE)
    assert result == delivery.Delivered(ok=True, status=200, attempts=1)
    [seen] = sink.seen
    assert (seen.method, seen.path) == ("POST", path)
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.json() == expected


async def test_bearer_token_goes_to_slack_only(sink: Endpoint, make_sender: SenderFactory) -> None:
    sender = make_sender()
    types: tuple[notices.TargetType, ...] = ("slack", "discord", "msteams", "webhook")
    for type_ in types:
        target = notices.Target(type=type_, url=sink.url(f"/{type_}"), token="xoxb-TOKEN")
        assert (await sender.send(target, NOTICE)).ok
    auth = {seen.path.split("/")[1]: seen.headers.get("Authorization") for seen in sink.seen}
    assert auth == {"slack": "Bearer xoxb-TOKEN", "discord": None, "msteams": None, "webhook": None}


async def test_a_targets_proxy_is_used(
    proxy: Endpoint, sink: Endpoint, make_sender: SenderFactory
) -> None:
    # the target's host does not resolve: only the proxy can have answered
    target = notices.Target(
        type="slack", url="http://chat.invalid/services/T/B/X", proxy=proxy.base
    )
    result = await make_sender().send(target, NOTICE)
    assert result.ok, result
    assert [seen.target for seen in proxy.seen] == ["http://chat.invalid/services/T/B/X"]
    assert proxy.seen[0].json()["attachments"][0]["author_name"] == "podinfo.test"
    assert sink.seen == []


async def test_proxy_environment_is_ignored_unless_trusted(
    proxy: Endpoint, sink: Endpoint, make_sender: SenderFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy.base)
    monkeypatch.setenv("http_proxy", proxy.base)

    direct = await make_sender().send(notices.Target(type="slack", url=sink.url()), NOTICE)
    assert direct.ok
    assert len(sink.seen) == 1
    assert proxy.seen == []

    trusting = make_sender(trust_env=True)
    via_env = await trusting.send(notices.Target(type="slack", url="http://chat.invalid/x"), NOTICE)
    assert via_env.ok
    assert [seen.target for seen in proxy.seen] == ["http://chat.invalid/x"]


async def test_5xx_is_retried_until_success(sink: Endpoint, make_sender: SenderFactory) -> None:
    sink.script(Reply(500, "oops"), Reply(502, "bad gateway"))
    result = await make_sender().send(notices.Target(type="slack", url=sink.url()), NOTICE)
    assert result == delivery.Delivered(ok=True, status=200, attempts=3)
    assert [seen.json() for seen in sink.seen] == [SLACK_BODY] * 3


async def test_429_retry_after_is_honoured(sink: Endpoint, make_sender: SenderFactory) -> None:
    sink.script(Reply(429, "slow down", {"Retry-After": "1"}))
    result = await make_sender().send(notices.Target(type="slack", url=sink.url()), NOTICE)
    assert result == delivery.Delivered(ok=True, status=200, attempts=2)
    first, second = sink.seen
    assert second.at - first.at >= 1.0  # a lower bound: no earlier than the header said


async def test_retry_after_is_capped(sink: Endpoint, make_sender: SenderFactory) -> None:
    sink.script(Reply(503, "", {"Retry-After": "3600"}))
    sender = make_sender(max_retry_after_s=0.2, deadline_s=5.0)
    result = await sender.send(notices.Target(type="slack", url=sink.url()), NOTICE)
    assert result.ok
    assert result.attempts == 2
    first, second = sink.seen
    assert 0.2 <= second.at - first.at < 2.0


async def test_a_retry_after_past_the_deadline_is_not_waited_for(
    sink: Endpoint, make_sender: SenderFactory
) -> None:
    sink.script(Reply(429, "", {"Retry-After": "30"}))
    sender = make_sender(max_retry_after_s=60.0, deadline_s=2.0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await sender.send(notices.Target(type="slack", url=sink.url()), NOTICE)
    assert loop.time() - started < 1.0  # gave up at once instead of sleeping
    assert (result.ok, result.status, result.attempts) == (False, 429, 1)
    assert result.error == (
        "gave up at the 2s deadline after 1 attempt: HTTP 429 Too Many Requests, retry after 30s"
    )


async def test_other_4xx_fail_at_once(sink: Endpoint, make_sender: SenderFactory) -> None:
    sink.default = Reply(404, "no_service")
    result = await make_sender().send(notices.Target(type="slack", url=sink.url()), NOTICE)
    assert result == delivery.Delivered(
        ok=False, status=404, attempts=1, error="HTTP 404 Not Found: no_service"
    )
    assert len(sink.seen) == 1


async def test_redirects_are_not_followed(sink: Endpoint, make_sender: SenderFactory) -> None:
    sink.default = Reply(302, "", {"Location": sink.url("/elsewhere")})
    target = notices.Target(type="slack", url=sink.url(), token="xoxb-TOKEN")
    result = await make_sender().send(target, NOTICE)
    assert (result.ok, result.status, result.attempts) == (False, 302, 1)
    assert "redirects are not followed" in result.error
    assert [seen.path for seen in sink.seen] == ["/hook"]


async def test_event_webhooks_succeed_on_202_at_most(
    sink: Endpoint, make_sender: SenderFactory
) -> None:
    sink.script(Reply(202), Reply(204))
    sender = make_sender()
    hook = notices.Target(type="webhook", url=sink.url())
    assert (await sender.send(hook, NOTICE)).ok
    late = await sender.send(hook, NOTICE)
    assert (late.ok, late.status, late.attempts) == (False, 204, 1)


async def test_a_refused_port_ends_within_the_deadline(make_sender: SenderFactory) -> None:
    sender = make_sender(max_attempts=10_000, deadline_s=0.6)
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await sender.send(notices.Target(type="slack", url=f"{REFUSED}/hook"), NOTICE)
    elapsed = loop.time() - started
    assert elapsed <= 0.6 + delivery.DEADLINE_GRACE_S
    assert not result.ok
    assert result.status is None
    assert result.attempts > 1
    assert result.error.startswith(
        f"gave up at the 0.6s deadline after {result.attempts} attempts: "
    )
    assert "cannot connect to 127.0.0.1:1" in result.error


async def test_a_silent_provider_ends_within_the_deadline(
    sink: Endpoint, make_sender: SenderFactory
) -> None:
    sink.hang = True
    sender = make_sender(timeout_s=0.3, deadline_s=1.0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await sender.send(notices.Target(type="slack", url=sink.url()), NOTICE)
    elapsed = loop.time() - started
    assert elapsed <= 1.0 + delivery.DEADLINE_GRACE_S
    assert not result.ok
    assert result.status is None
    assert result.attempts >= 2
    assert "no answer within" in result.error


async def test_an_attempt_is_cut_to_the_time_left(
    sink: Endpoint, make_sender: SenderFactory
) -> None:
    sink.hang = True
    sender = make_sender(timeout_s=5.0)  # Flagger's per-attempt timeout, longer than the deadline
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await sender.send(notices.Target(type="slack", url=sink.url()), NOTICE, deadline_s=0.4)
    assert loop.time() - started <= 0.4 + delivery.DEADLINE_GRACE_S
    assert (result.ok, result.attempts) == (False, 1)


async def test_bad_urls_are_refused_without_a_request(make_sender: SenderFactory) -> None:
    sender = make_sender()
    cases = {
        "ftp://files.example.com/SECRET": "url must be http or https",
        "https:///SECRET": "url has no host",
    }
    for url, error in cases.items():
        result = await sender.send(notices.Target(type="slack", url=url), NOTICE)
        assert result == delivery.Delivered(ok=False, status=None, attempts=0, error=error)
    socks = notices.Target(type="slack", url="https://x.example.com/", proxy="socks5://p:1080")
    result = await sender.send(socks, NOTICE)
    assert result.error == "proxy must be http or https"


async def test_a_url_read_from_a_secret_may_end_in_a_newline(
    sink: Endpoint, make_sender: SenderFactory
) -> None:
    result = await make_sender().send(notices.Target(type="slack", url=sink.url() + "\n"), NOTICE)
    assert result.ok
    assert len(sink.seen) == 1


async def test_the_session_is_lazy_and_closable(sink: Endpoint) -> None:
    sender = delivery.Sender()
    await sender.close()  # nothing to close yet
    async with sender:
        assert (await sender.send(notices.Target(type="slack", url=sink.url()), NOTICE)).ok
    assert sender._session is None
    assert (await sender.send(notices.Target(type="slack", url=sink.url()), NOTICE)).ok
    await sender.close()


# ----------------------------------------------------------------------------- secrets

PATH_SECRET = "PATHSECRET"
QUERY_SECRET = "QUERYSECRET"
TOKEN_SECRET = "TOKENSECRET"
PROXY_SECRET = "PROXYSECRET"
SECRETS = (PATH_SECRET, QUERY_SECRET, TOKEN_SECRET, PROXY_SECRET)


async def test_no_secret_reaches_a_log_line_or_an_error(
    sink: Endpoint, make_sender: SenderFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    path = f"/services/T0/B0/{PATH_SECRET}?sig={QUERY_SECRET}"
    # a provider that echoes the request back in its error answers
    echo = f"bad token {TOKEN_SECRET} for {sink.url(path)} at {path}"
    sink.script(Reply(500, echo), Reply(500, echo), Reply(400, echo))
    sender = make_sender(max_attempts=3, deadline_s=2.0)
    targets = [
        notices.Target(type="slack", url=sink.url(path), token=TOKEN_SECRET),  # 500, 500, 400
        notices.Target(type="slack", url=f"{REFUSED}{path}", token=TOKEN_SECRET),
        notices.Target(
            type="discord",
            url=f"http://chat.invalid{path}",
            proxy=f"http://user:{PROXY_SECRET}@127.0.0.1:1",
        ),
        notices.Target(type="msteams", url=f"ftp://x.example.com{path}"),
        notices.Target(type="slack", url=f"https://x.example.com:99999{path}"),
    ]
    results = [await sender.send(target, NOTICE) for target in targets]
    sink.hang = True
    results.append(
        await make_sender(timeout_s=0.2, deadline_s=0.5).send(
            notices.Target(type="webhook", url=sink.url(path), token=TOKEN_SECRET), NOTICE
        )
    )

    assert not any(result.ok for result in results)
    assert results[0].status == 400
    assert "bad token <token> for http://127.0.0.1:" in results[0].error
    formatter = logging.Formatter("%(name)s %(message)s")
    texts = [result.error for result in results] + [formatter.format(r) for r in caplog.records]
    assert any("retrying" in text for text in texts)  # the retries were logged
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, text


async def test_an_untrusted_certificate_is_final(
    make_sender: SenderFactory, tmp_path: pathlib.Path
) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command to make a self-signed certificate")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    made = await asyncio.create_subprocess_exec(
        *(openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
        *("-nodes", "-days", "1"),
        *("-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert await made.wait() == 0
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    served = 0

    async def handle(request: web.Request) -> web.Response:
        nonlocal served
        served += 1
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context).start()
    try:
        url = f"https://127.0.0.1:{runner.addresses[0][1]}/services/{PATH_SECRET}"
        result = await make_sender().send(notices.Target(type="slack", url=url), NOTICE)
    finally:
        await runner.cleanup()
    assert (result.ok, result.status, result.attempts, served) == (False, None, 1, 0)
    assert result.error.startswith("TLS error: ")
    assert PATH_SECRET not in result.error
