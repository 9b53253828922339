"""The notifier against the sandbox's Kubernetes API: Flagger's Events on the Canary, as
``kubectl describe canary`` and ``kubectl get events`` show them, and per-canary alerts through
an AlertProvider whose address and token come from a Secret."""

from __future__ import annotations

import base64
import copy
import json
import re
from typing import Any

import nats
import pytest
import yaml

from libs import messages
from tests.fixtures import services
from tests.fixtures.services import ServiceFactory, ServiceProcess
from tests.fixtures.sinks import Sink
from tests.sandbox.e2e import support

pytestmark = pytest.mark.e2e

CANARY = messages.CanaryRef(namespace="test", name="podinfo")
TOKEN = services.secret("xoxb-sandbox-token-do-not-log")


def seed_canary(alerts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    canary = yaml.safe_load((support.MANIFESTS / "podinfo-canary.yaml").read_text())
    if alerts is not None:
        canary = copy.deepcopy(canary)
        canary["spec"]["analysis"]["alerts"] = alerts
    return dict(canary)


async def publish(events: list[messages.EventBase], url: str) -> None:
    nc = await nats.connect(url)
    try:
        for event in events:
            subject = messages.event_subject(
                event.canary.namespace, event.canary.name, messages.event_kind(event)
            )
            await nc.jetstream().publish(subject, messages.ENCODER.encode(event))
    finally:
        await nc.close()


async def notifier(stack: support.Stack, service: ServiceFactory) -> ServiceProcess:
    proc = service("notifier", stack.env["NATS_URL"], SLUICE_KUBECONFIG=stack.env["KUBECONFIG"])
    await proc.ready()
    return proc


async def test_events_on_the_canary_read_like_flaggers(
    stack: support.Stack, service: ServiceFactory
) -> None:
    await stack.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(seed_canary()))
    proc = await notifier(stack, service)
    halt = "Halt advancement no values found for apisix metric request-success-rate probably podinfo.test is not receiving traffic"
    events: list[messages.EventBase] = [
        messages.Initialized(canary=CANARY, message="Initialization done! podinfo.test"),
        messages.NewRevision(
            canary=CANARY, message="New revision detected! Scaling up podinfo.test"
        ),
        messages.AnalysisStarted(
            canary=CANARY, message="Starting canary analysis for podinfo.test"
        ),
        *(
            messages.Halted(
                canary=CANARY,
                severity=messages.Severity.WARN,
                reason="no values",
                failed_checks=n,
                message=halt,
                at_ms=messages.now_ms() - 3000 + n * 1000,
            )
            for n in range(1, 4)
        ),
        messages.MetricChecked(
            canary=CANARY, metric="request-success-rate", value=99.5, passed=True
        ),
    ]
    await publish(events, stack.env["NATS_URL"])

    async def describe() -> str:
        return (await stack.kubectl("describe", "canary", "podinfo", "-n", "test")).stdout

    text = await support.poll(
        describe, lambda out: "(x3 over" in out, timeout=60, what="describe canary"
    )
    print("\nEvents:" + text.split("Events:")[1])
    assert re.search(r"Normal\s+Synced\s+.*flagger\s+Initialization done! podinfo.test", text)
    assert re.search(r"Normal\s+Synced\s+.*New revision detected! Scaling up podinfo.test", text)
    assert re.search(r"Warning\s+Synced\s+\S+ \(x3 over \S+\)\s+flagger\s+Halt advancement", text)
    assert "request-success-rate" not in text.split("Events:")[1].replace(
        halt, ""
    )  # no metric events
    listed = await stack.kubectl(
        "get",
        "events",
        "-n",
        "test",
        "--field-selector",
        "involvedObject.name=podinfo",
        "-o",
        "json",
    )
    items = json.loads(listed.stdout)["items"]
    by_message = {item["message"]: item for item in items}
    assert by_message[halt]["count"] == 3
    assert by_message[halt]["type"] == "Warning"
    assert by_message[halt]["reason"] == "Synced"
    assert by_message[halt]["source"]["component"] == "flagger"
    assert by_message[halt]["involvedObject"]["kind"] == "Canary"
    assert by_message[halt]["involvedObject"]["uid"]
    assert proc.terminate() == 0


async def test_per_canary_alerts_use_the_alert_providers_secret(
    stack: support.Stack, service: ServiceFactory, sink: Sink
) -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "on-call-url", "namespace": "test"},
        "data": {
            "address": base64.b64encode(f"{sink.base_url}/hooks/on-call".encode()).decode(),
            "token": base64.b64encode(TOKEN.encode()).decode(),
        },
    }
    providers = [
        {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "AlertProvider",
            "metadata": {"name": "on-call", "namespace": "test"},
            "spec": {
                "type": "slack",
                "channel": "on-call",
                "username": "sluice",
                "secretRef": {"name": "on-call-url"},
            },
        },
        {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "AlertProvider",
            "metadata": {"name": "dev", "namespace": "test"},
            "spec": {"type": "msteams", "address": f"{sink.base_url}/webhookb2/dev"},
        },
    ]
    alerts = [
        {"name": "on-call", "severity": "error", "providerRef": {"name": "on-call"}},
        {"name": "dev", "severity": "info", "providerRef": {"name": "dev"}},
    ]
    documents = [secret, *providers, seed_canary(alerts)]
    await stack.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(documents))
    proc = await notifier(stack, service)
    await publish(
        [
            messages.Initialized(canary=CANARY, message="Initialization done! podinfo.test"),
            messages.RolledBack(
                canary=CANARY,
                severity=messages.Severity.ERROR,
                reason="failed checks threshold reached 10",
                failed_checks=10,
                message="Canary failed! Scaling down podinfo.test",
            ),
        ],
        stack.env["NATS_URL"],
    )

    async def received() -> int:
        return len(sink.received)

    await support.poll(received, lambda n: n >= 3, timeout=60, what="alerts")
    slack = [(r.headers, r.body) for r in sink.received if r.path == "/hooks/on-call"]
    teams = [r.body for r in sink.received if r.path == "/webhookb2/dev"]
    assert len(slack) == 1  # error only: the rollback
    headers, body = slack[0]
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert (body["channel"], body["username"]) == ("on-call", "sluice")
    assert body["attachments"][0]["text"] == "Canary failed! Scaling down podinfo.test"
    fields = {f["title"]: f["value"] for f in body["attachments"][0]["fields"]}
    assert fields["Target"] == "Deployment/podinfo.test"
    assert fields["Traffic routing"] == "Weight step: 10 max: 50"
    assert fields["Failed checks threshold"] == "10"
    assert len(teams) == 2  # info: everything that alerts
    assert TOKEN not in proc.log_text()
    assert proc.terminate() == 0
