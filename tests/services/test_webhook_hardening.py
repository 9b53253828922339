"""The webhook-runner does not trust its command: bounded limits and time, no leaked URL secrets.

Most tests call ``WebhookCaller`` in-process against a local aiohttp server or a refused port;
one test goes through a real webhook-runner process on a real nats-server.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Callable

import aiohttp
import msgspec
import pytest
from aiohttp import web
from nats.aio.client import Client

from libs import errors, messages, settings
from services.webhook_runner import app, calling, urls
from tests.fixtures.nats import NatsServer
from tests.fixtures.services import ServiceFactory

CANARY = messages.CanaryRef(namespace="test", name="podinfo")
REFUSED = "http://127.0.0.1:1/"  # nothing listens on port 1: connections are refused at once
SECRET = "SECRET"


def run_webhook(
    url: str, *, command_timeout_s: float = 10.0, **hook: object
) -> messages.RunWebhook:
    spec: dict[str, object] = {
        "name": "load-test",
        "type": messages.WebhookType.ROLLOUT,
        "url": url,
        **hook,
    }
    return messages.RunWebhook(
        canary=CANARY,
        webhook=messages.WebhookSpec(**spec),  # type: ignore[arg-type]
        phase=messages.Phase.PROGRESSING,
        timeout_s=command_timeout_s,
    )


class Hook:
    """A webhook endpoint answering every request with ``status`` and ``body`` (or hanging)."""

    def __init__(self) -> None:
        self.status = 200
        self.body = "ok"
        self.hang = False
        self.received = 0
        self.url = ""
        self.release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        self.received += 1
        await request.read()
        if self.hang:
            await self.release.wait()
        return web.Response(status=self.status, text=self.body)


@pytest.fixture
async def hook() -> AsyncIterator[Hook]:
    endpoint = Hook()
    server = web.Application()
    server.router.add_post("/{tail:.*}", endpoint.handle)
    runner = web.AppRunner(server, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    endpoint.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook?token={SECRET}"
    try:
        yield endpoint
    finally:
        endpoint.release.set()
        await runner.cleanup()


Factory = Callable[..., calling.WebhookCaller]


@pytest.fixture
async def make_caller() -> AsyncIterator[Factory]:
    made: list[calling.WebhookCaller] = []

    def factory(**kwargs: float) -> calling.WebhookCaller:
        kwargs.setdefault("backoff_base_s", 0.001)
        kwargs.setdefault("backoff_max_s", 0.001)
        caller = calling.WebhookCaller(**kwargs)  # type: ignore[arg-type]
        made.append(caller)
        return caller

    try:
        yield factory
    finally:
        for caller in made:
            await caller.close()


async def timed_call(
    caller: calling.WebhookCaller, command: messages.RunWebhook, budget_s: float
) -> messages.WebhookResult:
    return await caller.call(command, budget_s=budget_s)


# ----------------------------------------------------------------------------- settings


def test_settings_defaults_and_validation() -> None:
    cfg = settings.from_env(app.Settings, {})
    assert (cfg.webhook_max_timeout_s, cfg.webhook_max_retries) == (60.0, 10)
    cfg = settings.from_env(
        app.Settings, {"SLUICE_WEBHOOK_MAX_TIMEOUT_S": "5", "SLUICE_WEBHOOK_MAX_RETRIES": "0"}
    )
    assert (cfg.webhook_max_timeout_s, cfg.webhook_max_retries) == (5.0, 0)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"SLUICE_WEBHOOK_MAX_TIMEOUT_S": "0"},
            "SLUICE_WEBHOOK_MAX_TIMEOUT_S: expected a positive number of seconds, got 0.0",
        ),
        (
            {"SLUICE_WEBHOOK_MAX_TIMEOUT_S": "nan"},
            "SLUICE_WEBHOOK_MAX_TIMEOUT_S: expected a positive number of seconds, got nan",
        ),
        (
            {"SLUICE_WEBHOOK_MAX_TIMEOUT_S": "inf"},
            "SLUICE_WEBHOOK_MAX_TIMEOUT_S: expected a positive number of seconds, got inf",
        ),
        (
            {"SLUICE_WEBHOOK_MAX_RETRIES": "-1"},
            "SLUICE_WEBHOOK_MAX_RETRIES: expected 0 or more, got -1",
        ),
        (
            {"SLUICE_WEBHOOK_BACKOFF_BASE_S": "-0.5"},
            "SLUICE_WEBHOOK_BACKOFF_BASE_S: expected 0 or a positive number of seconds, got -0.5",
        ),
    ],
)
def test_bad_limits_fail_start_up_naming_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(errors.InvalidInput) as info:
        settings.from_env(app.Settings, env)
    assert str(info.value) == message


# ----------------------------------------------------------------------------- clamping, budget


@pytest.mark.parametrize(
    ("timeout_s", "retries", "expected"),
    [
        (2.0, 3, calling.Limits(2.0, 3)),  # within limits: untouched, no notes
        (60.0, 10, calling.Limits(60.0, 10)),
        (
            1e9,
            10**9,
            calling.Limits(
                60.0, 10, ("timeout 1e+09s clamped to 60s", "retries 1000000000 clamped to 10")
            ),
        ),
        (math.inf, 0, calling.Limits(60.0, 0, ("timeout infs clamped to 60s",))),
        (-math.inf, 0, calling.Limits(0.1, 0, ("timeout -infs clamped to 0.1s",))),
        (math.nan, 0, calling.Limits(10.0, 0, ("timeout nans clamped to 10s",))),
        (
            -1.0,
            -5,
            calling.Limits(0.1, 0, ("timeout -1s clamped to 0.1s", "retries -5 clamped to 0")),
        ),
        (0.0, 0, calling.Limits(0.1, 0, ("timeout 0s clamped to 0.1s",))),
    ],
)
def test_hook_limits_are_clamped(timeout_s: float, retries: int, expected: calling.Limits) -> None:
    assert calling.clamp_limits(timeout_s, retries, 60.0, 10) == expected


def test_clamping_never_exceeds_a_tiny_maximum() -> None:
    limits = calling.clamp_limits(5.0, 0, 0.05, 0)
    assert limits.timeout_s == 0.05


@pytest.mark.parametrize(
    ("command_timeout_s", "budget_s"),
    [
        (3.0, 2.8),  # margin 0.2s (5% would be 0.15s)
        (10.0, 9.5),  # margin 5%
        (100.0, 95.0),
        (0.2, 0.0),
        (0.1, 0.0),
        (-1.0, 0.0),
        (math.nan, 0.0),
        (math.inf, math.inf),
    ],
)
def test_budget_leaves_a_margin_for_the_reply(command_timeout_s: float, budget_s: float) -> None:
    assert calling.budget_for(command_timeout_s) == pytest.approx(budget_s)


def test_command_timeouts_out_of_json_range_are_rejected_by_the_decoder() -> None:
    """JSON cannot carry inf or NaN (``1e999`` is refused), so those reach us only in-process."""
    command = msgspec.json.encode(run_webhook(REFUSED)).replace(
        b'"timeout_s":10.0', b'"timeout_s":1e999'
    )
    with pytest.raises(msgspec.ValidationError):
        messages.WEBHOOK_DECODER.decode(command)


async def test_huge_limits_against_a_refused_port_end_within_the_budget(
    make_caller: Factory,
) -> None:
    caller = make_caller(backoff_base_s=0.02, backoff_max_s=8.0)
    command = run_webhook(REFUSED, timeout_s=1e9, retries=10**9)
    result = await timed_call(caller, command, budget_s=0.5)
    assert (result.ok, result.status_code) == (False, None)
    assert 1 < result.attempts <= 11
    assert result.message.startswith(
        f"time budget of 0.5s ran out after {result.attempts} attempts; last: ClientConnectorError"
    )
    assert result.message.endswith(
        "(timeout 1e+09s clamped to 60s; retries 1000000000 clamped to 10)"
    )


async def test_retries_are_capped_and_the_clamp_is_logged_once(
    make_caller: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    caller = make_caller(max_retries=3)
    result = await timed_call(caller, run_webhook(REFUSED, retries=10**9), budget_s=10.0)
    assert (result.ok, result.attempts) == (False, 4)
    assert result.message.startswith("ClientConnectorError")
    assert result.message.endswith("(retries 1000000000 clamped to 3)")
    assert caplog.text.count("retries 1000000000 clamped to 3") == 1


@pytest.mark.parametrize("timeout_s", [math.nan, -math.inf, -1.0, 0.0])
@pytest.mark.parametrize("retries", [-5, 0])
async def test_nonsense_limits_neither_crash_nor_hang(
    make_caller: Factory, hook: Hook, timeout_s: float, retries: int
) -> None:
    result = await timed_call(
        make_caller(), run_webhook(hook.url, timeout_s=timeout_s, retries=retries), budget_s=5.0
    )
    assert (result.ok, result.status_code, result.attempts) == (True, 200, 1)
    assert "clamped" in result.message


async def test_an_infinite_hook_timeout_is_clamped_to_the_maximum(
    make_caller: Factory, hook: Hook
) -> None:
    hook.hang = True
    caller = make_caller(max_timeout_s=0.2)
    result = await timed_call(caller, run_webhook(hook.url, timeout_s=math.inf), 5.0)
    assert (result.ok, result.status_code, result.attempts) == (False, None, 1)
    assert result.message == "no answer within 0.2s (timeout infs clamped to 0.2s)"


@pytest.mark.parametrize("retries", [0, 3])
async def test_an_attempt_is_cut_to_the_time_left(
    make_caller: Factory, hook: Hook, retries: int
) -> None:
    hook.hang = True
    result = await timed_call(
        make_caller(), run_webhook(hook.url, timeout_s=30.0, retries=retries), budget_s=0.4
    )
    assert (result.ok, result.status_code, result.attempts) == (False, None, 1)
    assert (
        result.message == "time budget of 0.4s ran out after 1 attempt; last: no answer within 0.4s"
    )


async def test_no_backoff_sleep_starts_that_cannot_end_in_time(
    make_caller: Factory, hook: Hook
) -> None:
    hook.status, hook.body = 503, "busy"
    caller = make_caller(backoff_base_s=5.0, backoff_max_s=5.0)
    result = await timed_call(caller, run_webhook(hook.url, retries=3), budget_s=2.0)
    assert (result.ok, result.status_code, result.attempts) == (False, 503, 1)
    assert result.message == "time budget of 2s ran out after 1 attempt; last: busy"


async def test_no_attempt_starts_without_time_for_it(make_caller: Factory, hook: Hook) -> None:
    result = await timed_call(make_caller(), run_webhook(hook.url), budget_s=0.05)
    assert (result.ok, result.status_code, result.attempts) == (False, None, 0)
    assert result.message == "time budget of 0.05s ran out before the first attempt"
    assert hook.received == 0


async def test_limits_within_bounds_keep_flaggers_behaviour(
    make_caller: Factory, hook: Hook
) -> None:
    hook.body = "done"
    result = await timed_call(make_caller(), run_webhook(hook.url, retries=2), budget_s=5.0)
    assert (result.ok, result.status_code, result.attempts, result.message) == (
        True,
        200,
        1,
        "done",
    )


# ----------------------------------------------------------------------------- URLs and secrets


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://[::1/hook?token=SECRET", "cannot be parsed (Invalid IPv6 URL)"),
        ("ftp://example.com/hook?token=SECRET", 'scheme must be http or https, got "ftp"'),
        ("/hook?token=SECRET", "no http(s) scheme"),
        ("http:///hook?token=SECRET", "no host"),
        ("https://user:SECRET@/hook", "cannot be parsed"),
        ("http://example.com:99999/hook?token=SECRET", "cannot be parsed"),
        ("http://example.com:abc/hook?token=SECRET", "cannot be parsed"),
        ("http://exa mple.com/hook?token=SECRET", "host contains whitespace"),
        ("http://example.com/hook?token=SECRET\r\nX-Injected: 1", "contains control characters"),
        ("", "no http(s) scheme"),
        (  # found by make fuzz: parsing and scrubbing this held the event loop for seconds
            "http://127.0.0.1:1/" + "a" * 900_000 + "?token=SECRET",
            "is 900032 characters long; expected at most 2048",
        ),
    ],
    ids=lambda value: value[:40] if isinstance(value, str) else value,
)
async def test_an_invalid_url_is_refused_at_once_without_its_secret(
    make_caller: Factory, caplog: pytest.LogCaptureFixture, url: str, problem: str
) -> None:
    caplog.set_level(logging.DEBUG)
    assert urls.url_problem(url) is not None
    result = await timed_call(make_caller(), run_webhook(url, retries=5), budget_s=5.0)
    assert (result.ok, result.status_code, result.attempts) == (False, None, 0)
    assert result.message.startswith(f"invalid webhook url: {problem}")
    assert SECRET not in result.message
    assert "invalid url" in caplog.text
    assert SECRET not in caplog.text


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:1/", "https://hooks.example.com/T0/B0/x?token=1", "HTTP://h:8080"]
)
def test_valid_urls_have_no_problem(url: str) -> None:
    assert urls.url_problem(url) is None


@pytest.mark.parametrize(
    ("text", "url", "expected"),
    [
        (  # the URL whole, as aiohttp's InvalidUrlClientError prints it
            "InvalidUrlClientError: http://h.example/hook?token=SECRET",
            "http://h.example/hook?token=SECRET",
            "InvalidUrlClientError: http://h.example/…",
        ),
        (  # only its path and query
            "404: no route for /hook?token=SECRET",
            "http://h.example/hook?token=SECRET",
            "404: no route for /…",
        ),
        (  # only its query
            "bad parameters ?token=SECRET",
            "http://h.example/hook?token=SECRET",
            "bad parameters ?…",
        ),
        (  # credentials in the userinfo
            "cannot reach http://user:SECRET@h.example/ (refused)",
            "http://user:SECRET@h.example/",
            "cannot reach http://h.example (refused)",
        ),
        (  # yarl's normalised spelling of the URL
            "error for http://h.example/a%20b?token=SECRET",
            "http://h.example/a b?token=SECRET",
            "error for http://h.example/…",
        ),
        (  # an unparseable URL
            "InvalidUrlClientError: http://[::1/hook?token=SECRET",
            "http://[::1/hook?token=SECRET",
            "InvalidUrlClientError: <unparseable url>",
        ),
        (  # and its path + query alone
            "no route for /hook?token=SECRET",
            "http://[::1/hook?token=SECRET",
            "no route for /…",
        ),
        (  # a port out of range makes urllib raise inside redact_url
            "InvalidURL: http://h.example:99999/hook?token=SECRET",
            "http://h.example:99999/hook?token=SECRET",
            "InvalidURL: <unparseable url>",
        ),
        (  # another URL in the text (a redirect target) is redacted too
            "redirected to https://other.example/cb?code=SECRET.",
            "http://h.example/",
            "redirected to https://other.example/….",
        ),
        (  # texts without URLs stay as they are
            "Cannot connect to host 127.0.0.1:1 ssl:default [Connect call failed ('127.0.0.1', 1)]",
            "http://127.0.0.1:1/",
            "Cannot connect to host 127.0.0.1:1 ssl:default [Connect call failed ('127.0.0.1', 1)]",
        ),
        ("", "http://h.example/x?token=SECRET", ""),
    ],
)
def test_scrub_replaces_the_url_and_its_secret_parts(text: str, url: str, expected: str) -> None:
    assert urls.scrub(text, url) == expected


def test_scrubbing_a_long_text_or_for_a_long_url_stays_short() -> None:
    long_url = "http://h/" + "s" * 5000 + "?token=SECRET"
    assert urls.scrub(f"failed: {long_url}", long_url) == (
        "<text withheld: it may quote an over-long url>"
    )
    text = "x" * 900_000 + " http://h/p?token=SECRET"
    assert urls.scrub(text, "http://other/") == "x" * urls.MAX_TEXT_CHARS


def test_scrub_keeps_other_urls_in_a_response_body_when_asked() -> None:
    body = "ran hey -z 1m http://apisix-gateway.apisix/api/info for /hook?token=SECRET"
    url = "http://loadtester.test/hook?token=SECRET"
    assert urls.scrub(body, url, other_urls=False) == (
        "ran hey -z 1m http://apisix-gateway.apisix/api/info for /…"
    )


class _FailingSession:
    """Stands in for the aiohttp session: every request fails with ``error(url)``."""

    def __init__(self, error: Callable[[str], Exception]) -> None:
        self.error = error

    def post(self, url: str, **_: object) -> object:
        raise self.error(url)


@pytest.mark.parametrize(
    ("error", "attempts"),
    [
        (lambda url: aiohttp.ClientConnectionError(f"cannot reach {url}"), 2),  # retried
        (lambda url: aiohttp.InvalidURL(url), 1),  # not retried
        (lambda url: ValueError(f"refused to build a request for {url}"), 1),  # not retried
    ],
)
async def test_error_texts_are_scrubbed_in_the_result_and_the_log(
    make_caller: Factory,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    error: Callable[[str], Exception],
    attempts: int,
) -> None:
    caplog.set_level(logging.DEBUG)
    caller = make_caller()
    monkeypatch.setattr(caller, "_client", lambda: _FailingSession(error))
    url = f"https://user:{SECRET}@hooks.example.com/T0/B0/{SECRET}?token={SECRET}"
    result = await timed_call(caller, run_webhook(url, retries=1), budget_s=5.0)
    assert (result.ok, result.status_code, result.attempts) == (False, None, attempts)
    assert "https://hooks.example.com/…" in result.message
    assert SECRET not in result.message
    assert SECRET not in caplog.text


async def test_a_response_body_echoing_the_url_is_scrubbed(
    make_caller: Factory, hook: Hook
) -> None:
    hook.status, hook.body = 404, f"no route for /hook?token={SECRET}"
    result = await timed_call(make_caller(), run_webhook(hook.url), budget_s=5.0)
    assert (result.ok, result.status_code, result.message) == (False, 404, "no route for /…")


# ----------------------------------------------------------------------------- through a process


@pytest.mark.integration
async def test_runner_process_bounds_an_untrusted_command_and_hides_url_secrets(
    nats_server: NatsServer, service: ServiceFactory, nc: Client
) -> None:
    proc = service("webhook_runner", nats_server.url, SLUICE_WEBHOOK_BACKOFF_BASE_S="0.2")
    await proc.ready()

    command = run_webhook(REFUSED, timeout_s=1e9, retries=10**9, command_timeout_s=3.0)
    # the requester gives up after the command's 3 s: an answer at all is an answer in time
    msg = await nc.request(messages.CMD_WEBHOOK, messages.ENCODER.encode(command), timeout=3.0)
    reply = messages.REPLY_DECODER.decode(msg.data)
    assert isinstance(reply, messages.WebhookResult), reply
    assert (reply.ok, reply.status_code) == (False, None)
    assert reply.message.startswith(f"time budget of 2.8s ran out after {reply.attempts} attempts")
    assert reply.message.endswith(
        "(timeout 1e+09s clamped to 60s; retries 1000000000 clamped to 10)"
    )

    leaky = run_webhook(f"http://[::1/hook?token={SECRET}", retries=3)
    msg = await nc.request(messages.CMD_WEBHOOK, messages.ENCODER.encode(leaky), timeout=5.0)
    assert SECRET.encode() not in msg.data
    reply = messages.REPLY_DECODER.decode(msg.data)
    assert isinstance(reply, messages.WebhookResult), reply
    assert (reply.ok, reply.status_code, reply.attempts) == (False, None, 0)
    assert reply.message == "invalid webhook url: cannot be parsed (Invalid IPv6 URL)"
    await proc.wait_log(r"invalid url: cannot be parsed")
    assert SECRET not in proc.log_text()
    assert proc.terminate() == 0
