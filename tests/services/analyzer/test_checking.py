"""The analyzer's checker against a real Prometheus: dry-run metrics and relative checks.

An HTTP endpoint in the test exposes per-Deployment gauges (``deployment="podinfo"`` for the
canary, ``deployment="podinfo-primary"`` for the primary); a real Prometheus scrapes it every
second and the ``Checker`` queries that Prometheus exactly as in production.
"""

from __future__ import annotations

import copy
import math
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
import pytest
from aiohttp import web

from libs.model import canary as canary_model
from libs.model import templates
from services.analyzer import checking
from tests.fixtures.prometheus import PrometheusServer
from tests.services.analyzer.test_metrics import SEED_OBJ

pytestmark = pytest.mark.integration

ERROR_RATE = 'max(app_error_ratio{deployment="{{ target }}"})'
LATENCY = 'max(app_latency_ms{deployment="{{ variables.deployment }}"})'


class Exporter:
    """``/metrics`` in Prometheus' text format, the values set by the test."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str], float] = {}

    async def handle(self, request: web.Request) -> web.Response:
        lines = [
            f'{name}{{deployment="{deployment}"}} {value}'
            for (name, deployment), value in sorted(self.values.items())
        ]
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")


@pytest.fixture
async def exporter() -> AsyncIterator[tuple[Exporter, str]]:
    exp = Exporter()
    app = web.Application()
    app.router.add_get("/metrics", exp.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()  # a free port, no fixed one
    port = runner.addresses[0][1]
    try:
        yield exp, f"127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def template(name: str, query: str, address: str) -> templates.MetricTemplate:
    return msgspec.convert(
        {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "MetricTemplate",
            "metadata": {"name": name, "namespace": "test"},
            "spec": {"provider": {"type": "prometheus", "address": address}, "query": query},
        },
        templates.MetricTemplate,
    )


def canary_with(*metrics: dict[str, Any]) -> canary_model.Canary:
    obj = copy.deepcopy(SEED_OBJ)
    obj["spec"]["analysis"]["metrics"] = list(metrics)
    return canary_model.parse_canary(obj)  # as the watcher hands it over: validated


DRY_LATENCY = {
    "name": "latency",
    "templateRef": {"name": "latency"},
    "thresholdRange": {"max": 100},
    "templateVariables": {"sluice.dryRun": "true", "deployment": "podinfo"},
}
RELATIVE_ERRORS = {
    "name": "error-rate",
    "templateRef": {"name": "error-rate"},
    "thresholdRange": {"max": 1},
    "templateVariables": {"sluice.compareTo": "primary"},
}


async def scraped(prom: PrometheusServer, promql: str, want: float | None) -> None:
    """Wait until Prometheus answers ``want`` for ``promql`` (None: no series)."""

    def seen(value: float | None) -> bool:
        if want is None:
            return value is None
        return value is not None and math.isclose(value, want)

    await prom.wait_for(promql, seen, timeout=30)


@pytest.fixture
async def checker(
    exporter: tuple[Exporter, str], prometheus_factory: Callable[..., PrometheusServer]
) -> AsyncIterator[tuple[checking.Checker, Exporter, PrometheusServer]]:
    exp, target = exporter
    prom = prometheus_factory([target])
    found = {
        ("test", "error-rate"): template("error-rate", ERROR_RATE, prom.url),
        ("test", "latency"): template("latency", LATENCY, prom.url),
        ("test", "broken"): template("broken", "sum(", prom.url),
    }

    async def source(namespace: str, name: str) -> templates.MetricTemplate | None:
        return found.get((namespace, name))

    subject = checking.Checker(prom.url, source, secrets=None)
    try:
        yield subject, exp, prom
    finally:
        await subject.close()


async def test_a_relative_check_halts_on_the_difference_and_passes_within_it(
    checker: tuple[checking.Checker, Exporter, PrometheusServer],
) -> None:
    subject, exp, prom = checker
    exp.values = {
        ("app_error_ratio", "podinfo"): 4.2,
        ("app_error_ratio", "podinfo-primary"): 1.0,
        ("app_latency_ms", "podinfo"): 250.0,
    }
    await scraped(prom, 'max(app_error_ratio{deployment="podinfo"})', 4.2)
    await scraped(prom, 'max(app_error_ratio{deployment="podinfo-primary"})', 1.0)
    canary = canary_with(DRY_LATENCY, RELATIVE_ERRORS)

    outcome = await subject.check(canary)

    assert not outcome.ok
    assert outcome.halt == (
        "Halt podinfo.test advancement error-rate 3.20 > 1 (canary 4.20, primary 1.00)"
    )
    dry, relative = outcome.checked
    # the failing dry-run metric came first and did not stop the step
    assert (dry.metric, dry.value, dry.passed, dry.dry_run) == ("latency", 250.0, False, True)
    assert dry.message == (
        "Dry-run metric latency 250.00 > 100 would have halted podinfo.test advancement"
    )
    assert relative.metric == "error-rate"
    assert relative.value == pytest.approx(3.2)
    assert (relative.canary_value, relative.primary_value) == (4.2, 1.0)
    assert (relative.passed, relative.dry_run, relative.max) == (False, False, 1.0)

    # the canary errs no more than the primary's + 1: the step goes on
    exp.values[("app_error_ratio", "podinfo")] = 1.5
    await scraped(prom, 'max(app_error_ratio{deployment="podinfo"})', 1.5)
    outcome = await subject.check(canary)
    assert outcome.ok
    assert outcome.halt == ""
    assert outcome.checked[1].value == pytest.approx(0.5)
    assert outcome.checked[1].passed


async def test_no_values_on_the_primary_side_is_flaggers_no_values_halt(
    checker: tuple[checking.Checker, Exporter, PrometheusServer],
) -> None:
    subject, exp, prom = checker
    exp.values = {("app_error_ratio", "podinfo"): 0.0}
    await scraped(prom, 'max(app_error_ratio{deployment="podinfo"})', 0.0)

    outcome = await subject.check(canary_with(RELATIVE_ERRORS))

    assert not outcome.ok
    assert outcome.halt == (
        "Halt advancement no values found for custom metric: error-rate: no values found"
    )
    (checked,) = outcome.checked
    assert (checked.value, checked.canary_value, checked.primary_value) == (None, 0.0, None)


async def test_a_dry_run_metric_whose_query_fails_is_only_reported(
    checker: tuple[checking.Checker, Exporter, PrometheusServer],
) -> None:
    subject, exp, prom = checker
    exp.values = {("app_latency_ms", "podinfo"): 20.0}
    await scraped(prom, 'max(app_latency_ms{deployment="podinfo"})', 20.0)
    broken = {
        "name": "broken",
        "templateRef": {"name": "broken"},
        "thresholdRange": {"max": 1},
        "templateVariables": {"sluice.dryRun": "true"},
    }
    latency = {**DRY_LATENCY, "templateVariables": {"deployment": "podinfo"}}

    outcome = await subject.check(canary_with(broken, latency))

    assert outcome.ok
    failed_query, measured = outcome.checked
    assert failed_query.dry_run
    assert not failed_query.passed
    assert failed_query.message.startswith(
        "Dry-run metric broken would have halted podinfo.test advancement: "
        "Metric query failed for broken: "
    )
    assert (measured.value, measured.passed, measured.dry_run) == (20.0, True, False)
