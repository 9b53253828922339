from pathlib import Path
from typing import Any

import msgspec
import pytest

from libs.errors import InvalidInput
from libs.model import analysis, canary, documents, meta

MANIFESTS = Path(__file__).parents[2] / "data" / "manifests"


def _seed() -> dict[str, Any]:
    text = (MANIFESTS / "podinfo-canary.yaml").read_text()
    data: dict[str, Any] = documents.load_documents(text, "seed")[0].data
    return data


def test_seed_canary_parses_with_tutorial_values() -> None:
    c = canary.parse_canary(_seed())
    assert (c.name, c.namespace) == ("podinfo", "test")
    assert c.provider() == "apisix"
    assert c.spec.route_ref is not None
    assert c.spec.route_ref.name == "podinfo"
    a = c.get_analysis()
    assert (a.interval, a.threshold, a.max_weight, a.step_weight) == ("10s", 10, 50, 10)
    assert [m.name for m in a.metrics] == ["request-success-rate", "request-duration"]
    assert a.metrics[0].threshold_range == analysis.ThresholdRange(min=99)
    hook = a.webhooks[0]
    assert hook.effective_type() is analysis.WebhookType.ROLLOUT
    assert hook.timeout_seconds() == 5.0
    assert hook.metadata["cmd"].startswith("hey -z 1m -q 10 -c 2 -h2 -host app.example.com")


def test_seed_round_trips_through_json() -> None:
    c = canary.parse_canary(_seed())
    encoded = msgspec.json.encode(c)
    assert msgspec.json.decode(encoded, type=canary.Canary) == c
    assert msgspec.to_builtins(c)["spec"]["analysis"]["stepWeight"] == 10
    assert "skipAnalysis" not in msgspec.to_builtins(c)["spec"]  # defaults are omitted


def _minimal(**analysis_fields: Any) -> canary.Canary:
    return canary.Canary(
        api_version=canary.API_VERSION,
        kind=canary.KIND,
        metadata=meta.ObjectMeta(name="app", namespace="ns"),
        spec=canary.CanarySpec(
            target_ref=canary.TargetRef(api_version="apps/v1", kind="Deployment", name="app"),
            service=canary.CanaryService(port=8080),
            analysis=analysis.CanaryAnalysis(**analysis_fields),
        ),
    )


def test_flagger_defaults() -> None:
    c = _minimal()
    a = c.get_analysis()
    assert a.interval_seconds() == 60.0
    assert a.threshold_or_default() == 1
    assert a.primary_ready_percent() == 100
    assert a.canary_ready_percent() == 100
    assert c.service_name() == "app"
    assert c.primary_service_name() == "app-primary"
    assert c.canary_service_name() == "app-canary"
    assert c.port_name() == "http"
    assert c.target_port() == 8080
    assert c.progress_deadline_seconds() == 600
    assert c.route_name() == "app"
    assert c.provider() == "apisix"


def test_defaults_clamp_and_override() -> None:
    a = _minimal(interval="5s", threshold=-3, primary_ready_threshold=0).get_analysis()
    assert a.interval_seconds() == 10.0
    assert a.threshold_or_default() == 1
    assert a.primary_ready_percent() == 0


def test_metric_and_alert_defaults() -> None:
    metric = analysis.Metric(name="request-success-rate", threshold=99)
    assert metric.interval_or_default() == "1m"
    assert metric.interval_seconds() == 60.0
    assert metric.is_builtin()
    assert metric.effective_range() == analysis.ThresholdRange(min=99)
    duration = analysis.Metric(name="request-duration", threshold=500)
    assert duration.effective_range() == analysis.ThresholdRange(max=500)
    custom = analysis.Metric(name="x", query="up", threshold_range=analysis.ThresholdRange(max=1))
    assert not custom.is_builtin()
    assert custom.effective_range() == analysis.ThresholdRange(max=1)
    alert = analysis.Alert(name="a", provider_ref=meta.CrossNamespaceObjectReference(name="p"))
    assert alert.effective_severity() is analysis.Severity.INFO
    hook = analysis.Webhook(name="h", url="http://x/")
    assert hook.timeout_seconds() == 10.0
    assert hook.effective_type() is analysis.WebhookType.ROLLOUT


