"""``sluice dashboard``: the view model on its own (``state``), then the web server against a
real nats-server whose KV entries, events and control answers the test writes itself, then the
command as a process (its URL, SIGTERM, a taken port, an unreachable NATS)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import pathlib
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import nats
import pytest
from aiohttp import web
from nats.aio.client import Client
from nats.aio.msg import Msg

from cli import connecting, main
from cli.dashboard import feed as feeds
from cli.dashboard import server, state
from libs import messages, streams
from libs.model import canary as canary_model
from tests import browser
from tests.cli.seed import canary
from tests.fixtures.nats import NatsServer
from tests.sandbox.e2e import support

REPO = pathlib.Path(__file__).resolve().parents[2]
SLUICE = str(pathlib.Path(sys.executable).parent / "sluice")
REF = messages.CanaryRef(namespace="test", name="podinfo")
HTTP = aiohttp.ClientTimeout(total=10)


def observation(
    status: dict[str, Any] | None = None, at_ms: int = 1000, name: str = "podinfo", **analysis: Any
) -> messages.CanaryObservation:
    return messages.CanaryObservation(
        namespace="test",
        name=name,
        uid="uid-1",
        resource_version="1",
        generation=1,
        canary=canary(status, **analysis),
        observed_at_ms=at_ms,
    )


def progressing(weight: int, **more: Any) -> dict[str, Any]:
    return {
        "phase": "Progressing",
        "canaryWeight": weight,
        "failedChecks": 1,
        "iterations": 0,
        "lastTransitionTime": "2026-11-30T10:00:00Z",
        "metrics": [
            {"name": "request-success-rate", "value": 99.5, "min": 99, "passed": True},
            {"name": "request-duration", "value": 612.25, "max": 500, "passed": False},
        ],
        **more,
    }


def weight_event(weight: int, at_ms: int) -> messages.WeightAdvanced:
    return messages.WeightAdvanced(
        canary=REF,
        target="podinfo",
        message=f"Advance podinfo.test canary weight {weight}",
        canary_weight=weight,
        primary_weight=100 - weight,
        at_ms=at_ms,
    )


def encoded(obs: messages.CanaryObservation) -> bytes:
    return messages.ENCODER.encode(obs)


# --------------------------------------------------------------------------- the view model


def test_a_progressing_canary_shows_its_weight_checks_and_metrics_against_thresholds() -> None:
    view = state.describe(observation(progressing(30)))
    assert (view.namespace, view.name, view.target) == ("test", "podinfo", "podinfo")
    assert (view.phase, view.strategy) == ("Progressing", "canary")
    assert (view.weight, view.max_weight, view.step_weight) == (30, 50, 10)
    assert (view.failed_checks, view.threshold) == (1, 10)
    assert view.metrics == [
        state.MetricView(name="request-success-rate", value=99.5, min=99, passed=True),
        state.MetricView(name="request-duration", value=612.25, max=500, passed=False),
    ]
    assert (view.gate, view.paused, view.control) == ("", False, None)
    assert view.valid


def test_metrics_not_measured_yet_show_the_spec_thresholds() -> None:
    view = state.describe(observation({"phase": "Initialized"}))
    assert view.weight == 0
    assert view.metrics == [
        state.MetricView(name="request-success-rate", min=99),
        state.MetricView(name="request-duration", max=500),
    ]
    assert all(m.passed is None and m.value is None for m in view.metrics)


def test_a_blue_green_canary_waiting_at_a_gate_while_paused_with_a_control_request() -> None:
    status = {
        "phase": "WaitingPromotion",
        "iterations": 4,
        "conditions": [
            {"type": "Gate", "status": "False", "reason": "confirm-promotion", "message": "x"},
            {"type": "Paused", "status": "True", "reason": "Paused"},
        ],
        "control": {
            "action": "pause",
            "by": "alice",
            "reason": "lunch",
            "requestedAt": "2026-11-30T11:00:00Z",
        },
    }
    view = state.describe(observation(status, iterations=10, maxWeight=None, stepWeight=None))
    assert (view.strategy, view.iterations, view.max_iterations) == ("blue-green", 4, 10)
    assert view.gate == "confirm-promotion"
    assert view.paused
    assert view.control == state.ControlView(
        action="pause",
        by="alice",
        reason="lunch",
        requested_at="2026-11-30T11:00:00Z",
        pending=True,
    )


def test_a_gate_that_opened_is_not_waited_at() -> None:
    status = {
        "phase": "Progressing",
        "conditions": [{"type": "Gate", "status": "True", "reason": "confirm-promotion"}],
    }
    assert state.describe(observation(status)).gate == ""


def test_an_invalid_canary_shows_its_problems() -> None:
    obs = messages.CanaryObservation(
        namespace="test",
        name="broken",
        uid="u",
        resource_version="1",
        generation=1,
        problems=["broken (Canary, test): spec.analysis.interval: expected a duration"],
    )
    view = state.describe(obs)
    assert not view.valid
    assert view.problems == obs.problems


def test_the_history_keeps_changes_in_time_order_and_is_bounded() -> None:
    history = state.History(limit=3)
    assert history.add(10, 0)
    assert not history.add(20, 0)  # the same weight again adds nothing
    assert history.add(40, 20)
    assert history.add(30, 10)  # late, goes before 40
    assert history.points == [(10, 0), (30, 10), (40, 20)]
    assert history.add(50, 30)
    assert history.points == [(30, 10), (40, 20), (50, 30)]
    assert history.add(35, 20)  # makes the point at 40 a repeat
    assert history.points == [(30, 10), (35, 20), (50, 30)]


def test_the_board_joins_kv_entries_and_events() -> None:
    board = state.Board(recent_events=3)
    # events replayed before the KV entry is read
    assert board.apply_event(weight_event(10, 100), seq=1) == "test/podinfo"
    assert board.apply_event(weight_event(20, 200), seq=2) == "test/podinfo"
    changed = board.apply_entry("test.podinfo", encoded(observation(progressing(20), at_ms=250)))
    assert changed is not None
    ident, view = changed
    assert ident == "test/podinfo"
    assert view is not None
    assert view.history == [(100, 10), (200, 20)]
    assert [e.message for e in view.events] == [
        "Advance podinfo.test canary weight 20",
        "Advance podinfo.test canary weight 10",
    ]
    # a replay after a reconnection is not applied twice
    assert board.apply_event(weight_event(20, 200), seq=2) is None
    assert board.last_seq == 2
    # a new status without an event still extends the history
    board.apply_entry("test.podinfo", encoded(observation(progressing(30), at_ms=300)))
    current = board.view("test/podinfo")
    assert current is not None
    assert current.history == [(100, 10), (200, 20), (300, 30)]
    assert current.weight == 30
    for seq in (3, 4, 5):
        board.apply_event(weight_event(30 + seq, 300 + seq), seq=seq)
    current = board.view("test/podinfo")
    assert current is not None
    assert [e.seq for e in current.events] == [5, 4, 3]  # newest first, bounded
    assert [v.key for v in board.snapshot()] == ["test/podinfo"]


def test_the_board_forgets_a_deleted_canary_and_skips_undecodable_entries() -> None:
    board = state.Board()
    board.apply_entry("test.podinfo", encoded(observation(progressing(10))))
    board.apply_entry("test.other", encoded(observation(progressing(10), name="other")))
    assert board.apply_entry("test.junk", b"{not json") is None
    assert [v.key for v in board.snapshot()] == ["test/other", "test/podinfo"]
    assert board.apply_entry("test.podinfo", None) == ("test/podinfo", None)
    assert [v.key for v in board.snapshot()] == ["test/other"]
    assert board.view("test/podinfo") is None


def test_events_of_unknown_canaries_are_bounded() -> None:
    board = state.Board(orphan_keys=2)
    for index in range(5):
        ref = messages.CanaryRef(namespace="test", name=f"gone{index}")
        board.apply_event(messages.Initialized(canary=ref, message="x"), seq=index + 1)
    assert len(board._events) <= 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        (":9000", ("127.0.0.1", 9000)),
        ("9000", ("127.0.0.1", 9000)),
        ("[::1]:0", ("::1", 0)),
        ("0.0.0.0:80", ("0.0.0.0", 80)),
    ],
)
def test_listen_addresses(text: str, expected: tuple[str, int]) -> None:
    assert server.parse_listen(text) == expected


@pytest.mark.parametrize("text", ["host:port", "127.0.0.1:70000"])
def test_bad_listen_addresses_are_usage_errors(text: str) -> None:
    with pytest.raises(connecting.CliError, match="--listen"):
        server.parse_listen(text)


def test_an_sse_message_is_one_json_line() -> None:
    chunk = feeds.sse("canary", {"a": "x\ny"})
    assert chunk == b'event: canary\ndata: {"a":"x\\ny"}\n\n'


def test_the_command_is_registered() -> None:
    args = main.build_parser().parse_args(
        ["dashboard", "--allow-actions", "--as", "bob", "--nats-url", "nats://x:1"]
    )
    assert (args.listen, args.allow_actions, args.as_user, args.nats_url) == (
        "127.0.0.1:3100",
        True,
        "bob",
        "nats://x:1",
    )
    assert connecting.identity(args) == "bob"


# --------------------------------------------------------------------------- the server


class Running:
    def __init__(self, url: str, feed: feeds.Feed) -> None:
        self.url = url
        self.feed = feed


@contextlib.asynccontextmanager
async def dashboard(
    nats_url: str,
    allow_actions: bool = False,
    keepalive_s: float = 15.0,
    wait: bool = True,
) -> AsyncIterator[Running]:
    """The dashboard's app in this process on a free port, following ``nats_url``."""
    args = argparse.Namespace(nats_url=nats_url, as_user="alice")
    feed = feeds.Feed(lambda: connecting.connect(args), "alice", retry_s=0.1)
    settings = server.Settings(
        allow_actions=allow_actions, user="alice", nats_url=nats_url, keepalive_s=keepalive_s
    )
    runner = web_runner(server.make_app(feed, settings))
    await runner.setup()
    following = asyncio.create_task(feed.run(), name="test-dashboard-feed")
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        if wait:
            await asyncio.wait_for(feed.watching.wait(), 15)
        yield Running(f"http://{host}:{port}", feed)
    finally:
        await runner.cleanup()
        await server.cancel(following)


