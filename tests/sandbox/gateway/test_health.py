"""Health checks: the healthCheck translation, the target state machine, and a checker's active
probes against small real aiohttp servers (short intervals)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from sandbox.gateway import checks, health, upstreams
from tests.sandbox.gateway.support import closed_port

PATH = "ApisixUpstream test/app: $.spec"


def parse(spec: Any) -> checks.Checks | None:
    return upstreams.parse_settings({"healthCheck": spec}, PATH).checks


def test_translation_fills_apisix_defaults():
    got = parse({"active": {"httpPath": "/healthz", "healthy": {"interval": "2s"}}})
    assert got is not None
    assert got.passive is None
    assert got.active.http_path == "/healthz"
    assert got.active.healthy == checks.Healthy(2, (200, 302), 2)
    assert got.active.unhealthy == checks.DEFAULT_ACTIVE.unhealthy
    assert (got.active.type, got.active.timeout, got.active.concurrency) == ("http", 1.0, 10)
    assert got.passive_or_default.unhealthy.tcp_failures == 2
    assert parse(None) is None
    assert parse({}) is None


def test_translation_keeps_what_is_set():
    got = parse(
        {
            "active": {
                "type": "tcp",
                "timeout": 3,
                "port": 8081,
                "host": "health.local",
                "requestHeaders": ["X-Probe: 1"],
                "unhealthy": {"interval": "1500ms", "httpFailures": 1, "timeout": 4},
            },
            "passive": {"healthy": {"successes": 3}, "unhealthy": {"httpCodes": [500, 502]}},
        }
    )
    assert got is not None
    assert got.passive is not None
    assert (got.active.type, got.active.timeout, got.active.port) == ("tcp", 3.0, 8081)
    assert got.active.unhealthy.interval == 1  # whole seconds reach APISIX
    assert (got.active.unhealthy.http_failures, got.active.unhealthy.timeouts) == (1, 4)
    assert got.active.req_headers == ("X-Probe: 1",)
    assert got.passive.healthy.successes == 3
    assert got.passive.unhealthy.http_statuses == (500, 502)
    settings = upstreams.parse_settings({"healthCheck": {"active": {}}}, PATH).to_json()
    assert settings["checks"]["active"]["healthy"]["http_statuses"] == [200, 302]


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ("yes", "healthCheck"),
        ({"passive": {}}, "healthCheck.active"),
        ({"active": {"type": "udp"}}, "healthCheck.active.type"),
        ({"active": {"healthy": {"successes": 2}}}, "healthCheck.active.healthy.interval"),
        ({"active": {"unhealthy": {"interval": "500ms"}}}, "healthCheck.active.unhealthy.interval"),
        ({"active": {"healthy": {"interval": "1s", "successes": 255}}}, "healthy.successes"),
        ({"active": {"unhealthy": {"interval": "1s", "httpCodes": []}}}, "unhealthy.httpCodes"),
        ({"active": {"port": 70000}}, "healthCheck.active.port"),
        ({"active": {"concurrency": -1}}, "healthCheck.active.concurrency"),
        ({"active": {}, "passive": {"unhealthy": {"tcpFailures": -1}}}, "passive.unhealthy"),
    ],
)
def test_translation_refuses_bad_checks(spec: Any, field: str):
    with pytest.raises(
        upstreams.TranslationError, match=re.escape(f"- at {PATH}.") + ".*" + re.escape(field)
    ):
        parse(spec)


def test_target_thresholds():
    target = health.Target()
    assert not target.report(health.HTTP, 2)
    assert not target.report(health.SUCCESS, 2)  # a success clears the failures
    assert not target.report(health.HTTP, 2)
    assert target.report(health.HTTP, 2)
    assert not target.healthy
    assert not target.report(health.TCP, 1)  # already unhealthy
    assert not target.report(health.SUCCESS, 2)
    assert not target.report(health.TIMEOUT, 3)  # a failure clears the successes
    assert not target.report(health.SUCCESS, 2)
    assert target.report(health.SUCCESS, 2)
    assert target.healthy
    assert not target.report(health.TCP, 0)  # threshold 0: not counted
    assert target.failures[health.TCP] == 0


class Pod:
    """A tiny server whose ``/healthz`` answers ``status`` (changed by the test)."""

    def __init__(self) -> None:
        self.status = 200
        self.seen: list[tuple[str, str, str]] = []
        self.port = 0
        self._runner: web.ServerRunner | None = None

    async def _handle(self, request: web.BaseRequest) -> web.Response:
        self.seen.append((request.path, request.host, request.headers.get("X-Probe", "")))
        return web.Response(status=self.status)

    async def __aenter__(self) -> Pod:
        self._runner = web.ServerRunner(web.Server(self._handle), shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def fast_checks(**active: Any) -> checks.Checks:
    return checks.Checks(
        active=checks.Active(
            http_path="/healthz",
            host="probe.local",
            req_headers=("X-Probe: yes",),
            healthy=checks.Healthy(0.05, (200,), 2),
            unhealthy=checks.Unhealthy(0.05, (500, 503), 2, 1, 1),
            **active,
        )
    )


def upstream_of(*nodes: upstreams.Node, the_checks: checks.Checks) -> upstreams.Upstream:
    return upstreams.Upstream(
        name="test_app_80",
        service="app",
        service_port=80,
        resolve_granularity="endpoints",
        subset="",
        nodes=nodes,
        settings=upstreams.Settings(checks=the_checks),
    )


async def test_active_probes_flip_a_node_and_back():
    async with Pod() as pod, aiohttp.ClientSession() as session:
        node = upstreams.Node("127.0.0.1", pod.port)
        dead = upstreams.Node("127.0.0.1", closed_port())
        up = upstream_of(node, dead, the_checks=fast_checks())
        changed = asyncio.Event()
        checker = health.Checker(up, fast_checks(), changed.set)
        task = asyncio.create_task(checker.run(session, lambda n: (n.host, n.port)))
        try:
            async with asyncio.timeout(5):
                while checker.is_healthy(dead):  # one refused connection is enough
                    await changed.wait()
                    changed.clear()
            assert checker.is_healthy(node)

            pod.status = 500
            async with asyncio.timeout(5):
                while checker.is_healthy(node):
                    await changed.wait()
                    changed.clear()
            assert pod.seen[0] == ("/healthz", "probe.local", "yes")
            pod.status = 200
            async with asyncio.timeout(5):
                while not checker.is_healthy(node):
                    await changed.wait()
                    changed.clear()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_passive_reports_and_node_choice():
    node_a, node_b = upstreams.Node("10.0.0.1", 80), upstreams.Node("10.0.0.2", 80)
    the_checks = checks.Checks(
        active=checks.Active(healthy=checks.Healthy(), unhealthy=checks.Unhealthy()),
        passive=checks.Passive(
            unhealthy=checks.Unhealthy(http_statuses=(500,), http_failures=2, tcp_failures=2)
        ),
    )
    up = upstream_of(node_a, node_b, the_checks=the_checks)
    checkers = health.Checkers(lambda n: (n.host, n.port))
    await checkers.start()
    try:
        checkers.update([up])
        checker = checkers.get(up)
        assert checker is not None
        checker.report_status(node_a, 500)
        assert checkers.usable(up).nodes == (node_a, node_b)
        checker.report_status(node_a, 500)
        assert checkers.usable(up).nodes == (node_b,)
        assert sorted(checkers.statuses()) == [
            (f"/apisix/upstreams/{up.id}", "10.0.0.1", "80", 0.0),
            (f"/apisix/upstreams/{up.id}", "10.0.0.2", "80", 1.0),
        ]
        checker.report_failure(node_b, health.TCP)
        checker.report_failure(node_b, health.TCP)  # passive tcp_failures: 2
        assert checkers.usable(up).nodes == (node_a, node_b)  # none healthy: all used
        # A changed upstream gets a new checker: every node healthy again.
        changed = upstream_of(node_a, the_checks=the_checks)
        checkers.update([changed])
        assert checkers.get(up) is None
        assert [s[3] for s in checkers.statuses()] == [1.0]
    finally:
        await checkers.stop()