def test_webhooks_of_type_treats_unset_as_rollout() -> None:
    a = analysis.CanaryAnalysis(
        webhooks=(
            analysis.Webhook(name="a", url="http://x/"),
            analysis.Webhook(name="b", url="http://x/", type=analysis.WebhookType.PRE_ROLLOUT),
            analysis.Webhook(name="c", url="http://x/", type=analysis.WebhookType.ROLLOUT),
        )
    )
    assert [h.name for h in a.webhooks_of(analysis.WebhookType.ROLLOUT)] == ["a", "c"]


def test_canary_analysis_alias_is_read() -> None:
    obj = _seed()
    obj["spec"]["canaryAnalysis"] = obj["spec"].pop("analysis")
    c = canary.parse_canary(obj)
    assert c.spec.analysis is None
    assert c.get_analysis().step_weight == 10


@pytest.mark.parametrize(
    ("phase", "status"),
    [
        (canary.Phase.INITIALIZED, "True"),
        (canary.Phase.SUCCEEDED, "True"),
        (canary.Phase.FAILED, "False"),
        (canary.Phase.PROGRESSING, "Unknown"),
        (canary.Phase.UNSET, "Unknown"),
    ],
)
def test_promoted_condition_status(phase: canary.Phase, status: str) -> None:
    assert canary.promoted_condition_status(phase) == status


def test_parse_canary_lists_every_problem() -> None:
    obj = _seed()
    obj["spec"]["analysis"]["interval"] = "10"
    obj["spec"]["analysis"]["stepWeight"] = 110
    del obj["spec"]["routeRef"]
    with pytest.raises(InvalidInput) as caught:
        canary.parse_canary(obj)
    assert str(caught.value).splitlines() == [
        'podinfo (Canary, test): spec.analysis.interval: expected a duration like 30s or 1m, got "10"',
        "podinfo (Canary, test): spec.analysis.stepWeight: expected a weight from 0 to 100, got 110",
        "podinfo (Canary, test): spec.routeRef: required field missing (provider apisix needs the ApisixRoute to copy)",
    ]
    assert caught.value.path == "spec.analysis.interval"


def test_parse_canary_rejects_another_kind() -> None:
    with pytest.raises(InvalidInput, match='kind: expected "Canary", got "MetricTemplate"'):
        canary.parse_canary({"kind": "MetricTemplate", "metadata": {"name": "x"}})


def test_server_metadata_is_tolerated() -> None:
    obj = _seed()
    obj["metadata"].update(
        uid="u",
        resourceVersion="1",
        generation=2,
        creationTimestamp="2024-01-01T00:00:00Z",
        managedFields=[{"manager": "kubectl"}],
        ownerReferences=[{"kind": "X", "name": "y"}],
        someFutureField=True,
    )
    c = canary.parse_canary(obj)
    assert c.metadata.resource_version == "1"
    assert c.metadata.generation == 2


def test_status_decodes() -> None:
    obj = _seed()
    obj["status"] = {
        "phase": "Progressing",
        "canaryWeight": 20,
        "failedChecks": 1,
        "iterations": 0,
        "trackedConfigs": {"configmap/podinfo": "abc"},
        "conditions": [{"type": "Promoted", "status": "Unknown", "reason": "Progressing"}],
    }
    c = canary.parse_canary(obj)
    assert c.status is not None
    assert c.status.phase is canary.Phase.PROGRESSING
    assert c.status.conditions[0].reason == "Progressing"


def test_structs_are_frozen() -> None:
    c = _minimal()
    with pytest.raises(AttributeError):
        c.kind = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("path", "edit"),
    [
        ("spec.targetRef.name", lambda spec: spec["targetRef"].update(name="a" * 56)),
        ("spec.service.name", lambda spec: spec["service"].update(name="s" * 56)),
    ],
)
def test_names_too_long_for_the_derived_objects_are_refused(path: str, edit: Any) -> None:
    """``<name>-primary`` must be a DNS label (63 characters): 55 is the longest name."""
    obj = _seed()
    edit(obj["spec"])
    with pytest.raises(InvalidInput) as caught:
        canary.parse_canary(obj)
    assert caught.value.path == path
    assert f"{path}: expected at most 55 characters" in str(caught.value)
    assert str(caught.value).endswith("got 56")
    fits = _seed()
    fits["spec"]["targetRef"]["name"] = "a" * 55
    fits["spec"]["service"]["name"] = "s" * 55
    assert canary.parse_canary(fits).primary_service_name() == "s" * 55 + "-primary"
