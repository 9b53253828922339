"""Standalone canaries in the ``sluice_canaries`` KV bucket, on a real nats-server: apply keeps
the status, writes are compare-and-set on the KV revision, deletion waits for the finalizer."""

from __future__ import annotations

import msgspec
import pytest
from nats.aio.client import Client

from libs import errors, messages, streams
from libs.model import canary as canary_model
from libs.model import standalone, validation
from libs.model.documents import load_documents
from libs.standalone import applying
from libs.standalone import store as canary_store

CANARY = """
apiVersion: sluice.dev/v1alpha1
kind: ApisixCanary
metadata:
  name: podinfo
spec:
  route: {id: podinfo}
  upstreams:
    stable: {id: podinfo-stable}
    canary: {nodes: ["127.0.0.1:9899"]}
  revision: "6.0.0"
  analysis:
    interval: 10s
    threshold: 5
    maxWeight: 50
    stepWeight: 10
    metrics:
      - name: request-success-rate
        thresholdRange: {min: 99}
        interval: 1m
"""
REF = messages.CanaryRef(namespace="default", name="podinfo")


def parse(text: str = CANARY) -> standalone.ApisixCanary:
    doc = load_documents(text, "test.yaml")[0]
    return validation.parse_one(doc.data, standalone.ApisixCanary)


@pytest.fixture
async def store(nc: Client) -> canary_store.CanaryStore:
    js = nc.jetstream()
    await streams.declare(js, buckets=(streams.CANARIES, streams.TEMPLATES))
    return canary_store.CanaryStore(await js.key_value(streams.CANARIES.name))


async def test_apply_creates_then_configures_and_keeps_the_status(
    store: canary_store.CanaryStore,
) -> None:
    assert await store.apply(parse()) == "created"
    first = await store.get("default", "podinfo")
    assert first is not None
    assert first.canary is not None
    assert first.generation == 1
    assert first.uid
    assert first.apisix == standalone.ApisixTarget(
        route_id="podinfo",
        canary=standalone.UpstreamSpec(nodes=("127.0.0.1:9899",)),
        stable=standalone.UpstreamSpec(id="podinfo-stable"),
        initial_revision="6.0.0",
    )
    assert first.canary.metadata.namespace == "default"
    assert standalone.is_standalone(first.canary)
    assert first.canary.spec.revert_on_deletion  # a deletion always gives the route back

    assert await store.apply(parse()) == "unchanged"
    status = canary_model.CanaryStatus(phase=canary_model.Phase.PROGRESSING, canary_weight=20)
    await store.write_status(REF, first.resource_version, status)

    changed = parse(CANARY.replace("stepWeight: 10", "stepWeight: 20"))
    assert await store.apply(changed) == "configured"
    after = await store.get("default", "podinfo")
    assert after is not None
    assert after.canary is not None
    assert after.generation == 2
    assert after.canary.status == status  # the analyzer's status survives a new spec
    assert after.canary.get_analysis().step_weight == 20
    assert after.canary.metadata.uid == first.canary.metadata.uid


async def test_a_stale_status_write_is_a_conflict(store: canary_store.CanaryStore) -> None:
    await store.apply(parse())
    read = await store.get("default", "podinfo")
    assert read is not None
    status = canary_model.CanaryStatus(phase=canary_model.Phase.INITIALIZED)
    await store.write_status(REF, read.resource_version, status)
    with pytest.raises(errors.Conflict):  # a second replica that read the same revision
        await store.write_status(REF, read.resource_version, status)
    with pytest.raises(errors.NotFound):
        await store.write_status(messages.CanaryRef(namespace="default", name="gone"), "1", status)


