"""A MetricTemplate's credentials never leave the checker: not in the MetricChecked events, not in
the halt message (which becomes a Halted event and an alert), not in a log line.

The credentials come from the template's ``secretRef`` (a basic-auth password, a bearer token)
or sit in its provider address (``http://user:password@host``). Each template is checked by the
analyzer's ``Checker`` against a real Prometheus (which ignores the Authorization header), a
closed port and a query Prometheus refuses, so that every error path is taken once. A rotated
Secret replaces its template's client, and the clients kept are bounded.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator, Callable, Mapping

import msgspec
import pytest

from libs import messages
from libs.model import templates
from services.analyzer import checking
from tests.fixtures.prometheus import PrometheusServer
from tests.fixtures.services import secret
from tests.services.analyzer.test_checking import canary_with

pytestmark = pytest.mark.integration

PASSWORD = secret("prom-basic-password-51d0")
TOKEN = secret("prom-bearer-token-c3a8")
URL_PASSWORD = secret("prom-url-password-9e27")
SECRETS = {"basic-auth": {"username": "sluice", "password": PASSWORD}, "bearer": {"token": TOKEN}}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def template(name: str, query: str, address: str, secret_name: str) -> templates.MetricTemplate:
    provider: dict[str, object] = {"type": "prometheus", "address": address}
    if secret_name:
        provider["secretRef"] = {"name": secret_name}
    return msgspec.convert(
        {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "MetricTemplate",
            "metadata": {"name": name, "namespace": "test"},
            "spec": {"provider": provider, "query": query},
        },
        templates.MetricTemplate,
    )


def metric(name: str) -> dict[str, object]:
    return {"name": name, "templateRef": {"name": name}, "thresholdRange": {"max": 10}}


@pytest.fixture
async def checker(
    prometheus_factory: Callable[..., PrometheusServer],
) -> AsyncIterator[checking.Checker]:
    prom = prometheus_factory([])
    refused = f"http://127.0.0.1:{closed_port()}"
    with_password = prom.url.replace("http://", f"http://sluice:{URL_PASSWORD}@")
    refused_with_password = refused.replace("http://", f"http://x:{URL_PASSWORD}@")
    found = {
        name: template(name, query, address, secret_name)
        for name, query, address, secret_name in (
            ("guarded", "vector(1)", prom.url, "basic-auth"),
            ("guarded-refused", "vector(1)", refused, "bearer"),
            ("guarded-bad-query", "sum(", prom.url, "basic-auth"),
            ("in-address", "vector(1)", with_password, ""),
            ("in-address-refused", "vector(1)", refused_with_password, ""),
            ("in-address-bad-query", "sum(", with_password, "bearer"),
        )
    }

    async def source(namespace: str, name: str) -> templates.MetricTemplate | None:
        return found.get(name)

    async def secrets(namespace: str, name: str) -> Mapping[str, str]:
        return SECRETS[name]

    subject = checking.Checker(prom.url, source, secrets, timeout_s=5)
    try:
        yield subject
    finally:
        await subject.close()


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("guarded", ""),
        ("guarded-refused", "cannot connect"),
        ("guarded-bad-query", "rejected the query 'sum('"),
        ("in-address", ""),
        ("in-address-refused", "cannot connect"),
        ("in-address-bad-query", "rejected the query 'sum('"),
    ],
)
async def test_credentials_appear_in_no_event_halt_or_log_line(
    checker: checking.Checker, caplog: pytest.LogCaptureFixture, name: str, reason: str
) -> None:
    caplog.set_level(logging.DEBUG)
    outcome = await checker.check(canary_with(metric(name)))

    (checked,) = outcome.checked
    if not reason:
        assert (outcome.ok, checked.passed, checked.value) == (True, True, 1.0)
    else:  # the failure is told, naming the metric, the Prometheus and why
        assert not outcome.ok
        assert outcome.halt.startswith(f"Metric query failed for {name}: prometheus http://127.")
        assert reason in outcome.halt
    told = "\n".join(
        [outcome.halt, messages.ENCODER.encode(checked).decode(), caplog.text]
        + [record.getMessage() for record in caplog.records]
    )
    assert [value for value in (PASSWORD, TOKEN, URL_PASSWORD) if value in told] == []


async def test_a_rotated_secret_replaces_the_templates_client(
    prometheus_factory: Callable[..., PrometheusServer],
) -> None:
    prom = prometheus_factory([])
    found = template("guarded", "vector(1)", prom.url, "rotating")
    current = {"username": "sluice", "password": "first"}

    async def source(namespace: str, name: str) -> templates.MetricTemplate | None:
        return found

    async def secrets(namespace: str, name: str) -> Mapping[str, str]:
        return dict(current)

    subject = checking.Checker(prom.url, source, secrets, timeout_s=5)
    try:
        assert (await subject.check(canary_with(metric("guarded")))).ok
        current["password"] = "second"
        assert (await subject.check(canary_with(metric("guarded")))).ok
        # one client for the template, with the new password; the old one was closed
        assert subject.client_count == 1
    finally:
        await subject.close()


async def test_clients_beyond_the_cap_are_closed_least_recently_used_first(
    prometheus_factory: Callable[..., PrometheusServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checking, "MAX_CLIENTS", 2)
    prom = prometheus_factory([])
    found = {name: template(name, "vector(1)", prom.url, "") for name in ("a", "b", "c")}

    async def source(namespace: str, name: str) -> templates.MetricTemplate | None:
        return found.get(name)

    subject = checking.Checker(prom.url, source, None, timeout_s=5)
    try:
        for name in ("a", "b", "c", "a"):
            assert (await subject.check(canary_with(metric(name)))).ok, name
            assert subject.client_count <= 2
        assert subject.client_count == 2
    finally:
        await subject.close()