def web_runner(app: web.Application) -> web.AppRunner:
    return web.AppRunner(app, access_log=None, shutdown_timeout=2.0)


async def declared(nc: Client) -> Any:
    js = nc.jetstream()
    await streams.declare(js, streams=(streams.EVENTS,), buckets=(streams.CANARIES,))
    return js


async def publish(js: Any, event: messages.EventBase) -> None:
    subject = messages.event_subject(
        event.canary.namespace, event.canary.name, messages.event_kind(event)
    )
    await js.publish(subject, messages.ENCODER.encode(event))


async def snapshot(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with http.get(url + "/api/canaries", timeout=HTTP) as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        body: dict[str, Any] = await resp.json()
        return body


class Stream:
    """An SSE client: ``next()`` is the next (event, data) or (":", comment)."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.resp = resp

    async def next(self, timeout: float = 10.0) -> tuple[str, Any]:
        while True:
            raw = await asyncio.wait_for(self.resp.content.readuntil(b"\n\n"), timeout)
            text = raw.decode().strip("\n")
            if text.startswith(":"):
                return ":", text[1:].strip()
            fields = dict(line.split(": ", 1) for line in text.splitlines())
            if "event" in fields:
                return fields["event"], json.loads(fields["data"])

    async def until(self, name: str, check: Any = None, timeout: float = 10.0) -> Any:
        while True:
            event, data = await self.next(timeout)
            if event == name and (check is None or check(data)):
                return data


@pytest.mark.integration
async def test_the_snapshot_serves_what_is_in_kv_and_the_event_stream(
    nats_server: NatsServer, nc: Client
) -> None:
    js = await declared(nc)
    kv = await js.key_value(streams.CANARIES.name)
    for weight, at in ((10, 100), (20, 200)):
        await publish(js, weight_event(weight, at))
    await kv.put("test.podinfo", encoded(observation(progressing(20), at_ms=250)))
    async with (
        dashboard(nats_server.url) as running,
        aiohttp.ClientSession() as http,
    ):
        body = await support.poll(
            lambda: snapshot(http, running.url),
            lambda b: b["canaries"] and len(b["canaries"][0]["events"]) == 2,
            timeout=10,
            what="the canary with its events",
        )
        assert body["status"] == {"connected": True, "problem": ""}
        (podinfo,) = body["canaries"]
        assert (podinfo["namespace"], podinfo["name"], podinfo["phase"]) == (
            "test",
            "podinfo",
            "Progressing",
        )
        assert (podinfo["weight"], podinfo["max_weight"], podinfo["strategy"]) == (
            20,
            50,
            "canary",
        )
        assert podinfo["history"] == [[100, 10], [200, 20]]
        assert [e["message"] for e in podinfo["events"]] == [
            "Advance podinfo.test canary weight 20",
            "Advance podinfo.test canary weight 10",
        ]
        assert {m["name"]: m["passed"] for m in podinfo["metrics"]} == {
            "request-success-rate": True,
            "request-duration": False,
        }
        async with http.get(running.url + "/api/config", timeout=HTTP) as resp:
            assert await resp.json() == {
                "allow_actions": False,
                "user": "alice",
                "nats_url": nats_server.url,
                "actions": list(messages.CONTROL_ACTIONS),
            }
        async with http.get(running.url + "/", timeout=HTTP) as resp:
            page = await resp.text()
            assert resp.status == 200
            assert "/static/app.js" in page
            assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
        for name in ("app.js", "style.css"):
            async with http.get(f"{running.url}/static/{name}", timeout=HTTP) as resp:
                assert resp.status == 200, name


@pytest.mark.integration
async def test_the_stream_sends_a_snapshot_then_updates_events_and_keep_alives(
    nats_server: NatsServer, nc: Client
) -> None:
    js = await declared(nc)
    kv = await js.key_value(streams.CANARIES.name)
    await kv.put("test.podinfo", encoded(observation(progressing(10), at_ms=100)))
    async with (
        dashboard(nats_server.url, keepalive_s=0.2) as running,
        aiohttp.ClientSession() as http,
    ):
        async with http.get(running.url + "/api/stream", timeout=HTTP) as resp:
            assert resp.status == 200
            assert resp.content_type == "text/event-stream"
            stream = Stream(resp)
            first = await stream.until("snapshot")
            assert [c["weight"] for c in first["canaries"]] == [10]

            await kv.put("test.podinfo", encoded(observation(progressing(20), at_ms=200)))
            update = await stream.until("canary", lambda c: c["weight"] == 20)
            assert update["history"] == [[100, 10], [200, 20]]

            await publish(js, weight_event(30, 300))
            event = await stream.until("event")
            assert event["namespace"] == "test"
            assert event["name"] == "podinfo"
            assert event["event"]["kind"] == "weight_advanced"
            assert event["event"]["message"] == "Advance podinfo.test canary weight 30"
            moved = await stream.until("canary")
            assert moved["history"][-1] == [300, 30]

            await kv.delete("test.podinfo")
            assert await stream.until("removed") == {"namespace": "test", "name": "podinfo"}
            assert await stream.until(":") == "keep-alive"
            assert running.feed.pages == 1
        # the page went away: the next keep-alive finds out, without an error
        await support.poll(
            lambda: asyncio.sleep(0, running.feed.pages),
            lambda n: n == 0,
            timeout=10,
            what="the closed stream detached",
        )


@pytest.mark.integration
async def test_without_allow_actions_a_post_is_refused(nats_server: NatsServer, nc: Client) -> None:
    await declared(nc)
    seen: list[Msg] = []

    async def answer(msg: Msg) -> None:
        seen.append(msg)

    await nc.subscribe(messages.CONTROL_ALL, cb=answer)
    async with dashboard(nats_server.url) as running, aiohttp.ClientSession() as http:
        url = running.url + "/api/canaries/test/podinfo/abort"
        async with http.post(url, json={}, timeout=HTTP) as resp:
            assert resp.status == 403
            body = await resp.json()
            assert "read-only" in body["error"]
            assert "--allow-actions" in body["error"]
    assert seen == []


@pytest.mark.integration
async def test_with_allow_actions_a_post_reaches_the_control_subject(
    nats_server: NatsServer, nc: Client
) -> None:
    await declared(nc)
    async with (
        dashboard(nats_server.url, allow_actions=True) as running,
        aiohttp.ClientSession() as http,
    ):
        base = running.url + "/api/canaries/test/podinfo"
        # nobody answers yet: a clear error, not a crash
        async with http.post(base + "/promote", json={}, timeout=HTTP) as resp:
            assert resp.status == 503
            assert "no analyzer answered promote for test/podinfo" in (await resp.json())["error"]

        requests: list[messages.ControlRequest] = []

        async def analyzer(msg: Msg) -> None:
            request = messages.CONTROL_DECODER.decode(msg.data)
            requests.append(request)
            reply: messages.Reply
            if request.action == "retry":
                reply = messages.CommandFailed(canary=request.canary, error="boom", temporary=True)
            else:
                reply = messages.ControlAnswer(
                    canary=request.canary,
                    action=request.action,
                    accepted=request.action != "resume",
                    message=f"{request.action} of podinfo.test requested by {request.by}",
                    phase=canary_model.Phase.WAITING_PROMOTION,
                )
            await msg.respond(messages.ENCODER.encode(reply))

        await nc.subscribe(f"{messages.CONTROL_PREFIX}.test.podinfo.*", cb=analyzer)
        await nc.flush()
        async with http.post(
            base + "/approve", json={"gate": "confirm-promotion", "reason": "lgtm"}, timeout=HTTP
        ) as resp:
            assert resp.status == 200
            assert await resp.json() == {
                "action": "approve",
                "accepted": True,
                "message": "approve of podinfo.test requested by alice",
                "phase": "WaitingPromotion",
            }
        assert requests == [
            messages.ControlRequest(
                canary=REF,
                action="approve",
                gate="confirm-promotion",
                by="alice",
                reason="lgtm",
                timeout_s=feeds.REQUEST_TIMEOUT_S,
            )
        ]
        async with http.post(base + "/resume", json={}, timeout=HTTP) as resp:
            assert resp.status == 200
            assert (await resp.json())["accepted"] is False
        async with http.post(base + "/retry", json={}, timeout=HTTP) as resp:
            assert resp.status == 502
            assert (await resp.json())["error"] == "boom"
        async with http.post(base + "/explode", json={}, timeout=HTTP) as resp:
            assert resp.status == 400
            assert "unknown action" in (await resp.json())["error"]
        async with http.post(base + "/abort", data="x", timeout=HTTP) as resp:
            assert resp.status == 415  # a plain form post (another site's page) cannot act
        headers = {"Origin": "http://evil.example"}
        async with http.post(base + "/abort", json={}, headers=headers, timeout=HTTP) as resp:
            assert resp.status == 403
        assert [r.action for r in requests] == ["approve", "resume", "retry"]


@pytest.mark.integration
async def test_it_waits_for_the_bucket_and_the_stream(nats_server: NatsServer, nc: Client) -> None:
    async with dashboard(nats_server.url, wait=False) as running, aiohttp.ClientSession() as http:
        body = await support.poll(
            lambda: snapshot(http, running.url),
            lambda b: "waiting for" in b["status"]["problem"],
            timeout=10,
            what="a waiting status",
        )
        assert body["canaries"] == []
        js = await declared(nc)
        await asyncio.wait_for(running.feed.watching.wait(), 15)
        kv = await js.key_value(streams.CANARIES.name)
        await kv.put("test.podinfo", encoded(observation(progressing(10))))
        await support.poll(
            lambda: snapshot(http, running.url),
            lambda b: b["canaries"] and b["status"]["problem"] == "",
            timeout=10,
            what="the canary, no problem",
        )


@pytest.mark.integration
async def test_it_reconnects_when_nats_comes_back(nats_server: NatsServer, nc: Client) -> None:
    js = await declared(nc)
    kv = await js.key_value(streams.CANARIES.name)
    await kv.put("test.podinfo", encoded(observation(progressing(10))))
    async with dashboard(nats_server.url) as running, aiohttp.ClientSession() as http:
        await asyncio.to_thread(nats_server.restart)
        await support.poll(
            lambda: snapshot(http, running.url),
            lambda b: b["status"]["connected"] and running.feed.watching.is_set(),
            timeout=20,
            what="connected again",
        )
        again = await nats.connect(nats_server.url)
        try:
            kv = await again.jetstream().key_value(streams.CANARIES.name)
            await kv.put("test.podinfo", encoded(observation(progressing(20))))
        finally:
            await again.close()
        body = await support.poll(
            lambda: snapshot(http, running.url),
            lambda b: b["canaries"] and b["canaries"][0]["weight"] == 20,
            timeout=10,
            what="the update after the reconnection",
        )
        assert body["status"] == {"connected": True, "problem": ""}


# --------------------------------------------------------------------------- the command


def start_command(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [SLUICE, "dashboard", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


@pytest.mark.integration
async def test_the_command_prints_its_url_and_exits_0_on_sigterm(
    nats_server: NatsServer, nc: Client
) -> None:
    await declared(nc)
    proc = start_command("--listen", "127.0.0.1:0", "--nats-url", nats_server.url)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 20)
        assert line.startswith("sluice dashboard: http://127.0.0.1:"), line
        assert "read-only" in line
        url = line.split()[2]
        async with aiohttp.ClientSession() as http, http.get(url, timeout=HTTP) as resp:
            assert resp.status == 200
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.to_thread(proc.communicate, None, 20)
        assert proc.returncode == 0, err
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


@pytest.mark.integration
async def test_a_taken_port_is_a_clear_error(nats_server: NatsServer) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = await asyncio.to_thread(
            subprocess.run,
            [SLUICE, "dashboard", "--listen", f"127.0.0.1:{port}", "--nats-url", nats_server.url],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: the address is already in use" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.integration
async def test_an_unreachable_nats_is_a_clear_error() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    done = await asyncio.to_thread(
        subprocess.run,
        [SLUICE, "dashboard", "--listen", "127.0.0.1:0", "--nats-url", f"nats://127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert f"cannot reach NATS at nats://127.0.0.1:{port} (--nats-url)" in done.stderr


def test_events_without_a_message_are_summarised() -> None:
    checked = messages.MetricChecked(
        canary=REF, metric="request-success-rate", value=99.5, min=99, passed=True
    )
    assert state.summary(checked) == "request-success-rate 99.5 >= 99 passed"
    missing = messages.MetricChecked(canary=REF, metric="latency", max=500, passed=False)
    assert state.event_view(missing).message == "latency no value <= 500 failed"
    assert state.summary(messages.Initialized(canary=REF)) == "initialized"
    assert state.summary(messages.Initialized(canary=REF, message="Done")) == "Done"


@pytest.mark.integration
async def test_the_page_offers_the_actions_that_fit_and_shows_each_answer(
    nats_server: NatsServer, nc: Client, tmp_path: pathlib.Path
) -> None:
    js = await declared(nc)
    kv = await js.key_value(streams.CANARIES.name)
    waiting = {
        "phase": "WaitingPromotion",
        "canaryWeight": 50,
        "conditions": [
            {"type": "Gate", "status": "False", "reason": "confirm-promotion", "message": "x"}
        ],
    }
    failed = {"phase": "Failed", "canaryWeight": 0, "failedChecks": 10}
    await kv.put("test.podinfo", encoded(observation(waiting)))
    await kv.put("test.broken", encoded(observation(failed, name="broken")))
    async with (
        dashboard(nats_server.url, allow_actions=True) as running,
        browser.launch() as chromium,
    ):
        page = await chromium.new_page()
        await page.goto(running.url)

        def buttons(key: str) -> str:
            return (
                f"[...document.querySelectorAll('article[data-canary=\"{key}\"] button')]"
                ".map(b => b.dataset.action)"
            )

        offered = await page.wait_for(buttons("test/podinfo"), bool, 20, "the buttons")
        assert offered == ["approve", "reject", "promote", "abort", "pause"]
        assert await page.evaluate(buttons("test/broken")) == [
            "promote",
            "abort",
            "pause",
            "retry",
        ]
        assert "alice" in await page.evaluate("document.getElementById('mode').textContent")
        gate = '[data-canary="test/podinfo"][data-field="gate"]'
        assert "confirm-promotion" in await page.evaluate(
            f"document.querySelector('{gate}').textContent"
        )

        answer = '[data-canary="test/podinfo"][data-field="answer"]'
        click = (
            'document.querySelector(\'article[data-canary="test/podinfo"] '
            'button[data-action="approve"]\').click()'
        )
        # no analyzer yet: the page says so
        await page.evaluate(click)
        said = await page.wait_for(
            f"(document.querySelector('{answer}') || {{}}).textContent",
            lambda t: bool(t),
            20,
            "the answer",
        )
        assert said.startswith("approve: no analyzer answered approve for test/podinfo"), said

        async def analyzer(msg: Msg) -> None:
            request = messages.CONTROL_DECODER.decode(msg.data)
            reply = messages.ControlAnswer(
                canary=request.canary,
                action=request.action,
                accepted=True,
                message=f"{request.action} by {request.by}",
            )
            await msg.respond(messages.ENCODER.encode(reply))

        await nc.subscribe(f"{messages.CONTROL_PREFIX}.test.podinfo.*", cb=analyzer)
        await nc.flush()
        await page.evaluate(click)
        said = await page.wait_for(
            f"document.querySelector('{answer}').textContent",
            lambda t: t.startswith("approve accepted"),
            20,
            "the accepted answer",
        )
        assert said == "approve accepted: approve by alice"
        await page.screenshot(tmp_path / "actions.png")
        assert not [c for c in chromium.console if c.startswith("exception")]
