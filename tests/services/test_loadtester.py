"""The flagger-loadtester API of the webhook-runner, over real HTTP against real processes:
every endpoint's contract, gates shared by replicas and kept across restarts, and tasks."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from nats.aio.client import Client

from libs import messages
from tests.fixtures import services
from tests.fixtures.nats import NatsServer
from tests.fixtures.services import ServiceFactory, ServiceProcess
from tests.sandbox.e2e.support import poll

pytestmark = pytest.mark.integration

_LISTENING = re.compile(r"loadtester API listening on (http://[\d.]+:\d+)")


def flagger_payload(
    name: str = "podinfo", namespace: str = "test", **metadata: str
) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "namespace": namespace, "phase": "Progressing"}
    if metadata:
        body["metadata"] = metadata
    return body


class Loadtester:
    def __init__(self, proc: ServiceProcess, url: str, http: aiohttp.ClientSession) -> None:
        self.proc = proc
        self.url = url
        self.http = http

    async def post(
        self, path: str, body: object = None, raw: bytes | None = None
    ) -> tuple[int, str]:
        data = (
            raw if raw is not None else json.dumps(body if body is not None else flagger_payload())
        )
        async with self.http.post(
            self.url + path, data=data, timeout=aiohttp.ClientTimeout(total=10)
        ) as resp:
            return resp.status, await resp.text()

    async def get(self, path: str) -> tuple[int, str]:
        async with self.http.get(self.url + path, timeout=aiohttp.ClientTimeout(total=10)) as resp:
            return resp.status, await resp.text()


@pytest.fixture
def start_loadtester(
    nats_server: NatsServer, service: ServiceFactory, http: aiohttp.ClientSession
) -> Any:
    async def start(**env: str) -> Loadtester:
        proc = service("webhook_runner", nats_server.url, **env)
        await proc.ready()
        match = await proc.wait_log(_LISTENING)
        return Loadtester(proc, match.group(1), http)

    return start


async def test_fixed_answers_are_flagger_loadtesters(start_loadtester: Any) -> None:
    lt: Loadtester = await start_loadtester()
    assert await lt.get("/healthz") == (200, "OK")
    assert await lt.post("/gate/approve") == (200, "OK")
    assert await lt.post("/gate/halt") == (403, "Forbidden")
    status, text = await lt.get("/metrics")
    assert status == 200
    assert "sluice_messages_received_total" in text


@pytest.mark.parametrize("kind", ["gate", "rollback"])
async def test_switches_start_closed_open_and_close(start_loadtester: Any, kind: str) -> None:
    lt: Loadtester = await start_loadtester()
    assert await lt.post(f"/{kind}/check") == (403, "Forbidden")
    assert await lt.post(f"/{kind}/open") == (202, "")
    assert await lt.post(f"/{kind}/check") == (200, "Approved")
    other = flagger_payload(name="other")
    assert await lt.post(f"/{kind}/check", other) == (403, "Forbidden")  # per canary
    assert await lt.post(f"/{kind}/close") == (202, "")
    assert await lt.post(f"/{kind}/check") == (403, "Forbidden")


async def test_gate_and_rollback_switches_are_independent(start_loadtester: Any) -> None:
    lt: Loadtester = await start_loadtester()
    assert await lt.post("/gate/open") == (202, "")
    assert await lt.post("/rollback/check") == (403, "Forbidden")


async def test_gates_are_shared_by_replicas_and_survive_restarts(
    start_loadtester: Any, nc: Client
) -> None:
    a: Loadtester = await start_loadtester()
    b: Loadtester = await start_loadtester()
    sub = await nc.subscribe("sluice.events.test.podinfo.gate_changed")
    assert await a.post("/gate/open") == (202, "")
    assert await b.post("/gate/check") == (200, "Approved")
    event = messages.EVENT_DECODER.decode((await sub.next_msg(timeout=5)).data)
    assert isinstance(event, messages.GateChanged)
    assert (event.gate, event.open, event.by) == ("gate", True, "127.0.0.1")
    assert event.message == "Gate for podinfo.test opened by 127.0.0.1"
    assert a.proc.terminate() == 0
    assert b.proc.terminate() == 0
    c: Loadtester = await start_loadtester()
    d: Loadtester = await start_loadtester()
    assert await c.post("/gate/check") == (200, "Approved")
    assert await d.post("/gate/check") == (200, "Approved")
    assert await d.post("/gate/close") == (202, "")
    assert await c.post("/gate/check") == (403, "Forbidden")
    await sub.unsubscribe()


@pytest.mark.parametrize(
    ("path", "raw", "status", "text"),
    [
        ("/", json.dumps(flagger_payload()).encode(), 400, "metadata not found in payload"),
        ("/", b"not json", 400, "decoding the request body failed"),
        ("/gate/check", b"[" * 5000, 400, "decoding the request body failed"),
        (
            "/gate/open",
            json.dumps(flagger_payload(name="a b")).encode(),
            400,
            "cannot be a subject token",
        ),
        (
            "/gate/open",
            json.dumps(flagger_payload(name="x" * 300)).encode(),
            400,
            "expected at most 253",
        ),
        (
            "/",
            json.dumps(flagger_payload(type="helm", cmd="helm test")).encode(),
            400,
            "unknown task type helm",
        ),
        ("/", json.dumps(flagger_payload(type="cmd")).encode(), 400, "cmd not found in metadata"),
    ],
    ids=["no-metadata", "not-json", "deep", "bad-name", "long-name", "helm", "no-cmd"],
)
async def test_bad_requests_are_400_with_a_reason(
    start_loadtester: Any, path: str, raw: bytes, status: int, text: str
) -> None:
    lt: Loadtester = await start_loadtester()
    got_status, got_text = await lt.post(path, raw=raw)
    assert got_status == status
    assert text in got_text


async def test_namespaces_outside_the_regexp_are_forbidden(start_loadtester: Any) -> None:
    lt: Loadtester = await start_loadtester(SLUICE_LOADTESTER_NAMESPACE_REGEXP="^(test|staging)$")
    assert await lt.post("/gate/open") == (202, "")
    assert await lt.post("/gate/open", flagger_payload(namespace="prod")) == (403, "Forbidden")
    body = flagger_payload(namespace="prod", cmd="hey -n 1 http://127.0.0.1:1/")
    assert await lt.post("/", body) == (403, "Forbidden")


async def test_shell_class_tasks_are_refused_by_default(start_loadtester: Any) -> None:
    lt: Loadtester = await start_loadtester()
    status, text = await lt.post("/", flagger_payload(type="bash", cmd="echo hi"))
    assert status == 403
    assert "SLUICE_LOADTESTER_SHELL_NAMESPACES=test" in text
    status, text = await lt.post("/", flagger_payload(cmd="curl http://example.com/"))
    assert status == 403
    assert "commands other than hey are shell-class tasks" in text


async def test_shell_class_tasks_run_only_in_allowed_namespaces(start_loadtester: Any) -> None:
    lt: Loadtester = await start_loadtester(
        SLUICE_LOADTESTER_SHELL_NAMESPACES="test",
        SLUICE_LOADTESTER_TASK_TIMEOUT_S="2",
        SLUICE_LOADTESTER_OUTPUT_MAX_BYTES="100",
        SLUICE_SECRET_TOKEN=services.secret("do-not-leak"),
    )
    bash = flagger_payload(
        type="bash", cmd="echo hello $SLUICE_SECRET_TOKEN", returnCmdOutput="true"
    )
    assert await lt.post("/", bash) == (200, "hello\n")  # no secrets in the environment
    quiet = flagger_payload(type="bash", cmd="echo hello")
    assert await lt.post("/", quiet) == (200, "")  # output only when asked for
    status, text = await lt.post("/", flagger_payload(type="bash", cmd="exit 3"))
    assert (status, text) == (500, "command exit 3 failed: exit status 3: ")
    status, text = await lt.post("/", flagger_payload(type="bash", cmd="sleep 30"))
    assert status == 500
    assert "time limit of 2s" in text
    status, text = await lt.post(
        "/", flagger_payload(type="bash", cmd="yes | head -c 100000", returnCmdOutput="true")
    )
    assert status == 200
    assert text.endswith("(99900 more bytes of output not kept)")
    elsewhere = flagger_payload(namespace="prod", type="bash", cmd="echo hi")
    assert (await lt.post("/", elsewhere))[0] == 403
    cmd = flagger_payload(cmd="touch /dev/null", logCmdOutput="true")
    assert await lt.post("/", cmd) == (202, "")  # asynchronous, like Flagger's cmd tasks
    await lt.proc.wait_log("command finished touch /dev/null")
    assert "do-not-leak" not in lt.proc.log_text()


class Target:
    """A local HTTP server counting the requests a load test sends."""

    def __init__(self) -> None:
        self.hits = 0
        self.hosts: set[str] = set()
        self.url = ""
        self.busy = asyncio.Event()  # set from the second request on

    async def handle(self, request: web.Request) -> web.Response:
        self.hits += 1
        if self.hits >= 2:
            self.busy.set()
        self.hosts.add(request.headers.get("Host", ""))
        return web.Response(text="ok")


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    t = Target()
    app = web.Application()
    app.router.add_get("/{tail:.*}", t.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    t.url = f"http://127.0.0.1:{runner.addresses[0][1]}/api/info"
    try:
        yield t
    finally:
        await runner.cleanup()


async def test_a_hey_task_runs_once_per_canary_and_command_across_replicas(
    start_loadtester: Any, target: Target
) -> None:
    a: Loadtester = await start_loadtester()
    b: Loadtester = await start_loadtester()
    command = f"hey -n 40 -c 2 -q 20 -host app.example.com {target.url}"
    body = flagger_payload(cmd=command, logCmdOutput="true")
    assert await a.post("/", body) == (202, "")
    assert await b.post("/", body) == (202, "")  # same canary and command: not started again
    assert await a.post("/", body) == (202, "")
    await a.proc.wait_log("command finished hey")
    await b.proc.wait_log("command skipped .* is already running on another replica")
    assert target.hits == 40
    assert target.hosts == {"app.example.com"}
    assert "Summary:" in a.proc.log_text()  # hey's summary
    assert await a.proc.metric("sluice_loadtest_requests_total", code="200") == 40
    # once finished, the same task may run again
    assert await b.post("/", body) == (202, "")
    await b.proc.wait_log("command finished hey")
    assert target.hits == 80


async def test_a_load_test_of_a_killed_replica_is_taken_over_not_of_a_live_one(
    start_loadtester: Any, target: Target
) -> None:
    """A claim refreshed every heartbeat stays with its live replica; the claim of a replica
    killed mid-test is taken over once silent for three heartbeats, not after the TTL."""
    a: Loadtester = await start_loadtester(SLUICE_LOADTESTER_CLAIM_HEARTBEAT_S="0.2")
    b: Loadtester = await start_loadtester(SLUICE_LOADTESTER_CLAIM_HEARTBEAT_S="0.2")
    body = flagger_payload(cmd=f"hey -z 1h -c 1 -q 20 {target.url}")
    assert await a.post("/", body) == (202, "")

    async def hits() -> int:
        return target.hits

    await poll(hits, lambda n: n >= 40, timeout=30, what="a's load")  # ten heartbeats
    assert await b.post("/", body) == (202, "")
    await b.proc.wait_log("command skipped .* is already running on another replica")
    assert "taking it over" not in b.proc.log_text()
    a.proc.kill()
    seen = target.hits

    async def taken_over() -> None:
        while "taking it over" not in b.proc.log_text():
            assert await b.post("/", body) == (202, "")
            await asyncio.sleep(0.2)

    await asyncio.wait_for(taken_over(), 30)  # the TTL is 60 s: only the heartbeat is this quick
    assert re.search(r"taking it over from replica \S+/\d+, silent for", b.proc.log_text())
    await poll(hits, lambda n: n >= seen + 20, timeout=30, what="b's load")


async def test_a_malformed_hey_line_fails_with_heys_usage(start_loadtester: Any) -> None:
    lt: Loadtester = await start_loadtester()
    status, text = await lt.post("/", flagger_payload(cmd="hey -n abc http://127.0.0.1:1/"))
    assert status == 400
    assert "-n" in text
    assert "Usage: hey [options...] <url>" in text


async def test_stopping_the_service_ends_a_long_load_test(
    start_loadtester: Any, target: Target
) -> None:
    lt: Loadtester = await start_loadtester(SLUICE_SHUTDOWN_GRACE_S="2")
    assert await lt.post("/", flagger_payload(cmd=f"hey -z 1h -c 1 -q 5 {target.url}")) == (202, "")
    await asyncio.wait_for(target.busy.wait(), timeout=10)
    assert lt.proc.terminate(timeout=10) == 0
