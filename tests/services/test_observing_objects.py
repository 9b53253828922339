"""Canaries and MetricTemplates as observations: the model on the wire (pure), and recording them
in a real JetStream KV bucket, where an older version never overwrites a newer one."""

from __future__ import annotations

import copy
import pathlib
from typing import Any

import msgspec
import pytest

from libs import errors, lifecycle, messages, streams
from libs.model import documents, validation
from services.watcher import objects, observing

MANIFESTS = pathlib.Path(__file__).resolve().parents[1] / "data" / "manifests"
STATUS = {
    "phase": "Progressing",
    "canaryWeight": 20,
    "failedChecks": 1,
    "iterations": 0,
    "lastAppliedSpec": "5d8f9c7b6",
    "trackedConfigs": {"configmap/podinfo-config": "abc"},
    "conditions": [
        {
            "type": "Promoted",
            "status": "Unknown",
            "reason": "Progressing",
            "message": "New revision detected, progressing canary analysis.",
            "lastUpdateTime": "2026-01-01T00:00:00Z",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
        }
    ],
}


def load(name: str, kind: str) -> dict[str, Any]:
    text = (MANIFESTS / name).read_text()
    data: dict[str, Any] = next(
        d.data for d in documents.load_documents(text, name) if d.kind == kind
    )
    return copy.deepcopy(data)


