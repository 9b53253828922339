"""The real-Prometheus fixtures themselves: start, reload targets, query, stop."""

from __future__ import annotations

import math

import pytest
from aiohttp import web

from tests.fixtures import prometheus as prom_fixture

pytestmark = pytest.mark.integration


async def metrics_server(text: str) -> tuple[web.AppRunner, str]:
    async def handler(_request: web.Request) -> web.Response:
        return web.Response(text=text, content_type="text/plain")

    app = web.Application()
    app.router.add_get("/custom/metrics", handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"127.0.0.1:{runner.addresses[0][1]}"


async def test_prometheus_without_targets_then_reloaded(prometheus):
    assert prometheus.process.poll() is None
    assert prometheus.query("vector(42)") == 42.0
    assert prometheus.query("scalar(vector(1))") == 1.0
    assert prometheus.query('absent_metric{x="y"}') is None
    assert math.isnan(prometheus.query("0/0"))
    runner, target = await metrics_server("# TYPE sandbox_thing gauge\nsandbox_thing 7\n")
    try:
        await prometheus.aset_targets([target], "/custom/metrics")
        assert await prometheus.wait_for("sandbox_thing", lambda v: v == 7, timeout=15) == 7
        assert await prometheus.aquery('up{job="sandbox"}') == 1
    finally:
        await runner.cleanup()


async def test_factory_scrapes_given_targets_and_stops(prometheus_factory):
    runner, target = await metrics_server("# TYPE sandbox_other counter\nsandbox_other 3\n")
    try:
        prom = prometheus_factory([target], metrics_path="/custom/metrics")
        assert "scrape_interval: 1s" in prom.config_path.read_text()
        assert await prom.wait_for("sandbox_other", lambda v: v == 3, timeout=15) == 3
    finally:
        await runner.cleanup()
    prom.stop()
    assert prom.process.returncode is not None


def test_bad_query_raises(prometheus):
    with pytest.raises(prom_fixture.PrometheusError, match="HTTP 400"):
        prometheus.query("sum(")


def test_missing_binary_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(prom_fixture.shutil, "which", lambda _name: None)
    monkeypatch.setattr(prom_fixture.os, "access", lambda _path, _mode: False)
    with pytest.raises(prom_fixture.PrometheusError, match="binary is missing"):
        prom_fixture.start_prometheus(tmp_path)