async def test_deletion_waits_for_the_finalizer(store: canary_store.CanaryStore) -> None:
    await store.apply(parse())
    await store.set_finalizer(REF, True)
    assert await store.delete(REF) == "deleting"
    held = await store.get("default", "podinfo")
    assert held is not None
    assert held.canary is not None
    assert held.canary.metadata.deletion_timestamp
    with pytest.raises(errors.Conflict, match="being deleted"):
        await store.apply(parse())  # not brought back while its route is given back
    await store.set_finalizer(REF, False)  # the route is back: the canary goes
    assert await store.get("default", "podinfo") is None
    with pytest.raises(errors.NotFound):
        await store.delete(REF)
    assert await store.apply(parse()) == "created"  # and can be created again


async def test_without_a_finalizer_a_delete_is_immediate(store: canary_store.CanaryStore) -> None:
    await store.apply(parse())
    assert await store.delete(REF) == "deleted"
    assert await store.get("default", "podinfo") is None


async def test_mark_invalid_keeps_the_other_conditions(store: canary_store.CanaryStore) -> None:
    await store.apply(parse())
    read = await store.get("default", "podinfo")
    assert read is not None
    promoted = canary_model.Condition(type="Promoted", status="True", reason="Initialized")
    await store.write_status(
        REF, read.resource_version, canary_model.CanaryStatus(conditions=(promoted,))
    )
    again = await store.get("default", "podinfo")
    assert again is not None
    await store.mark_invalid(REF, again.resource_version, "route podinfo not found in APISIX")
    final = await store.get("default", "podinfo")
    assert final is not None
    assert final.canary is not None
    assert final.canary.status is not None
    types = {c.type: c for c in final.canary.status.conditions}
    assert types["Promoted"].status == "True"
    assert types["Valid"].status == "False"
    assert types["Valid"].message == "route podinfo not found in APISIX"


async def test_apply_takes_all_documents_or_none(nc: Client) -> None:
    js = nc.jetstream()
    await streams.declare(js, buckets=(streams.CANARIES, streams.TEMPLATES))
    canaries = await js.key_value(streams.CANARIES.name)
    templates_kv = await js.key_value(streams.TEMPLATES.name)
    template = """
apiVersion: flagger.app/v1beta1
kind: MetricTemplate
metadata: {name: error-rate}
spec:
  provider: {type: prometheus, address: "http://prometheus:9090"}
  query: sum(rate(apisix_http_status{route="{{ route }}"}[{{ interval }}]))
"""
    bad = CANARY.replace("name: podinfo\n", "name: other\n").replace(
        "stepWeight: 10", "stepWeight: 300"
    )
    docs = load_documents(CANARY + "---" + template + "---" + bad, "set.yaml")
    with pytest.raises(
        errors.InvalidInput, match=r"other \(ApisixCanary\): spec.analysis.stepWeight"
    ):
        await applying.apply(docs, canaries, templates_kv)
    store = canary_store.CanaryStore(canaries)
    assert await store.get("default", "podinfo") is None  # nothing half-applied

    docs = load_documents(CANARY + "---" + template, "set.yaml")
    applied = await applying.apply(docs, canaries, templates_kv)
    assert [(a.label, a.outcome) for a in applied] == [
        ("podinfo (ApisixCanary)", "created"),
        ("error-rate (MetricTemplate)", "created"),
    ]
    entry = await templates_kv.get(messages.template_key("default", "error-rate"))
    observed = msgspec.json.decode(entry.value or b"", type=messages.TemplateObservation)
    assert observed.template is not None
    again = await applying.apply(docs, canaries, templates_kv)
    assert [a.outcome for a in again] == ["unchanged", "unchanged"]


def test_a_flagger_canary_is_not_applied_in_standalone_mode() -> None:
    text = """
apiVersion: flagger.app/v1beta1
kind: AlertProvider
metadata: {name: slack}
spec: {type: slack, address: "https://hooks.slack.com/services/x"}
"""
    with pytest.raises(errors.InvalidInput, match="expected one of ApisixCanary, MetricTemplate"):
        applying.check(load_documents(text, "alerts.yaml"))