def from_server(obj: dict[str, Any], version: str = "41", generation: int = 2) -> dict[str, Any]:
    """The object as an API server returns it: identity, bookkeeping, kubectl's annotation."""
    obj = copy.deepcopy(obj)
    obj["metadata"].update(
        uid="0b6c-uid",
        resourceVersion=version,
        generation=generation,
        creationTimestamp="2026-01-01T00:00:00Z",
        managedFields=[{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
        annotations={
            "team": "web",
            objects.LAST_APPLIED: '{"apiVersion":"flagger.app/v1beta1","kind":"Canary"}',
        },
    )
    return obj


def test_a_canary_travels_as_the_validated_model_in_camel_case() -> None:
    raw = from_server(load("podinfo-canary.yaml", "Canary"))
    raw["status"] = STATUS
    observation = objects.observe_canary(raw)
    assert (observation.namespace, observation.name) == ("test", "podinfo")
    assert (observation.uid, observation.resource_version, observation.generation) == (
        "0b6c-uid",
        "41",
        2,
    )
    assert observation.problems == []
    assert observation.canary is not None
    assert observation.canary.status is not None
    assert observation.canary.status.canary_weight == 20
    data = messages.ENCODER.encode(observation)
    assert messages.CANARY_OBSERVATION_DECODER.decode(data) == observation
    wire = msgspec.json.decode(data)
    assert wire["canary"]["spec"]["targetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "podinfo",
    }
    assert wire["canary"]["status"]["canaryWeight"] == 20
    assert wire["canary"]["status"]["trackedConfigs"] == {"configmap/podinfo-config": "abc"}
    # the server's bookkeeping and the second copy of the object stay out; the cache is intact
    assert "managedFields" not in wire["canary"]["metadata"]
    assert wire["canary"]["metadata"]["annotations"] == {"team": "web"}
    assert "managedFields" in raw["metadata"]
    assert objects.LAST_APPLIED in raw["metadata"]["annotations"]


def test_an_invalid_canary_travels_as_its_problems() -> None:
    raw = from_server(load("podinfo-canary.yaml", "Canary"))
    analysis = raw["spec"]["analysis"]
    analysis["interval"] = "10"
    analysis["threshhold"] = analysis.pop("threshold")
    observation = objects.observe_canary(raw)
    assert observation.canary is None
    assert observation.uid == "0b6c-uid"
    doc = documents.Document(source="-", line=1, data=raw)
    assert observation.problems == [str(p) for p in validation.validate([doc])]
    assert len(observation.problems) >= 2
    data = messages.ENCODER.encode(observation)
    assert messages.CANARY_OBSERVATION_DECODER.decode(data) == observation


def test_a_template_keeps_its_secret_as_a_reference() -> None:
    raw = from_server(load("valid/templates-and-alerts.yaml", "MetricTemplate"))
    raw["spec"]["provider"]["secretRef"] = {"name": "prom-auth"}
    observation = objects.observe_template(raw)
    assert observation.template is not None
    assert observation.template.spec.provider.secret_ref is not None
    data = messages.ENCODER.encode(observation)
    assert msgspec.json.decode(data)["template"]["spec"]["provider"]["secretRef"] == {
        "name": "prom-auth"
    }
    assert messages.TEMPLATE_OBSERVATION_DECODER.decode(data) == observation

    raw["spec"]["query"] = "sum(up{job={{ nope }}})"
    invalid = objects.observe_template(raw)
    assert invalid.template is None
    assert invalid.problems[0].startswith(
        "not-found-percentage (MetricTemplate, test): spec.query:"
    )


def test_keys_are_subject_tokens() -> None:
    assert messages.canary_key("test", "podinfo") == "test.podinfo"
    assert messages.template_key("flagger-system", "latency") == "flagger-system.latency"
    with pytest.raises(errors.InvalidInput):
        messages.template_key("test", "latency.v2")
    assert objects.primary_name("podinfo") == "podinfo-primary"


def canary_at(version: str, uid: str = "u1", weight: int = 0) -> messages.CanaryObservation:
    raw = from_server(load("podinfo-canary.yaml", "Canary"), version=version)
    raw["metadata"]["uid"] = uid
    raw["status"] = {**STATUS, "canaryWeight": weight}
    return objects.observe_canary(raw)


@pytest.mark.parametrize(
    ("stored", "current", "stays"),
    [
        (None, canary_at("5"), False),
        (canary_at("5"), canary_at("6"), False),
        (canary_at("7"), canary_at("6"), True),  # a lagging replica's older version
        (canary_at("7", uid="old"), canary_at("6", uid="new"), False),  # deleted and re-created
        (canary_at("6"), canary_at("6"), True),  # the same (only the time differs)
        (canary_at("abc"), canary_at("abb"), False),  # not decimal: no order assumed
    ],
)
def test_which_stored_observation_stays(
    stored: messages.CanaryObservation | None, current: messages.CanaryObservation, stays: bool
) -> None:
    assert objects.stored_is_current(stored, current) is stays


@pytest.mark.integration
async def test_an_older_version_never_replaces_a_newer_one(runtime: lifecycle.Runtime) -> None:
    await streams.declare(runtime.js, buckets=(streams.CANARIES,))
    store = observing.canaries(runtime, await runtime.js.key_value(streams.CANARIES.name))

    async def current() -> messages.CanaryObservation:
        value = (await store.kv.get("test.podinfo")).value or b""
        return messages.CANARY_OBSERVATION_DECODER.decode(value)

    assert await store.record(canary_at("10", weight=10))
    assert await store.record(canary_at("12", weight=30))
    assert not await store.record(canary_at("11", weight=20))  # late, from another replica
    assert (await current()).resource_version == "12"
    assert not await store.record(canary_at("12", weight=30))  # nothing new: no write
    assert await store.record(canary_at("3", uid="u2"))  # a new object of the same name
    assert (await current()).uid == "u2"
    assert await store.keys() == ["test.podinfo"]
    await store.forget("test", "podinfo")
    assert await store.keys() == []
    assert await store.record(canary_at("4", uid="u2"))


@pytest.mark.integration
async def test_a_primary_is_recorded_without_events(runtime: lifecycle.Runtime) -> None:
    watcher = observing.Watcher(runtime, await runtime.js.key_value(streams.WORKLOADS.name))
    primary = messages.WorkloadObservation(
        namespace="test",
        name="podinfo-primary",
        revision="aaa",
        generation=1,
        observed_generation=1,
        replicas=2,
    )
    sub = await runtime.js.subscribe(f"{messages.EVENTS_PREFIX}.>", ordered_consumer=True)
    assert await watcher.record_quietly(primary)
    assert not await watcher.record_quietly(msgspec.structs.replace(primary, observed_at_ms=1))
    assert await watcher.record_quietly(msgspec.structs.replace(primary, revision="bbb"))
    stored = await watcher._load("test.podinfo-primary")
    assert stored[0] is not None
    assert stored[0].revision == "bbb"
    # the only event is the target's: the primary's records published nothing
    target = msgspec.structs.replace(primary, name="podinfo")
    assert await watcher.record(messages.CanaryRef(namespace="test", name="podinfo"), target)
    event = messages.EVENT_DECODER.decode((await sub.next_msg(timeout=5)).data)
    assert isinstance(event, messages.RevisionDetected)
    assert event.target == "podinfo"
    await sub.unsubscribe()
